// tests/soak/hostile_soak.cpp - producers as fast as they can go through
// batchq::http_log against a hostile receiver, sampling RSS (issue 12).
//
//   batchq_hostile_soak [--seconds N] [--rss-allowance-mib N]
//   environment: HOSTILE_SOAK_SECONDS (the flag wins)
//
// The receiver (a raw loopback server) cycles through four phases of
// seconds/4 each: "hang" (reads the request, never answers), "drip" (a
// response header, then one body byte per second), "endless" (Content-Length
// of 1 GiB, body bytes forever) and "reset" (RST on every request). The
// request timeout is 60 s, so the worker stays stuck in one send per phase
// while 2 producers push 1 KiB entries without pause, and a poller drains
// the drop buffer every 100 ms, as the Kong plugin's timer does.
//
// Bound checked on every sample (every 100 ms):
//   RSS <= RSS before producing + max_bytes (16 MiB) + max_drop_pending_bytes
//          (4 MiB) + drop_buffer_bytes (16 MiB) + allowance (default 64 MiB:
//          malloc's per-thread arenas keep freed chunks; measured figures are
//          in the summary line)
// and stats stay balanced. Prints "hostile_soak: ..." and exits 0, or 1.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "batchq/http_log.hpp"
#include "support/raw_server.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define BATCHQ_SOAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BATCHQ_SOAK_ASAN 1
#endif
#endif

using namespace std::chrono_literals;

namespace {

long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

std::atomic<int> phase{0};  // 0 hang, 1 drip, 2 endless, 3 reset
std::atomic<bool> done{false};

void hostile(batchq::test::raw_connection& c) {
  batchq::test::raw_request req;
  while (!done.load() && c.read_request(req, 1000ms)) {
    const int p = phase.load();
    if (p == 3) {
      c.reset();
      return;
    }
    if (p == 1) {
      if (!c.write("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")) return;
    } else if (p == 2) {
      if (!c.write("HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")) return;
    }
    // Hang / drip / endless until the phase changes or the test ends.
    const int mine = p;
    while (!done.load() && phase.load() == mine) {
      if (mine == 2 && !c.write(std::string(1024, 'z'))) return;
      if (mine == 1 && !c.write("z")) return;
      std::this_thread::sleep_for(mine == 1 ? 1000ms : 10ms);
    }
    return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 40, allowance_mib = 64;
  if (const char* e = std::getenv("HOSTILE_SOAK_SECONDS")) seconds = std::atof(e);
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (k == "--seconds") seconds = v;
    else if (k == "--rss-allowance-mib") allowance_mib = v;
  }
  batchq::test::raw_server srv(hostile);
  batchq::http_log_options o;
  o.http.http_endpoint = srv.url("/");
  o.http.timeout = 60000ms;
  o.queue.batch_max_size = 100;
  o.queue.max_entries = 0;
  o.queue.max_bytes = std::size_t{16} << 20;
  o.queue.shutdown_timeout = 1000ms;
  const std::string entry = "{\"pad\":\"" + std::string(1000, 'x') + "\"}";
  const double bound_mib = (o.queue.max_bytes + o.queue.max_drop_pending_bytes + o.drop_buffer_bytes) / 1048576.0 +
                           allowance_mib;
  std::uint64_t produced = 0, polled = 0;
  long base = 0, peak = 0;
  long phase_peak[4] = {0, 0, 0, 0};
  bool balanced = true, over = false;
  {
    batchq::http_log log(o);
    base = rss_kib();
    std::atomic<std::uint64_t> n{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < 2; ++t)
      producers.emplace_back([&] {
        while (!done.load()) {
          log.enqueue(entry);
          n.fetch_add(1, std::memory_order_relaxed);
        }
      });
    std::vector<batchq::dropped_entry> got;
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
    while (std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(100ms);
      const double f = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / seconds;
      phase.store(std::min(3, static_cast<int>(f * 4)));
      got.clear();
      polled += log.poll_dropped(got, 1000000);
      got.clear();
      got.shrink_to_fit();
      const long r = rss_kib();
      peak = std::max(peak, r);
      phase_peak[phase.load()] = std::max(phase_peak[phase.load()], r);
      if ((r - base) / 1024.0 > bound_mib) over = true;
#if !defined(BATCHQ_SOAK_ASAN)
      if (over) break;  // fail fast: do not take the machine's memory
#endif
      balanced = balanced && log.stats().balanced();
    }
    done.store(true);
    for (auto& p : producers) p.join();
    produced = n.load();
    log.shutdown(0ms);
    const batchq::queue_stats s = log.stats();
    std::printf("hostile_soak: %.0f s, %llu entries (%.0f MB) pushed, %llu dropped (%llu polled, %llu unreported), "
                "RSS before %.1f MiB, peak %.1f MiB (+%.1f MiB), bound +%.1f MiB%s, balanced %s\n",
                seconds, static_cast<unsigned long long>(produced), produced * entry.size() / 1e6,
                static_cast<unsigned long long>(s.dropped_total()), static_cast<unsigned long long>(polled),
                static_cast<unsigned long long>(s.drops_unreported), base / 1024.0, peak / 1024.0,
                (peak - base) / 1024.0, bound_mib,
#if defined(BATCHQ_SOAK_ASAN)
                " (ASan: printed only)",
#else
                "",
#endif
                balanced ? "yes" : "NO");
    std::printf("hostile_soak: peak RSS growth by phase (MiB): hang %.1f, drip %.1f, endless %.1f, reset %.1f\n",
                (phase_peak[0] - base) / 1024.0, (phase_peak[1] - base) / 1024.0, (phase_peak[2] - base) / 1024.0,
                (phase_peak[3] - base) / 1024.0);
    if (s.enqueued != produced) balanced = false;
  }
#if defined(BATCHQ_SOAK_ASAN)
  over = false;
#endif
  if (over) std::printf("hostile_soak: FAILED: RSS grew past the bound\n");
  if (!balanced) std::printf("hostile_soak: FAILED: stats not balanced\n");
  return over || !balanced ? 1 : 0;
}
