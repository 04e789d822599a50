// Time arithmetic at its limits: exponential backoff after many consecutive
// failures or with large delays, flush/shutdown with huge timeouts.
// initial_retry_delay x 2^n must saturate at max_retry_delay instead of
// overflowing the clock's nanosecond count (signed overflow, UB: with the
// default 10 ms it happened at the 42nd consecutive failure, and the wait came
// out negative, so every later retry went out at once).
#include "support/catch.hpp"
#include "support/manual_harness.hpp"

using namespace batchq::test;

namespace {

std::vector<long long> gaps(const std::vector<long long>& times) {
  std::vector<long long> g;
  for (std::size_t i = 1; i < times.size(); ++i) g.push_back(times[i] - times[i - 1]);
  return g;
}

}  // namespace

TEST_CASE("exponential backoff saturates at max_retry_delay after many failures", "[retry][limits]") {
  batchq::batch_queue_options o;
  o.batch_max_size = 1;
  o.process_delay = 0ms;
  o.backoff = batchq::backoff_policy::exponential;
  o.initial_retry_delay = 10ms;
  o.max_retry_delay = 1000ms;
  o.retry_count = 100;
  o.max_entries = 0;
  harness h(o);
  h.behaviour = [](const call&) { return fail(); };
  h.add("a");
  h.run_until(ms(200 * 1000));
  REQUIRE(h.calls.size() == 100);
  const auto g = gaps(h.call_times());
  // 10, 20, 40, ..., 640 ms, then the cap for every later wait.
  for (std::size_t i = 0; i < g.size(); ++i) {
    const long long want = i < 7 ? (10LL << i) : 1000;
    INFO("wait " << i);
    CHECK(g[i] == want);
  }
}

TEST_CASE("a day-long initial_retry_delay does not overflow either", "[retry][limits]") {
  batchq::batch_queue_options o;
  o.batch_max_size = 1;
  o.process_delay = 0ms;
  o.backoff = batchq::backoff_policy::exponential;
  o.initial_retry_delay = std::chrono::hours(24);
  o.max_retry_delay = std::chrono::hours(24 * 365);
  o.retry_count = 30;
  harness h(o);
  h.behaviour = [](const call&) { return fail(); };
  h.add("a");
  h.run_until(ms(std::chrono::hours(24 * 365 * 25)));
  REQUIRE(h.calls.size() == 30);
  const auto g = gaps(h.call_times());
  const long long day = 24LL * 3600 * 1000;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const long long want = i < 9 ? (day << i) : 365 * day;  // 2^9 days > a year
    INFO("wait " << i);
    CHECK(g[i] == want);
  }
}

TEST_CASE("flush and shutdown accept any timeout, even milliseconds::max()", "[limits]") {
  batchq::batch_queue_options o;
  o.batch_max_size = 10;
  o.process_delay = 0ms;
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [](batchq::span<const std::string>, const batchq::attempt_context&) {
    return batchq::process_result::success();
  };
  batchq::batch_queue<std::string> q(o, cb);
  REQUIRE(q.enqueue(std::string("a")) == batchq::enqueue_result::accepted);
  CHECK(q.flush(ms::max()));                         // the C ABI passes any int64 of ms
  CHECK(q.flush(ms(std::int64_t{1} << 53)));         // what LuaJIT passes for "forever"
  CHECK(q.shutdown(ms::max()));
  CHECK(q.stats().delivered == 1);
}
