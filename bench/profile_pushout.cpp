// profile_pushout - what an enqueue costs while every enqueue pushes the
// oldest entry out (drop-oldest at max_entries: a receiver that stalls and
// a producer that keeps going). Not part of the table.
//
//   profile_pushout [batch_max_size=1000 ...]
//
// For each batch_max_size given: a queue with max_entries 100,000 whose one
// sending thread is held inside its first attempt; 2,000,000 entries of 48
// bytes are enqueued from this thread (so 1,900,000 or more of them push
// one out, each handed to on_drop), and the wall time per enqueue is
// printed. Before issue 15's seventh round a push-out erased the entry from
// the front of its batch: the cost grew with batch_max_size.
#include <batchq/batch_queue.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  std::vector<std::size_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::stoul(argv[i]));
  if (sizes.empty()) sizes = {10, 1000, 10000};
  constexpr std::size_t n = 2000000;
  for (const std::size_t bms : sizes) {
    batchq::batch_queue_options o;
    o.batch_max_size = bms;
    o.max_entries = 100000;
    o.process_delay = 0ms;
    std::atomic<bool> release{false};
    std::atomic<std::uint64_t> dropped{0};
    batchq::batch_queue_callbacks<std::string> cb;
    cb.process = [&](batchq::span<const std::string>, const batchq::attempt_context&) {
      while (!release.load()) std::this_thread::sleep_for(1ms);
      return batchq::process_result::success();
    };
    cb.on_drop = [&](batchq::span<std::string> e, const batchq::drop_info&) { dropped += e.size(); };
    batchq::batch_queue<std::string> q(o, cb);
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < n; ++i) q.enqueue(std::string(48, 'x'));
    const auto t1 = std::chrono::steady_clock::now();
    release = true;
    q.shutdown(10s);
    std::printf("batch_max_size %zu: %.0f ns per enqueue, %llu of %zu entries pushed out\n", bms,
                std::chrono::duration<double, std::nano>(t1 - t0).count() / n,
                static_cast<unsigned long long>(dropped.load()), n);
  }
}
