// bench_spool: what the spool costs.
//
//  (a) http_log::enqueue, memory only vs write-ahead (every accepted entry is
//      appended to the spool before enqueue returns), per fsync policy. Nothing
//      is sent during the loop (a dead endpoint and a long process_delay), so
//      the figure is the enqueue path alone.
//  (b) appending records in batches of 100 through the spool, per fsync policy
//      (always: fsync after each batch, as http_log does before sending one;
//      interval: the spool's thread every 100 ms; never), against the same
//      bytes written raw with one write() per record and, for `always`, one
//      fdatasync() per batch.
//
// Rounds are interleaved (every mode once per round) and the median is kept.
//   bench_spool --json FILE [--entries N] [--rounds R]
#include <batchq/http_log.hpp>
#include <batchq/spool.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

std::string make_dir(const std::string& tag) {
  std::string tmpl = (fs::temp_directory_path() / ("batchq-bench-spool-" + tag + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  ::chmod(tmpl.c_str(), 0700);
  return tmpl;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

const std::string k_entry = [] {
  std::string e = "{\"request\":{\"uri\":\"/bench\",\"method\":\"GET\"},\"pad\":\"";
  e += std::string(512 - e.size() - 2, 'x');
  e += "\"}";
  return e;
}();

// (a) ns per enqueue
double enqueue_ns(const char* mode, int n) {
  batchq::http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:1/";
  o.queue.batch_max_size = 100;
  o.queue.process_delay = std::chrono::hours(1);
  o.queue.max_entries = 0;
  o.queue.shutdown_timeout = std::chrono::milliseconds(0);
  std::string dir;
  if (std::strcmp(mode, "memory") != 0) {
    dir = make_dir("wal");
    o.spool.dir = dir;
    o.spool.mode = batchq::spool_mode::write_ahead;
    o.spool.fsync = !std::strcmp(mode, "wal_never")    ? batchq::fsync_policy::never
                    : !std::strcmp(mode, "wal_always") ? batchq::fsync_policy::always
                                                       : batchq::fsync_policy::interval;
  }
  double ns;
  {
    batchq::http_log log(o);
    const auto t0 = clk::now();
    for (int i = 0; i < n; ++i) log.enqueue(k_entry);
    ns = std::chrono::duration<double, std::nano>(clk::now() - t0).count() / n;
  }
  if (!dir.empty()) fs::remove_all(dir);
  return ns;
}

// (b) records per second through the spool, or raw
double spool_rate(const char* mode, int n) {
  const std::string dir = make_dir("tp");
  const int batch = 100;
  double secs;
  if (!std::strncmp(mode, "raw", 3)) {
    const bool sync = !std::strcmp(mode, "raw_fsync");
    // The same bytes as a spool record: 36-byte header + payload.
    std::string rec(36, '\0');
    rec += k_entry;
    const int fd = ::open((dir + "/raw.seg").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const auto t0 = clk::now();
    for (int i = 0; i < n; ++i) {
      if (::write(fd, rec.data(), rec.size()) != static_cast<ssize_t>(rec.size())) std::abort();
      if (sync && (i + 1) % batch == 0) ::fdatasync(fd);
    }
    if (sync) ::fdatasync(fd);
    secs = std::chrono::duration<double>(clk::now() - t0).count();
    ::close(fd);
  } else {
    batchq::spool_options so;
    so.dir = dir;
    so.mode = batchq::spool_mode::write_ahead;
    so.max_bytes = 0;
    so.fsync = !std::strcmp(mode, "spool_always")  ? batchq::fsync_policy::always
               : !std::strcmp(mode, "spool_never") ? batchq::fsync_policy::never
                                                   : batchq::fsync_policy::interval;
    so.fsync_interval = std::chrono::milliseconds(100);
    batchq::spool_error err;
    auto sp = batchq::spool::open(so, &err);
    if (!sp) {
      std::fprintf(stderr, "%s\n", err.message.c_str());
      std::exit(1);
    }
    const auto t0 = clk::now();
    for (int i = 0; i < n; ++i) {
      if (sp->append(k_entry) == 0) std::abort();
      if (so.fsync == batchq::fsync_policy::always && (i + 1) % batch == 0) sp->sync();
    }
    if (so.fsync == batchq::fsync_policy::always) sp->sync();
    secs = std::chrono::duration<double>(clk::now() - t0).count();
  }
  fs::remove_all(dir);
  return n / secs;
}

}  // namespace

int main(int argc, char** argv) {
  const char* json = nullptr;
  int n = 100000, rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--json")) json = argv[i + 1];
    else if (!std::strcmp(argv[i], "--entries")) n = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
  }
  const char* enq_modes[] = {"memory", "wal_never", "wal_interval", "wal_always"};
  const char* tp_modes[] = {"spool_always", "raw_fsync", "spool_interval", "spool_never", "raw"};
  std::vector<std::vector<double>> enq(4), tp(5);
  // Odd rounds run the modes in reverse order, so that no mode always follows
  // the same neighbour (a big directory removal makes the next fsync wait for
  // a journal commit).
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 4; ++k) {
      const int m = r % 2 ? 3 - k : k;
      enq[m].push_back(enqueue_ns(enq_modes[m], n));
    }
    ::sync();
    for (int k = 0; k < 5; ++k) {
      const int m = r % 2 ? 4 - k : k;
      tp[m].push_back(spool_rate(tp_modes[m], n / 2));
    }
  }
  std::string out = "{\"entries\":" + std::to_string(n) + ",\"entry_bytes\":" + std::to_string(k_entry.size()) +
                    ",\"rounds\":" + std::to_string(rounds) + ",\"enqueue_ns\":{";
  for (int m = 0; m < 4; ++m) {
    out += (m ? "," : "") + std::string("\"") + enq_modes[m] + "\":" + std::to_string(median(enq[m]));
    std::fprintf(stderr, "enqueue %-13s %8.1f ns\n", enq_modes[m], median(enq[m]));
  }
  out += "},\"records_per_s\":{";
  for (int m = 0; m < 5; ++m) {
    out += (m ? "," : "") + std::string("\"") + tp_modes[m] + "\":" + std::to_string(median(tp[m]));
    std::fprintf(stderr, "append  %-14s %10.0f records/s\n", tp_modes[m], median(tp[m]));
  }
  out += "}}\n";
  if (json) {
    FILE* f = std::fopen(json, "w");
    if (!f) return 1;
    std::fputs(out.c_str(), f);
    std::fclose(f);
  } else {
    std::fputs(out.c_str(), stdout);
  }
  return 0;
}
