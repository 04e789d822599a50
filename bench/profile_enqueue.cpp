// profile_enqueue - a plain enqueue loop for profilers (perf, callgrind) and
// for CPU-time comparisons on a loaded machine. Not part of the table.
//
//   profile_enqueue [entries=1000000] [producers=1] [bytes=64] [batch_max_size=1000]
//                   [queue=batchq|moodycamel] [rounds=5] [each]
//
// Each round builds the entries first (not measured), releases the
// producers together and ends when the consumer has taken the last entry
// (batch_queue: its worker delivering batches to a counting callback;
// moodycamel: one thread calling try_dequeue_bulk(1000) and yielding when
// empty, as bench_enqueue does). Per entry, median and minimum over the rounds:
//   wall   the round's wall time,
//   cpu    the whole process's CPU time in the round (every thread),
//   prod   the producer threads' own CPU time (CLOCK_THREAD_CPUTIME_ID),
//   cons   the consumer side's CPU time: every other thread of the process
//          but the measuring one (batch_queue's worker and reporter;
//          moodycamel's consumer), from /proc/self/task/*/schedstat,
// and (batch_queue) how many batches were delivered short of batch_max_size
// (closed by the flush timer when a thread stalled for flush_timeout; the
// last producer ends the stream with flush(0), as bench_enqueue does),
// CPU time is what to compare when other processes share the machine.
// With a 7th argument `each`, one line per round as well: its wall time and
// CPU per entry and the context switches of the round's threads (all but the
// measuring one), voluntary (a thread that blocked: a futex wait on the lock
// or the worker's condition variable) and involuntary (preempted, or a
// yield that gave the CPU away: Linux counts a task that yields as still
// runnable), from /proc/self/task/*/status: what tells a slow round from a
// fast one.
//
// Each line also says how often the consumer side ran on a CPU where a
// producer was running: producers note their CPU (sched_getcpu, once per 256
// pushes, for both queues) and forget it when done; the consumer side
// compares its own at every batch it takes while a producer is still pushing
// (batch_queue: each delivered batch; moodycamel: each non-empty bulk
// dequeue). The summary line counts the rounds in which that was most of
// the time, with their median wall time apart: on a 2-CPU machine such a
// round runs on one CPU while the other idles (the scheduler's placement),
// and how much it slows down depends on the queue.
//
// Threads are named for `perf report --sort comm,sym`: "producer", "consumer"
// (moodycamel's consumer; batch_queue's worker and reporter inherit it from
// the measuring thread, which carries that name while it constructs the
// queue) and "setup" (the measuring thread, which builds the entries).
#include <dirent.h>
#include <sched.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
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

// Per thread of this process, by thread id (Linux): run time (ns, from
// schedstat) and context switches, voluntary and involuntary (from status).
struct task_figures {
  double run_ns = 0, vol = 0, invol = 0;
};
std::map<long, task_figures> task_stats() {
  std::map<long, task_figures> m;
  DIR* d = opendir("/proc/self/task");
  if (!d) return m;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string dir = std::string("/proc/self/task/") + e->d_name;
    task_figures& t = m[std::atol(e->d_name)];
    if (FILE* f = std::fopen((dir + "/schedstat").c_str(), "r")) {
      unsigned long long run = 0;
      if (std::fscanf(f, "%llu", &run) == 1) t.run_ns = static_cast<double>(run);
      std::fclose(f);
    }
    if (FILE* f = std::fopen((dir + "/status").c_str(), "r")) {
      char line[256];
      unsigned long long v = 0;
      while (std::fgets(line, sizeof line, f)) {
        if (std::sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1) t.vol = static_cast<double>(v);
        if (std::sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1) t.invol = static_cast<double>(v);
      }
      std::fclose(f);
    }
  }
  closedir(d);
  return m;
}

// The calling thread's name (threads created later inherit it).
void name_thread(const char* name) {
  (void)pthread_setname_np(pthread_self(), name);
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
  double wall, cpu, prod, cons, partial, vol, invol;
  double shared = 0, looks = 0;  // consumer-side looks made on a producer's CPU, and all of them
};

// Where the producers last ran (sched_getcpu, -1 before their first note)
// and the consumer side's looks at it (see the header).
struct placement {
  std::vector<std::atomic<int>> producer_cpu;
  std::atomic<std::size_t> shared{0}, looks{0};
  explicit placement(std::size_t producers) : producer_cpu(producers) {
    for (auto& c : producer_cpu) c.store(-1, std::memory_order_relaxed);
  }
  // Counts only while a producer is still pushing (a producer that is done
  // sets its slot back to -1).
  void consumer_look() {
    const int mine = sched_getcpu();
    bool same = false, any = false;
    for (const auto& c : producer_cpu) {
      const int cpu = c.load(std::memory_order_relaxed);
      any = any || cpu >= 0;
      same = same || cpu == mine;
    }
    if (!any) return;
    if (same) shared.fetch_add(1, std::memory_order_relaxed);
    looks.fetch_add(1, std::memory_order_relaxed);
  }
};

// One round: `push(std::string&&)` from each producer; `done` raised by the
// consumer side when it took the last entry.
template <class Push, class End>
figures round(std::vector<std::vector<std::string>>& entries, Push push, End end, flag& done, placement& where) {
  flag start;
  std::atomic<std::size_t> running{entries.size()};
  std::vector<double> prod(entries.size(), 0.0);
  std::vector<long> prod_tid(entries.size(), 0);
  std::vector<std::thread> th;
  for (std::size_t i = 0; i < entries.size(); ++i)
    th.emplace_back([&, i] {
      prod_tid[i] = static_cast<long>(::syscall(SYS_gettid));
      name_thread("producer");
      start.wait();
      const double c0 = thread_cpu_s();
      std::size_t k = 0;
      for (auto& e : entries[i]) {
        if ((k++ & 255) == 0) where.producer_cpu[i].store(sched_getcpu(), std::memory_order_relaxed);
        push(std::move(e));
      }
      where.producer_cpu[i].store(-1, std::memory_order_relaxed);
      prod[i] = thread_cpu_s() - c0;
      if (running.fetch_sub(1, std::memory_order_acq_rel) == 1) end();  // as bench_enqueue does
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto k0 = task_stats();
  const double c0 = process_cpu_s();
  const auto t0 = std::chrono::steady_clock::now();
  start.raise();
  done.wait();
  const auto t1 = std::chrono::steady_clock::now();
  const double c1 = process_cpu_s();
  const auto k1 = task_stats();
  for (auto& t : th) t.join();
  double p = 0;
  for (double x : prod) p += x;
  // Every thread but this one: its context switches in the round; the
  // consumer side's CPU is that of the threads that are not producers.
  double cons = 0, vol = 0, invol = 0;
  const long self = static_cast<long>(::syscall(SYS_gettid));
  for (const auto& [tid, now] : k1) {
    if (tid == self) continue;
    const auto it = k0.find(tid);
    const task_figures before = it == k0.end() ? task_figures{} : it->second;
    vol += now.vol - before.vol;
    invol += now.invol - before.invol;
    if (std::find(prod_tid.begin(), prod_tid.end(), tid) == prod_tid.end()) cons += (now.run_ns - before.run_ns) / 1e9;
  }
  return {std::chrono::duration<double>(t1 - t0).count(),
          c1 - c0,
          p,
          cons,
          0,
          vol,
          invol,
          static_cast<double>(where.shared.load()),
          static_cast<double>(where.looks.load())};
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const std::size_t producers = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  const std::size_t bytes = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 64;
  const std::size_t batch = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 1000;
  const std::string which = argc > 5 ? argv[5] : "batchq";
  const int rounds = argc > 6 ? std::atoi(argv[6]) : 5;
  const bool each = argc > 7 && std::string(argv[7]) == "each";
  const std::size_t per = n / producers;
  const std::size_t want = per * producers;

  name_thread("setup");
  std::vector<figures> all;
  for (int r = 0; r < rounds; ++r) {
    std::vector<std::vector<std::string>> entries(producers, std::vector<std::string>(per, std::string(bytes, 'x')));
    flag done;
    placement where(producers);
    if (which == "moodycamel") {
      flag finished;
      moodycamel::ConcurrentQueue<std::string> q;
      std::thread consumer([&] {
        name_thread("consumer");
        std::vector<std::string> buf(1000);
        std::size_t seen = 0;
        while (seen < want) {
          const std::size_t k = q.try_dequeue_bulk(buf.begin(), buf.size());
          if (k == 0) {
            std::this_thread::yield();
            continue;
          }
          where.consumer_look();
          for (std::size_t i = 0; i < k; ++i) std::string().swap(buf[i]);
          seen += k;
        }
        done.raise();
        finished.wait();  // alive until round() has read its run time
      });
      all.push_back(round(entries, [&](std::string&& e) { q.enqueue(std::move(e)); }, [] {}, done, where));
      finished.raise();
      consumer.join();
    } else {
      std::atomic<std::size_t> seen{0};
      std::atomic<std::size_t> partial{0};
      batchq::batch_queue_options o;
      o.batch_max_size = batch;
      o.process_delay = std::chrono::milliseconds(0);
      o.flush_timeout = std::chrono::milliseconds(5);
      o.max_entries = 0;
      batchq::batch_queue_callbacks<std::string> cb;
      cb.process = [&](batchq::span<const std::string> b, const batchq::attempt_context&) {
        where.consumer_look();
        if (b.size() < batch) partial.fetch_add(1, std::memory_order_relaxed);
        if (seen.fetch_add(b.size()) + b.size() == want) done.raise();
        return batchq::process_result::success();
      };
      name_thread("consumer");  // the queue's threads inherit it
      batchq::batch_queue<std::string> q(o, cb);
      name_thread("setup");
      all.push_back(round(
          entries, [&](std::string&& e) { q.enqueue(std::move(e)); }, [&] { q.flush(std::chrono::milliseconds(0)); },
          done, where));
      all.back().partial = static_cast<double>(partial.load());
      q.shutdown(std::chrono::seconds(5));
    }
    if (each) {
      const figures& f = all.back();
      const double per = 1e9 / static_cast<double>(want);
      std::printf(
          "round %d: wall %.1f cpu %.1f producers' cpu %.1f consumer's cpu %.1f ns/entry; context switches: "
          "%.0f voluntary, %.0f involuntary; short batches %.0f; consumer on a producer's CPU %.0f of %.0f looks\n",
          r, f.wall * per, f.cpu * per, f.prod * per, f.cons * per, f.vol, f.invol, f.partial, f.shared, f.looks);
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
  double partial = 0;
  for (auto& x : all) partial += x.partial;
  std::printf(
      "%s producers=%zu bytes=%zu (ns/entry, median/min of %d): wall %.1f/%.1f cpu %.1f/%.1f producers' cpu "
      "%.1f/%.1f consumer's cpu %.1f/%.1f; batches short of batch_max_size: %.0f in all rounds\n",
      which.c_str(), producers, bytes, rounds, stat(&figures::wall, false), stat(&figures::wall, true),
      stat(&figures::cpu, false), stat(&figures::cpu, true), stat(&figures::prod, false), stat(&figures::prod, true),
      stat(&figures::cons, false), stat(&figures::cons, true), partial);
  // Rounds in which the consumer side mostly ran on a producer's CPU, apart.
  std::vector<double> shared_wall, apart_wall;
  for (auto& x : all)
    (x.looks > 0 && 2 * x.shared > x.looks ? shared_wall : apart_wall)
        .push_back(x.wall * 1e9 / static_cast<double>(want));
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf(
      "%s: %zu of %d rounds with the consumer side mostly on a producer's CPU (median wall %.1f ns/entry), %zu "
      "apart (median wall %.1f)\n",
      which.c_str(), shared_wall.size(), rounds, median(shared_wall), apart_wall.size(), median(apart_wall));
  return 0;
}
