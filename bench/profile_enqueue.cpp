// profile_enqueue - a plain enqueue loop for profilers (perf, callgrind) and
// for CPU-time comparisons on a loaded machine. Not part of the table.
//
//   profile_enqueue [entries=1000000] [producers=1] [bytes=64] [batch_max_size=1000]
//                   [queue=batchq|moodycamel] [rounds=5]
//
// Each round builds the entries first (not measured), releases the
// producers together and ends when the consumer has taken the last entry
// (batch_queue: its worker delivering batches to a counting callback;
// moodycamel: one thread calling try_dequeue_bulk(1000) and yielding when
// empty, as bench_enqueue does). Per entry, median and minimum over the rounds:
//   wall   the round's wall time,
//   cpu    the whole process's CPU time in the round (every thread),
//   prod   the producer threads' own CPU time (CLOCK_THREAD_CPUTIME_ID),
// CPU time is what to compare when other processes share the machine.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if __has_include(<concurrentqueue/concurrentqueue.h>)
#include <concurrentqueue/concurrentqueue.h>
#else
#include <concurrentqueue.h>
#endif

#include "batchq/batch_queue.hpp"

namespace {

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}
double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

struct flag {
  std::mutex mu;
  std::condition_variable cv;
  bool set = false;
  void raise() {
    {
      std::lock_guard<std::mutex> g(mu);
      set = true;
    }
    cv.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return set; });
  }
};

struct figures {
  double wall, cpu, prod;
};

// One round: `push(std::string&&)` from each producer; `done` raised by the
// consumer side when it took the last entry.
template <class Push>
figures round(std::vector<std::vector<std::string>>& entries, Push push, flag& done) {
  flag start;
  std::vector<double> prod(entries.size(), 0.0);
  std::vector<std::thread> th;
  for (std::size_t i = 0; i < entries.size(); ++i)
    th.emplace_back([&, i] {
      start.wait();
      const double c0 = thread_cpu_s();
      for (auto& e : entries[i]) push(std::move(e));
      prod[i] = thread_cpu_s() - c0;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double c0 = process_cpu_s();
  const auto t0 = std::chrono::steady_clock::now();
  start.raise();
  done.wait();
  const auto t1 = std::chrono::steady_clock::now();
  const double c1 = process_cpu_s();
  for (auto& t : th) t.join();
  double p = 0;
  for (double x : prod) p += x;
  return {std::chrono::duration<double>(t1 - t0).count(), c1 - c0, p};
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const std::size_t producers = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  const std::size_t bytes = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 64;
  const std::size_t batch = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 1000;
  const std::string which = argc > 5 ? argv[5] : "batchq";
  const int rounds = argc > 6 ? std::atoi(argv[6]) : 5;
  const std::size_t per = n / producers;
  const std::size_t want = per * producers;

  std::vector<figures> all;
  for (int r = 0; r < rounds; ++r) {
    std::vector<std::vector<std::string>> entries(producers, std::vector<std::string>(per, std::string(bytes, 'x')));
    flag done;
    if (which == "moodycamel") {
      moodycamel::ConcurrentQueue<std::string> q;
      std::thread consumer([&] {
        std::vector<std::string> buf(1000);
        std::size_t seen = 0;
        while (seen < want) {
          const std::size_t k = q.try_dequeue_bulk(buf.begin(), buf.size());
          if (k == 0) {
            std::this_thread::yield();
            continue;
          }
          for (std::size_t i = 0; i < k; ++i) std::string().swap(buf[i]);
          seen += k;
        }
        done.raise();
      });
      all.push_back(round(entries, [&](std::string&& e) { q.enqueue(std::move(e)); }, done));
      consumer.join();
    } else {
      std::atomic<std::size_t> seen{0};
      batchq::batch_queue_options o;
      o.batch_max_size = batch;
      o.process_delay = std::chrono::milliseconds(0);
      o.flush_timeout = std::chrono::milliseconds(5);
      o.max_entries = 0;
      batchq::batch_queue_callbacks<std::string> cb;
      cb.process = [&](batchq::span<const std::string> b, const batchq::attempt_context&) {
        if (seen.fetch_add(b.size()) + b.size() == want) done.raise();
        return batchq::process_result::success();
      };
      batchq::batch_queue<std::string> q(o, cb);
      all.push_back(round(entries, [&](std::string&& e) { q.enqueue(std::move(e)); }, done));
      q.shutdown(std::chrono::seconds(5));
    }
  }
  // Median and minimum over the rounds: on a loaded machine the minimum is
  // the round the others disturbed least.
  auto stat = [&](double figures::*f, bool min) {
    std::vector<double> v;
    for (auto& x : all) v.push_back(x.*f * 1e9 / static_cast<double>(want));
    std::sort(v.begin(), v.end());
    return min ? v.front() : v[v.size() / 2];
  };
  std::printf("%s producers=%zu bytes=%zu (ns/entry, median/min of %d): wall %.1f/%.1f cpu %.1f/%.1f producers' cpu %.1f/%.1f\n",
              which.c_str(), producers, bytes, rounds, stat(&figures::wall, false), stat(&figures::wall, true),
              stat(&figures::cpu, false), stat(&figures::cpu, true), stat(&figures::prod, false), stat(&figures::prod, true));
  return 0;
}
