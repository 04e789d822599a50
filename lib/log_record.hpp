// log_record: an entry as http_log's queue holds it. Private to lib/.
#ifndef BATCHQ_LIB_LOG_RECORD_HPP
#define BATCHQ_LIB_LOG_RECORD_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "batchq/detail/boxed_text.hpp"
#include "record_arena.hpp"

namespace batchq::detail {

// The bytes and the seq of the entry's record in the write-ahead spool (0:
// it has none). The bytes are either `own` (a large entry, moved in; an
// entry rewritten on a drop; a replayed one) or, when `ref` is set, a small
// entry's place in a record_arena block. Everything reads them through
// data(); size() is what max_bytes counts either way.
// 40 bytes: the queue holds one per entry (131,072 for 64 MiB of 512 B
// entries), and at queue_size 1 one vector of one record per entry, whose
// heap chunk is 48 bytes (80 with a std::string inside).
struct log_record {
  boxed_text own;  // a large entry's bytes (8 bytes here; most entries are in a block)
  std::uint64_t seq = 0;
  record_ref ref;
  // The bytes are a LuaJIT string.buffer encoding (enqueue_lua), checked at
  // enqueue; they become JSON on the sending thread (lua_to_json_or_error).
  bool lua = false;

  std::string_view data() const noexcept { return ref ? ref.view() : own.view(); }
  std::size_t size() const noexcept { return data().size(); }
  // New bytes (the entry as JSON): the block reference, if any, goes.
  void replace(std::string s) {
    own = std::move(s);
    ref.reset();
  }
};
static_assert(sizeof(log_record) <= 40, "log_record: keep the queue's per-entry cost small");

// Drops the block references of `n` records with one atomic subtraction per
// run of records in the same block (a batch's entries mostly share a few
// blocks) instead of one per record; the bytes of those records are gone.
inline void release_refs(log_record* r, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n;) {
    if (!r[i].ref) {
      ++i;
      continue;
    }
    const arena_block* const b = r[i].ref.block();
    std::uint64_t k = 0;
    for (; i < n && r[i].ref.block() == b; ++i, ++k) r[i].ref.detach();
    release_block_refs(const_cast<arena_block*>(b), k);
  }
}

// Wall-clock time as the spools and drop reports give it: Unix ms.
inline std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace batchq::detail

#endif  // BATCHQ_LIB_LOG_RECORD_HPP
