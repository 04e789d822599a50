// detail::backoff_delay, the pure backoff function, against Kong's own
// formulas written out the way Kong computes them:
//  - Kong 2.8 kong/tools/batch_queue.lua: retry_delay starts at 1; on each
//    failure retry_delay = retry_delay + 1 and the next try waits
//    min(60, retry_delay * retry_delay) seconds (RETRY_MAX_DELAY = 60);
//  - Kong 3.4/3.9 kong/tools/queue.lua: retry_count starts at 0; after each
//    failure it sleeps min(max_retry_delay, 2 ^ retry_count *
//    initial_retry_delay) seconds, then retry_count = retry_count + 1.
// The reference loops below use Lua's number type (double) and its state
// machine, not the function under test's closed form.
#include "support/catch.hpp"

#include <batchq/detail/backoff.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>

using namespace std::chrono_literals;
using batchq::detail::backoff_delay;

namespace {

double seconds_of(batchq::clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

TEST_CASE("kong_quadratic follows Kong 2.x batch_queue's retry_delay", "[backoff][kong]") {
  batchq::batch_queue_options o;
  o.backoff = batchq::backoff_policy::kong_quadratic;
  o.max_retry_delay = 60s;  // Kong 2.x RETRY_MAX_DELAY
  double retry_delay = 1;   // Kong: self.retry_delay = 1
  for (std::uint64_t failures = 1; failures <= 30; ++failures) {
    retry_delay = retry_delay + 1;
    const double kong = std::min(60.0, retry_delay * retry_delay);
    INFO("failure " << failures);
    CHECK(seconds_of(backoff_delay(failures, o)) == kong);
  }
  // The worked example in kong-batch-queue.md: 4, 9, 16, 25, 36, 49, 60, 60 s.
  CHECK(backoff_delay(1, o) == 4s);
  CHECK(backoff_delay(6, o) == 49s);
  CHECK(backoff_delay(7, o) == 60s);
}

TEST_CASE("exponential follows Kong 3.x queue's initial_retry_delay x 2^retry_count", "[backoff][kong]") {
  batchq::batch_queue_options o;
  o.backoff = batchq::backoff_policy::exponential;
  for (auto [initial_ms, max_ms] : {std::pair<int, int>{10, 60000}, {250, 5000}, {1, 1}, {7, 1000}}) {
    o.initial_retry_delay = std::chrono::milliseconds(initial_ms);
    o.max_retry_delay = std::chrono::milliseconds(max_ms);
    double retry_count = 0;  // Kong: local retry_count = 0
    for (std::uint64_t failures = 1; failures <= 40; ++failures) {
      const double kong = std::min(max_ms / 1000.0, std::pow(2.0, retry_count) * (initial_ms / 1000.0));
      retry_count = retry_count + 1;
      INFO("initial " << initial_ms << " ms, max " << max_ms << " ms, failure " << failures);
      CHECK(std::abs(seconds_of(backoff_delay(failures, o)) - kong) < 1e-9);
    }
  }
}

TEST_CASE("backoff_delay saturates at the cap for any failure count", "[backoff][limits]") {
  batchq::batch_queue_options o;
  o.max_retry_delay = std::chrono::hours(24 * 365);
  o.initial_retry_delay = std::chrono::hours(24);
  for (auto policy : {batchq::backoff_policy::exponential, batchq::backoff_policy::kong_quadratic}) {
    o.backoff = policy;
    for (std::uint64_t f : {std::uint64_t{62}, std::uint64_t{63}, std::uint64_t{64}, std::uint64_t{65535},
                            std::uint64_t{65536}, std::uint64_t{1} << 40, ~std::uint64_t{0}}) {
      INFO("failures " << f);
      const auto d = backoff_delay(f, o);
      if (policy == batchq::backoff_policy::kong_quadratic && f < 65535) {
        // (f + 1)^2 s is still below a year here: no cap yet, no overflow.
        CHECK(d == std::chrono::seconds((f + 1) * (f + 1)));
      } else {
        CHECK(d == o.max_retry_delay);
      }
    }
  }
  CHECK(backoff_delay(0, o) == batchq::clock::duration::zero());  // no failure, no wait
  o.max_retry_delay = 0ms;
  CHECK(backoff_delay(3, o) == batchq::clock::duration::zero());  // the cap holds below the first wait too
}
