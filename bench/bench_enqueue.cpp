// bench_enqueue - case 1: enqueue throughput, batch_queue vs
// moodycamel::ConcurrentQueue vs spdlog's mpmc_blocking_queue.
//
// One benchmark "iteration" = P producer threads each moving K pre-built
// std::string entries into the queue while ONE consumer thread drains it.
// The iteration's time (manual time, wall clock) runs from the moment the
// producers are released until the consumer has taken the last entry, so
// every enqueued entry is consumed inside the measured region: a queue
// cannot look fast by leaving work behind.
//
// Fairness choices (identical for all three queues):
//  - the same entry strings: built before the clock starts (a copy of one
//    template of 64 / 512 / 4096 bytes, so every entry owns a heap buffer)
//    and moved in; the consumer destroys them (same free() traffic);
//  - the same number of producer threads, created before the clock starts
//    and released together by a latch;
//  - one consumer: for batch_queue it is the queue's own worker delivering
//    batches of up to 1000 to a process function that only counts; for
//    moodycamel a thread calling try_dequeue_bulk (up to 1000) in a loop that
//    yields when the queue is empty (the usual way to drain it); for spdlog a
//    thread calling dequeue_for (one entry per call: that is its API);
//  - no bound is hit: batch_queue max_entries 0 (unbounded), spdlog capacity
//    = entries per iteration, moodycamel grows as needed. We measure the
//    queue, not drops or blocking.
//  - the thread that measures blocks on a condition variable, never spins,
//    so it takes no CPU from the producers (the machine has 2 cores);
//  - the end of the stream: the last producer to finish tells its queue that
//    nothing more comes (`end()`, outside the producers' loops). For
//    batch_queue that is flush(0): it closes the open batch at once. Without
//    it, a round in which the flush timer had closed one batch early (a
//    thread descheduled for flush_timeout) ended with a short batch waiting
//    5 ms for its timer: a wait moodycamel and spdlog never pay, since their
//    consumers take every entry without a timer (their end() does nothing).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if __has_include(<concurrentqueue/concurrentqueue.h>)
#include <concurrentqueue/concurrentqueue.h>
#else
#include <concurrentqueue.h>
#endif
// spdlog's queue header expects spdlog/common.h (and through it fmt) to have
// defined SPDLOG_NOEXCEPT; common.h defines it as `noexcept`. Defining it here
// keeps the peer header-only without pulling in fmt.
#ifndef SPDLOG_NOEXCEPT
#define SPDLOG_NOEXCEPT noexcept
#endif
#include <spdlog/details/mpmc_blocking_q.h>

#include "batchq/batch_queue.hpp"

namespace {

using clk = std::chrono::steady_clock;

// A one-shot latch: producers wait until the measuring thread opens it.
class gate {
 public:
  void wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Signalled by the consumer when it has taken the last entry.
class done_signal {
 public:
  void set() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      done_ = true;
      at_ = clk::now();
    }
    cv_.notify_all();
  }
  clk::time_point wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    return at_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  clk::time_point at_;
};

// Entries per iteration (all producers together): large enough that thread
// start-up is noise, small enough that 4 KB entries fit easily in memory.
// A round of 200,000 entries of 64 B lasts about 3 ms, shorter than a
// scheduler slice: the "sustained" rows run 2,000,000 per round (about
// 35 ms), long enough that a queue whose consumer falls behind pays for its
// backlog inside the round (before they were added, batch_queue ran those
// at 0.23-0.38x moodycamel while the short rows showed about 1.0x).
std::size_t total_entries(std::size_t bytes) { return bytes >= 4096 ? 40000 : 200000; }
constexpr std::size_t sustained_entries = 2000000;

std::vector<std::vector<std::string>> make_entries(std::size_t producers, std::size_t per_producer,
                                                   std::size_t bytes) {
  const std::string tmpl = [&] {
    std::string s = "{\"msg\":\"";
    while (s.size() + 2 < bytes) s.push_back('x');
    s += "\"}";
    return s;
  }();
  std::vector<std::vector<std::string>> v(producers);
  for (auto& p : v) p.assign(per_producer, tmpl);
  return v;
}

// CPU time of the whole process (all threads, user + system), in seconds.
double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// CPU seconds the process spent inside the timed regions of the current
// benchmark: on a loaded machine wall time mostly measures the scheduler,
// CPU time what the queue costs (a consumer that spins is charged for it).
double g_cpu_in_region = 0;

// Runs one iteration: `push(entry)` enqueues from a producer thread, the
// last producer to finish calls `end()` (see the fairness notes above).
// Returns seconds.
template <class Push, class End>
double run_producers(std::vector<std::vector<std::string>>& entries, Push push, End end, done_signal& done) {
  gate start;
  std::atomic<std::size_t> running{entries.size()};
  std::vector<std::thread> threads;
  threads.reserve(entries.size());
  for (auto& mine : entries) {
    threads.emplace_back([&start, &mine, &push, &end, &running] {
      start.wait();
      for (auto& e : mine) push(std::move(e));
      if (running.fetch_sub(1, std::memory_order_acq_rel) == 1) end();
    });
  }
  // Let the producers reach the gate before the clock starts.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double c0 = process_cpu_seconds();
  const auto t0 = clk::now();
  start.open();
  const auto t1 = done.wait();
  g_cpu_in_region += process_cpu_seconds() - c0;
  for (auto& t : threads) t.join();
  return std::chrono::duration<double>(t1 - t0).count();
}

void report(benchmark::State& state, std::size_t n_total, std::size_t bytes) {
  state.counters["cpu_ns_per_entry"] =
      g_cpu_in_region * 1e9 / static_cast<double>(state.iterations() * n_total);
  g_cpu_in_region = 0;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n_total));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n_total * bytes));
  // ns per entry = 1e9 / items_per_second (computed by bench/report.py).
}

// ---- batchq::batch_queue ---------------------------------------------------
// One round: `producers` threads move `per` entries each. Returns seconds.
double round_batchq(std::size_t producers, std::size_t per, std::size_t bytes) {
  auto entries = make_entries(producers, per, bytes);
  done_signal done;
  std::atomic<std::size_t> seen{0};
  const std::size_t want = per * producers;
  batchq::batch_queue_options o;
  o.batch_max_size = 1000;
  o.process_delay = std::chrono::milliseconds(0);
  o.flush_timeout = std::chrono::milliseconds(5);  // closes a batch only if a thread stalls 5 ms
  o.max_entries = 0;                               // unbounded: no drops
  o.max_bytes = 0;
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [&](batchq::span<const std::string> b, const batchq::attempt_context&) {
    if (seen.fetch_add(b.size(), std::memory_order_relaxed) + b.size() == want) done.set();
    return batchq::process_result::success();
  };
  batchq::batch_queue<std::string> q(o, std::move(cb));
  const double s = run_producers(
      entries, [&](std::string&& e) { q.enqueue(std::move(e)); },
      [&] { q.flush(std::chrono::milliseconds(0)); }, done);
  q.shutdown(std::chrono::seconds(5));
  return s;
}

// ---- moodycamel::ConcurrentQueue ------------------------------------------------
double round_moodycamel(std::size_t producers, std::size_t per, std::size_t bytes) {
  auto entries = make_entries(producers, per, bytes);
  done_signal done;
  const std::size_t want = per * producers;
  moodycamel::ConcurrentQueue<std::string> q;
  std::thread consumer([&] {
    std::vector<std::string> buf(1000);
    std::size_t seen = 0;
    while (seen < want) {
      std::size_t n = q.try_dequeue_bulk(buf.begin(), buf.size());
      if (n == 0) {
        std::this_thread::yield();
        continue;
      }
      for (std::size_t i = 0; i < n; ++i) std::string().swap(buf[i]);  // free, as a delivered batch is
      seen += n;
    }
    done.set();
  });
  const double s = run_producers(entries, [&](std::string&& e) { q.enqueue(std::move(e)); }, [] {}, done);
  consumer.join();
  return s;
}

// ---- spdlog::details::mpmc_blocking_queue -------------------------------------------
double round_spdlog(std::size_t producers, std::size_t per, std::size_t bytes) {
  auto entries = make_entries(producers, per, bytes);
  done_signal done;
  const std::size_t want = per * producers;
  spdlog::details::mpmc_blocking_queue<std::string> q(want + 1);  // never full: enqueue never blocks
  std::thread consumer([&] {
    std::string item;
    std::size_t seen = 0;
    while (seen < want) {
      if (q.dequeue_for(item, std::chrono::milliseconds(100))) {
        std::string().swap(item);
        ++seen;
      }
    }
    done.set();
  });
  const double s = run_producers(entries, [&](std::string&& e) { q.enqueue(std::move(e)); }, [] {}, done);
  consumer.join();
  return s;
}

// One benchmark of any of the three: state.range(0) producers, entries of
// state.range(1) bytes, state.range(2) entries per iteration if given (the
// sustained rows), else total_entries().
template <double (*Round)(std::size_t, std::size_t, std::size_t)>
void BM_queue(benchmark::State& state) {
  const auto producers = static_cast<std::size_t>(state.range(0));
  const auto bytes = static_cast<std::size_t>(state.range(1));
  const std::size_t total = state.range(2) ? static_cast<std::size_t>(state.range(2)) : total_entries(bytes);
  const std::size_t per = total / producers;
  g_cpu_in_region = 0;
  for (auto _ : state) state.SetIterationTime(Round(producers, per, bytes));
  report(state, per * producers, bytes);
}

// Peers are registered next to each other (same producers, same size) so that
// the three figures of a row are measured within seconds of each other.
void register_all() {
  for (int bytes : {64, 512, 4096}) {
    for (int producers : {1, 2, 4}) {
      auto tune = [](benchmark::internal::Benchmark* b) {
        b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5)->Repetitions(5);
      };
      tune(benchmark::RegisterBenchmark("enqueue/batchq", BM_queue<round_batchq>)->Args({producers, bytes, 0}));
      tune(benchmark::RegisterBenchmark("enqueue/moodycamel", BM_queue<round_moodycamel>)->Args({producers, bytes, 0}));
      tune(benchmark::RegisterBenchmark("enqueue/spdlog", BM_queue<round_spdlog>)->Args({producers, bytes, 0}));
    }
  }
  // Sustained: 64 B, ten times the entries per round; spdlog (one entry per
  // dequeue call) would take about a second per round and is left out.
  for (int producers : {1, 2, 4}) {
    const auto n = static_cast<int64_t>(sustained_entries);
    auto tune = [](benchmark::internal::Benchmark* b) {
      b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3)->Repetitions(3);
    };
    tune(benchmark::RegisterBenchmark("enqueue_sustained/batchq", BM_queue<round_batchq>)->Args({producers, 64, n}));
    tune(benchmark::RegisterBenchmark("enqueue_sustained/moodycamel", BM_queue<round_moodycamel>)->Args({producers, 64, n}));
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
