// record_arena: where http_log keeps the bytes of small entries. Private to lib/.
//
// Why. A queue's producer allocates each entry and the sending thread frees
// it: with glibc, every such free() takes the producer's arena lock against
// the producer's next malloc() (bench/results.md, case 3). Here an entry of
// up to `small_max` bytes is copied, at enqueue, into the calling thread's
// current block for that queue; the record keeps a reference to its block.
// A block is freed (or parked in a small process-wide pool for the next
// block a producer needs) when its last entry is delivered, dropped or
// spooled, so the sending thread frees one block per many entries and the
// producer's own strings die on the producer's thread. Larger entries keep
// their own std::string.
//
// Block size: 64 KiB (header included). A 512 B entry shares its block with
// about 120 others, so per-block costs vanish; a block stays below glibc's
// mmap threshold (128 KiB), so a new one is a heap allocation, not an mmap;
// and a partly used block per producer thread and queue pins little.
// small_max is 4 KiB: a block is retired when the next entry does not fit,
// so a retired block is at least 60 KiB (15/16) full.
//
// Memory bound (the README's memory paragraph says the same): the blocks'
// memory is at most
//   - 64 KiB per (producer thread, queue) for its current block: released
//     when the thread exits or the queue is gone (the next time the thread
//     enqueues, to any queue, it retires its blocks of queues that are
//     gone: the fast path compares one process-wide count of destroyed
//     queues with the one it saw last);
//   - for entries still queued: a producer's live entries are consecutive in
//     its blocks as long as they leave in order, so they pin their bytes x
//     16/15 plus one partly delivered block per producer thread;
//   - a batch that is sent while later batches are delivered (concurrency >
//     1) pins, besides its bytes, at most 2 blocks per producer thread whose
//     entries it holds (its entries of one producer are consecutive); a
//     batch whose attempt failed is first compacted into one block of its
//     own exact size (compact()), so a batch waiting for a retry pins only
//     its own bytes;
//   - the pool: at most pool_slots (16) blocks, 1 MiB per process.
// max_bytes keeps counting entry bytes only.
//
// Threads. copy() runs on the enqueueing thread; references are released on
// whatever thread destroys the record. Thread exit: the thread's blocks are
// retired by a thread_local destructor; a thread that enqueues after that
// (another thread_local's destructor) gets an owned string instead. Fork: a
// child never enqueues into its parent's queue (fork_error first); its copy
// of the parent's current blocks is forgotten, never freed twice.
#ifndef BATCHQ_LIB_RECORD_ARENA_HPP
#define BATCHQ_LIB_RECORD_ARENA_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace batchq::detail {

struct arena_block;

// A counted reference to an entry's bytes in a block. Move-only.
class record_ref {
 public:
  record_ref() noexcept = default;
  record_ref(arena_block* b, std::uint32_t off, std::uint32_t len) noexcept : b_(b), off_(off), len_(len) {}
  record_ref(record_ref&& o) noexcept : b_(o.b_), off_(o.off_), len_(o.len_) { o.b_ = nullptr; }
  record_ref& operator=(record_ref&& o) noexcept {
    if (this != &o) {
      reset();
      b_ = o.b_;
      off_ = o.off_;
      len_ = o.len_;
      o.b_ = nullptr;
    }
    return *this;
  }
  record_ref(const record_ref&) = delete;
  record_ref& operator=(const record_ref&) = delete;
  ~record_ref() { reset(); }

  explicit operator bool() const noexcept { return b_ != nullptr; }
  const arena_block* block() const noexcept { return b_; }
  inline std::string_view view() const noexcept;
  // Drops the reference (frees the block if it was the last).
  void reset() noexcept;
  // Gives up the reference without dropping it: the caller now holds it
  // (release_refs() drops many at once).
  arena_block* detach() noexcept {
    arena_block* b = b_;
    b_ = nullptr;
    return b;
  }

 private:
  arena_block* b_ = nullptr;
  std::uint32_t off_ = 0;
  std::uint32_t len_ = 0;
};

struct arena_block {
  static constexpr std::size_t total = 64 * 1024;  // what one block allocates, header included
  static constexpr std::size_t header = 64;        // refs on a line of their own
  static constexpr std::size_t capacity = total - header;
  // Producer's bias: a current block holds `bias` references for entries
  // not yet made, so the producer counts its entries locally and pays one
  // atomic subtraction when it retires the block.
  static constexpr std::uint64_t bias = std::uint64_t{1} << 40;

  std::atomic<std::uint64_t> refs;
  std::uint32_t cap;  // bytes usable after the header (capacity, or a compacted batch's size)
  char* bytes() noexcept { return reinterpret_cast<char*>(this) + header; }
};

inline std::string_view record_ref::view() const noexcept {
  return b_ ? std::string_view(b_->bytes() + off_, len_) : std::string_view();
}

// Process-wide figures (tests and benches read them).
struct arena_figures {
  std::uint64_t blocks_live = 0;  // allocated and not freed (current, holding entries, or pooled)
  std::uint64_t bytes_live = 0;   // their memory
  std::uint64_t blocks_pooled = 0;
};

// One per http_log: an identity for the per-thread current blocks.
class record_arena {
 public:
  static constexpr std::size_t small_max = 4 * 1024;  // larger entries keep their own string
  static constexpr std::size_t pool_slots = 16;

  record_arena();
  ~record_arena();  // threads forget (and retire) their blocks for it at their next copy() or exit
  record_arena(const record_arena&) = delete;
  record_arena& operator=(const record_arena&) = delete;

  // Copies `bytes` (at most small_max) into the calling thread's current
  // block for this arena. An empty reference if the thread is exiting (the
  // caller then keeps an owned string).
  record_ref copy(std::string_view bytes);

  // One block of exactly `total_len` bytes for entries moved out of their
  // blocks (a batch waiting for a retry): the caller copies into bytes()
  // and makes `n` references with make_ref(). Held by those references only.
  static arena_block* exact_block(std::size_t total_len, std::size_t n);
  static record_ref make_ref(arena_block* b, std::size_t off, std::size_t len) noexcept {
    return record_ref(b, static_cast<std::uint32_t>(off), static_cast<std::uint32_t>(len));
  }

  // Retires the calling thread's current block for this arena, if any.
  void release_thread_block() noexcept;

  static arena_figures figures() noexcept;
  // Frees the pooled blocks (tests: figures from a known state).
  static void drain_pool() noexcept;

  struct state;  // shared with the threads' caches (gone flag, fork generation)

 private:
  std::shared_ptr<state> st_;
};

// Frees or pools a block whose last reference went.
void free_block(arena_block* b) noexcept;

// Drops `k` references to `b` at once (frees the block if they were the last).
inline void release_block_refs(arena_block* b, std::uint64_t k) noexcept {
  if (b->refs.fetch_sub(k, std::memory_order_acq_rel) == k) free_block(b);
}

inline void record_ref::reset() noexcept {
  if (!b_) return;
  release_block_refs(b_, 1);
  b_ = nullptr;
}

}  // namespace batchq::detail

#endif  // BATCHQ_LIB_RECORD_ARENA_HPP
