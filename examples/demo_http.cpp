// demo_http: batchq::http_log shipping log entries to an HTTP endpoint that
// misbehaves, and accounting for every entry at the end.
//
//   batchq_demo_http                 # embedded receiver on 127.0.0.1 with faults
//   batchq_demo_http --url URL       # your own endpoint (no faults injected)
//   batchq_demo_http --entries N --seconds S
//
// The embedded receiver goes through phases: healthy, HTTP 500, 503 with
// Retry-After: 1, down (connection refused), healthy again. The program
// prints live progress, then what was delivered, what was dropped and why -
// every dropped entry reached the drop callback - and checks that the
// receiver's count equals the delivered count.
#include <batchq/http_log.hpp>

#include <httplib.h>
#include <rapidjson/document.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

double since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

// The phases of the embedded receiver, in seconds from the start.
struct phase {
  double until;
  const char* name;
};
const phase k_phases[] = {
    {3.0, "healthy"}, {5.0, "HTTP 500"}, {7.0, "503 + Retry-After: 1"}, {9.0, "down (refused)"}, {1e9, "healthy"}};

const char* phase_at(double t) {
  for (const auto& p : k_phases)
    if (t < p.until) return p.name;
  return "healthy";
}

class embedded_receiver {
 public:
  explicit embedded_receiver(steady::time_point t0) : t0_(t0) {
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string ph = phase_at(since(t0_));
      if (ph == "HTTP 500") {
        res.status = 500;
        res.set_content("internal error (injected)", "text/plain");
        return;
      }
      if (ph == "503 + Retry-After: 1") {
        res.status = 503;
        res.set_header("Retry-After", "1");
        res.set_content("overloaded (injected)", "text/plain");
        return;
      }
      rapidjson::Document d;
      d.Parse(req.body.data(), req.body.size());
      if (d.HasParseError()) {
        res.status = 400;
        return;
      }
      entries_ += d.IsArray() ? d.Size() : 1;
      res.status = 200;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(1ms);
  }
  ~embedded_receiver() { stop(); }
  void stop() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  // "down": stop listening, then come back on the same port.
  void restart() {
    stop();
    server_.bind_to_port("127.0.0.1", port_);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(1ms);
  }
  int port() const { return port_; }
  std::uint64_t entries() const { return entries_.load(); }

 private:
  steady::time_point t0_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<std::uint64_t> entries_{0};
};

}  // namespace

int main(int argc, char** argv) {
  std::string url;
  int entries = 3000;
  double seconds = 11;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--url") && i + 1 < argc) url = argv[++i];
    else if (!std::strcmp(argv[i], "--entries") && i + 1 < argc) entries = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--url URL] [--entries N] [--seconds S]\n", argv[0]);
      return 2;
    }
  }
  const auto t0 = steady::now();
  std::unique_ptr<embedded_receiver> rx;
  if (url.empty()) {
    rx = std::make_unique<embedded_receiver>(t0);
    url = "http://127.0.0.1:" + std::to_string(rx->port()) + "/logs";
  }

  batchq::http_log_options o;                 // Kong http-log defaults, then:
  o.http.http_endpoint = url;
  o.http.timeout = 2000ms;
  o.queue.batch_max_size = 100;               // http-log queue_size
  o.queue.flush_timeout = 500ms;
  o.queue.retry_count = 4;                    // attempts per batch
  o.queue.backoff = batchq::backoff_policy::exponential;
  o.queue.initial_retry_delay = 50ms;         // waits 0.05, 0.1, 0.2, 0.4, 0.4 ... s
  o.queue.max_retry_delay = 400ms;
  o.queue.max_entries = 1500;                 // bound: the oldest go first when full

  std::mutex mu;
  std::map<std::string, std::uint64_t> drops_by_reason;
  std::map<std::string, std::string> example;  // one per reason
  batchq::http_log_callbacks cb;
  cb.on_drop = [&](batchq::span<std::string> lost, const batchq::drop_info& why, bool) {
    std::lock_guard<std::mutex> g(mu);
    drops_by_reason[batchq::to_string(why.reason)] += lost.size();
    auto& e = example[batchq::to_string(why.reason)];
    if (e.empty())
      e = "first: " + lost[0] + " after " + std::to_string(why.attempts) + " attempt(s)" +
          (why.last_error.empty() ? std::string() : "; last error: " + std::string(why.last_error.substr(0, 80)));
  };
  cb.on_log = [](batchq::log_level, std::string_view) {};  // the counters tell the story here

  std::printf("shipping %d entries to %s over %.0f s\n", entries, url.c_str(), seconds);
  if (rx) {
    std::printf("receiver phases:");
    double from = 0;
    for (const auto& p : k_phases) {
      if (p.until > 1e8) std::printf(" %.0fs- %s\n", from, p.name);
      else std::printf(" %.0f-%.0fs %s,", from, p.until, p.name);
      from = p.until;
    }
  }

  batchq::queue_stats s;
  {
    batchq::http_log log(o, cb);
    std::atomic<bool> producing{true};
    std::thread producer([&] {
      for (int i = 0; i < entries; ++i) {
        const double due = seconds * 0.85 * i / entries;
        while (since(t0) < due) std::this_thread::sleep_for(1ms);
        log.enqueue("{\"request\":" + std::to_string(i) + ",\"path\":\"/api/" + std::to_string(i % 17) +
                    "\",\"status\":200}");
      }
      producing = false;
    });
    bool was_down = false;
    double next_print = 0;
    while (producing || since(t0) < seconds) {
      const double t = since(t0);
      if (rx) {
        const bool down = std::strcmp(phase_at(t), "down (refused)") == 0;
        if (down && !was_down) rx->stop();
        if (!down && was_down) rx->restart();
        was_down = down;
      }
      if (t >= next_print) {
        auto st = log.stats();
        std::printf("[%5.1fs] %-22s enqueued %5llu  delivered %5llu  failed attempts %3llu  dropped %5llu  pending %5llu\n",
                    t, rx ? phase_at(t) : "", static_cast<unsigned long long>(st.enqueued),
                    static_cast<unsigned long long>(st.delivered), static_cast<unsigned long long>(st.failed_attempts),
                    static_cast<unsigned long long>(st.dropped_total()),
                    static_cast<unsigned long long>(st.pending + st.in_flight));
        std::fflush(stdout);
        next_print += 0.5;
      }
      std::this_thread::sleep_for(20ms);
    }
    producer.join();
    const bool flushed = log.flush(15s);
    std::printf("flush: %s\n", flushed ? "everything settled" : "timed out (the rest is reported at shutdown)");
    log.shutdown(5s);
    s = log.stats();
  }

  std::printf("\naccounting: enqueued %llu = delivered %llu + dropped %llu + pending %llu + in flight %llu  [%s]\n",
              static_cast<unsigned long long>(s.enqueued), static_cast<unsigned long long>(s.delivered),
              static_cast<unsigned long long>(s.dropped_total()), static_cast<unsigned long long>(s.pending),
              static_cast<unsigned long long>(s.in_flight), s.balanced() ? "balanced" : "NOT BALANCED");
  std::uint64_t reported = 0;
  for (const auto& kv : drops_by_reason) {
    std::printf("  dropped as %-18s %5llu, every one handed to the drop callback\n      %s\n", kv.first.c_str(),
                static_cast<unsigned long long>(kv.second), example[kv.first].c_str());
    reported += kv.second;
  }
  std::printf("  attempts %llu, failed %llu, batches delivered %llu\n", static_cast<unsigned long long>(s.attempts),
              static_cast<unsigned long long>(s.failed_attempts), static_cast<unsigned long long>(s.batches_delivered));
  bool ok = s.balanced() && reported == s.dropped_total();
  if (rx) {
    std::printf("  the receiver counted %llu entries; batchq says %llu delivered [%s]\n",
                static_cast<unsigned long long>(rx->entries()), static_cast<unsigned long long>(s.delivered),
                rx->entries() == s.delivered ? "match" : "MISMATCH");
    ok = ok && rx->entries() == s.delivered;
  }
  return ok ? 0 : 1;
}
