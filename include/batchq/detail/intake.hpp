// batchq/detail/intake.hpp - where enqueue() puts an entry: one
// single-producer ring per (producer thread, queue), drained by whoever holds
// the queue's lock, plus the credit pools that bound what the queue holds.
//
// The argument (bounds, order, wake rule, thread exit, fork) is in
// docs/intake.md; the comments below name the step each line implements.
//
// Cache lines. A producer writes only its own ring's producer line (tail,
// cached head, unused credit); the lock holder writes only the rings'
// consumer lines (head, wake threshold). The only read-modify-writes a
// producer makes on a line another thread writes are
//  - taking credit from a pool (bounded queues only), once per `chunk`
//    entries (up to 32) and never on an unbounded queue;
//  - consuming its own ring's wake threshold (a CAS on its ring's consumer
//    line) once per wake-up it sends.
// No producer ever writes a line another producer writes. In light mode a
// push has no fence either: a worker pays a membarrier before it sleeps
// instead (docs/intake.md, "Light pushes").
#ifndef BATCHQ_DETAIL_INTAKE_HPP
#define BATCHQ_DETAIL_INTAKE_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <limits>
#include <memory>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "batchq/detail/heavy_fence.hpp"

namespace batchq {
namespace detail {

inline constexpr std::size_t cache_line = 64;
inline constexpr std::uint64_t no_wake = ~std::uint64_t{0};

// CPU time of the calling thread in ns (a worker's spin is bounded by the
// CPU it burns, not by time spent descheduled); monotonic time where POSIX
// thread CPU clocks are missing.
inline std::uint64_t thread_cpu_ns() noexcept {
#if defined(CLOCK_THREAD_CPUTIME_ID)
  timespec ts{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
#endif
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

// A spin-wait hint to the CPU (x86 pause, ARM yield); nothing elsewhere.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Round `i` of a wait for another thread: the first `relax_rounds` rounds
// spin (`relaxes` cpu_relax() each), later ones yield the CPU (on 2 CPUs
// the thread waited for may need this one).
inline void wait_step(unsigned i, unsigned relax_rounds, unsigned relaxes = 1) noexcept {
  if (i >= relax_rounds) {
    std::this_thread::yield();
    return;
  }
  for (unsigned k = 0; k < relaxes; ++k) cpu_relax();
}

// One ring: written by one producer thread, read and emptied by the holder of
// the queue's lock. Shared (shared_ptr) by the queue and the producer thread's
// cache, so either may go first.
template <class T>
struct intake_ring {
  intake_ring(std::size_t capacity_pow2, std::uint64_t owner_id)
      : slots(std::allocator<T>().allocate(capacity_pow2)), mask(capacity_pow2 - 1), owner(owner_id) {}
  ~intake_ring() {
    // Entries still here belong to a queue destroyed in a fork() child or a
    // producer that raced the queue's end: they are freed, never leaked.
    for (std::uint64_t i = head.load(std::memory_order_relaxed), t = tail.load(std::memory_order_acquire); i != t; ++i)
      slots[i & mask].~T();
    std::allocator<T>().deallocate(slots, mask + 1);
  }
  intake_ring(const intake_ring&) = delete;
  intake_ring& operator=(const intake_ring&) = delete;

  // ---- producer line: written by the producing thread only ----
  alignas(cache_line) std::atomic<std::uint64_t> tail{0};  // entries ever pushed
  std::uint64_t cached_head = 0;                           // last head seen
  std::size_t credit_entries = 0;                          // credit taken from the pools, not used yet
  std::size_t credit_bytes = 0;
  std::atomic<bool> orphaned{false};  // the thread has exited: nothing more comes

  // ---- consumer line: written under the queue's lock, once per drain ----
  // The producer reads it only when its ring looks full.
  alignas(cache_line) std::atomic<std::uint64_t> head{0};  // entries ever taken
  std::atomic<bool> owner_gone{false};  // the queue is gone: the thread may forget this ring

  // ---- wake line: read by the producer on every push, written by the lock
  // holder when it publishes a threshold and by the producer's CAS ----
  // Apart from `head`, so that a drain in progress does not take this line
  // away from a producer that is pushing.
  // The tail value at which the producer must wake a worker; no_wake once a
  // producer consumed it (a wake-up was sent) or before the first publish.
  alignas(cache_line) std::atomic<std::uint64_t> wake_at{no_wake};

  alignas(cache_line) T* const slots;
  const std::uint64_t mask;
  const std::uint64_t owner;  // the queue's intake id

  // Producer. Moves `e` in and returns the new tail, or 0 (e untouched) when
  // the ring is full. The store is one half of both handshakes (wake rule
  // and close): docs/intake.md. A full push stores seq_cst (a full fence);
  // a light push (the queue is in light mode: whoever sleeps on the
  // handshake pays a heavy fence first) needs only a compiler barrier.
  // flatten: GCC 12 left std::string's move constructor out of line here
  // (a call through the PLT into libstdc++ on every push, 10% of a
  // producer's samples at 2 producers); the drain's moves were inlined.
  [[gnu::flatten]] std::uint64_t try_push(T& e, bool light = false) {
    const std::uint64_t t = tail.load(std::memory_order_relaxed);
    // A tail counts pushes and never reaches 2^64; the check makes it plain
    // (also to clang's analyzer) that the tail returned after a move, t + 1,
    // is never 0, which means "full, entry untouched".
    if (t == ~std::uint64_t{0}) return 0;
    if (t - cached_head > mask) {
      cached_head = head.load(std::memory_order_acquire);
      if (t - cached_head > mask) return 0;
    }
    ::new (static_cast<void*>(slots + (t & mask))) T(std::move(e));
    if (light) {
      tail.store(t + 1, std::memory_order_release);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the loads that follow stay after the store
    } else {
      tail.store(t + 1, std::memory_order_seq_cst);
    }
    return t + 1;
  }

  // Producer, after a push that reached `t`: true if this producer must wake
  // a worker (it crossed the published threshold and consumed it).
  bool crossed(std::uint64_t t) {
    std::uint64_t w = wake_at.load(std::memory_order_seq_cst);
    while (t >= w) {
      if (wake_at.compare_exchange_weak(w, no_wake, std::memory_order_seq_cst)) return true;
    }
    return false;
  }
};

// The per-thread cache of rings: a few (queue id, ring) hints read on every
// enqueue (constant-initialised, trivially destructible: one TLS access, no
// guard variable) and the owning list, touched only when a hint misses.
template <class T>
struct intake_tls {
  struct hint {
    std::uint64_t id;
    intake_ring<T>* ring;
  };
  struct state {
    hint hints[4];
    unsigned next;
    bool exiting;  // the owning list is destroyed: this thread pushes through the lock
  };
  static state& fast() noexcept {
    thread_local state s{};
    return s;
  }
  struct owner {
    std::vector<std::shared_ptr<intake_ring<T>>> rings;
    ~owner() {
      state& s = fast();
      s.exiting = true;
      for (auto& h : s.hints) h = hint{0, nullptr};
      for (auto& r : rings) r->orphaned.store(true, std::memory_order_release);
    }
  };
  static owner& owned() {
    thread_local owner o;
    return o;
  }

  static intake_ring<T>* find(std::uint64_t id) noexcept {
    state& s = fast();
    for (auto& h : s.hints)
      if (h.id == id) return h.ring;
    return nullptr;
  }

  // Slow path of find(): the owning list; forgets rings of queues that are gone.
  static intake_ring<T>* find_owned(std::uint64_t id) {
    state& s = fast();
    if (s.exiting) return nullptr;
    auto& v = owned().rings;
    intake_ring<T>* found = nullptr;
    for (std::size_t i = 0; i < v.size();) {
      if (v[i]->owner_gone.load(std::memory_order_acquire)) {
        for (auto& h : s.hints)
          if (h.ring == v[i].get()) h = hint{0, nullptr};
        v[i] = std::move(v.back());
        v.pop_back();
        continue;
      }
      if (v[i]->owner == id) found = v[i].get();
      ++i;
    }
    if (found) remember(id, found);
    return found;
  }

  static void adopt(std::shared_ptr<intake_ring<T>> r) {
    owned().rings.push_back(r);
    remember(r->owner, r.get());
  }

  static void remember(std::uint64_t id, intake_ring<T>* r) noexcept {
    state& s = fast();
    s.hints[s.next % 4] = hint{id, r};
    ++s.next;
  }
};

inline std::uint64_t new_intake_id() noexcept {
  static std::atomic<std::uint64_t> next{0};
  return next.fetch_add(1, std::memory_order_relaxed) + 1;  // never 0: 0 marks an empty hint
}

// A pool of credit (entries or bytes) that producers draw from in chunks and
// the queue refills as entries leave. Invariant, at every moment:
//   pool + sum of the rings' unused credit + what the queue holds = bound.
class credit_pool {
 public:
  void reset(std::uint64_t bound, std::uint64_t chunk) noexcept {
    bound_ = bound;
    chunk_ = chunk;
    avail_.store(bound, std::memory_order_relaxed);
  }
  bool bounded() const noexcept { return bound_ != 0; }
  std::uint64_t bound() const noexcept { return bound_; }
  std::uint64_t available() const noexcept { return avail_.load(std::memory_order_relaxed); }

  // Tops `local` up to at least `need`, taking up to a chunk; false (nothing
  // taken) if the pool has less than what is missing.
  bool take(std::size_t& local, std::size_t need) noexcept {
    if (local >= need) return true;
    const std::uint64_t missing = need - local;
    std::uint64_t avail = avail_.load(std::memory_order_relaxed);
    for (;;) {
      if (avail < missing) return false;
      const std::uint64_t grab = std::min<std::uint64_t>(avail, std::max<std::uint64_t>(missing, chunk_));
      if (avail_.compare_exchange_weak(avail, avail - grab, std::memory_order_relaxed)) {
        local += static_cast<std::size_t>(grab);
        return true;
      }
    }
  }
  void give(std::uint64_t n) noexcept {
    if (n) avail_.fetch_add(n, std::memory_order_relaxed);
  }

 private:
  // bound_ and chunk_ are read on every enqueue; avail_ is written by
  // whoever takes or returns credit: apart, so the reads do not miss.
  std::uint64_t bound_ = 0;
  std::uint64_t chunk_ = 1;
  alignas(cache_line) std::atomic<std::uint64_t> avail_{0};
};

// The queue's side of the intake: the registered rings (guarded by the
// queue's lock) and the two credit pools.
template <class T>
class intake {
 public:
  using ring = intake_ring<T>;
  using tls = intake_tls<T>;

  intake(std::size_t batch_max_size, std::uint64_t max_entries, std::uint64_t max_bytes,
         bool heavy_ok = heavy_fence_available())
      : heavy_ok_(heavy_ok), single_(batch_max_size == 1) {
    std::size_t cap = 64;
    while (cap < 2 * batch_max_size && cap < 4096) cap *= 2;
    capacity_ = cap;
    // Chunks small next to the bound: unused credit in other threads' rings
    // is at most (threads - 1) x chunk (docs/intake.md, "early push-out").
    entries.reset(max_entries, std::clamp<std::uint64_t>(max_entries / 64, 1, 32));
    bytes.reset(max_bytes, std::min<std::uint64_t>(max_bytes / 64, 64 * 1024));
  }
  ~intake() {
    for (auto& r : rings_) r->owner_gone.store(true, std::memory_order_release);
  }
  intake(const intake&) = delete;
  intake& operator=(const intake&) = delete;

  std::uint64_t id() const noexcept { return id_; }

  // Producer: this thread's ring for this queue, or nullptr (not registered
  // yet, or the thread is exiting).
  ring* local() const noexcept {
    ring* r = tls::find(id_);
    return r ? r : tls::find_owned(id_);
  }
  // Producer: a new ring for this thread. Caller registers it (add_locked)
  // before pushing into it.
  std::shared_ptr<ring> make_ring() const { return std::make_shared<ring>(capacity_, id_); }
  static bool thread_exiting() noexcept { return tls::fast().exiting; }

  // Producer: consumes one entry's credit (and `size` bytes') from the
  // ring's unused credit, drawing from the pools as needed.
  bool take_credit(std::size_t& credit_entries, std::size_t& credit_bytes, std::size_t size) noexcept {
    if (entries.bounded() && !entries.take(credit_entries, 1)) return false;
    if (bytes.bounded() && !bytes.take(credit_bytes, size)) return false;
    if (entries.bounded()) --credit_entries;
    if (bytes.bounded()) credit_bytes -= size;
    return true;
  }
  // Entries left the queue (delivered, dropped).
  void give_back(std::uint64_t n, std::uint64_t b) noexcept {
    if (entries.bounded()) entries.give(n);
    if (bytes.bounded()) bytes.give(b);
  }

  // Producer: pushes `e` into its own ring `r` in the queue's current mode
  // and returns the new tail, or 0 (e untouched) when the ring is full
  // (docs/intake.md, "Light pushes"). A push made light that finds light
  // mode gone after its store must fence before it reads closed_ and the
  // threshold: a seq_cst RMW on its own tail (a full fence on x86;
  // std::atomic_thread_fence is not understood by TSan).
  std::uint64_t push(ring& r, T& e) {
    const bool was_light = light();
    const std::uint64_t t = r.try_push(e, was_light);
    if (t && was_light && !light_.load(std::memory_order_seq_cst)) r.tail.fetch_add(0, std::memory_order_seq_cst);
    return t;
  }
  // Acquire: a push that reads "light" sees the thresholds of every worker
  // that slept before the switch (go_light_locked).
  bool light() const noexcept { return light_.load(std::memory_order_acquire); }

  // Producer whose ring `r` is full (docs/intake.md, "A full ring"): while
  // a drain is under way or coming (drain_coming), every ring it reaches
  // gets emptied or its share taken, this one included, so instead of
  // draining itself or sleeping on the lock the producer waits for its
  // ring's head to move. True when it moved (the caller pushes again);
  // false when no drain is under way or coming, or one ended without
  // reaching this ring (the caller takes the lock). Bounded by one drain and
  // a returning worker's way to it: never a wait on delivery or the network.
  // A worker back from a delivery counts itself here until it has drained
  // (batch_queue::process_one_locked): what it does in between is destroy
  // the delivered entries and take the lock, never the network or a user's
  // callback, so waiting for it is bounded as waiting for a drain is.
  void returning_add(int d) noexcept { returning_.fetch_add(d, std::memory_order_acq_rel); }
  bool drain_coming() const noexcept {
    return draining_.load(std::memory_order_acquire) || returning_.load(std::memory_order_acquire) != 0;
  }
  bool wait_for_drain(ring& r) const noexcept {
    const std::uint64_t seen = r.cached_head;
    for (unsigned i = 0;; ++i) {
      if (r.head.load(std::memory_order_acquire) != seen) return true;
      if (!drain_coming()) return r.head.load(std::memory_order_acquire) != seen;
      wait_step(i, 64);
    }
  }

  // Whoever just stored closed_ (close(), shutdown()), before it looks at the
  // rings: a light push either sees closed_ or is seen. (After registering,
  // membarrier fails only for commands not registered: it does not fail here.)
  void fence_after_close() noexcept {
    if (heavy_ok_.load(std::memory_order_relaxed)) (void)detail::heavy_fence();
  }

  // ---- under the queue's lock -----------------------------------------

  // A worker about to sleep on the wake rule, after publish_locked() and
  // before it looks at the rings (intake_due_locked). Chooses the mode for
  // the pushes that follow: light when the last wake-up drained at least
  // light_min entries (a heavy fence per sleep costs less than a full fence
  // per push), full otherwise. Light mode, and the switch into or out of
  // it, cost one heavy fence here. Returns false if a heavy fence was due
  // and failed: the caller must not sleep without a timeout then.
  static constexpr std::uint64_t light_min = 256;
  // A drain stores a ring's head every head_step entries (a power of two),
  // so a producer waiting for it (wait_for_drain) pushes again after 64 of
  // its entries moved, not after the whole ring (docs/intake.md, "A full
  // ring"); runs offered to a drain's taker are at most this long.
  static constexpr std::uint64_t head_step = 64;
  bool before_sleep_locked() noexcept {
    if (!heavy_ok_.load(std::memory_order_relaxed)) return true;
    const bool was = light_.load(std::memory_order_relaxed);
    const bool want = drained_since_sleep_ >= light_min;
    drained_since_sleep_ = 0;
    spun_ns_since_sleep_ = 0;
    if (want != was) light_.store(want, std::memory_order_seq_cst);
    if (!was && !want) return true;
    ++heavy_fences_;
    if (detail::heavy_fence()) return true;
    heavy_ok_.store(false, std::memory_order_relaxed);  // cannot happen once registered; stay on full pushes
    light_.store(false, std::memory_order_seq_cst);
    return false;
  }
  // A worker about to sleep after a busy wake-up polls the rings first
  // (docs/intake.md, "Spin before sleeping"): under steady traffic it then
  // drains as entries come, without a wake-up (a futex call on the
  // producer's side, a scheduler wake-up on the worker's) or a heavy fence
  // per sleep. Bounded twice, in CPU time of the spinning thread
  // (thread_cpu_ns): one spin burns at most spin_time, and between two
  // sleeps a worker spins at most a budget per entry drained (traffic that
  // trickles in after a burst cannot keep it spinning). An idle queue's
  // worker drained nothing: it sleeps at once. One worker spins at a time.
  // Returns how long this spin may last, in ns (0: sleep now).
  //
  // Batches of more than one entry: a wake-up is due once per batch, not
  // per entry, so a spin spares little; it starts only after light_min
  // entries and costs at most spin_ns_per_entry (100 ns) per entry.
  // Batches of one entry: every entry is due, and a worker back from its
  // request that polls for the next one spares the producer (nginx's event
  // loop, at http-log's queue_size 1) a wake-up; it spins after any drain,
  // for up to spin_ns_per_entry_single (30 µs, about what a wake-up costs
  // on a virtual machine: the futex call and the interrupt to another CPU,
  // the sleeper's context switch) per entry (bench/results.md, case 4c,
  // eighth round).
  static constexpr std::chrono::microseconds spin_time{50};
  static constexpr std::uint64_t spin_ns_per_entry = 100;
  static constexpr std::uint64_t spin_ns_per_entry_single = 30000;
  std::uint64_t spin_start_locked() noexcept {
    if (spinning_ || drained_since_sleep_ < (single_ ? 1 : light_min)) return 0;
    const std::uint64_t per_entry = single_ ? spin_ns_per_entry_single : spin_ns_per_entry;
    constexpr std::uint64_t most = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t budget = drained_since_sleep_ > most / per_entry ? most : drained_since_sleep_ * per_entry;
    if (spun_ns_since_sleep_ >= budget) return 0;
    spinning_ = true;
    return std::min<std::uint64_t>(budget - spun_ns_since_sleep_,
                                   std::chrono::nanoseconds(spin_time).count());
  }
  // Pushes go light as soon as light_min entries were drained since a
  // worker last slept, not only at the next sleep: under steady traffic a
  // worker that always has work never sleeps, and its queue's pushes would
  // stay full (docs/intake.md, "Light pushes"). No fence here: whoever holds
  // mu_ is awake, and before_sleep_locked() pays a heavy fence for any sleep
  // that starts in light mode; a worker already asleep slept in full mode,
  // and a push that reads "light" (acquire) sees that worker's thresholds.
  void go_light_locked() noexcept {
    if (drained_since_sleep_ >= light_min && !light_.load(std::memory_order_relaxed) &&
        heavy_ok_.load(std::memory_order_relaxed))
      light_.store(true, std::memory_order_seq_cst);
  }

  // The spin that spin_start_locked() allowed ended after `spun_ns` of CPU.
  void spin_end_locked(std::uint64_t spun_ns) noexcept {
    spinning_ = false;
    spun_ns_since_sleep_ += spun_ns;
  }

  // Workers between "about to sleep" (before publish_locked) and "awake
  // again": a producer that consumed a threshold wakes a worker only when
  // one may sleep; an awake worker looks at the rings before it sleeps
  // (docs/intake.md, "Wake rule").
  void sleepers_add_locked(int d) noexcept {
    sleepers_.store(sleepers_.load(std::memory_order_relaxed) + static_cast<unsigned>(d), std::memory_order_seq_cst);
  }
  bool anyone_sleeping() const noexcept { return sleepers_.load(std::memory_order_seq_cst) != 0; }

  // Heavy fences paid by sleeping workers so far (for tests).
  std::uint64_t heavy_fences_locked() const noexcept { return heavy_fences_; }

  void add_locked(std::shared_ptr<ring> r) { rings_.push_back(std::move(r)); }
  std::size_t ring_count_locked() const noexcept { return rings_.size(); }
  // Entries in the rings now (a lower bound while producers push).
  std::size_t pending_locked() const noexcept {
    std::size_t n = 0;
    for (const auto& r : rings_)
      n += static_cast<std::size_t>(r->tail.load(std::memory_order_acquire) - r->head.load(std::memory_order_relaxed));
    return n;
  }

  // Whether a worker must drain now: with `any`, when a ring holds anything;
  // else when a ring reached its threshold or a producer consumed it.
  bool due_locked(bool any) const noexcept {
    for (const auto& r : rings_) {
      const std::uint64_t t = r->tail.load(std::memory_order_seq_cst);
      const std::uint64_t h = r->head.load(std::memory_order_relaxed);
      if (t == h) continue;
      if (any) return true;
      const std::uint64_t w = r->wake_at.load(std::memory_order_seq_cst);
      if (w == no_wake || t >= w) return true;
    }
    return false;
  }

  // The wake rule: with `room` entries still wanted (1 = the next entry
  // matters), each ring's producer wakes a worker when its ring alone holds
  // ceil(room / rings) entries; if the rings together hold `room`, one of
  // them holds that many (pigeonhole).
  void publish_locked(std::uint64_t room) noexcept {
    if (rings_.empty()) return;
    const std::uint64_t per = (std::max<std::uint64_t>(room, 1) + rings_.size() - 1) / rings_.size();
    for (auto& r : rings_) r->wake_at.store(r->head.load(std::memory_order_relaxed) + per, std::memory_order_seq_cst);
  }

  // Moves every entry out, ring by ring, in each ring's order, and
  // publishes each ring's head every head_step entries (docs/intake.md, "A
  // full ring"). f(T* first, T* last) is offered runs of adjacent slots (at
  // most head_step, never across the end of the ring's storage): it moves a
  // prefix [first, q) out and returns q (q > first); the moved-from slots
  // are destroyed here and the rest of the run is offered again. Rings whose
  // thread has exited are emptied, their unused credit goes back to the
  // pools and they are forgotten. With `per_ring`, at most that many
  // entries are taken from each ring (a bounded drain: every ring gets its
  // share, so no producer waits on another's). Returns the number of entries.
  template <class F>
  std::size_t drain_locked(F&& f, std::uint64_t per_ring = ~std::uint64_t{0}) {
    std::size_t moved = 0;
    draining_.store(true, std::memory_order_relaxed);
    struct ended {
      std::atomic<bool>& flag;
      ~ended() { flag.store(false, std::memory_order_release); }
    } drain_ends{draining_};
    for (std::size_t i = 0; i < rings_.size();) {
      ring& r = *rings_[i];
      const bool orphan = r.orphaned.load(std::memory_order_acquire);  // before the tail: then the tail is final
      const std::uint64_t tail = r.tail.load(std::memory_order_seq_cst);
      const std::uint64_t h0 = r.head.load(std::memory_order_relaxed);
      const std::uint64_t t = tail - h0 > per_ring ? h0 + per_ring : tail;
      {
        // head is published every head_step entries and at the end of the
        // ring, also when f() throws (out of memory): the ring must still say
        // which entries were taken. The producer never writes a slot before
        // it sees head pass it.
        std::uint64_t h = h0;
        struct publish {
          std::atomic<std::uint64_t>& head;
          const std::uint64_t& h;
          const std::uint64_t h0;
          ~publish() {
            if (h != h0) head.store(h, std::memory_order_release);
          }
        } guard{r.head, h, h0};
        while (h != t) {
          // A run: adjacent slots, up to the end of the ring's storage and
          // to the next multiple of head_step.
          const std::uint64_t at = h & r.mask;
          const std::uint64_t run = std::min<std::uint64_t>(
              t - h, std::min<std::uint64_t>(r.mask + 1 - at, head_step - (h & (head_step - 1))));
          T* const first = r.slots + at;
          T* const q = f(first, first + run);
          std::destroy(first, q);  // the moved-from slots
          h += static_cast<std::uint64_t>(q - first);
          // A producer waiting for this drain (wait_for_drain) may push again.
          if (h != t && (h & (head_step - 1)) == 0) r.head.store(h, std::memory_order_release);
        }
      }
      moved += t - h0;
      drained_since_sleep_ += t - h0;
      if (orphan && t == tail) {
        retired_accepted_ += t;
        give_back(r.credit_entries, r.credit_bytes);
        r.credit_entries = r.credit_bytes = 0;
        rings_[i] = std::move(rings_.back());
        rings_.pop_back();
        continue;
      }
      ++i;
    }
    go_light_locked();
    return moved;
  }

  // For stats(): entries ever accepted through the rings, and what they hold
  // now (count, bytes by `size_of`).
  template <class SizeOf>
  void tally_locked(std::uint64_t& accepted, std::uint64_t& held, std::uint64_t& held_bytes, SizeOf size_of) const {
    accepted += retired_accepted_;
    for (const auto& r : rings_) {
      const std::uint64_t t = r->tail.load(std::memory_order_acquire);
      const std::uint64_t h = r->head.load(std::memory_order_relaxed);
      accepted += t;
      held += t - h;
      for (std::uint64_t i = h; i != t; ++i) held_bytes += size_of(r->slots[i & r->mask]);
    }
  }

  credit_pool entries;  // max_entries
  credit_pool bytes;    // max_bytes

 private:
  // The line every push reads (light_, id_): written only when a worker
  // going to sleep changes the mode, or a heavy fence fails.
  alignas(cache_line) std::atomic<bool> light_{false};
  std::atomic<bool> heavy_ok_;  // heavy_fence() works here
  const std::uint64_t id_ = new_intake_id();
  std::size_t capacity_ = 64;
  std::vector<std::shared_ptr<ring>> rings_;
  std::uint64_t retired_accepted_ = 0;  // accepted through rings since forgotten
  // Written on every drain: apart from what pushes read.
  alignas(cache_line) std::uint64_t drained_since_sleep_ = 0;
  std::uint64_t heavy_fences_ = 0;
  std::uint64_t spun_ns_since_sleep_ = 0;  // time spent spinning since a worker last slept
  bool spinning_ = false;                  // a worker polls the rings (spin_start_locked)
  const bool single_;                      // batches of one entry: every entry is due (spin_start_locked)
  std::atomic<unsigned> sleepers_{0};  // written under the lock, read by a producer that wakes
  // A drain is under way (wait_for_drain): written twice per drain, read
  // only by producers whose ring is full.
  alignas(cache_line) std::atomic<bool> draining_{false};
  std::atomic<int> returning_{0};  // workers back from a delivery, not yet drained
};

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_DETAIL_INTAKE_HPP
