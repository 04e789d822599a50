// detail::worker_cv, what the queue's workers sleep on (a futex word on
// Linux): no lost wake-up in the two ways batch_queue notifies (state
// changed under the mutex, then notify outside it; state published without
// the mutex, then the mutex taken and released, then notify: wake()), and
// notify_all wakes every waiter. Waits here have no timeout, so a lost
// wake-up hangs the test until ctest's TIMEOUT fails it. Worker threads only
// count; every assertion runs on the main thread after join. Nothing here
// asserts on time.
#include "support/catch.hpp"

#include <batchq/detail/worker_cv.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

using batchq::detail::worker_cv;

namespace {

constexpr int k_rounds = 100000;

}  // namespace

TEST_CASE("worker_cv: two threads hand a turn back and forth, notifying outside the mutex", "[worker_cv]") {
  std::mutex mu;
  worker_cv cv;
  int turn = 0;  // under mu: whose move (0 or 1)
  int moves[2] = {0, 0};
  auto player = [&](int me) {
    for (int i = 0; i < k_rounds; ++i) {
      std::unique_lock<std::mutex> lk(mu);
      while (turn != me) cv.wait(lk);
      ++moves[me];
      turn = 1 - me;
      lk.unlock();
      cv.notify_one();
    }
  };
  std::thread a(player, 0), b(player, 1);
  a.join();
  b.join();
  CHECK(moves[0] == k_rounds);
  CHECK(moves[1] == k_rounds);
}

TEST_CASE("worker_cv: a value published without the mutex, then the mutex taken and released, then notify (wake())",
          "[worker_cv]") {
  std::mutex mu;
  worker_cv cv;
  std::atomic<std::uint64_t> posted{0};  // written by the producer without mu, as an intake push
  std::uint64_t taken = 0;               // the consumer's
  std::atomic<bool> consumer_sleeps{false};
  std::atomic<std::uint64_t> sleeps{0};  // counted by the consumer under mu, just before it waits
  std::thread consumer([&] {
    std::unique_lock<std::mutex> lk(mu);
    while (taken < k_rounds) {
      const std::uint64_t p = posted.load(std::memory_order_seq_cst);
      if (p > taken) {
        taken = p;
        continue;
      }
      consumer_sleeps.store(true, std::memory_order_seq_cst);
      if (posted.load(std::memory_order_seq_cst) > taken) {  // re-check after counting itself asleep
        consumer_sleeps.store(false, std::memory_order_relaxed);
        continue;
      }
      ++sleeps;
      cv.wait(lk);
      consumer_sleeps.store(false, std::memory_order_relaxed);
    }
  });
  for (std::uint64_t i = 1; i <= k_rounds; ++i) {
    // Now and then nothing more is posted until the consumer has taken
    // entry i and gone to sleep once more (it must: it has nothing left to
    // take), so the sleeping path and the wake-up after it run for certain,
    // on any machine and under any load. Its sleeps are counted before i is
    // posted: a sleep after taking i always counts as one more.
    const bool hold = i % 1024 == 0 && i < k_rounds;
    const std::uint64_t sleeps_before = sleeps.load(std::memory_order_seq_cst);
    posted.store(i, std::memory_order_seq_cst);
    if (consumer_sleeps.load(std::memory_order_seq_cst)) {
      { std::lock_guard<std::mutex> g(mu); }  // pairs with the consumer's check-then-wait
      cv.notify_one();
    }
    if (hold) {
      while (sleeps.load(std::memory_order_seq_cst) == sleeps_before) std::this_thread::yield();
    } else if (i % 64 == 0) {
      std::this_thread::yield();  // let the consumer catch up and sleep now and then
    }
  }
  consumer.join();
  CHECK(taken == k_rounds);
  CHECK(sleeps > 0);  // the sleeping path ran at all
}

TEST_CASE("worker_cv: notify_all wakes every waiter; a timed wait returns without a notify", "[worker_cv]") {
  std::mutex mu;
  worker_cv cv;
  bool go = false;  // under mu
  int woke = 0;     // under mu
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i)
    waiters.emplace_back([&] {
      std::unique_lock<std::mutex> lk(mu);
      while (!go) cv.wait(lk);
      ++woke;
    });
  for (int round = 0; round < 1000; ++round) {
    std::unique_lock<std::mutex> lk(mu);
    if (round == 999) go = true;
    lk.unlock();
    cv.notify_all();
  }
  for (auto& t : waiters) t.join();
  CHECK(woke == 4);

  std::unique_lock<std::mutex> lk(mu);
  cv.wait_for(lk, std::chrono::milliseconds(1));
  cv.wait_until(lk, std::chrono::steady_clock::now() + std::chrono::milliseconds(1));
  cv.wait_for(lk, std::chrono::milliseconds(-5));  // a deadline already past
  CHECK(lk.owns_lock());
}
