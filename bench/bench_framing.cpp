// bench_framing: what the poison-entry rule (check_framing, run by
// http_log::enqueue on every entry, every format) costs per entry.
//
//  enqueue         copy the entry (as the C ABI does) and enqueue it into a
//                  batch_queue<std::string> - http_log's in-memory path
//  enqueue+check   the same with check_framing() first (what http_log does)
//  check           check_framing() alone (json_array; ndjson also)
//  validate_json   RapidJSON validation alone, for comparison (opt-in)
//
// Entries: Kong-like log entries of about 64 B, 1 KB and 4 KB (nested
// objects, strings with escapes). The queue runs execution::manual and is
// drained with run_due() every 1000 entries inside the timed loop, identically
// for both enqueue variants, so no thread competes for the 2 cores.
// Rounds are interleaved (every variant once per round); the median is kept.
// Times are the measuring thread's CPU time (CLOCK_THREAD_CPUTIME_ID).
//   bench_framing [--entries N] [--rounds R] [--json FILE]
#include <batchq/batch_queue.hpp>
#include <batchq/payload.hpp>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

// Kong-like: nested objects, many short fields (the worst case for the
// check, which walks bytes outside strings one by one), escaped quotes.
std::string kong_entry(std::size_t target, int i) {
  if (target <= 64) return R"({"i":)" + std::to_string(i) + R"(,"msg":"entry with \"quotes\"","ok":true})";
  std::string e = R"({"request":{"method":"GET","uri":"/api/v1/items/)" + std::to_string(i) +
                  R"(","headers":{"host":"example.com","user-agent":"curl/8.0 \"quoted\""}},"response":{"status":200,"size":)" +
                  std::to_string(100 + i % 900) + R"(},"latencies":{"proxy":3,"kong":1,"request":4},"tags":["a","b"],"fields":{)";
  for (int f = 0; e.size() + 40 < target; ++f)
    e += (f ? "," : "") + std::string("\"f") + std::to_string(f) + "\":" +
         (f % 2 ? std::to_string(f * 37) : "\"value-" + std::to_string(f) + "\"");
  e += "}}";
  return e;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct variant {
  const char* name;
  std::function<double(const std::vector<std::string>&)> run;  // ns per entry
};

// CPU time of this thread, not wall time: on a shared 2-core machine other
// processes take the CPU for unpredictable stretches; what we want is the
// work the check adds, which CPU time measures. (All variants run on this
// thread: the queue is execution::manual.)
double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

double time_per_entry(const std::vector<std::string>& entries, const std::function<void(const std::string&)>& fn) {
  const double t0 = thread_cpu_ns();
  for (const auto& e : entries) fn(e);
  return (thread_cpu_ns() - t0) / static_cast<double>(entries.size());
}

double enqueue_run(const std::vector<std::string>& entries, bool check, batchq::payload_format f) {
  batchq::batch_queue_options o;
  o.exec = batchq::execution::manual;
  o.max_entries = 0;
  o.batch_max_size = 1000;
  o.process_delay = std::chrono::milliseconds(0);
  std::size_t got = 0;
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [&got](batchq::span<const std::string> b, const batchq::attempt_context&) {
    got += b.size();
    return batchq::process_result::success();
  };
  batchq::batch_queue<std::string> q(o, std::move(cb));
  std::size_t n = 0, refused = 0;
  const double ns = time_per_entry(entries, [&](const std::string& e) {
    std::string copy = e;  // the C ABI copies the caller's bytes
    if (check && !batchq::check_framing(copy, f)) {
      ++refused;
      return;
    }
    q.enqueue(std::move(copy));
    if (++n % 1000 == 0) q.run_due();
  });
  q.shutdown(std::chrono::seconds(5));
  if (refused) std::fprintf(stderr, "unexpected refusal\n");
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n_entries = 200000;
  int rounds = 7;
  const char* json_out = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--entries") && i + 1 < argc) n_entries = std::strtoul(argv[++i], nullptr, 10);
    else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_out = argv[++i];
  }
  using batchq::payload_format;
  const std::vector<variant> variants = {
      {"enqueue", [](const auto& es) { return enqueue_run(es, false, payload_format::json_array); }},
      {"enqueue+check", [](const auto& es) { return enqueue_run(es, true, payload_format::json_array); }},
      {"check json_array",
       [](const auto& es) {
         return time_per_entry(es, [](const std::string& e) {
           if (!batchq::check_framing(e, payload_format::json_array)) std::abort();
         });
       }},
      {"check ndjson",
       [](const auto& es) {
         return time_per_entry(es, [](const std::string& e) {
           if (!batchq::check_framing(e, payload_format::ndjson)) std::abort();
         });
       }},
      {"validate_json",
       [](const auto& es) {
         return time_per_entry(es, [](const std::string& e) {
           if (!batchq::validate_json(e)) std::abort();
         });
       }},
  };
  std::string json = "[";
  std::printf("%-8s %-18s %12s\n", "entry", "variant", "ns/entry");
  for (const std::size_t size : {std::size_t{64}, std::size_t{1024}, std::size_t{4096}}) {
    std::vector<std::string> entries;
    entries.reserve(n_entries);
    for (std::size_t i = 0; i < n_entries; ++i) entries.push_back(kong_entry(size, static_cast<int>(i)));
    std::vector<std::vector<double>> samples(variants.size());
    for (int r = 0; r < rounds; ++r)
      for (std::size_t v = 0; v < variants.size(); ++v) samples[v].push_back(variants[v].run(entries));
    for (std::size_t v = 0; v < variants.size(); ++v) {
      const double m = median(samples[v]);
      std::printf("%-8zu %-18s %12.1f\n", entries[0].size(), variants[v].name, m);
      char row[200];
      std::snprintf(row, sizeof row, "%s{\"entry_bytes\":%zu,\"variant\":\"%s\",\"ns_per_entry\":%.1f}",
                    json.size() > 1 ? "," : "", entries[0].size(), variants[v].name, m);
      json += row;
    }
  }
  json += "]\n";
  if (json_out) {
    if (FILE* f = std::fopen(json_out, "w")) {
      std::fputs(json.c_str(), f);
      std::fclose(f);
    }
  }
  return 0;
}
