// A batch_queue<std::string> driven by a manual clock, recording every call of
// every callback with its time in milliseconds since the harness started.
#pragma once

#include <batchq/batch_queue.hpp>

#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace batchq::test {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;

struct call {
  long long at_ms;
  std::vector<std::string> entries;
  std::size_t attempt;
};

struct drop {
  long long at_ms;
  std::vector<std::string> entries;
  batchq::drop_reason reason;
  std::size_t attempts;
  std::string last_error;
};

struct log_line {
  batchq::log_level level;
  std::string text;
};

class harness {
 public:
  // Decides each attempt's outcome; default: success.
  std::function<batchq::process_result(const call&)> behaviour = [](const call&) {
    return batchq::process_result::success();
  };

  std::vector<call> calls;
  std::vector<drop> drops;
  std::vector<log_line> logs;
  std::vector<std::vector<std::string>> delivered;

  explicit harness(batchq::batch_queue_options o) {
    o.exec = batchq::execution::manual;
    o.time_source = &clock_;
    t0_ = clock_.now();
    batchq::batch_queue_callbacks<std::string> cb;
    cb.process = [this](batchq::span<const std::string> b, const batchq::attempt_context& ctx) {
      call c{now_ms(), std::vector<std::string>(b.begin(), b.end()), ctx.attempt};
      calls.push_back(c);
      return behaviour(calls.back());
    };
    cb.on_drop = [this](batchq::span<std::string> e, const batchq::drop_info& d) {
      drops.push_back(drop{now_ms(), std::vector<std::string>(e.begin(), e.end()), d.reason, d.attempts,
                           std::string(d.last_error)});
    };
    cb.on_delivered = [this](batchq::span<const std::string> b) {
      delivered.emplace_back(b.begin(), b.end());
    };
    cb.on_log = [this](batchq::log_level l, std::string_view t) { logs.push_back({l, std::string(t)}); };
    q = std::make_unique<batchq::batch_queue<std::string>>(o, cb);
  }

  long long now_ms() const {
    return std::chrono::duration_cast<ms>(clock_.now() - t0_).count();
  }

  // Enqueue and let the queue react at the current time.
  batchq::enqueue_result add(std::string s) {
    auto r = q->enqueue(std::move(s));
    q->run_due();
    return r;
  }

  // Enqueue several entries at the same instant, then let the queue react.
  void add_all(std::initializer_list<std::string> entries) {
    for (const auto& e : entries) q->enqueue(std::string(e));
    q->run_due();
  }

  // Runs every event due up to t0 + at, stepping the clock from event to event.
  void run_until(ms at) {
    const auto target = t0_ + at;
    for (int guard = 0; guard < 1000000; ++guard) {
      auto next = q->run_due();
      if (!next || *next > target) {
        clock_.set(target);
        q->run_due();
        return;
      }
      // Something due now that run_due did not do would be a queue bug.
      if (*next <= clock_.now()) throw std::runtime_error("run_due made no progress");
      clock_.set(*next);
    }
    throw std::runtime_error("run_until: too many steps");
  }
  void run_for(ms d) { run_until(ms(now_ms()) + d); }

  std::vector<long long> call_times() const {
    std::vector<long long> v;
    for (const auto& c : calls) v.push_back(c.at_ms);
    return v;
  }

  std::size_t count_logs(batchq::log_level l, const std::string& needle) const {
    std::size_t n = 0;
    for (const auto& x : logs)
      if (x.level == l && x.text.find(needle) != std::string::npos) ++n;
    return n;
  }

  batchq::manual_clock& clock() { return clock_; }

  // The queue goes first: its destructor shuts down, which reads clock_ and
  // may call the callbacks above (members are destroyed in reverse order,
  // so without this clock_ would already be gone; UBSan: invalid vptr).
  ~harness() { q.reset(); }
  harness(const harness&) = delete;
  harness& operator=(const harness&) = delete;

  std::unique_ptr<batchq::batch_queue<std::string>> q;

 private:
  batchq::manual_clock clock_;
  batchq::clock::time_point t0_;
};

inline batchq::process_result fail(const std::string& why = "boom") {
  return batchq::process_result::failure(why);
}

}  // namespace batchq::test
