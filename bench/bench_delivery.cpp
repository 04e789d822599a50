// bench_delivery - case 3: end-to-end delivery through batchq::http_log (the
// object libbatchq.so wraps) to a loopback receiver, against raw libcurl
// building and posting the same bodies to the same receiver.
//
//   bench_delivery [--json FILE] [--quick] [--batch N]
//                  [--side batchq|raw|batchq-prebuilt|raw-prebuilt]
//
// For each batch size B in {1, 100, 1000}, four peers back to back per round
// (a warm-up round, then 5 counted; medians reported, ratios taken within a
// round), all against the same receiver:
//  - batchq: one producer thread makes N entries (512 B JSON, each with a
//    marker field) one by one and enqueues each into an http_log with
//    queue_size B, process_delay 0, unbounded; the clock runs from the first
//    entry made until stats() shows every entry delivered (answered 200).
//  - raw libcurl: one thread, one easy handle (keep-alive, TCP_NODELAY, no
//    Expect: 100-continue, as our sender) makes each batch's B entries, builds
//    the body from them in the very same format (B == 1: the entry; else
//    [e1,...,eB]) and posts it. This is what one connection can carry with the
//    same work done: batchq sends on one connection too (concurrency 1).
//  - the same two with every entry (and every raw body) made before the clock
//    starts: the earlier method, kept for comparison. It read n * 512 B of
//    memory long evicted from the caches inside batchq's clock (enqueue reads
//    each entry), and left the body building out of raw libcurl's.
// entries/s = N / time. CPU time inside each timed region is split into the
// calling thread (batchq: the producer; raw: the poster), the receiver's
// threads and the rest of the process (batchq: the queue's worker, which
// takes the batches and sends them). The receiver
// (bench/support/mini_receiver.hpp) counts the markers: every figure is
// checked against it (a run that lost entries is reported).
//
// Profiling the timed regions only: mkfifo ctl; BENCH_PERF_CTL=ctl perf record
// -D -1 --control=fifo:ctl ... bench_delivery --batch 1000 --side batchq.
// (A lone side's heap starts each round small: run the sides together for
// figures.)
#include <curl/curl.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "batchq/http_log.hpp"
#include "batchq/payload.hpp"
#include "support/mini_receiver.hpp"

namespace {

using clk = std::chrono::steady_clock;
const char* const kMarker = "\"bq_bench\"";

std::string make_entry(std::size_t i, std::size_t bytes) {
  std::string s = "{\"bq_bench\":" + std::to_string(i) + ",\"msg\":\"";
  if (s.size() + 2 < bytes) s.append(bytes - 2 - s.size(), 'x');
  s += "\"}";
  return s;
}

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

struct result {
  double eps = 0;            // entries per second
  double enqueue_share = 0;  // batchq: part of the time the producer spent enqueueing
  bool complete = false;
  // CPU time inside the timed region, ns per entry: the calling thread (batchq:
  // the producer, enqueueing and then polling; raw: the thread posting), the
  // receiver's threads, and every other thread of the process (batchq: the
  // queue's worker, which builds and sends the requests; raw: none).
  double cpu_main = 0, cpu_rx = 0, cpu_other = 0;
};

// Profiling: with BENCH_PERF_CTL naming perf's control fifo (perf record
// -D -1 --control=fifo:FILE), only the timed regions are recorded.
void perf_ctl(const char* cmd) {
  static const char* const path = std::getenv("BENCH_PERF_CTL");
  if (!path) return;
  std::ofstream(path) << cmd << "\n" << std::flush;
}

std::uint64_t ns_of(const timeval& t) {
  return static_cast<std::uint64_t>(t.tv_sec) * 1000000000u + static_cast<std::uint64_t>(t.tv_usec) * 1000u;
}

// CPU time of the process, of the calling thread and of the receiver.
struct cpu_mark {
  std::uint64_t process = 0, thread = 0, rx = 0;
  static cpu_mark now(const bench::mini_receiver& rx, const char* perf_cmd) {
    if (*perf_cmd == 'd') perf_ctl(perf_cmd);
    cpu_mark m;
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    m.process = ns_of(ru.ru_utime) + ns_of(ru.ru_stime);
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    m.thread = static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
    m.rx = rx.cpu_ns();
    if (*perf_cmd == 'e') perf_ctl(perf_cmd);
    return m;
  }
};

void account(result& r, const cpu_mark& a, const cpu_mark& b, std::size_t n) {
  const double main_ns = double(b.thread - a.thread), rx_ns = double(b.rx - a.rx);
  const double all_ns = double(b.process - a.process);
  r.cpu_main = main_ns / double(n);
  r.cpu_rx = rx_ns / double(n);
  r.cpu_other = std::max(0.0, all_ns - main_ns - rx_ns) / double(n);
}

// prebuilt: all n entries are made before the clock starts and enqueued from
// memory long cold (n * 512 B is far larger than the caches); otherwise each
// entry is made inside the timed loop just before it is enqueued, as a
// program's log line is.
result run_batchq(bench::mini_receiver& rx, std::size_t batch, std::size_t n, std::size_t bytes, bool prebuilt) {
  std::vector<std::string> entries;
  if (prebuilt) {
    entries.reserve(n);
    for (std::size_t i = 0; i < n; ++i) entries.push_back(make_entry(i, bytes));
  }
  batchq::http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:" + std::to_string(rx.port()) + "/logs";
  o.queue.batch_max_size = batch;
  o.queue.process_delay = std::chrono::milliseconds(0);
  o.queue.flush_timeout = std::chrono::milliseconds(100);
  o.queue.max_entries = 0;  // unbounded: nothing dropped, we measure delivery
  const std::uint64_t before = rx.markers();
  batchq::http_log log(o);
  const cpu_mark c0 = cpu_mark::now(rx, "enable");
  const auto t0 = clk::now();
  if (prebuilt) {
    for (auto& e : entries) log.enqueue(std::move(e));
  } else {
    for (std::size_t i = 0; i < n; ++i) log.enqueue(make_entry(i, bytes));
  }
  const auto t_enq = clk::now();
  // Completion is detected by polling stats() every 2 ms rather than with
  // flush(): a thread waiting in flush() is woken after every finished batch
  // (a cost that exists only while someone flushes, never in steady
  // operation); a partial last batch is closed by flush_timeout (100 ms),
  // which only matters when n is not a multiple of the batch size (it is).
  bool ok = false;
  for (;;) {
    const auto st = log.stats();
    if (st.delivered + st.dropped_total() >= n) {
      ok = st.delivered == n;
      break;
    }
    if (clk::now() - t0 > std::chrono::seconds(120)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto t1 = clk::now();
  const cpu_mark c1 = cpu_mark::now(rx, "disable");
  result r;
  account(r, c0, c1, n);
  r.eps = double(n) / std::chrono::duration<double>(t1 - t0).count();
  r.enqueue_share = std::chrono::duration<double>(t_enq - t0).count() / std::chrono::duration<double>(t1 - t0).count();
  r.complete = ok && rx.markers() - before == n;
  return r;
}

// prebuilt: every body is built before the clock starts from entries made
// before it too (the transport alone). Otherwise each entry is made inside
// the timed loop and each body built from its entries just before it is
// posted, as a program posting with libcurl itself must do: the same work
// batchq's side does (make each entry, hand it over, get it delivered).
result run_curl(bench::mini_receiver& rx, std::size_t batch, std::size_t n, std::size_t bytes, bool prebuilt) {
  std::vector<std::string> bodies;
  if (prebuilt) {
    std::vector<std::string> entries;
    entries.reserve(n);
    for (std::size_t i = 0; i < n; ++i) entries.push_back(make_entry(i, bytes));
    for (std::size_t i = 0; i < n; i += batch) {
      const std::size_t k = std::min(batch, n - i);
      bodies.push_back(batchq::build_payload(batchq::span<const std::string>(entries.data() + i, k),
                                             batchq::payload_format::kong));
    }
  }
  const std::uint64_t before = rx.markers();
  const std::string url = "http://127.0.0.1:" + std::to_string(rx.port()) + "/logs";
  CURL* h = curl_easy_init();
  curl_slist* hdrs = nullptr;
  hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  hdrs = curl_slist_append(hdrs, "Expect:");
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  bool all_ok = true;
  auto post = [&](const std::string& b) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, b.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(b.size()));
    long code = 0;
    if (curl_easy_perform(h) != CURLE_OK) all_ok = false;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) all_ok = false;
  };
  std::string body;                  // reused, as a sender would
  std::vector<std::string> pending;  // one batch's entries
  const cpu_mark c0 = cpu_mark::now(rx, "enable");
  const auto t0 = clk::now();
  if (prebuilt) {
    for (const auto& b : bodies) post(b);
  } else {
    for (std::size_t i = 0; i < n; i += batch) {
      const std::size_t k = std::min(batch, n - i);
      pending.clear();
      for (std::size_t j = 0; j < k; ++j) pending.push_back(make_entry(i + j, bytes));
      batchq::build_payload(batchq::span<const std::string>(pending.data(), k), batchq::payload_format::kong, body);
      post(body);
    }
  }
  const auto t1 = clk::now();
  const cpu_mark c1 = cpu_mark::now(rx, "disable");
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  result r;
  account(r, c0, c1, n);
  r.eps = double(n) / std::chrono::duration<double>(t1 - t0).count();
  r.complete = all_ok && rx.markers() - before == n;
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_file;
  bool quick = false;
  std::size_t only_batch = 0;  // --batch N: that batch size only (for profiling)
  std::string only_side;       // --side batchq|raw: that peer only (for profiling)
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_file = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--batch") && i + 1 < argc) only_batch = std::strtoull(argv[++i], nullptr, 10);
    else if (!std::strcmp(argv[i], "--side") && i + 1 < argc) only_side = argv[++i];
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const std::size_t bytes = 512;
  std::string json = "[";
  {
    bench::mini_receiver rx(kMarker);
    for (std::size_t batch : {std::size_t{1}, std::size_t{100}, std::size_t{1000}}) {
      if (only_batch && batch != only_batch) continue;
      // Enough entries for ~0.3-1 s per run on this machine.
      std::size_t n = batch == 1 ? 5000 : batch == 100 ? 100000 : 200000;
      if (quick) n /= 5;
      // Per peer: entries/s and CPU per entry of each round; ratios are taken
      // within a round (the peers run back to back) and their median reported.
      struct series {
        std::vector<double> eps, main, rx, other;
        void add(const result& r) {
          eps.push_back(r.eps);
          main.push_back(r.cpu_main);
          rx.push_back(r.cpu_rx);
          other.push_back(r.cpu_other);
        }
      };
      series bq, raw, bq_pre, pre;
      std::vector<double> share, ratio, ratio_pre;
      bool complete = true;
      const result none{1, 0, true};
      // Round 0 is a warm-up, not counted: the process's heap, libcurl and the
      // receiver's connection threads are set up once for every peer.
      for (int round = 0; round < 6; ++round) {
        auto want = [&](const char* side) { return only_side.empty() || only_side == side; };
        const result a = want("batchq") ? run_batchq(rx, batch, n, bytes, false) : none;
        const result b = want("raw") ? run_curl(rx, batch, n, bytes, false) : none;
        const result c = want("batchq-prebuilt") ? run_batchq(rx, batch, n, bytes, true) : none;
        const result d = want("raw-prebuilt") ? run_curl(rx, batch, n, bytes, true) : none;
        complete = complete && a.complete && b.complete && c.complete && d.complete;
        if (round == 0) continue;
        bq.add(a);
        raw.add(b);
        bq_pre.add(c);
        pre.add(d);
        share.push_back(a.enqueue_share);
        ratio.push_back(a.eps / b.eps);
        ratio_pre.push_back(c.eps / d.eps);
      }
      std::printf("delivery batch=%-5zu entries=%-7zu batchq %10.0f entries/s   raw libcurl %10.0f entries/s   "
                  "ratio %.2f   (producer enqueueing during %.0f%% of batchq's time)%s\n"
                  "  entries and bodies made before the clock: batchq %10.0f entries/s   raw libcurl %10.0f "
                  "entries/s   ratio %.2f\n",
                  batch, n, median(bq.eps), median(raw.eps), median(ratio),
                  100 * median(share), complete ? "" : "   (INCOMPLETE: entries missing!)", median(bq_pre.eps),
                  median(pre.eps), median(ratio_pre));
      auto cpu = [](const char* name, const series& x) {
        std::printf("  CPU ns/entry, median: %-28s calling thread %4.0f + other threads %4.0f + receiver %4.0f = %4.0f\n",
                    name, median(x.main), median(x.other), median(x.rx), median(x.main) + median(x.other) + median(x.rx));
      };
      cpu("batchq", bq);
      cpu("raw libcurl", raw);
      cpu("batchq, entries prebuilt", bq_pre);
      cpu("raw libcurl, bodies prebuilt", pre);
      std::fflush(stdout);
      if (json.size() > 1) json += ",";
      json += "{\"batch\":" + std::to_string(batch) + ",\"entries\":" + std::to_string(n) +
              ",\"entry_bytes\":" + std::to_string(bytes) + ",\"batchq_eps\":" + std::to_string(median(bq.eps)) +
              ",\"curl_eps\":" + std::to_string(median(raw.eps)) + ",\"ratio\":" + std::to_string(median(ratio)) +
              ",\"batchq_prebuilt_eps\":" + std::to_string(median(bq_pre.eps)) +
              ",\"curl_prebuilt_eps\":" + std::to_string(median(pre.eps)) +
              ",\"ratio_prebuilt\":" + std::to_string(median(ratio_pre)) +
              ",\"cpu_ns\":{\"batchq\":[" + std::to_string(median(bq.main)) + "," + std::to_string(median(bq.other)) +
              "," + std::to_string(median(bq.rx)) + "],\"curl\":[" + std::to_string(median(raw.main)) + "," +
              std::to_string(median(raw.other)) + "," + std::to_string(median(raw.rx)) + "],\"curl_prebuilt\":[" +
              std::to_string(median(pre.main)) + "," + std::to_string(median(pre.other)) + "," +
              std::to_string(median(pre.rx)) + "]}" +
              ",\"enqueue_share\":" + std::to_string(median(share)) + ",\"complete\":" + (complete ? "true" : "false") + "}";
    }
  }
  json += "]\n";
  if (!json_file.empty()) std::ofstream(json_file) << json;
  curl_global_cleanup();
  return 0;
}
