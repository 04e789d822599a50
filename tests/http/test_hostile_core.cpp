// Issue 12 ("nothing lost under hostile conditions"), the queue's items:
// the memory bound against a receiver that never answers (item 1), the
// shutdown deadline with a spool (item 7) and the callback thread contract
// (item 12). Real loopback servers, real spool files. Label: http.
#include <atomic>
#include <cstdio>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "batchq/http_log.hpp"
#include "batchq/spool.hpp"
#include "support/test_util.hpp"
#include "support/catch.hpp"
#include "support/raw_server.hpp"

using namespace std::chrono_literals;
using batchq::test::raw_connection;
using batchq::test::raw_request;
using batchq::test::raw_server;

namespace {

// Accepts, reads the request and never answers (until the server goes).
raw_server::handler hang() {
  return [](raw_connection& c) {
    raw_request req;
    if (!c.read_request(req)) return;
    while (c.wait_readable(100ms) == false) {
    }
  };
}

}  // namespace

TEST_CASE("a receiver that never answers: queue + pending drops stay within the bound", "[http][bounds][hostile]") {
  raw_server srv(hang());
  batchq::http_log_options o;
  o.http.http_endpoint = srv.url("/");
  o.http.timeout = 60000ms;  // the worker stays in its first send for the whole test
  o.queue.batch_max_size = 100;
  o.queue.max_entries = 0;
  o.queue.max_bytes = std::size_t{1} << 20;
  o.queue.max_drop_pending_bytes = std::size_t{1} << 20;
  o.drop_buffer_bytes = std::size_t{1} << 20;
  o.drop_buffer_entries = 1000000;
  batchq::http_log log(o);

  const std::string payload = "{\"pad\":\"" + std::string(1000, 'x') + "\"}";
  constexpr int kThreads = 3;
  constexpr int kPerThread = 20000;  // 3 x 20000 x ~1 KB = 60 MB pushed through a 1 MiB queue
  std::atomic<int> running{kThreads};
  std::atomic<int> refused{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t)
    producers.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i)
        if (log.enqueue(payload) != batchq::enqueue_result::accepted) refused.fetch_add(1);
      running.fetch_sub(1);
    });
  // Sampled while the producers run: what the queue holds (queue + drops
  // waiting for on_drop) never passes max_bytes + max_drop_pending_bytes +
  // one entry per producer thread (entries in flight through enqueue) + the
  // newest pushed-out entry.
  const std::uint64_t bound = o.queue.max_bytes + o.queue.max_drop_pending_bytes + (kThreads + 1) * payload.size();
  std::uint64_t worst = 0;
  bool balanced = true;
  std::uint64_t samples = 0;
  while (running.load() > 0) {
    const batchq::queue_stats s = log.stats();
    worst = std::max<std::uint64_t>(worst, s.bytes_held + s.drop_pending_bytes);
    balanced = balanced && s.balanced();
    ++samples;
  }
  for (auto& p : producers) p.join();
  CHECK(refused.load() == 0);
  CHECK(samples > 0);
  CHECK(balanced);
  std::printf("stalled receiver: worst queue + pending drops %llu bytes, bound %llu\n",
              static_cast<unsigned long long>(worst), static_cast<unsigned long long>(bound));
  CHECK(worst <= bound);

  // Dropped entries reach the pull buffer while the worker is still stuck in
  // its send (before the fix they waited for it: the buffer stayed empty).
  std::vector<batchq::dropped_entry> got;
  for (int i = 0; i < 3000 && got.empty(); ++i) {  // up to 30 s on a loaded machine under TSan
    log.poll_dropped(got, 1000000);
    if (got.empty()) std::this_thread::sleep_for(10ms);
  }
  // The reporter may still be handing drops to the buffer: entries it holds
  // count in the queue's drop_pending until it has handed over its whole
  // burst, and in the buffer once added, so the sum below is exact only
  // once it is idle.
  for (int i = 0; i < 3000 && log.stats().drop_pending != 0; ++i) std::this_thread::sleep_for(10ms);
  const batchq::queue_stats s = log.stats();
  const batchq::buffer_figures b = log.buffer_stats();
  INFO("dropped " << s.dropped_total() << ", polled " << got.size() << ", buffer pending " << b.drop_pending
                  << ", buffer overflow " << b.drop_overflow << ", waiting in the queue " << s.drop_pending
                  << ", unreported " << s.drops_unreported);
  CHECK(s.batches_in_flight == 1);  // still stuck
  CHECK(!got.empty());
  CHECK(s.dropped_for(batchq::drop_reason::queue_full) > 0);
  CHECK(s.balanced());
  // Every drop is accounted for: polled, still buffered, overflowed, still
  // waiting inside the queue, or destroyed unreported (counted).
  CHECK(s.dropped_total() == got.size() + b.drop_pending + b.drop_overflow + s.drop_pending + s.drops_unreported);
  CHECK(log.shutdown(0ms) == false);
}

TEST_CASE("shutdown(100 ms) with a spool and a large backlog returns in time; every entry spooled or reported",
          "[http][shutdown][spool][hostile]") {
  batchq::test::temp_dir dir;
  batchq::http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:" + std::to_string(batchq::test::unused_port()) + "/";
  o.queue.batch_max_size = 1000;
  o.queue.max_entries = 0;
  o.spool.dir = dir.path();
  o.spool.fsync = batchq::fsync_policy::never;
  std::atomic<std::uint64_t> reported{0}, reported_unspooled{0};
  std::atomic<std::uint64_t> late_logged{0};
  batchq::http_log_callbacks cb;
  cb.on_drop = [&](batchq::span<std::string> e, const batchq::drop_info&, bool spooled) {
    reported += e.size();
    if (!spooled) reported_unspooled += e.size();
  };
  cb.on_log = [&](batchq::log_level, std::string_view line) {
    const std::string_view key = "shutdown deadline passed: ";
    if (line.rfind(key, 0) == 0) late_logged += std::stoull(std::string(line.substr(key.size())));
  };
  constexpr std::uint64_t kEntries = 400000;
  {
    batchq::http_log log(o, cb);
    std::uint64_t accepted = 0;
    for (std::uint64_t i = 0; i < kEntries; ++i)
      accepted += log.enqueue("{\"i\":" + std::to_string(i) + "}") == batchq::enqueue_result::accepted;
    REQUIRE(accepted == kEntries);
    const auto start = std::chrono::steady_clock::now();
    CHECK(log.shutdown(100ms) == false);
    const long long took = batchq::test::elapsed_ms(start);
    std::printf("shutdown(100 ms) with %llu entries queued and a spool took %lld ms\n",
                static_cast<unsigned long long>(kEntries), took);
    // Stated bound: t + 250 ms. Asserted with slack for a loaded CI machine
    // (and more under a sanitizer, which slows the reporting of 400,000
    // entries several times: 1577 ms once under TSan at load 8).
    INFO("shutdown(100 ms) took " << took << " ms");
    CHECK(took < 100 + 1000 * batchq::test::sanitizer_slowdown);
    const batchq::queue_stats s = log.stats();
    CHECK(s.enqueued == kEntries);
    CHECK(s.dropped_for(batchq::drop_reason::shutdown) + s.delivered == kEntries);
  }
  // Every entry is in write-ahead/ for the next owner, or was reported
  // unspooled (counted in the log line); none twice, none missing.
  batchq::spool_options so;
  so.dir = dir.file("write-ahead");
  so.mode = batchq::spool_mode::write_ahead;
  so.read_only = true;
  auto sp = batchq::spool::open(so);
  REQUIRE(sp);
  std::uint64_t in_spool = 0;
  sp->for_each([&](const batchq::spool_record&) {
    ++in_spool;
    return true;
  });
  std::printf("shutdown: %llu entries written to write-ahead/, %llu reported unspooled after the deadline\n",
              static_cast<unsigned long long>(in_spool), static_cast<unsigned long long>(late_logged.load()));
  CHECK(reported.load() == kEntries);
  CHECK(in_spool + late_logged.load() == kEntries);
  if (late_logged.load() > 0) CHECK(reported_unspooled.load() >= late_logged.load());
}

TEST_CASE("callbacks never run concurrently, also for spool eviction and a late spool takeover",
          "[http][spool][threads][hostile]") {
  batchq::test::temp_dir dir;
  batchq::http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:" + std::to_string(batchq::test::unused_port()) + "/";
  o.queue.batch_max_size = 10;
  o.queue.max_entries = 50;  // pushed-out entries keep the drop callback busy
  o.spool.dir = dir.path();
  o.spool.segment_bytes = 64 << 10;
  o.spool.max_bytes = 128 << 10;  // the dead-letter cap evicts (its thread reports it)
  o.spool.fsync = batchq::fsync_policy::never;

  // A first owner holds the spool: the second queue takes it over later, on
  // its opener thread.
  auto first = std::make_unique<batchq::http_log>(o);

  std::atomic<bool> inside{false};
  std::atomic<int> overlaps{0};
  std::mutex mu;
  std::set<std::thread::id> drop_threads;
  std::vector<std::pair<std::thread::id, std::string>> log_calls;
  auto enter = [&] {
    if (inside.exchange(true)) overlaps.fetch_add(1);
  };
  batchq::http_log_callbacks cb;
  cb.on_drop = [&](batchq::span<std::string>, const batchq::drop_info&, bool) {
    enter();
    {
      std::lock_guard<std::mutex> g(mu);
      drop_threads.insert(std::this_thread::get_id());
    }
    std::this_thread::sleep_for(2ms);  // widen the window
    inside.store(false);
  };
  cb.on_log = [&](batchq::log_level, std::string_view line) {
    enter();
    {
      std::lock_guard<std::mutex> g(mu);
      log_calls.emplace_back(std::this_thread::get_id(), std::string(line));
    }
    std::this_thread::sleep_for(1ms);
    inside.store(false);
  };
  batchq::http_log log(o, cb);
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    const std::string pad = "{\"pad\":\"" + std::string(500, 'y') + "\"}";
    while (!stop.load()) {
      log.enqueue(pad);
      std::this_thread::sleep_for(50us);
    }
  });
  std::this_thread::sleep_for(300ms);
  first.reset();  // lets go: the opener of `log` takes the spool over (within ~1 s)
  bool taken = false, evicted = false;
  for (int i = 0; i < 600 && !(taken && evicted); ++i) {
    std::this_thread::sleep_for(10ms);
    std::lock_guard<std::mutex> g(mu);
    for (const auto& c : log_calls) {
      taken = taken || c.second.find("taken over") != std::string::npos;
      evicted = evicted || c.second.find("spool cap") != std::string::npos;
    }
  }
  stop.store(true);
  producer.join();
  log.shutdown(0ms);
  CHECK(taken);
  CHECK(evicted);
  CHECK(overlaps.load() == 0);
  // The lines of the opener and of the eviction thread came from a thread
  // that also delivers drops: a queue thread.
  std::lock_guard<std::mutex> g(mu);
  for (const auto& c : log_calls)
    if (c.second.find("taken over") != std::string::npos || c.second.find("spool cap") != std::string::npos) {
      INFO(c.second);
      CHECK(drop_threads.count(c.first) == 1);
    }
}
