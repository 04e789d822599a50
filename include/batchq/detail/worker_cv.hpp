// batchq/detail/worker_cv.hpp - what the queue's workers sleep on: a
// condition variable on one futex word (Linux), std::condition_variable
// elsewhere or when BATCHQ_STD_CONDVAR is defined.
//
// Why not std::condition_variable on Linux: glibc's pthread_cond_wait takes
// the mutex back after a wake-up as if it were contended, so the worker's
// next unlock of the queue's mutex makes a futex(FUTEX_WAKE) system call
// with nobody to wake - one wasted system call per wake-up, and at
// queue_size 1 a worker wakes up for about every request (strace of an
// nginx worker: 0.9 per request while the workers sleep between requests;
// bench/results.md, case 4c). Here the waiter unlocks, sleeps on the word
// and locks the mutex the ordinary way.
//
// The protocol (the same contract as std::condition_variable: a notify
// issued after the waiter released the mutex inside wait() wakes it):
//   waiter, holding the mutex: read seq, count itself in waiters (seq_cst),
//     unlock, FUTEX_WAIT while seq still holds what it read, uncount, lock;
//   notifier, after changing the state under the mutex (or after taking
//     and releasing it, as batch_queue::wake() does): seq += 1 (seq_cst),
//     then FUTEX_WAKE only if waiters is not 0.
// A notifier that follows the waiter's unlock sees its count (both orders
// go through the mutex), and its increment either precedes the waiter's
// FUTEX_WAIT (which then returns at once: the word differs) or follows it
// (the FUTEX_WAKE finds it queued). A waiter that read an older seq only
// wakes early. Wake-ups may be spurious, as with any condition variable:
// every caller re-checks its condition under the mutex.
#ifndef BATCHQ_DETAIL_WORKER_CV_HPP
#define BATCHQ_DETAIL_WORKER_CV_HPP

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__linux__) && !defined(BATCHQ_STD_CONDVAR)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <ctime>
#define BATCHQ_HAVE_FUTEX_CV 1
#else
#define BATCHQ_HAVE_FUTEX_CV 0
#endif

namespace batchq {
namespace detail {

#if BATCHQ_HAVE_FUTEX_CV

class worker_cv {
 public:
  worker_cv() = default;
  worker_cv(const worker_cv&) = delete;
  worker_cv& operator=(const worker_cv&) = delete;

  void notify_one() noexcept { bump(1); }
  void notify_all() noexcept { bump(INT_MAX); }

  void wait(std::unique_lock<std::mutex>& lk) { sleep(lk, nullptr); }

  template <class Rep, class Period>
  void wait_for(std::unique_lock<std::mutex>& lk, const std::chrono::duration<Rep, Period>& d) {
    using namespace std::chrono;
    // A duration too long for the timespec sleeps a day at a time: the
    // caller's loop waits again.
    const auto ns = std::clamp<long long>(duration_cast<nanoseconds>(d).count(), 0, 86'400'000'000'000LL);
    timespec ts{};
    ts.tv_sec = static_cast<std::time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    sleep(lk, &ts);
  }

  template <class Duration>
  void wait_until(std::unique_lock<std::mutex>& lk, const std::chrono::time_point<std::chrono::steady_clock, Duration>& t) {
    wait_for(lk, t - std::chrono::steady_clock::now());
  }

  // For tests (detail::queue_probe), read under the mutex: waiters not yet
  // back from FUTEX_WAIT, and the count of notifies so far.
  std::uint32_t sleeping() const noexcept { return waiters_.load(std::memory_order_seq_cst); }
  std::uint32_t notifies() const noexcept { return seq_.load(std::memory_order_seq_cst); }

 private:
  void bump(int n) noexcept {
    seq_.fetch_add(1, std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) != 0) futex(FUTEX_WAKE_PRIVATE, static_cast<std::uint32_t>(n), nullptr);
  }

  // Called with lk held; returns with lk held. ts: relative (CLOCK_MONOTONIC).
  void sleep(std::unique_lock<std::mutex>& lk, const timespec* ts) {
    const std::uint32_t seen = seq_.load(std::memory_order_relaxed);
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    lk.unlock();
    futex(FUTEX_WAIT_PRIVATE, seen, ts);  // EAGAIN (seq moved), EINTR, ETIMEDOUT: all mean look again
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    lk.lock();
  }

  long futex(int op, std::uint32_t val, const timespec* ts) noexcept {
    return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&seq_), op, val, ts, nullptr, 0);
  }

  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "a futex word is 32 bits");
  std::atomic<std::uint32_t> seq_{0};
  std::atomic<std::uint32_t> waiters_{0};
};

#else

using worker_cv = std::condition_variable;

#endif

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_DETAIL_WORKER_CV_HPP
