// bench_memory - case 5: resident memory while the endpoint is down and
// entries keep coming, against max_bytes.
//
//   bench_memory <queue_size> <max_bytes_MiB> <push|pull> [seconds=4] [rate=200000]
//
// An http_log (the object libbatchq.so wraps) sends to a port where nothing
// listens (connection refused: every attempt fails, Kong's backoff applies),
// with max_bytes set and overflow drop_oldest. One producer thread builds and
// enqueues 512-byte entries at `rate` per second for `seconds` - several times
// max_bytes - so the bound is hit early and the oldest entries are pushed out.
//  - push: an on_drop callback takes the dropped entries (a C/C++ host);
//  - pull: no callback, dropped entries wait in the pull buffer
//    (drop_buffer_bytes, 16 MiB by default, as the LuaJIT module / Kong plugin
//    use it) and the producer polls it every 100 ms, as the plugin's timer does.
// VmRSS of the whole process is sampled every 20 ms; the peak is reported
// next to max_bytes and the target 1.2 x max_bytes + 8 MiB (which includes
// the process's own baseline: the binary, libcurl, stacks). In pull mode the
// entry bytes waiting in the pull buffer at the peak sample are reported too
// (buffered_at_peak): the buffer holds up to drop_buffer_bytes by design.
// Output: one JSON object on stdout.
//
// BENCH_MEMORY_TRACE=1: a line per sample on stderr, and at the end where the
// memory was at the peak sample (queue figures, record_arena's blocks, glibc's
// mallinfo2); BENCH_MEMORY_MALLOC_INFO=1: glibc's malloc_info per arena at the
// end.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "batchq/http_log.hpp"
#include "record_arena.hpp"

#include <malloc.h>

namespace {

std::uint64_t rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  return 0;
}

// A port with nothing listening: bind without listen, keep it bound.
int dead_port(int& fd) {
  fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: bench_memory <queue_size> <max_bytes_MiB> <push|pull> [seconds] [rate]\n");
    return 2;
  }
  const std::size_t queue_size = std::strtoull(argv[1], nullptr, 10);
  const std::uint64_t max_bytes = std::strtoull(argv[2], nullptr, 10) << 20;
  const bool pull = std::strcmp(argv[3], "pull") == 0;
  const double seconds = argc > 4 ? std::atof(argv[4]) : 4.0;
  const double rate = argc > 5 ? std::atof(argv[5]) : 200000.0;
  const std::size_t entry_bytes = 512;

  int fd = -1;
  const int port = dead_port(fd);
  const std::uint64_t rss0 = rss_bytes();

  batchq::http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:" + std::to_string(port) + "/logs";
  o.queue.batch_max_size = queue_size;
  o.queue.max_entries = 0;  // bound by bytes only
  o.queue.max_bytes = max_bytes;
  o.queue.overflow = batchq::overflow_policy::drop_oldest;
  o.queue.shutdown_timeout = std::chrono::milliseconds(0);
  std::uint64_t dropped_seen = 0;
  batchq::http_log_callbacks cb;
  if (!pull) cb.on_drop = [&](batchq::span<std::string> lost, const batchq::drop_info&, bool) { dropped_seen += lost.size(); };
  std::uint64_t peak = 0;
  std::uint64_t sent = 0;
  std::uint64_t buffered_at_peak = 0;  // pull: entry bytes waiting in the pull buffer at the peak sample
  std::string at_peak;                 // BENCH_MEMORY_TRACE: where the memory is at the peak sample
  {
    batchq::http_log log(o, cb);
    if (std::getenv("BENCH_MEMORY_TRACE"))
      std::fprintf(stderr, "rss before the queue %.1f MiB, after making it %.1f MiB\n", rss0 / 1048576.0,
                   rss_bytes() / 1048576.0);
    std::string tmpl = "{\"bq_bench\":0,\"msg\":\"";
    while (tmpl.size() + 2 < entry_bytes) tmpl.push_back('x');
    tmpl += "\"}";
    std::vector<batchq::dropped_entry> polled;
    const auto t0 = std::chrono::steady_clock::now();
    auto next_sample = t0, next_poll = t0;
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      const double el = std::chrono::duration<double>(now - t0).count();
      if (el >= seconds) break;
      // Pace: enqueue up to rate * elapsed entries, in small bursts.
      const auto due = static_cast<std::uint64_t>(rate * el);
      for (int i = 0; i < 256 && sent < due; ++i, ++sent) log.enqueue(std::string(tmpl));
      if (now >= next_sample) {
        const std::uint64_t r = rss_bytes();
        // What the pull buffer holds at the peak: a row in pull mode is also
        // judged with those entry bytes counted (bench/results.md, case 5).
        if (r > peak && pull) buffered_at_peak = log.buffer_stats().drop_pending * entry_bytes;
        if (r > peak && std::getenv("BENCH_MEMORY_TRACE")) {
          const auto st = log.stats();
          const auto af = batchq::detail::record_arena::figures();
          const struct mallinfo2 mi = mallinfo2();
          char line[512];
          std::snprintf(line, sizeof line,
                        "peak t=%.2f rss=%.1f held=%.1f drop_pending=%.1f (%llu entries) pending=%llu | blocks %llu "
                        "= %.1f MiB (pooled %llu) | malloc in use %.1f free %.1f (heap %.1f, mmap %.1f) MiB | "
                        "pull buffer %.1f MiB\n",
                        el, r / 1048576.0, st.bytes_held / 1048576.0, st.drop_pending_bytes / 1048576.0,
                        (unsigned long long)st.drop_pending, (unsigned long long)st.pending,
                        (unsigned long long)af.blocks_live, af.bytes_live / 1048576.0,
                        (unsigned long long)af.blocks_pooled, mi.uordblks / 1048576.0, mi.fordblks / 1048576.0,
                        mi.arena / 1048576.0, mi.hblkhd / 1048576.0, buffered_at_peak / 1048576.0);
          at_peak = line;
        }
        peak = std::max(peak, r);
        if (std::getenv("BENCH_MEMORY_TRACE")) {
          const auto st = log.stats();
          std::fprintf(stderr, "t=%.2f rss=%.1fMiB held=%.1fMiB pending=%llu in_flight=%llu dropped=%llu\n", el,
                       r / 1048576.0, st.bytes_held / 1048576.0, (unsigned long long)st.pending,
                       (unsigned long long)st.in_flight, (unsigned long long)st.dropped_total());
        }
        next_sample = now + std::chrono::milliseconds(20);
      }
      if (pull && now >= next_poll) {
        polled.clear();
        while (log.poll_dropped(polled, 10000) == 10000) polled.clear();
        dropped_seen += polled.size();
        polled.clear();
        next_poll = now + std::chrono::milliseconds(100);
      }
      if (sent >= due) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (const std::uint64_t r = rss_bytes(); r > peak) {
      peak = r;
      if (pull) buffered_at_peak = log.buffer_stats().drop_pending * entry_bytes;
    }
    if (!at_peak.empty()) std::fputs(at_peak.c_str(), stderr);
    if (std::getenv("BENCH_MEMORY_MALLOC_INFO")) malloc_info(0, stderr);
    const auto st = log.stats();
    std::printf("{\"queue_size\":%zu,\"mode\":\"%s\",\"max_bytes\":%llu,\"entries_sent\":%llu,\"bytes_held\":%llu,"
                "\"dropped\":%llu,\"rss_baseline\":%llu,\"rss_peak\":%llu,\"target\":%llu,\"buffered_at_peak\":%llu}\n",
                queue_size, pull ? "pull" : "push", (unsigned long long)max_bytes, (unsigned long long)sent,
                (unsigned long long)st.bytes_held, (unsigned long long)st.dropped_total(),
                (unsigned long long)rss0, (unsigned long long)peak,
                (unsigned long long)(max_bytes + max_bytes / 5 + (8ull << 20)), (unsigned long long)buffered_at_peak);
  }
  ::close(fd);
  return 0;
}
