// demo_retry: the story batchq exists for, with the core queue only.
//
// An endpoint is down for the first few minutes. Kong's http-log would retry
// each batch 10 times over ~5 minutes and then drop it with one error line.
// batchq follows the same schedule, but every dropped entry reaches the drop
// callback, and the books balance at the end.
//
//   batchq_demo_retry [--scale N] [--outage SECONDS] [--retry-count N]
//
// --scale runs the queue's clock N times faster than real time (default 60:
// one simulated minute per second), so the whole schedule plays in seconds.
#include <batchq/batch_queue.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

namespace {

// A clock that runs `scale` times faster than steady_clock.
class scaled_clock final : public batchq::clock {
 public:
  explicit scaled_clock(double scale) : scale_(scale), start_(std::chrono::steady_clock::now()) {}
  time_point now() const noexcept override {
    auto real = std::chrono::steady_clock::now() - start_;
    return start_ + std::chrono::duration_cast<duration>(real * scale_);
  }
  std::chrono::steady_clock::duration real_wait(duration d) const noexcept override {
    return std::chrono::duration_cast<duration>(d / scale_);
  }
  double seconds() const { return std::chrono::duration<double>(now() - start_).count(); }

 private:
  double scale_;
  time_point start_;
};

}  // namespace

int main(int argc, char** argv) {
  double scale = 60;
  double outage_s = 400;
  int retry_count = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--scale")) scale = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--outage")) outage_s = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--retry-count")) retry_count = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--scale N] [--outage SECONDS] [--retry-count N]\n", argv[0]);
      return 2;
    }
  }
  if (scale <= 0) scale = 1;
  scaled_clock clk(scale);
  std::mutex out_mu;
  auto say = [&](const char* what, const std::string& text) {
    std::lock_guard<std::mutex> g(out_mu);
    std::printf("[t=%6.1fs] %-8s %s\n", clk.seconds(), what, text.c_str());
    std::fflush(stdout);
  };

  std::atomic<std::uint64_t> kept_aside{0};
  batchq::batch_queue_options o;
  o.batch_max_size = 20;      // entries per batch
  o.flush_timeout = std::chrono::seconds(2);
  o.process_delay = std::chrono::seconds(0);
  o.retry_count = retry_count;  // Kong http-log's default: 10 attempts
  o.time_source = &clk;

  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [&](batchq::span<const std::string> batch, const batchq::attempt_context& ctx) {
    if (clk.seconds() < outage_s) {
      say("attempt", "batch of " + std::to_string(batch.size()) + " (attempt " + std::to_string(ctx.attempt) + "/" +
                         std::to_string(ctx.max_attempts) + "): connection refused");
      return batchq::process_result::failure("failed request to 127.0.0.1:9: connection refused");
    }
    say("sent", "batch of " + std::to_string(batch.size()) + " starting with " + batch[0]);
    return batchq::process_result::success();
  };
  cb.on_drop = [&](batchq::span<std::string> lost, const batchq::drop_info& why) {
    kept_aside += lost.size();
    say("DROPPED", std::to_string(lost.size()) + " entries (" + batchq::to_string(why.reason) + " after " +
                       std::to_string(why.attempts) + " attempts; last error: " + std::string(why.last_error) +
                       ") -> handed to the host, first: " + lost[0]);
  };
  cb.on_log = [&](batchq::log_level l, std::string_view text) {
    if (l >= batchq::log_level::error) say("kong-log", std::string(text));
  };

  batchq::queue_stats s;
  {
    batchq::batch_queue<std::string> q(o, cb);
    // Three batches of 20: one early in the outage (its 10 attempts run out
    // before the endpoint is back: dropped, and reported), one late in the
    // outage (retried until the endpoint is back), one after it.
    for (int i = 0; i < 60; ++i) {
      double at = i < 20 ? i : i < 40 ? 180 + i : outage_s + i;
      while (clk.seconds() < at) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      q.enqueue("{\"request\":" + std::to_string(i) + "}");
    }
    q.flush(std::chrono::seconds(30));
    s = q.stats();
    q.shutdown(std::chrono::seconds(5));
    s = q.stats();
  }
  std::printf("\naccounting: enqueued %llu = delivered %llu + dropped %llu + pending %llu + in flight %llu  [%s]\n",
              static_cast<unsigned long long>(s.enqueued), static_cast<unsigned long long>(s.delivered),
              static_cast<unsigned long long>(s.dropped_total()), static_cast<unsigned long long>(s.pending),
              static_cast<unsigned long long>(s.in_flight), s.balanced() ? "balanced" : "NOT BALANCED");
  for (std::size_t r = 0; r < batchq::drop_reason_count; ++r)
    if (s.dropped[r])
      std::printf("  dropped as %-20s %llu (every one handed to the drop callback: %llu)\n",
                  batchq::to_string(static_cast<batchq::drop_reason>(r)),
                  static_cast<unsigned long long>(s.dropped[r]), static_cast<unsigned long long>(kept_aside.load()));
  std::printf("  attempts %llu, failed %llu, retried %llu\n", static_cast<unsigned long long>(s.attempts),
              static_cast<unsigned long long>(s.failed_attempts), static_cast<unsigned long long>(s.retried));
  return s.balanced() && kept_aside == s.dropped_total() ? 0 : 1;
}
