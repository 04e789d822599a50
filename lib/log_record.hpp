// log_record: an entry as http_log's queue holds it. Private to lib/.
#ifndef BATCHQ_LIB_LOG_RECORD_HPP
#define BATCHQ_LIB_LOG_RECORD_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace batchq::detail {

// The bytes and the seq of the entry's record in the write-ahead spool (0:
// it has none).
struct log_record {
  std::string data;
  std::uint64_t seq = 0;
  // data is a LuaJIT string.buffer encoding (enqueue_lua), checked at
  // enqueue; it becomes JSON on the sending thread (lua_to_json_or_error).
  bool lua = false;
  std::size_t size() const noexcept { return data.size(); }
};

// Wall-clock time as the spools and drop reports give it: Unix ms.
inline std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace batchq::detail

#endif  // BATCHQ_LIB_LOG_RECORD_HPP
