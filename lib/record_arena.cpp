#include "record_arena.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "batchq/detail/fork.hpp"

namespace batchq::detail {

namespace {

std::atomic<std::uint64_t> g_blocks{0}, g_bytes{0}, g_pooled{0};

// The pool: slots a freed full-size block is parked in and a producer takes
// its next block from. Lock-free (an exchange per slot), so a fork() child
// never finds it locked.
std::atomic<arena_block*> g_pool[record_arena::pool_slots];

std::size_t size_of(const arena_block* b) noexcept { return arena_block::header + b->cap; }

arena_block* allocate(std::size_t cap) {
  void* p = std::malloc(arena_block::header + cap);
  if (!p) throw std::bad_alloc();
  auto* b = ::new (p) arena_block{};
  b->cap = static_cast<std::uint32_t>(cap);
  g_blocks.fetch_add(1, std::memory_order_relaxed);
  g_bytes.fetch_add(arena_block::header + cap, std::memory_order_relaxed);
  return b;
}

void release(arena_block* b) noexcept {
  g_blocks.fetch_sub(1, std::memory_order_relaxed);
  g_bytes.fetch_sub(size_of(b), std::memory_order_relaxed);
  b->~arena_block();
  std::free(b);
}

arena_block* take_full_block() {
  for (auto& s : g_pool) {
    if (!s.load(std::memory_order_relaxed)) continue;
    if (arena_block* b = s.exchange(nullptr, std::memory_order_acquire)) {
      g_pooled.fetch_sub(1, std::memory_order_relaxed);
      return b;
    }
  }
  return allocate(arena_block::capacity);
}

}  // namespace

void free_block(arena_block* b) noexcept {
  if (b->cap == arena_block::capacity) {
    for (auto& s : g_pool) {
      arena_block* none = nullptr;
      if (!s.load(std::memory_order_relaxed) &&
          s.compare_exchange_strong(none, b, std::memory_order_release, std::memory_order_relaxed)) {
        g_pooled.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
  }
  release(b);
}

struct record_arena::state {
  std::atomic<bool> gone{false};
  unsigned fork_gen = fork_generation_now();
};

namespace {

// A thread's current block for one arena. `given`: references handed out
// from the bias (see arena_block::bias).
struct current {
  std::shared_ptr<record_arena::state> arena;
  arena_block* b = nullptr;
  std::size_t used = 0;
  std::uint64_t given = 0;

  // Gives back the bias that no entry took; frees the block if every entry
  // made from it is gone already.
  void retire() noexcept {
    if (!b) return;
    release_block_refs(b, arena_block::bias - given);
    b = nullptr;
    used = 0;
    given = 0;
  }
};

// How many arenas were destroyed so far (process-wide; written only by
// ~record_arena). A thread whose fast path finds it changed takes the slow
// path once, which retires its blocks for arenas that are gone: without it,
// a thread that goes on enqueueing to one queue never looked again and kept
// a destroyed queue's current block. On a line of its own: every copy()
// reads it, only a queue's destruction writes it.
alignas(64) std::atomic<std::uint64_t> g_gone_gen{0};

// Trivially destructible, constant-initialised: read on every copy().
struct fast_state {
  const record_arena::state* last_arena;
  current* last;
  std::uint64_t gone_seen;  // g_gone_gen when the slow path last ran
  bool exiting;             // the cache below is destroyed: copy() returns an empty reference
};
thread_local fast_state t_fast{};

struct cache {
  std::vector<current> v;
  ~cache() {
    t_fast.exiting = true;
    t_fast.last = nullptr;
    t_fast.last_arena = nullptr;
    // A fork() child's copies of its parent's blocks are the parent's entries
    // too: forgotten, never retired (see forget_stale()).
    const unsigned gen = fork_generation_now();
    for (auto& c : v)
      if (c.arena->fork_gen == gen) c.retire();
  }
  // Retires the blocks of arenas that are gone; forgets those of a parent
  // process (fork). Invalidates pointers into v.
  void forget_stale() noexcept {
    const unsigned gen = fork_generation_now();
    for (std::size_t i = 0; i < v.size();) {
      const bool forked = v[i].arena->fork_gen != gen;
      if (forked || v[i].arena->gone.load(std::memory_order_acquire)) {
        if (!forked) v[i].retire();
        v[i] = std::move(v.back());
        v.pop_back();
        continue;
      }
      ++i;
    }
  }
};
thread_local cache t_cache;

current* find_current(const std::shared_ptr<record_arena::state>& st) {
  fast_state& f = t_fast;
  // Acquire: an arena's gone flag, stored before its count was raised, is
  // seen by forget_stale() below.
  const std::uint64_t gone_gen = g_gone_gen.load(std::memory_order_acquire);
  if (f.last_arena == st.get() && f.gone_seen == gone_gen) return f.last;
  if (f.exiting) return nullptr;
  cache& c = t_cache;
  c.forget_stale();
  f.gone_seen = gone_gen;
  current* found = nullptr;
  for (auto& e : c.v)
    if (e.arena == st) found = &e;
  if (!found) {
    c.v.push_back(current{st});
    found = &c.v.back();
  }
  f.last_arena = st.get();
  f.last = found;
  return found;
}

}  // namespace

record_arena::record_arena() : st_(std::make_shared<state>()) {}

record_arena::~record_arena() {
  release_thread_block();
  st_->gone.store(true, std::memory_order_release);
  g_gone_gen.fetch_add(1, std::memory_order_release);
}

record_ref record_arena::copy(std::string_view bytes) {
  current* c = find_current(st_);
  if (!c) return {};
  const std::size_t n = bytes.size();
  if (!c->b || arena_block::capacity - c->used < n) {
    c->retire();
    c->b = take_full_block();
    c->b->refs.store(arena_block::bias, std::memory_order_relaxed);
  }
  std::memcpy(c->b->bytes() + c->used, bytes.data(), n);
  record_ref r(c->b, static_cast<std::uint32_t>(c->used), static_cast<std::uint32_t>(n));
  c->used += n;
  ++c->given;
  return r;
}

void record_arena::release_thread_block() noexcept {
  fast_state& f = t_fast;
  if (f.exiting) return;
  if (f.last_arena == st_.get()) {
    f.last_arena = nullptr;
    f.last = nullptr;
  }
  for (auto& e : t_cache.v)
    if (e.arena == st_) e.retire();
}

arena_block* record_arena::exact_block(std::size_t total_len, std::size_t n) {
  arena_block* b = allocate(total_len);
  b->refs.store(n, std::memory_order_relaxed);
  return b;
}

arena_figures record_arena::figures() noexcept {
  arena_figures f;
  f.blocks_live = g_blocks.load(std::memory_order_relaxed);
  f.bytes_live = g_bytes.load(std::memory_order_relaxed);
  f.blocks_pooled = g_pooled.load(std::memory_order_relaxed);
  return f;
}

void record_arena::drain_pool() noexcept {
  for (auto& s : g_pool)
    if (arena_block* b = s.exchange(nullptr, std::memory_order_acquire)) {
      g_pooled.fetch_sub(1, std::memory_order_relaxed);
      release(b);
    }
}

}  // namespace batchq::detail
