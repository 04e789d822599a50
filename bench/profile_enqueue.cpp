// profile_enqueue - a plain loop over batch_queue::enqueue for profilers
// (valgrind --tool=callgrind, perf). Not part of the table.
//
//   profile_enqueue [entries=1000000] [producers=1] [bytes=64] [batch_max_size=1000]
//
// Prints the producers' time (until the last enqueue returned) and the total
// time (until the worker delivered the last entry), per entry.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "batchq/batch_queue.hpp"

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const std::size_t producers = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  const std::size_t bytes = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 64;
  const std::size_t per = n / producers;
  const std::size_t want = per * producers;

  std::vector<std::vector<std::string>> entries(producers, std::vector<std::string>(per, std::string(bytes, 'x')));
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::atomic<std::size_t> seen{0};
  batchq::batch_queue_options o;
  o.batch_max_size = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 1000;
  o.process_delay = std::chrono::milliseconds(0);
  o.flush_timeout = std::chrono::milliseconds(5);
  o.max_entries = 0;
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [&](batchq::span<const std::string> b, const batchq::attempt_context&) {
    if (seen.fetch_add(b.size()) + b.size() == want) {
      std::lock_guard<std::mutex> g(mu);
      done = true;
      cv.notify_all();
    }
    return batchq::process_result::success();
  };
  batchq::batch_queue<std::string> q(o, cb);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> th;
  for (auto& mine : entries)
    th.emplace_back([&q, &mine] {
      for (auto& e : mine) q.enqueue(std::move(e));
    });
  for (auto& t : th) t.join();
  const auto t1 = std::chrono::steady_clock::now();
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done; });
  }
  const auto t2 = std::chrono::steady_clock::now();
  auto ns = [&](auto d) { return std::chrono::duration<double, std::nano>(d).count() / double(want); };
  std::printf("producers %.1f ns/entry, total %.1f ns/entry\n", ns(t1 - t0), ns(t2 - t0));
  return 0;
}
