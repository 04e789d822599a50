// batchq/batch_queue.hpp - the header-only core: a batching queue with Kong's
// batch_queue semantics, bounds, retries with backoff, and a drop callback.
//
//   batchq::batch_queue<std::string> q(
//       batchq::batch_queue_options{.batch_max_size = 100},   // C++20 designated init
//       {.process = [](batchq::span<const std::string> batch, const batchq::attempt_context&) {
//          return send(batch) ? batchq::process_result::success()
//                             : batchq::process_result::failure("endpoint said no");
//        },
//        .on_drop = [](batchq::span<std::string> lost, const batchq::drop_info& why) {
//          keep_somewhere(lost, why);   // nothing leaves without the host knowing
//        }});
//   q.enqueue(std::string(R"({"msg":"hi"})"));
//
// Threads. enqueue() and stats() may be called from any number of threads.
// enqueue() never waits for the process function, never does I/O and takes
// no lock in the common case: each producer thread has its own ring per queue
// (detail/intake.hpp, docs/intake.md); the worker drains them. The process
// function and on_delivered run on the queue's worker threads
// (execution::own_threads) or on the thread calling run_due()
// (execution::manual). on_drop and on_log run on a worker, on the queue's
// reporter thread (which hands drops over while the workers are stuck in a
// send), on run_due()'s caller, for what shutdown() drops at its deadline on
// the thread calling shutdown() or the destructor, and for post_log() after
// shutdown() on its caller - never two at once. No internal lock is held
// while any callback runs.
//
// Ordering. Entries from one producer thread keep their order. Across
// threads, an entry whose enqueue() returned before another's began is
// delivered first only if both went into the same batch or the first was
// drained before the second was pushed; otherwise no order holds. With
// concurrency == 1 batches are attempted strictly one at a time, oldest
// first, and a failed batch goes back to the tail of the queue (Kong).
#ifndef BATCHQ_BATCH_QUEUE_HPP
#define BATCHQ_BATCH_QUEUE_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "batchq/clock.hpp"
#include "batchq/detail/backoff.hpp"
#include "batchq/detail/boxed_text.hpp"
#include "batchq/detail/entry_size.hpp"
#include "batchq/detail/fork.hpp"
#include "batchq/detail/intake.hpp"
#include "batchq/detail/worker_cv.hpp"
#include "batchq/types.hpp"

namespace batchq {

/// The functions a batch_queue calls. Only `process` is required.
template <class T>
struct batch_queue_callbacks {
  /// Delivers one batch; returns success or failure (see process_result).
  /// Called on a worker thread (or run_due()'s caller), never with an internal
  /// lock held, at most `concurrency` at a time. An exception counts as a
  /// failure with the exception's text; the queue goes on.
  std::function<process_result(span<const T> batch, const attempt_context& ctx)> process;

  /// Receives every entry that leaves the queue undelivered, with the reason,
  /// the attempts made and the last error. The span is mutable: move entries
  /// out if you keep them. Called on a worker thread, the reporter thread,
  /// run_due()'s caller, or shutdown()'s caller; never with an internal lock
  /// held; never concurrently with itself or on_log (it may run while the
  /// process function runs on a worker). It may call enqueue() and stats(), not flush() or
  /// shutdown(). Exceptions it throws are swallowed.
  std::function<void(span<T> entries, const drop_info& info)> on_drop;

  /// Optional: receives each delivered batch right after its successful
  /// process call, on the same thread (used by the write-ahead spool to
  /// acknowledge). No internal lock held. Exceptions are swallowed.
  std::function<void(span<const T> batch)> on_delivered;

  /// Optional: Kong's log lines ("failed to process entries: ...", "entry batch
  /// was already tried 10 times, dropping it", "queue full, dropping old
  /// entries until processing is successful again", ...). The library itself
  /// never prints. Same thread rules as on_drop.
  std::function<void(log_level level, std::string_view message)> on_log;

  /// Optional: the size of an entry in bytes, for max_bytes / batch_max_bytes /
  /// bytes_held. Default: entry.size() if T has it, else sizeof(T). Must be
  /// cheap, pure and thread-safe: enqueue() calls it.
  std::function<std::size_t(const T& entry)> size_of;
};

namespace detail {
// Declared, never defined by the library: a test defines it for the queue
// type it inspects (batch_queue befriends it) to read state that no public
// call shows, such as whether every worker sleeps. It costs nothing in a
// program that does not define it.
template <class Queue>
struct queue_probe;
}  // namespace detail

template <class T>
class batch_queue {
  static_assert(std::is_move_constructible_v<T>, "batch_queue<T> needs a move-constructible T");
  friend struct detail::queue_probe<batch_queue>;

 public:
  using value_type = T;
  using time_point = clock::time_point;
  using duration = clock::duration;

  /// Validates the options (throws options_error naming the field) and, with
  /// execution::own_threads, starts `concurrency` worker threads.
  batch_queue(batch_queue_options options, batch_queue_callbacks<T> callbacks)
      : opt_(effective(std::move(options))), cb_(std::move(callbacks)) {
    std::string field;
    std::string err = validate(opt_, &field);
    if (!err.empty()) throw options_error(field, err);
    if (!cb_.process) throw options_error("process", "process: no process function was given");
    clock_ = opt_.time_source ? opt_.time_source : &steady_clock::instance();
    max_attempts_ = static_cast<std::size_t>(std::max(1, opt_.retry_count));
    rng_.seed(opt_.jitter_seed ? opt_.jitter_seed : std::random_device{}());
    if (opt_.exec == execution::own_threads) {
      try {
        for (std::size_t i = 0; i < opt_.concurrency; ++i) workers_.emplace_back([this] { worker_main(); });
        workers_.emplace_back([this] { reporter_main(); });
      } catch (...) {
        stop_workers();
        throw;
      }
    }
  }

  batch_queue(const batch_queue&) = delete;
  batch_queue& operator=(const batch_queue&) = delete;

  /// Shuts down with options().shutdown_timeout (see shutdown()). In a
  /// child process after fork() it frees the entries at once, without
  /// waiting and without touching the parent's threads (see forked()).
  ~batch_queue() {
    if (forked()) {
      abandon_after_fork();
      return;
    }
    shutdown(opt_.shutdown_timeout);
  }

  /// True in a child process after fork(): the queue's threads exist only in
  /// the parent, so nothing would ever be sent. Every call then fails:
  /// enqueue(), stats() and run_due() throw fork_error, flush() and
  /// shutdown() return false at once. Create queues after forking. Cheap (an
  /// atomic load); thread-safe.
  bool forked() const noexcept { return fork_gen_ != detail::fork_generation().load(std::memory_order_relaxed); }

  /// Adds an entry. Thread-safe, never blocks on delivery, no I/O.
  /// On `accepted` the queue owns the entry; on any other result the entry is
  /// left untouched with the caller and nothing was counted as enqueued.
  enqueue_result enqueue(T&& entry) {
    check_not_forked();
    return add(entry);
  }
  enqueue_result enqueue(const T& entry) {
    check_not_forked();
    T copy(entry);
    return add(copy);
  }

  /// Closes the open batch and waits until every entry accepted before the
  /// call has been delivered or dropped (and on_drop has returned for it), or
  /// until `timeout`. Skips process_delay; honours backoff and Retry-After.
  /// Returns whether it finished; entries not finished stay queued.
  /// With execution::manual it runs what is due now and does not wait.
  bool flush(milliseconds timeout) noexcept {
    if (forked()) return false;
    try {
      std::unique_lock<std::mutex> lk(mu_);
      const std::uint64_t upto = settle_all_locked(lk, timeout);
      return settled_locked(upto);
    } catch (...) {
      return false;
    }
  }

  /// Refuses new entries from now on (enqueue() returns shut_down) and
  /// returns at once: nothing is delivered, dropped or waited for. For a host
  /// that runs shutdown() on another thread but must stop intake first.
  /// shutdown() begins with the same step. Idempotent. Thread-safe.
  void close() noexcept {
    try {
      // A producer that pushes while this store happens sees it after its
      // push and hands its entry over itself (late_entry, docs/intake.md).
      closed_.store(true, std::memory_order_seq_cst);
      intake_.fence_after_close();
    } catch (...) {
    }
  }

  /// Refuses new entries from now on, then tries to deliver everything queued
  /// until `timeout` (process_delay skipped, backoff honoured). At the deadline
  /// whatever is left goes to on_drop with reason `shutdown`; an attempt still
  /// running is told to cancel (attempt_context::cancelled) and its batch, if
  /// it fails, is dropped with `shutdown` too. Joins the worker threads.
  /// Returns true if everything was delivered. Idempotent.
  bool shutdown(milliseconds timeout) noexcept {
    if (forked()) return false;
    try {
      std::lock_guard<std::mutex> once(shutdown_mu_);
      if (shut_down_) return shutdown_result_;
      closed_.store(true, std::memory_order_seq_cst);
      intake_.fence_after_close();

      std::unique_lock<std::mutex> lk(mu_);
      const std::uint64_t drops_before = dropped_[static_cast<std::size_t>(drop_reason::shutdown)];
      settle_all_locked(lk, timeout);
      // Deadline (or nothing left): cancel what runs, drop what waits.
      expired_ = true;
      cancel_.store(true);
      drain_locked(clock_->now());
      close_open_locked(clock_->now());
      while (!ready_.empty()) drop_batch_locked(pop_ready_locked(), drop_reason::shutdown);
      stop_ = true;
      cv_work_.notify_all();
      cv_events_.notify_all();
      lk.unlock();
      for (auto& w : workers_)
        if (w.joinable()) w.join();
      workers_.clear();
      lk.lock();
      // Deliver what the workers left (this thread now owns the callbacks);
      // a callback may post more (post_log from a spool it writes to).
      while (!events_.empty()) deliver_events_locked(lk);
      finished_ = true;
      shut_down_ = true;
      shutdown_result_ = dropped_[static_cast<std::size_t>(drop_reason::shutdown)] == drops_before &&
                         in_flight_batches_ == 0;
      return shutdown_result_;
    } catch (...) {
      return false;
    }
  }

  /// A consistent snapshot (see queue_stats). Thread-safe; takes the queue's
  /// locks briefly, so it is for monitoring, not for a hot loop.
  queue_stats stats() const {
    check_not_forked();
    std::lock_guard<std::mutex> lk(mu_);
    queue_stats s;
    {
      std::uint64_t held = 0, held_bytes = 0;
      intake_.tally_locked(s.enqueued, held, held_bytes, [this](const T& v) { return size_of(v); });
      s.enqueued += direct_accepted_;
      s.pending += held;
      s.bytes_held += held_bytes;
    }
    s.pending += open_.size();
    s.bytes_held += open_bytes_;
    for (const auto& b : ready_) {
      s.pending += b.entries.size();
      s.bytes_held += b.bytes;
    }
    s.pending -= ready_gone_;  // pushed out of the first batch, not erased yet
    s.in_flight = in_flight_entries_;
    s.bytes_held += in_flight_bytes_;
    s.delivered = delivered_;
    s.dropped = dropped_;
    s.batches_queued = ready_.size();
    s.batches_in_flight = in_flight_batches_;
    s.batches_delivered = batches_delivered_;
    s.attempts = attempts_;
    s.failed_attempts = failed_attempts_;
    s.retried = retried_;
    s.drop_pending = drop_pending_entries_;
    s.drop_pending_bytes = drop_pending_bytes_;
    s.drops_unreported = drops_unreported_;
    for (std::size_t i = 0; i < s.refused.size(); ++i) s.refused[i] = refused_[i].load(std::memory_order_relaxed);
    return s;
  }

  /// The options in effect (max_entries raised to batch_max_size if it was
  /// below; see batch_queue_options::max_entries).
  const batch_queue_options& options() const noexcept { return opt_; }

  /// Queues a log line for on_log from outside the queue (a spool's eviction
  /// thread, a thread that opens a spool later), so that it is delivered the
  /// way the queue's own lines are: on a queue thread (execution::manual: in
  /// the next run_due()), in order, never concurrently with another
  /// on_drop/on_log call. After shutdown() has returned it is delivered at
  /// once on the calling thread (still serialised). Thread-safe; must not be
  /// called from on_log itself.
  void post_log(log_level level, std::string text) {
    if (!cb_.on_log || forked()) return;
    std::unique_lock<std::mutex> lk(mu_);
    log_locked(level, std::move(text));
    if (finished_) {
      deliver_events_locked(lk);
      return;
    }
    lk.unlock();
    cv_events_.notify_one();
  }

  /// Counts a refusal decided outside the queue (http_log's JSON check), so
  /// that stats() shows every refused entry in one place.
  void count_refused(enqueue_result why) noexcept {
    refused_[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
  }

  /// execution::manual only: does everything due at the clock's current time
  /// (drains entries, closes batches, calls process, delivers drops and log
  /// lines) on the calling thread, then returns when the next thing is due,
  /// or nullopt if nothing is scheduled. Calling it with own_threads is a
  /// no-op returning nullopt.
  std::optional<time_point> run_due() {
    if (opt_.exec != execution::manual) return std::nullopt;
    check_not_forked();
    std::unique_lock<std::mutex> lk(mu_);
    run_locked(lk);
    return next_due_locked(clock_->now());
  }

 private:
  struct batch {
    std::vector<T> entries;
    std::size_t bytes = 0;
    std::uint64_t id = 0;  // closing order, from 1
    std::size_t attempts = 0;
    time_point first_attempt{};
    detail::boxed_text last_error;  // 8 bytes: one batch per entry at batch_max_size 1
  };

  struct event {  // a drop or a log line waiting for its callback
    bool is_drop = false;
    std::vector<T> entries;
    std::size_t bytes = 0;  // drop: sum of the entries' sizes
    drop_info info;
    std::string text;  // drop: last error; log: the line
    log_level level = log_level::info;
  };

  enum class wait_kind { none, process_delay, backoff };

  static batch_queue_options effective(batch_queue_options o) {
    if (o.max_entries != 0 && o.max_entries < o.batch_max_size) o.max_entries = o.batch_max_size;
    return o;
  }

  std::size_t size_of(const T& v) const { return cb_.size_of ? cb_.size_of(v) : detail::default_size(v); }

  void check_not_forked() const {
    if (forked()) throw fork_error();
  }

  // In a fork() child: the entries' memory is freed by the members'
  // destructors; the parent's threads, locks and condition variables are
  // kept (never joined, unlocked or destroyed).
  void abandon_after_fork() noexcept {
    // Whatever a parent thread held at fork() stays held: no lock is taken.
    detail::keep_forever(std::shared_ptr<void>(sync_.release(), [](void*) {}));
  }

  // ---- enqueue path (the argument: docs/intake.md) ---------------------------
  using ring = detail::intake_ring<T>;

  enqueue_result add(T& entry) {
    const std::size_t sz = opt_.max_bytes ? size_of(entry) : 0;
    if (opt_.max_bytes && sz > opt_.max_bytes) return refuse(enqueue_result::too_large);
    if (closed_.load(std::memory_order_acquire)) return refuse(enqueue_result::shut_down);
    ring* r = intake_.local();
    if (!r) return add_slow(entry, sz, nullptr, false);
    if ((opt_.max_entries || opt_.max_bytes) && !intake_.take_credit(r->credit_entries, r->credit_bytes, sz))
      return add_slow(entry, sz, r, false);
    std::uint64_t t = intake_.push(*r, entry);
    if (!t) {
      // Ring full; the credit is taken. A drain under way, or a worker back
      // from a delivery (it drains before anything else), empties this ring
      // too: wait for that instead of draining under mu_ here. Only when
      // neither is coming does this thread take mu_ and drain.
      std::unique_lock<std::mutex> lk(mu_, std::defer_lock);
      for (;;) {
        if (intake_.wait_for_drain(*r)) {
          if ((t = intake_.push(*r, entry)) != 0) break;
        } else if (lk.try_lock() || !intake_.drain_coming()) {
          break;
        }
      }
      if (!t) return add_slow(entry, sz, r, true, std::move(lk));
    }
    // The push's store, then these seq_cst loads (docs/intake.md): close() or
    // a sleeping worker either sees the entry or is seen here.
    if (closed_.load(std::memory_order_seq_cst)) {
      late_entry();
    } else if (r->crossed(t)) {
      wake();
    }
    return enqueue_result::accepted;
  }

  enqueue_result refuse(enqueue_result why) {
    count_refused(why);
    return why;
  }

  // The lock-taking path of enqueue: this thread's first entry (registers
  // its ring), no credit left (bounds), a full ring, or a thread past its
  // thread_local destructors. Anything but the first registers nothing: the
  // entry goes straight into the open batch after the rings were drained, so
  // this thread's earlier entries still come first.
  enqueue_result add_slow(T& entry, std::size_t sz, ring* r, bool credited, std::unique_lock<std::mutex> lk = {}) {
    std::shared_ptr<ring> fresh;
    if (!r && !intake_type::thread_exiting()) fresh = intake_.make_ring();  // allocated outside the lock
    if (!lk.owns_lock()) lk = std::unique_lock<std::mutex>(mu_);
    if (closed_.load(std::memory_order_seq_cst)) {
      if (credited) intake_.give_back(1, sz);
      return refuse(enqueue_result::shut_down);
    }
    if (fresh) {
      intake_.add_locked(fresh);
      intake_type::tls::adopt(fresh);
      publish_wake_locked();
      lk.unlock();
      cv_work_.notify_one();  // thresholds changed under a sleeping worker
      return add(entry);
    }
    const time_point now = clock_->now();
    drain_locked(now);
    std::size_t own_e = 0, own_b = 0;  // credit of a thread without a ring
    std::size_t& ce = r ? r->credit_entries : own_e;
    std::size_t& cb = r ? r->credit_bytes : own_b;
    bool keep = true;
    if (!credited && (opt_.max_entries || opt_.max_bytes) && !intake_.take_credit(ce, cb, sz)) {
      if (opt_.overflow == overflow_policy::refuse_new) {
        intake_.give_back(own_e, own_b);
        lk.unlock();
        cv_work_.notify_one();
        return refuse(enqueue_result::queue_full);
      }
      keep = make_room_locked(ce, cb, entry, sz);
    }
    intake_.give_back(own_e, own_b);
    ++direct_accepted_;
    if (keep) {
      append_locked(std::move(entry), now);
      after_append_locked(now);
    }
    publish_wake_locked();
    const bool events = !events_.empty();
    lk.unlock();
    cv_work_.notify_one();
    if (events) cv_events_.notify_one();
    return enqueue_result::accepted;
  }

  // A producer pushed while close() or shutdown() closed the queue (it saw
  // closed_ only after its push): its entry must not wait in the ring for a
  // drain that may not come. Past shutdown's deadline it is dropped with
  // reason shutdown, and after shutdown() returned handed over here.
  void late_entry() {
    std::unique_lock<std::mutex> lk(mu_);
    const time_point now = clock_->now();
    drain_locked(now);
    if (expired_) {
      close_open_locked(now);
      while (!ready_.empty()) drop_batch_locked(pop_ready_locked(), drop_reason::shutdown);
    }
    if (finished_) {
      deliver_events_locked(lk);
      return;
    }
    lk.unlock();
    cv_work_.notify_all();
    cv_events_.notify_one();
  }

  void wake() {
    if (opt_.exec == execution::manual) return;
    // After the CAS that consumed the threshold (docs/intake.md): no worker
    // counted as sleeping means every worker will look at the rings again.
    if (!intake_.anyone_sleeping()) return;
    { std::lock_guard<std::mutex> lk(mu_); }  // pairs with the worker's check-then-wait
    cv_work_.notify_one();
  }

  // What the bounds count as held: everything not in the pools (entries in
  // the queue plus credit sitting unused in producers' rings).
  std::uint64_t held_entries_locked() const { return intake_.entries.bound() - intake_.entries.available(); }
  std::uint64_t held_bytes_locked() const { return intake_.bytes.bound() - intake_.bytes.available(); }

  // drop_oldest with no credit left: pushes out the oldest entries not in
  // flight until this entry's credit can be taken. Returns false if that was
  // not enough (the rest is in flight, or credit sits unused in other
  // threads' rings): the new entry is then the oldest not in flight, and it
  // is the one pushed out (accepted and dropped, as before this intake).
  bool make_room_locked(std::size_t& ce, std::size_t& cb, T& entry, std::size_t sz) {
    std::vector<T> gone;
    std::size_t attempts = 0;
    std::string last_error;
    const bool by_bytes = opt_.max_bytes && intake_.bytes.available() + cb < sz;
    std::size_t gone_bytes = 0;
    auto take = [&](T& e, std::size_t& from_bytes) {
      const std::size_t s1 = size_of(e);
      from_bytes -= s1;
      gone_bytes += s1;
      count_removed(1, s1);
      gone.push_back(std::move(e));
    };
    bool ok = false;
    for (;;) {
      if (intake_.take_credit(ce, cb, sz)) {
        ok = true;
        break;
      }
      if (!ready_.empty()) {
        // The oldest entry is the first not yet pushed out of the first
        // batch: moved out here, erased once when that batch is next used
        // (compact_front_locked), so a push-out costs the same whatever
        // the batch's size (an erase per entry cost batch_max_size moves).
        batch& b = ready_.front();
        attempts = std::max(attempts, b.attempts);
        if (!b.last_error.empty()) last_error = b.last_error;
        take(b.entries[ready_gone_], b.bytes);
        if (++ready_gone_ == b.entries.size()) {
          ready_gone_ = 0;
          ready_.pop_front();
        }
      } else if (!open_.empty()) {
        take(open_.front(), open_bytes_);
        open_.erase(open_.begin());
      } else {
        break;  // what is left is in flight; it cannot be pushed out
      }
    }
    if (!ok) {
      gone_bytes += size_of(entry);  // holds no credit: nothing to give back
      gone.push_back(std::move(entry));
    }
    push_out_locked(std::move(gone), gone_bytes, attempts, std::move(last_error), by_bytes);
    return ok;
  }

  // NOLINTNEXTLINE(performance-unnecessary-value-param): last_error is moved into the event (tidy misses it in a template)
  void push_out_locked(std::vector<T> gone, std::size_t gone_bytes, std::size_t attempts, std::string last_error,
                       bool by_bytes) {
    const std::size_t n = gone.size();
    dropped_[static_cast<std::size_t>(drop_reason::queue_full)] += n;
    drop_pending_entries_ += n;
    drop_pending_bytes_ += gone_bytes;
    // Once per overload episode (see process_one_locked), not once per push-out.
    if (!full_logged_) {
      full_logged_ = true;
      log_locked(log_level::error, "queue full, dropping old entries until processing is successful again");
      if (by_bytes)
        log_locked(log_level::error, "byte capacity exceeded, " + std::to_string(n) + " queue entries were dropped");
    }
    // Push-outs in a row join the drop event still waiting for on_drop: one
    // event (and one copy of the last error) per burst, not per entry.
    if (!events_.empty() && events_.back().is_drop && events_.back().info.reason == drop_reason::queue_full &&
        events_.back().info.attempts == attempts && events_.back().text == last_error) {
      auto& into = events_.back().entries;
      into.insert(into.end(), std::make_move_iterator(gone.begin()), std::make_move_iterator(gone.end()));
      events_.back().bytes += gone_bytes;
    } else {
      event e;
      e.is_drop = true;
      e.bytes = gone_bytes;
      e.entries = std::move(gone);
      e.info.reason = drop_reason::queue_full;
      e.info.attempts = attempts;
      e.text = std::move(last_error);
      events_.push_back(std::move(e));
    }
    shed_pending_locked();
    cv_done_.notify_all();
  }

  // Bounds the drop events waiting for on_drop (item: a worker stuck in a
  // send cannot hand them over, and without a bound every entry pushed out
  // by a full queue would wait here in memory). Over max_drop_pending_bytes /
  // _entries the oldest waiting entries are destroyed and counted in
  // drops_unreported (they are already counted as dropped); the newest
  // pushed-out entry always stays, so an entry larger than the cap is still
  // handed over when the reporter is free.
  void shed_pending_locked() {
    auto over = [&] {
      return drop_pending_bytes_ > opt_.max_drop_pending_bytes || drop_pending_entries_ > opt_.max_drop_pending_entries;
    };
    if (!over()) return;
    std::size_t last_drop = events_.size();
    for (std::size_t i = events_.size(); i-- > 0;)
      if (events_[i].is_drop) {
        last_drop = i;
        break;
      }
    std::uint64_t shed = 0;
    for (std::size_t i = 0; i < events_.size() && over(); ++i) {
      event& e = events_[i];
      if (!e.is_drop) continue;
      const std::size_t keep = i == last_drop ? 1 : 0;
      std::size_t k = 0;
      while (k + keep < e.entries.size() && over()) {
        const std::size_t sz = size_of(e.entries[k]);
        drop_pending_bytes_ -= sz;
        --drop_pending_entries_;
        e.bytes -= sz;
        ++k;
      }
      e.entries.erase(e.entries.begin(), e.entries.begin() + static_cast<std::ptrdiff_t>(k));
      shed += k;
    }
    if (!shed) return;
    events_.erase(std::remove_if(events_.begin(), events_.end(),
                                 [](const event& e) { return e.is_drop && e.entries.empty(); }),
                  events_.end());
    drops_unreported_ += shed;
    if (!unreported_logged_) {
      unreported_logged_ = true;
      log_locked(log_level::error,
                 std::to_string(shed) + " dropped entries could not wait for on_drop (more than " +
                     std::to_string(opt_.max_drop_pending_bytes) + " bytes / " +
                     std::to_string(opt_.max_drop_pending_entries) +
                     " entries already waiting): they are counted in drops_unreported, not handed over");
    }
  }

  // flush() and shutdown(): close the open batch, skip a pending
  // process_delay, then wait (own_threads) or run what is due (manual) until
  // every batch closed so far has settled or the timeout passes. Returns the
  // id of the last batch it waited for.
  std::uint64_t settle_all_locked(std::unique_lock<std::mutex>& lk, milliseconds timeout) {
    const time_point now = clock_->now();
    drain_locked(now);
    close_open_locked(now);
    if (waiting_ == wait_kind::process_delay) arm_send_locked(now);
    const std::uint64_t upto = next_batch_id_;
    if (opt_.exec == execution::manual) {
      run_locked(lk);
    } else {
      cv_work_.notify_all();
      // Ten years stands for "until done": now + a larger timeout (the C ABI
      // takes any int64 of ms) would overflow steady_clock's nanoseconds.
      const milliseconds bounded = std::min<milliseconds>(timeout, std::chrono::hours(24 * 365 * 10));
      cv_done_.wait_until(lk, std::chrono::steady_clock::now() + bounded, [&] { return settled_locked(upto); });
    }
    return upto;
  }

  // ---- worker ------------------------------------------------------------
  // A worker back from a delivery takes mu_ without sleeping on it while a
  // producer drains the rings (a drain holds mu_ for one pass over the
  // rings): it polls for a bounded number of rounds (192 spinning, 64
  // yielding), then blocks as lock() does.
  void lock_after_delivery(std::unique_lock<std::mutex>& lk) {
    for (unsigned i = 0; i < 256; ++i) {
      if (lk.try_lock()) return;
      detail::wait_step(i, 192, 8);
    }
    lk.lock();
  }
  void worker_main() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (step_locked(lk)) continue;
      if (stop_) {
        if (events_.empty()) break;
        continue;
      }
      if (spin_locked(lk)) continue;
      const time_point now = clock_->now();
      std::optional<time_point> due = next_due_locked(now);
      // The wake rule (docs/intake.md): publish each ring's threshold, then
      // look at the rings once more (seq_cst stores, a heavy fence in light
      // mode, then seq_cst loads); a producer whose push this look misses
      // sees the threshold and wakes us.
      // A producer wakes a worker only while one counts as sleeping: counted
      // before the thresholds are published, uncounted once awake.
      intake_.sleepers_add_locked(1);
      struct awake {
        intake_type& in;
        ~awake() { in.sleepers_add_locked(-1); }
      } counted{intake_};
      publish_wake_locked();
      if (!intake_.before_sleep_locked()) {  // light pushes: the heavy fence failed
        cv_work_.wait_for(lk, std::chrono::milliseconds(1));
        continue;
      }
      if (intake_due_locked()) continue;
      if (due && *due <= now) continue;
      if (due) {
        cv_work_.wait_until(lk, std::chrono::steady_clock::now() + clock_->real_wait(*due - now));
      } else {
        cv_work_.wait(lk);
      }
    }
  }

  // Before sleeping after a busy wake-up: poll the rings for a short while
  // (detail::intake::spin_start_locked says how much CPU), draining whatever
  // arrives, with mu_ released between looks. True when there is work (the
  // caller loops), false when the spin ended with nothing to do (the caller
  // sleeps by the wake rule, which does not depend on the spin:
  // docs/intake.md, "Spin before sleeping").
  bool spin_locked(std::unique_lock<std::mutex>& lk) {
    const std::uint64_t limit = intake_.spin_start_locked();
    if (limit == 0) return false;
    const std::uint64_t start = detail::thread_cpu_ns();
    auto spun = [&] { return detail::thread_cpu_ns() - start; };
    struct end {
      intake_type& in;
      decltype(spun)& elapsed;
      ~end() { in.spin_end_locked(elapsed()); }
    } ending{intake_, spun};
    for (;;) {
      lk.unlock();
      std::this_thread::yield();  // producers sharing this CPU run first
      lk.lock();
      if (stop_ || !events_.empty()) return true;
      const time_point now = clock_->now();
      if (intake_.due_locked(true)) {
        drain_locked(now, true);
        return true;
      }
      if (const auto due = next_due_locked(now); due && *due <= now) return true;
      if (spun() >= limit) return false;
    }
  }

  // Hands drop events and log lines to their callbacks while the workers may
  // be stuck in a send (a receiver that never answers): without it, what a
  // full queue pushes out would wait for the worker.
  void reporter_main() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (!events_.empty()) {
        deliver_events_locked(lk);
        continue;
      }
      if (stop_) break;
      cv_events_.wait(lk);
    }
  }

  void stop_workers() noexcept {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_work_.notify_all();
    cv_events_.notify_all();
    for (auto& w : workers_)
      if (w.joinable()) w.join();
    workers_.clear();
  }

  // Entries are waiting in the intake that the worker should drain now. With
  // own_threads that is when a producer crossed its ring's threshold (first
  // entry of a batch, or enough to fill it); in between, entries wait in
  // their rings and the worker sleeps. In manual mode everything is drained
  // at once, and at batch size 1 with helpers per backlog (below) any entry
  // is due: each one is a whole batch, and an awake worker takes it.
  bool intake_due_locked() const { return intake_.due_locked(opt_.exec == execution::manual || sparing_wakes()); }

  // Batch size 1 with concurrency > 1: every entry is a request of its own,
  // and waking a worker for it cost about as much as the request (a wake-up
  // and a context switch on another CPU; bench/results.md, case 4c). So
  // while batches are in flight, another worker is woken only once
  // backlog_per_send entries per batch in flight are waiting; fewer wait for
  // a worker whose send returns (it takes whatever the rings hold before it
  // sleeps). docs/intake.md, "Batch size 1: a helper per backlog", has the
  // argument that nothing waits for a worker that will not come.
  static constexpr std::size_t backlog_per_send = 4;
  bool sparing_wakes() const noexcept {
    return opt_.batch_max_size == 1 && opt_.concurrency > 1 && opt_.exec != execution::manual;
  }
  // Entries waiting (ready batches and the rings) that call for one more
  // worker than the batches in flight already have.
  std::size_t helper_backlog_locked() const noexcept { return backlog_per_send * in_flight_batches_; }
  bool want_helper_locked() const noexcept {
    return !sparing_wakes() || ready_.size() + intake_.pending_locked() >= helper_backlog_locked();
  }

  // Runs one unit of work; returns false when nothing is due now. A worker
  // whose last step drained sends a ready batch before it drains again
  // (drained_last_): with a producer that fills its ring as fast as the
  // worker drains it, draining first every time left every batch undelivered
  // until the producer stopped, so each one was closed into fresh memory
  // (docs/intake.md, "Bounded drains"). Manual mode keeps drain-first.
  bool step_locked(std::unique_lock<std::mutex>& lk) {
    const time_point now = clock_->now();
    if (intake_due_locked() && !(drained_last_ && opt_.exec != execution::manual && can_dispatch_locked(now))) {
      drain_locked(now, true);
      drained_last_ = true;
      return true;
    }
    drained_last_ = false;
    if (!events_.empty()) {
      deliver_events_locked(lk);
      return true;
    }
    // A flush tick and an attempt both due: the one due first runs first,
    // and at the same instant the one armed first (nginx runs timers of
    // equal expiry in creation order; Kong's rule, kong/tools/queue.lua).
    const bool send_due = can_dispatch_locked(now);
    if (flush_at_ && now >= *flush_at_ && !(send_due && send_before_flush_locked())) {
      drain_locked(now);  // entries since the last tick count as activity
      on_flush_tick_locked(now);
      return true;
    }
    if (send_due) {
      process_one_locked(lk, now);
      return true;
    }
    return false;
  }

  bool send_before_flush_locked() const {
    if (next_send_at_ != *flush_at_) return next_send_at_ < *flush_at_;
    return send_armed_ < flush_armed_;
  }

  void arm_flush_locked(time_point at) {
    flush_at_ = at;
    flush_armed_ = ++arm_seq_;
  }
  void arm_send_locked(time_point at) {
    next_send_at_ = at;
    send_armed_ = ++arm_seq_;
  }

  void run_locked(std::unique_lock<std::mutex>& lk) {
    while (step_locked(lk)) {
    }
  }

  std::optional<time_point> next_due_locked(time_point now) const {
    if (!events_.empty() || intake_due_locked()) return now;
    std::optional<time_point> due;
    if (flush_at_) due = *flush_at_;
    if (!ready_.empty() && in_flight_batches_ < opt_.concurrency && !stop_)
      due = due ? std::min(*due, next_send_at_) : next_send_at_;
    return due;
  }

  // Tell producers when to wake a worker: at the first entry of a new batch
  // (to arm the flush timer) or when the rings hold enough to fill the open
  // batch.
  void publish_wake_locked() {
    if (opt_.exec == execution::manual) return;
    const bool need_first = open_.empty() && (opt_.flush == flush_mode::coalescing || !flush_at_);
    std::uint64_t room = (need_first || opt_.batch_max_size == 1) ? 1 : opt_.batch_max_size - open_.size();
    if (sparing_wakes() && in_flight_batches_ > 0) {  // a helper per backlog (above)
      const std::size_t want = helper_backlog_locked();
      room = want > ready_.size() ? want - ready_.size() : 1;
    }
    intake_.publish_locked(room);
  }

  // Moves entries from the intake rings into the open batch (each ring in
  // its order), closing batches by size (and batch_max_bytes) on the way.
  // A worker's drain while a batch could be sent now is bounded: it takes
  // what fills the open batch and one batch per other free sending slot,
  // shared out over the rings, and leaves the rest in the rings for the
  // next drain (docs/intake.md, "Bounded drains"). Every other drain (a
  // producer's, a flush, shutdown, manual mode) takes everything.
  void drain_locked(time_point now, bool worker = false) {
    std::uint64_t per_ring = ~std::uint64_t{0};
    if (worker && opt_.exec != execution::manual && can_dispatch_locked(now)) {
      const std::size_t rings = std::max<std::size_t>(intake_.ring_count_locked(), 1);
      const std::size_t room = opt_.batch_max_size - std::min(open_.size(), opt_.batch_max_size);
      const std::size_t free = opt_.concurrency - in_flight_batches_;  // >= 1: can_dispatch_locked
      per_ring = (std::max<std::size_t>(room, 1) + opt_.batch_max_size * (free - 1) + rings - 1) / rings;
    }
    if (intake_.drain_locked([&](T* first, T* last) { return append_run_locked(first, last, now); }, per_ring)) {
      if (open_.size() >= opt_.batch_max_size) close_open_locked(now);
      after_append_locked(now);
    }
    publish_wake_locked();
  }

  // Moves a run of adjacent ring slots [first, last) into the open batch, in
  // order, up to the batch's room, and returns where it stopped (> first).
  // One insert per run: append_locked() checks bytes, the timer and the size
  // and reloads the batch through `this` for every entry, which made the
  // drain a producer's largest cost when its ring filled (docs/intake.md).
  // A batch filled here closes at the next run or at the end of the drain
  // (nothing looks at it in between: mu_ is held), so batches still close at
  // exactly batch_max_size. With batch_max_bytes, or a T whose move may
  // throw (a throw inside an insert would lose the entries it moved), one
  // entry at a time.
  T* append_run_locked(T* first, T* last, time_point now) {
    if (opt_.batch_max_bytes || !std::is_nothrow_move_constructible_v<T>) {
      append_locked(std::move(*first), now);
      return first + 1;
    }
    if (open_.size() >= opt_.batch_max_size) close_open_locked(now);  // batch_max_size >= 1 (validated)
    if (open_.empty() && opt_.flush == flush_mode::coalescing) arm_flush_locked(now + opt_.flush_timeout);
    const std::size_t k =
        std::min<std::size_t>(static_cast<std::size_t>(last - first), opt_.batch_max_size - open_.size());
    std::size_t bytes = 0;
    for (const T* p = first; p != first + k; ++p) bytes += size_of(*p);
    open_.insert(open_.end(), std::make_move_iterator(first), std::make_move_iterator(first + k));
    open_bytes_ += bytes;
    return first + k;
  }

  void append_locked(T&& e, time_point now) {
    const std::size_t sz = size_of(e);
    if (opt_.batch_max_bytes && !open_.empty() && open_bytes_ + sz > opt_.batch_max_bytes) close_open_locked(now);
    if (open_.empty() && opt_.flush == flush_mode::coalescing) arm_flush_locked(now + opt_.flush_timeout);
    open_.push_back(std::move(e));
    open_bytes_ += sz;
    if (open_.size() >= opt_.batch_max_size) close_open_locked(now);
  }

  // After entries were appended: they count as activity (kong_idle's tick).
  void after_append_locked(time_point now) {
    last_activity_ = now;
    if (opt_.flush == flush_mode::kong_idle && !open_.empty() && !flush_at_) arm_flush_locked(now + opt_.flush_timeout);
    if (opt_.flush == flush_mode::coalescing && open_.empty()) flush_at_.reset();
  }

  void on_flush_tick_locked(time_point now) {
    if (opt_.flush == flush_mode::kong_idle && now - last_activity_ < opt_.flush_timeout) {
      arm_flush_locked(now + opt_.flush_timeout);  // there was activity: tick again later (Kong)
      return;
    }
    flush_at_.reset();
    close_open_locked(now);
  }

  void close_open_locked(time_point now) {
    if (open_.empty()) return;
    const bool idle = ready_.empty() && in_flight_batches_ == 0;
    batch b;
    b.entries.swap(open_);
    // The next batch will most likely be as large as this one (full batches
    // under steady traffic): reserve that much instead of growing open_ from
    // nothing one doubling at a time (about 11 reallocations and 2 moves per
    // entry for batches of 1000), all under mu_.
    // A delivered batch's array (spares_) is still in cache and mapped:
    // fresh memory missed on every line, and on this VM page-faulted once
    // per 4 KiB (3-4 us each), which made a drain into it 40 ns per entry.
    if (!spares_.empty() && spares_.back().capacity() >= b.entries.size()) {
      open_.swap(spares_.back());
      spares_.pop_back();
    } else {
      open_.reserve(b.entries.size());
    }
    b.bytes = open_bytes_;
    b.id = ++next_batch_id_;
    open_bytes_ = 0;
    ready_.push_back(std::move(b));
    if (opt_.flush == flush_mode::coalescing) flush_at_.reset();
    if (idle) {
      // A new chain starts: after process_delay (none for batch_max_size 1, as
      // in Kong), or at once while flushing / shutting down.
      const bool immediate = opt_.batch_max_size == 1 || closed_.load() || opt_.process_delay.count() == 0;
      if (immediate) {
        arm_send_locked(now);
        waiting_ = wait_kind::none;
      } else {
        arm_send_locked(now + opt_.process_delay);
        waiting_ = wait_kind::process_delay;
      }
    }
  }

  bool can_dispatch_locked(time_point now) const {
    return !ready_.empty() && !stop_ && in_flight_batches_ < opt_.concurrency && now >= next_send_at_;
  }

  // Entries pushed out of the first ready batch are moved out and counted
  // in ready_gone_ (make_room_locked); they are erased in one go before that
  // batch leaves ready_ or stops being first. Until then each such slot
  // holds a moved-from T: nothing for std::string and http_log's records,
  // but a T whose move copies keeps up to one batch of copies that long.
  void compact_front_locked() {
    if (ready_gone_ == 0) return;
    auto& e = ready_.front().entries;
    e.erase(e.begin(), e.begin() + static_cast<std::ptrdiff_t>(ready_gone_));
    ready_gone_ = 0;
  }
  batch pop_ready_locked() {
    compact_front_locked();
    batch b = std::move(ready_.front());
    ready_.pop_front();
    return b;
  }

  void process_one_locked(std::unique_lock<std::mutex>& lk, time_point now) {
    batch b = pop_ready_locked();
    if (b.attempts == 0) b.first_attempt = now;
    ++in_flight_batches_;
    in_flight_entries_ += b.entries.size();
    in_flight_bytes_ += b.bytes;
    in_flight_ids_.push_back(b.id);
    ++attempts_;
    attempt_context ctx;
    ctx.attempt = b.attempts + 1;
    ctx.max_attempts = max_attempts_;
    ctx.cancel = &cancel_;

    // More batches ready and room for them: another worker takes the next
    // one now. Without this, the other workers slept until the next enqueue
    // or completion woke them, so `concurrency` batches ready at once did not
    // go out at once.
    // At batch size 1 only with backlog enough for one more (want_helper_locked),
    // and the producers' thresholds follow the batches in flight.
    const bool more = can_dispatch_locked(now) && want_helper_locked();
    if (sparing_wakes()) publish_wake_locked();
    lk.unlock();
    if (more) cv_work_.notify_one();
    process_result r;
    try {
      r = cb_.process(span<const T>(b.entries.data(), b.entries.size()), ctx);
    } catch (const std::exception& ex) {
      r = process_result::failure(std::string("process function threw: ") + ex.what());
    } catch (...) {
      r = process_result::failure("process function threw a non-standard exception");
    }
    if (r.ok && cb_.on_delivered) {
      try {
        cb_.on_delivered(span<const T>(b.entries.data(), b.entries.size()));
      } catch (...) {
      }
    }
    // A delivered batch is freed before mu_ is taken again: freeing its
    // entries under mu_ would stall every producer that wakes a
    // worker (wake() takes mu_) and every stats() call. The counters below
    // use n, not b.entries.size().
    const std::size_t n = b.entries.size();
    // From here until this function returns, this worker is on its way to a
    // drain (the one at the end): a producer whose ring is full waits for it
    // instead of draining under mu_ itself (docs/intake.md, "A full ring").
    intake_.returning_add(1);
    struct back {
      intake_type& in;
      ~back() { in.returning_add(-1); }
    } drains_next{intake_};
    if (r.ok) b.entries.clear();  // the array stays: a later open batch reuses it (spares_)
    lock_after_delivery(lk);
    if (r.ok && spares_.size() < spares_max_ && b.entries.capacity() >= opt_.batch_max_size)
      spares_.push_back(std::move(b.entries));

    const time_point t = clock_->now();
    --in_flight_batches_;
    in_flight_entries_ -= n;
    in_flight_bytes_ -= b.bytes;
    in_flight_ids_.erase(std::find(in_flight_ids_.begin(), in_flight_ids_.end(), b.id));
    ++b.attempts;
    if (r.ok) {
      delivered_ += n;
      ++batches_delivered_;
      count_removed(n, b.bytes);
      failures_ = 0;
      // The overload episode ends when the queue has drained to half its
      // bounds; re-arming on every success would log once per batch.
      if ((!opt_.max_entries || held_entries_locked() * 2 <= opt_.max_entries) &&
          (!opt_.max_bytes || held_bytes_locked() * 2 <= opt_.max_bytes))
        full_logged_ = false;
      if (waiting_ != wait_kind::backoff || next_send_at_ < t) {
        arm_send_locked(t);
        waiting_ = wait_kind::none;
      }
    } else {
      on_failure_locked(std::move(b), std::move(r), t);
    }
    // What the next step would do first anyway, done before drains_next
    // lets a waiting producer go.
    if (intake_due_locked()) {
      drain_locked(t, true);
      drained_last_ = true;
    }
    cv_done_.notify_all();
  }

  void on_failure_locked(batch b, process_result r, time_point now) {
    ++failed_attempts_;
    b.last_error = std::move(r.error);
    if (r.split && b.entries.size() > 1 && !expired_) {
      split_batch_locked(std::move(b));
      return;  // the receiver answered: no reason to slow down
    }
    if (r.permanent) {
      log_locked(log_level::error, "permanent failure, dropping " + std::to_string(b.entries.size()) +
                                       " entries: " + b.last_error);
      drop_batch_locked(std::move(b), r.permanent_reason);
      return;  // the receiver answered: no reason to slow down
    }
    if (expired_) {
      drop_batch_locked(std::move(b), drop_reason::shutdown);
    } else if (b.attempts >= max_attempts_) {
      log_locked(log_level::error,
                 "entry batch was already tried " + std::to_string(b.attempts) + " times, dropping it");
      drop_batch_locked(std::move(b), drop_reason::retries_exhausted);
    } else if (opt_.max_retry_time.count() > 0 && now - b.first_attempt >= opt_.max_retry_time) {
      log_locked(log_level::error, "could not send entries due to max_retry_time exceeded. " +
                                       std::to_string(b.entries.size()) + " queue entries were lost");
      drop_batch_locked(std::move(b), drop_reason::retry_time_exceeded);
    } else {
      log_locked(log_level::warn, "failed to process entries: " + b.last_error);
      ++retried_;
      ready_.push_back(std::move(b));  // behind newer batches, as Kong does
    }
    // One backoff for the whole queue; it grows on the dropping failure too.
    if (failures_ < ~std::uint64_t{0}) ++failures_;
    duration wait = detail::backoff_delay(failures_, opt_);
    if (opt_.jitter && wait.count() > 0) {
      std::uniform_int_distribution<duration::rep> pick(0, wait.count());
      wait = duration(pick(rng_));
    }
    wait = std::max<duration>(wait, r.retry_after);
    arm_send_locked(now + wait);
    waiting_ = wait_kind::backoff;
  }

  // A permanently refused batch whose refusal may concern only some entries
  // (process_result::split): its halves go to the front of the line, in
  // order, keeping the id (flush() waits for them). Each is a new request
  // with its own retry budget: inheriting the count would let a deep split
  // (a batch of 1000 is 10 levels) use up retry_count, so that one transient
  // failure of a good half would drop it.
  void split_batch_locked(batch b) {
    log_locked(log_level::debug, "batch of " + std::to_string(b.entries.size()) +
                                     " entries refused, splitting it to find the refused ones: " + b.last_error);
    const std::size_t half = b.entries.size() / 2;
    batch second;
    second.entries.assign(std::make_move_iterator(b.entries.begin() + static_cast<std::ptrdiff_t>(half)),
                          std::make_move_iterator(b.entries.end()));
    b.entries.erase(b.entries.begin() + static_cast<std::ptrdiff_t>(half), b.entries.end());
    std::size_t first_bytes = 0;
    for (const auto& e : b.entries) first_bytes += size_of(e);
    second.bytes = b.bytes - std::min(first_bytes, b.bytes);
    b.bytes = first_bytes;
    second.id = b.id;
    b.attempts = 0;
    second.last_error = b.last_error;
    compact_front_locked();  // the front batch is about to be second in line
    ready_.push_front(std::move(second));
    ready_.push_front(std::move(b));
  }

  void drop_batch_locked(batch b, drop_reason why) {
    const std::size_t n = b.entries.size();
    if (n == 0) return;
    dropped_[static_cast<std::size_t>(why)] += n;
    count_removed(n, b.bytes);
    event e;
    e.is_drop = true;
    e.bytes = b.bytes;
    drop_pending_entries_ += n;
    drop_pending_bytes_ += b.bytes;
    e.entries = std::move(b.entries);
    e.info.reason = why;
    e.info.attempts = b.attempts;
    e.text = std::move(b.last_error);
    events_.push_back(std::move(e));
  }

  // Entries left the queue: their credit goes back to the pools.
  void count_removed(std::size_t n, std::size_t bytes) { intake_.give_back(n, bytes); }

  void log_locked(log_level level, std::string text) {  // NOLINT(performance-unnecessary-value-param): moved below
    if (!cb_.on_log) return;
    event e;
    e.level = level;
    e.text = std::move(text);
    events_.push_back(std::move(e));
  }

  // Hands pending drops and log lines to their callbacks, in order, with mu_
  // released. cb_mu_ keeps deliveries from two workers from interleaving.
  void deliver_events_locked(std::unique_lock<std::mutex>& lk) {
    if (events_.empty()) return;
    lk.unlock();
    {
      std::lock_guard<std::mutex> order(cb_mu_);
      std::vector<event> batch_of_events;
      lk.lock();
      batch_of_events.swap(events_);
      ++delivering_;
      lk.unlock();
      std::uint64_t n_entries = 0, n_bytes = 0;
      for (auto& e : batch_of_events) {
        n_entries += e.entries.size();
        n_bytes += e.bytes;
        try {
          if (e.is_drop) {
            if (cb_.on_drop) {
              e.info.last_error = e.text;
              cb_.on_drop(span<T>(e.entries.data(), e.entries.size()), e.info);
            }
          } else if (cb_.on_log) {
            cb_.on_log(e.level, e.text);
          }
        } catch (...) {
        }
      }
      std::vector<event>().swap(batch_of_events);  // the entries are freed before they stop counting
      lk.lock();
      drop_pending_entries_ -= n_entries;
      drop_pending_bytes_ -= n_bytes;
      if (drop_pending_entries_ == 0) unreported_logged_ = false;
      lk.unlock();
    }
    lk.lock();
    --delivering_;
    cv_done_.notify_all();
  }

  // Every batch with id <= upto is finished and its drops were handed over.
  bool settled_locked(std::uint64_t upto) const {
    if (!events_.empty() || delivering_ != 0) return false;
    for (auto id : in_flight_ids_)
      if (id <= upto) return false;
    for (const auto& b : ready_)
      if (b.id <= upto) return false;
    return true;
  }

  // ---- state -------------------------------------------------------------
  const batch_queue_options opt_;
  const batch_queue_callbacks<T> cb_;
  const clock* clock_ = nullptr;
  std::size_t max_attempts_ = 1;

  // Intake (producers): per-thread rings and the bounds' credit pools.
  using intake_type = detail::intake<T>;
  intake_type intake_{opt_.batch_max_size, opt_.max_entries, opt_.max_bytes};
  alignas(detail::cache_line) std::atomic<bool> closed_{false};
  alignas(detail::cache_line) std::array<std::atomic<std::uint64_t>, 5> refused_{};

  // Locks, condition variables and threads live apart from the queue: in a
  // child after fork() they belong to threads that do not exist there (a
  // condition variable the parent's worker waited on cannot even be
  // destroyed: pthread_cond_destroy waits for that waiter), so the child's
  // destructor keeps them forever instead (detail::keep_forever).
  struct sync_state {
    alignas(detail::cache_line) std::mutex mu;
    detail::worker_cv cv_work;          // workers wait here (no std::condition_variable: worker_cv.hpp says why)
    std::condition_variable cv_done;    // flush() / shutdown() wait here
    std::condition_variable cv_events;  // the reporter waits here
    std::mutex cb_mu;                   // serialises on_drop / on_log
    std::mutex shutdown_mu;
    std::vector<std::thread> workers;   // the worker(s) and the reporter
  };
  std::unique_ptr<sync_state> sync_{new sync_state};
  const unsigned fork_gen_ = detail::fork_generation_now();

  // Everything below is guarded by mu_.
  std::mutex& mu_ = sync_->mu;
  detail::worker_cv& cv_work_ = sync_->cv_work;
  std::condition_variable& cv_done_ = sync_->cv_done;
  std::condition_variable& cv_events_ = sync_->cv_events;
  std::uint64_t direct_accepted_ = 0;  // entries accepted past the rings (add_slow)
  std::vector<T> open_;
  // Empty arrays of delivered batches, each with room for a full batch: the
  // next batches closed take them instead of fresh memory. At most 8, and
  // at most 1 MiB of them (at least one): spares_max_.
  std::vector<std::vector<T>> spares_;
  const std::size_t spares_max_ =
      std::clamp<std::size_t>((std::size_t{1} << 20) / (std::max<std::size_t>(opt_.batch_max_size, 1) * sizeof(T)), 1, 8);
  std::size_t open_bytes_ = 0;
  std::optional<time_point> flush_at_;
  time_point last_activity_{};
  std::deque<batch> ready_;
  std::size_t ready_gone_ = 0;  // leading entries of ready_.front() already pushed out (moved from)
  std::uint64_t next_batch_id_ = 0;
  time_point next_send_at_{};
  std::uint64_t arm_seq_ = 0;      // order in which the two timers were armed
  std::uint64_t flush_armed_ = 0;  // arm_seq_ when flush_at_ was set
  std::uint64_t send_armed_ = 0;   // arm_seq_ when next_send_at_ was set
  wait_kind waiting_ = wait_kind::none;
  std::uint64_t failures_ = 0;  // consecutive failed attempts (detail::backoff_delay)
  std::mt19937_64 rng_;
  std::size_t in_flight_batches_ = 0;
  std::size_t in_flight_entries_ = 0;
  std::size_t in_flight_bytes_ = 0;
  std::vector<std::uint64_t> in_flight_ids_;
  std::vector<event> events_;
  std::uint64_t drop_pending_entries_ = 0;  // in drop events not yet handed over (or being handed over)
  std::uint64_t drop_pending_bytes_ = 0;
  std::uint64_t drops_unreported_ = 0;
  bool unreported_logged_ = false;
  std::size_t delivering_ = 0;
  bool full_logged_ = false;
  bool stop_ = false;
  bool drained_last_ = false;  // the last step_locked() drained (see there)
  bool finished_ = false;  // shutdown() has delivered its last events
  bool expired_ = false;
  std::uint64_t delivered_ = 0;
  std::array<std::uint64_t, drop_reason_count> dropped_{};
  std::uint64_t batches_delivered_ = 0;
  std::uint64_t attempts_ = 0;
  std::uint64_t failed_attempts_ = 0;
  std::uint64_t retried_ = 0;
  std::atomic<bool> cancel_{false};

  std::mutex& cb_mu_ = sync_->cb_mu;
  std::vector<std::thread>& workers_ = sync_->workers;
  std::mutex& shutdown_mu_ = sync_->shutdown_mu;
  bool shut_down_ = false;
  bool shutdown_result_ = false;
};

}  // namespace batchq

#endif  // BATCHQ_BATCH_QUEUE_HPP
