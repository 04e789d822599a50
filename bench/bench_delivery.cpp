// bench_delivery - case 3: end-to-end delivery through batchq::http_log (the
// object libbatchq.so wraps) to a loopback receiver, against raw libcurl
// posting the same payloads to the same receiver (the transport limit).
//
//   bench_delivery [--json FILE] [--quick] [--batch N]
//
// For each batch size B in {1, 100, 1000}:
//  - batchq: one producer thread enqueues N pre-built entries (512 B JSON, each
//    with a marker field) into an http_log with queue_size B, process_delay 0,
//    unbounded; the clock runs from the first enqueue until stats() shows
//    every entry delivered (answered 200). entries/s = N / time. The enqueue
//    work runs inside the timed region, concurrently with the sending.
//  - raw libcurl: one thread, one easy handle (keep-alive, TCP_NODELAY, no
//    Expect: 100-continue, as our sender), posting N/B bodies built before the
//    clock starts in the very same format (B == 1: the entry; else
//    [e1,...,eB]). entries/s = N / time. This is what one connection can carry:
//    batchq sends on one connection too (concurrency 1).
// The receiver (bench/support/mini_receiver.hpp) counts the markers: both
// figures are checked against it (a run that lost entries is reported).
// The two peers alternate, 5 rounds, and the median of each is reported.
#include <curl/curl.h>

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
};

result run_batchq(bench::mini_receiver& rx, std::size_t batch, std::size_t n, std::size_t bytes) {
  std::vector<std::string> entries;
  entries.reserve(n);
  for (std::size_t i = 0; i < n; ++i) entries.push_back(make_entry(i, bytes));
  batchq::http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:" + std::to_string(rx.port()) + "/logs";
  o.queue.batch_max_size = batch;
  o.queue.process_delay = std::chrono::milliseconds(0);
  o.queue.flush_timeout = std::chrono::milliseconds(100);
  o.queue.max_entries = 0;  // unbounded: nothing dropped, we measure delivery
  const std::uint64_t before = rx.markers();
  batchq::http_log log(o);
  const auto t0 = clk::now();
  for (auto& e : entries) log.enqueue(std::move(e));
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
  result r;
  r.eps = double(n) / std::chrono::duration<double>(t1 - t0).count();
  r.enqueue_share = std::chrono::duration<double>(t_enq - t0).count() / std::chrono::duration<double>(t1 - t0).count();
  r.complete = ok && rx.markers() - before == n;
  return r;
}

result run_curl(bench::mini_receiver& rx, std::size_t batch, std::size_t n, std::size_t bytes) {
  std::vector<std::string> entries;
  entries.reserve(n);
  for (std::size_t i = 0; i < n; ++i) entries.push_back(make_entry(i, bytes));
  std::vector<std::string> bodies;
  for (std::size_t i = 0; i < n; i += batch) {
    const std::size_t k = std::min(batch, n - i);
    bodies.push_back(batchq::build_payload(batchq::span<const std::string>(entries.data() + i, k),
                                           batchq::payload_format::kong));
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
  const auto t0 = clk::now();
  for (const auto& b : bodies) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, b.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(b.size()));
    long code = 0;
    if (curl_easy_perform(h) != CURLE_OK) all_ok = false;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) all_ok = false;
  }
  const auto t1 = clk::now();
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  result r;
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
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_file = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--batch") && i + 1 < argc) only_batch = std::strtoull(argv[++i], nullptr, 10);
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
      std::vector<double> bq, raw, share;
      bool complete = true;
      for (int round = 0; round < 5; ++round) {
        result a = run_batchq(rx, batch, n, bytes);
        result b = run_curl(rx, batch, n, bytes);
        complete = complete && a.complete && b.complete;
        bq.push_back(a.eps);
        share.push_back(a.enqueue_share);
        raw.push_back(b.eps);
      }
      const double mb = median(bq), mr = median(raw);
      std::printf("delivery batch=%-5zu entries=%-7zu batchq %10.0f entries/s   raw libcurl %10.0f entries/s   "
                  "ratio %.2f   (producer enqueueing during %.0f%% of batchq's time)%s\n",
                  batch, n, mb, mr, mb / mr, 100 * median(share), complete ? "" : "   (INCOMPLETE: entries missing!)");
      std::fflush(stdout);
      if (json.size() > 1) json += ",";
      json += "{\"batch\":" + std::to_string(batch) + ",\"entries\":" + std::to_string(n) +
              ",\"entry_bytes\":" + std::to_string(bytes) + ",\"batchq_eps\":" + std::to_string(mb) +
              ",\"curl_eps\":" + std::to_string(mr) +
              ",\"enqueue_share\":" + std::to_string(median(share)) + ",\"complete\":" + (complete ? "true" : "false") + "}";
    }
  }
  json += "]\n";
  if (!json_file.empty()) std::ofstream(json_file) << json;
  curl_global_cleanup();
  return 0;
}
