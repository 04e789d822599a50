// batchq/clock.hpp - the time source of a batch_queue.
//
// The queue never calls std::chrono::steady_clock::now() directly: it asks a
// `batchq::clock`. Production code leaves the option unset and gets
// steady_clock. Tests pass a `batchq::manual_clock` together with
// `execution::manual` and drive the schedule step by step, so that every
// timing rule (flush timeout, process delay, backoff, Retry-After, retry time
// budget) is checked to the millisecond without a single sleep.
#ifndef BATCHQ_CLOCK_HPP
#define BATCHQ_CLOCK_HPP

#include <atomic>
#include <chrono>

namespace batchq {

/// Time source interface. `now()` must be monotonic and thread-safe.
class clock {
 public:
  using duration = std::chrono::steady_clock::duration;
  using time_point = std::chrono::steady_clock::time_point;

  virtual ~clock() = default;
  virtual time_point now() const noexcept = 0;
  /// How long a worker thread really sleeps to let `d` of this clock's time
  /// pass. Identity for real-time clocks; a scaled clock (demos) divides.
  virtual std::chrono::steady_clock::duration real_wait(duration d) const noexcept { return d; }
};

/// The default: std::chrono::steady_clock.
class steady_clock final : public clock {
 public:
  time_point now() const noexcept override { return std::chrono::steady_clock::now(); }

  /// A process-wide instance, used when no clock is configured.
  static const steady_clock& instance() noexcept {
    static const steady_clock c;
    return c;
  }
};

/// A clock that only moves when told to. Thread-safe; starts at an arbitrary
/// fixed epoch (time_point{} + 1000 h) so that "time zero" is never special.
class manual_clock final : public clock {
 public:
  manual_clock() noexcept : ticks_(start_ticks()) {}

  time_point now() const noexcept override {
    return time_point(duration(ticks_.load(std::memory_order_acquire)));
  }
  /// Moves the clock forward by `d` (negative values are ignored).
  void advance(duration d) noexcept {
    if (d.count() > 0) ticks_.fetch_add(d.count(), std::memory_order_acq_rel);
  }
  /// Sets the clock to `t` if `t` is later than now; never moves backwards.
  void set(time_point t) noexcept {
    auto want = t.time_since_epoch().count();
    auto cur = ticks_.load(std::memory_order_acquire);
    while (want > cur && !ticks_.compare_exchange_weak(cur, want, std::memory_order_acq_rel)) {
    }
  }

 private:
  static duration::rep start_ticks() noexcept {
    return std::chrono::duration_cast<duration>(std::chrono::hours(1000)).count();
  }
  std::atomic<duration::rep> ticks_;
};

}  // namespace batchq

#endif  // BATCHQ_CLOCK_HPP
