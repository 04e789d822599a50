// The queue with its own worker threads and real producer threads: nothing
// lost, nothing duplicated, the books balanced. Assertions are on counts and
// contents only, never on how long anything took.
#include "support/catch.hpp"

#include <batchq/batch_queue.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using batchq::drop_reason;
using batchq::enqueue_result;

namespace {

struct ledger {
  std::mutex mu;
  std::vector<int> delivered_count;
  std::vector<int> dropped_count;
  std::uint64_t drop_calls = 0;
  std::uint64_t bad_reasons = 0;
  explicit ledger(std::size_t n) : delivered_count(n, 0), dropped_count(n, 0) {}
};

// Entries are "<id>" padded; id indexes the ledger.
std::size_t id_of(const std::string& s) { return std::stoul(s.substr(0, s.find(' '))); }

}  // namespace

#if BATCHQ_HAVE_FUTEX_CV
template <>
struct batchq::detail::queue_probe<batchq::batch_queue<std::string>> {
  // Workers asleep in their wait, and the notifies so far, read under the
  // queue's mutex: a worker holds it from its last look at the work until
  // it sleeps.
  static std::pair<std::uint32_t, std::uint32_t> sleep_state(batchq::batch_queue<std::string>& q) {
    std::lock_guard<std::mutex> g(q.mu_);
    return {q.cv_work_.sleeping(), q.cv_work_.notifies()};
  }
};
#endif

namespace {

// Waits until all n workers are counted asleep and no notify came in the
// next 20 ms. A worker that an earlier notify woke stays counted until it
// is back from FUTEX_WAIT, which the 20 ms give it time for: not a proof
// (a thread descheduled longer would still be counted), but it waits on
// what it checks, where the test slept a blind 200 ms before. Without the
// futex condition variable there is nothing to read: it waits 200 ms.
bool all_workers_asleep(batchq::batch_queue<std::string>& q, std::uint32_t n) {
#if BATCHQ_HAVE_FUTEX_CV
  using probe = batchq::detail::queue_probe<batchq::batch_queue<std::string>>;
  for (int i = 0; i < 1000; ++i) {
    const auto before = probe::sleep_state(q);
    if (before.first == n) {
      std::this_thread::sleep_for(20ms);
      if (probe::sleep_state(q) == before) return true;
    } else {
      std::this_thread::sleep_for(5ms);
    }
  }
  return false;
#else
  (void)q;
  (void)n;
  std::this_thread::sleep_for(200ms);
  return true;
#endif
}

}  // namespace

TEST_CASE("several producers: every entry delivered exactly once or reported dropped", "[threads]") {
  const int producers = 4;
  const int per_producer = 20000;
  const std::size_t total = static_cast<std::size_t>(producers) * per_producer;
  const std::size_t concurrency = GENERATE(1, 3);
  const bool bounded = GENERATE(false, true);

  ledger led(total);
  std::atomic<std::uint64_t> calls{0};
  batchq::batch_queue_options o;
  o.batch_max_size = 50;
  o.flush_timeout = 5ms;
  o.process_delay = 0ms;
  o.retry_count = 3;
  o.backoff = batchq::backoff_policy::exponential;
  o.initial_retry_delay = 1ms;
  o.max_retry_delay = 2ms;
  o.concurrency = concurrency;
  o.max_entries = bounded ? 500 : 0;

  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [&](batchq::span<const std::string> b, const batchq::attempt_context&) {
    thread_local std::mt19937 rng(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    ++calls;
    if (rng() % 10 == 0) return batchq::process_result::failure("flaky");
    std::lock_guard<std::mutex> g(led.mu);
    for (const auto& e : b) ++led.delivered_count[id_of(e)];
    return batchq::process_result::success();
  };
  cb.on_drop = [&](batchq::span<std::string> b, const batchq::drop_info& info) {
    std::lock_guard<std::mutex> g(led.mu);
    ++led.drop_calls;
    for (const auto& e : b) ++led.dropped_count[id_of(e)];
    // Catch2 assertions are not thread-safe: record, check on the main thread.
    if (info.reason != drop_reason::retries_exhausted && info.reason != drop_reason::queue_full) ++led.bad_reasons;
  };

  batchq::queue_stats s;
  {
    batchq::batch_queue<std::string> q(o, cb);
    std::vector<std::thread> threads;
    std::atomic<std::uint64_t> refused{0};
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        for (int i = 0; i < per_producer; ++i) {
          auto id = static_cast<std::size_t>(p) * per_producer + i;
          if (q.enqueue(std::to_string(id) + " payload") != enqueue_result::accepted) ++refused;
        }
      });
    }
    // Read stats while the producers run: every snapshot balances.
    for (int i = 0; i < 50; ++i) {
      auto mid = q.stats();
      REQUIRE(mid.balanced());
      std::this_thread::yield();
    }
    for (auto& t : threads) t.join();
    CHECK(refused == 0);
    REQUIRE(q.flush(60s));
    s = q.stats();
    CHECK(q.shutdown(10s));
  }
  CHECK(led.bad_reasons == 0);
  CHECK(s.balanced());
  CHECK(s.enqueued == total);
  CHECK(s.pending == 0);
  CHECK(s.in_flight == 0);
  std::uint64_t delivered = 0, dropped = 0;
  for (std::size_t i = 0; i < total; ++i) {
    const int seen = led.delivered_count[i] + led.dropped_count[i];
    if (seen != 1) FAIL("entry " << i << " delivered " << led.delivered_count[i] << " dropped " << led.dropped_count[i]);
    delivered += led.delivered_count[i];
    dropped += led.dropped_count[i];
  }
  CHECK(delivered == s.delivered);
  CHECK(dropped == s.dropped_total());
  if (!bounded) CHECK(s.dropped_for(drop_reason::queue_full) == 0);
}

TEST_CASE("shutdown with a dead endpoint returns at its deadline and reports the rest", "[threads][shutdown]") {
  std::atomic<int> dropped{0};
  std::atomic<int> shutdown_drops{0};
  batchq::batch_queue_options o;
  o.batch_max_size = 10;
  o.process_delay = 0ms;
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [](batchq::span<const std::string>, const batchq::attempt_context&) {
    return batchq::process_result::failure("connection refused");
  };
  cb.on_drop = [&](batchq::span<std::string> b, const batchq::drop_info& info) {
    dropped += static_cast<int>(b.size());
    if (info.reason == drop_reason::shutdown) shutdown_drops += static_cast<int>(b.size());
  };
  batchq::batch_queue<std::string> q(o, cb);
  for (int i = 0; i < 95; ++i) REQUIRE(q.enqueue("e" + std::to_string(i)) == enqueue_result::accepted);
  CHECK_FALSE(q.shutdown(200ms));
  CHECK(dropped == 95);
  CHECK(shutdown_drops == 95);
  CHECK(q.enqueue(std::string("late")) == enqueue_result::shut_down);
  auto s = q.stats();
  CHECK(s.balanced());
  CHECK(s.dropped_for(drop_reason::shutdown) == 95);
}

TEST_CASE("a slow attempt is told to cancel at the shutdown deadline", "[threads][shutdown]") {
  std::atomic<bool> saw_cancel{false};
  batchq::batch_queue_options o;
  o.batch_max_size = 1;
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [&](batchq::span<const std::string>, const batchq::attempt_context& ctx) {
    // A transfer that would take "forever" unless cancelled (bounded for safety).
    for (int i = 0; i < 20000 && !ctx.cancelled(); ++i) std::this_thread::sleep_for(1ms);
    saw_cancel = ctx.cancelled();
    return batchq::process_result::failure("aborted");
  };
  std::atomic<int> shutdown_drops{0};
  cb.on_drop = [&](batchq::span<std::string> b, const batchq::drop_info& info) {
    if (info.reason == drop_reason::shutdown) shutdown_drops += static_cast<int>(b.size());
  };
  batchq::batch_queue<std::string> q(o, cb);
  q.enqueue(std::string("slow"));
  q.enqueue(std::string("waiting"));
  CHECK_FALSE(q.shutdown(100ms));
  CHECK(saw_cancel);
  CHECK(shutdown_drops == 2);
  CHECK(q.stats().balanced());
}

TEST_CASE("the destructor delivers what is queued", "[threads][shutdown]") {
  std::atomic<int> delivered{0};
  {
    batchq::batch_queue_options o;
    o.batch_max_size = 1000;  // nothing closes by size
    o.flush_timeout = 1h;     // nor by time
    o.process_delay = 1h;     // shutdown skips it
    batchq::batch_queue_callbacks<std::string> cb;
    cb.process = [&](batchq::span<const std::string> b, const batchq::attempt_context&) {
      delivered += static_cast<int>(b.size());
      return batchq::process_result::success();
    };
    batchq::batch_queue<std::string> q(o, cb);
    for (int i = 0; i < 123; ++i) q.enqueue("e" + std::to_string(i));
  }
  CHECK(delivered == 123);
}

TEST_CASE("callbacks may enqueue and read stats without deadlock", "[threads]") {
  std::atomic<int> drops{0};
  batchq::batch_queue_options o;
  o.batch_max_size = 1;
  o.retry_count = 1;
  o.process_delay = 0ms;
  o.max_retry_delay = 10ms;
  o.initial_retry_delay = 1ms;
  o.backoff = batchq::backoff_policy::exponential;
  batchq::batch_queue<std::string>* self = nullptr;
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [](batchq::span<const std::string> b, const batchq::attempt_context&) {
    return b[0].rfind("retry:", 0) == 0 ? batchq::process_result::success() : batchq::process_result::failure("x");
  };
  cb.on_drop = [&](batchq::span<std::string> b, const batchq::drop_info&) {
    ++drops;
    (void)self->stats();
    for (auto& e : b) self->enqueue("retry:" + e);
  };
  batchq::batch_queue<std::string> q(o, cb);
  self = &q;
  for (int i = 0; i < 20; ++i) q.enqueue("e" + std::to_string(i));
  REQUIRE(q.flush(30s));
  REQUIRE(q.flush(30s));
  auto s = q.stats();
  CHECK(drops == 20);
  CHECK(s.delivered == 20);
  CHECK(s.enqueued == 40);
  CHECK(s.balanced());
}

// Batch size 1, concurrency 4: a further request starts only once 4 entries
// per request in flight are waiting (batch_queue::backlog_per_send); fewer
// wait for a worker whose request returns, and nothing waits for a worker
// that will not come (docs/intake.md, "Batch size 1: a helper per backlog").
TEST_CASE("batch size 1: another worker starts a request only for a backlog, and a returning one takes what waits",
          "[threads][wake]") {
  std::mutex mu;
  std::condition_variable cv;
  bool open = true;
  int now_in = 0, most_in = 0;
  std::vector<std::string> sent;
  batchq::batch_queue_options o;
  o.batch_max_size = 1;
  o.process_delay = 0ms;
  o.concurrency = 4;
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [&](batchq::span<const std::string> b, const batchq::attempt_context&) {
    std::unique_lock<std::mutex> lk(mu);
    most_in = std::max(most_in, ++now_in);
    cv.wait(lk, [&] { return open; });
    --now_in;
    sent.push_back(b[0]);
    return batchq::process_result::success();
  };
  batchq::batch_queue<std::string> q(o, cb);
  // Opens the gate before q's destructor waits for its workers, also when a
  // REQUIRE below ends the test early.
  struct opener {
    std::mutex& m;
    std::condition_variable& c;
    bool& o;
    ~opener() {
      {
        std::lock_guard<std::mutex> g(m);
        o = true;
      }
      c.notify_all();
    }
  } open_at_exit{mu, cv, open};
  int next = 0;
  auto add = [&](int n) {
    for (int i = 0; i < n; ++i) REQUIRE(q.enqueue("e" + std::to_string(next++)) == enqueue_result::accepted);
  };
  auto in_flight_reaches = [&](std::uint64_t n) {
    for (int i = 0; i < 2000 && q.stats().in_flight < n; ++i) std::this_thread::sleep_for(5ms);
    return q.stats().in_flight == n;
  };
  // This thread's ring registered, and every worker asleep again after the
  // flush woke them all: from here on only the wake rule wakes a worker.
  add(1);
  REQUIRE(q.flush(30s));
  {
    std::lock_guard<std::mutex> g(mu);
    open = false;
  }
  REQUIRE(all_workers_asleep(q, 4));
  add(1);
  REQUIRE(in_flight_reaches(1));
  add(3);  // 3 waiting behind 1 request: no helper
  std::this_thread::sleep_for(100ms);
  CHECK(q.stats().in_flight == 1);
  add(1);  // 4 waiting: a second request starts
  REQUIRE(in_flight_reaches(2));
  add(3);  // 6 waiting behind 2 requests (8 needed)
  std::this_thread::sleep_for(100ms);
  CHECK(q.stats().in_flight == 2);
  add(3);  // 9 waiting: a third
  REQUIRE(in_flight_reaches(3));
  {
    std::lock_guard<std::mutex> g(mu);
    open = true;
  }
  cv.notify_all();
  // Only the returning workers look at what is left below the thresholds.
  REQUIRE(q.flush(30s));
  const auto s = q.stats();
  CHECK(s.delivered == static_cast<std::uint64_t>(next));
  CHECK(s.balanced());
  {
    std::lock_guard<std::mutex> g(mu);
    CHECK(most_in <= 4);
    std::sort(sent.begin(), sent.end());
    CHECK(std::adjacent_find(sent.begin(), sent.end()) == sent.end());
    CHECK(sent.size() == static_cast<std::size_t>(next));
  }

  // With nothing in flight the next entry wakes a worker at once, as before.
  add(1);
  REQUIRE(q.flush(30s));
  CHECK(q.stats().delivered == static_cast<std::uint64_t>(next));
}
