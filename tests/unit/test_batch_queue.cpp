// The core's schedule, checked step by step on a manual clock against the
// figures of ../shared/kong-batch-queue.md. No test sleeps.
#include "support/catch.hpp"
#include "support/manual_harness.hpp"

#include <algorithm>
#include <map>
#include <random>
#include <set>

using namespace batchq::test;
using batchq::drop_reason;
using batchq::enqueue_result;
using batchq::log_level;

namespace Catch {
template <>
struct StringMaker<std::pair<long long, std::string>> {
  static std::string convert(const std::pair<long long, std::string>& p) {
    return "(" + std::to_string(p.first) + ", " + p.second + ")";
  }
};
}  // namespace Catch

namespace {

batchq::batch_queue_options kong_opts(std::size_t batch_max_size) {
  batchq::batch_queue_options o;
  o.batch_max_size = batch_max_size;
  return o;
}

std::vector<std::string> names(const std::string& prefix, int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(prefix + std::to_string(i));
  return v;
}

}  // namespace

TEST_CASE("defaults are Kong's", "[options]") {
  batchq::batch_queue_options o;
  CHECK(o.batch_max_size == 1000);
  CHECK(o.flush_timeout == 2s);
  CHECK(o.process_delay == 1s);
  CHECK(o.retry_count == 10);
  CHECK(o.max_entries == 10000);
  CHECK(o.max_bytes == 0);
  CHECK(o.max_retry_time == 0ms);
  CHECK(o.backoff == batchq::backoff_policy::kong_quadratic);
  CHECK(o.flush == batchq::flush_mode::kong_idle);
  CHECK(o.concurrency == 1);
  CHECK(o.initial_retry_delay == 10ms);
  CHECK(o.max_retry_delay == 60s);
}

TEST_CASE("a batch is closed by size with exactly batch_max_size entries, in order", "[kong][size]") {
  auto o = kong_opts(3);
  o.process_delay = 0ms;
  harness h(o);
  for (const auto& e : names("e", 7)) REQUIRE(h.add(e) == enqueue_result::accepted);
  REQUIRE(h.calls.size() == 2);
  CHECK(h.calls[0].entries == std::vector<std::string>{"e0", "e1", "e2"});
  CHECK(h.calls[1].entries == std::vector<std::string>{"e3", "e4", "e5"});
  CHECK(h.calls[0].at_ms == 0);
  // The seventh waits for the idle flush: last entry at 0, tick at 2 s finds no
  // activity since 0 within 2 s, so the batch closes at 2 s.
  h.run_until(10s);
  REQUIRE(h.calls.size() == 3);
  CHECK(h.calls[2].entries == std::vector<std::string>{"e6"});
  CHECK(h.calls[2].at_ms == 2000);
  CHECK(h.q->stats().delivered == 7);
}

TEST_CASE("batch_max_size 1 makes one batch per entry at once, ignoring process_delay", "[kong][size]") {
  auto o = kong_opts(1);
  o.process_delay = 1s;  // Kong ignores it for size 1
  harness h(o);
  for (const auto& e : names("x", 5)) h.add(e);
  REQUIRE(h.calls.size() == 5);
  for (int i = 0; i < 5; ++i) {
    CHECK(h.calls[i].entries == std::vector<std::string>{"x" + std::to_string(i)});
    CHECK(h.calls[i].at_ms == 0);
  }
}

TEST_CASE("process_delay delays the first attempt of a new chain", "[kong][delay]") {
  auto o = kong_opts(2);
  o.process_delay = 1s;
  harness h(o);
  h.add("a");
  h.add("b");  // closes by size at 0
  CHECK(h.calls.empty());
  h.run_until(999ms);
  CHECK(h.calls.empty());
  h.run_until(1000ms);
  REQUIRE(h.calls.size() == 1);
  CHECK(h.calls[0].at_ms == 1000);
  // While the chain runs (a success: next batch goes at once), newly closed
  // batches are not delayed again.
}

TEST_CASE("idle flush closes between F and 2F after the last entry", "[kong][flush]") {
  auto o = kong_opts(100);
  o.process_delay = 0ms;
  o.flush_timeout = 2s;
  SECTION("entry at 0 and 1.5 s: tick at 2 s sees activity, tick at 4 s closes") {
    harness h(o);
    h.add("a");
    h.run_until(1500ms);
    h.add("b");
    h.run_until(3999ms);
    CHECK(h.calls.empty());
    h.run_until(4000ms);
    REQUIRE(h.calls.size() == 1);
    CHECK(h.calls[0].entries == std::vector<std::string>{"a", "b"});
    const long long since_last = h.calls[0].at_ms - 1500;
    CHECK(since_last >= 2000);
    CHECK(since_last <= 4000);
  }
  SECTION("a single entry closes exactly F after it") {
    harness h(o);
    h.run_until(700ms);
    h.add("only");
    h.run_until(10s);
    REQUIRE(h.calls.size() == 1);
    CHECK(h.calls[0].at_ms == 2700);
  }
  SECTION("for any arrival pattern the close is within [F, 2F] of the last entry") {
    std::mt19937 rng(7);
    for (int round = 0; round < 30; ++round) {
      harness h(o);
      long long t = 0, last = 0;
      int n = 1 + static_cast<int>(rng() % 6);
      for (int i = 0; i < n; ++i) {
        t += static_cast<long long>(rng() % 1900);  // gaps below F: one batch
        h.run_until(ms(t));
        h.add("e" + std::to_string(i));
        last = t;
      }
      h.run_until(60s);
      REQUIRE(h.calls.size() == 1);
      CHECK(h.calls[0].entries.size() == static_cast<std::size_t>(n));
      CHECK(h.calls[0].at_ms - last >= 2000);
      CHECK(h.calls[0].at_ms - last <= 4000);
    }
  }
}

TEST_CASE("under steady traffic with gaps below F a batch is only closed by size", "[kong][flush]") {
  auto o = kong_opts(10);
  o.process_delay = 0ms;
  o.flush_timeout = 2s;
  harness h(o);
  for (int i = 0; i < 95; ++i) {
    h.run_until(ms(i * 1000));
    h.add("e" + std::to_string(i));
  }
  REQUIRE(h.calls.size() == 9);
  for (std::size_t b = 0; b < 9; ++b) {
    CHECK(h.calls[b].entries.size() == 10);
    CHECK(h.calls[b].entries.front() == "e" + std::to_string(b * 10));
    CHECK(h.calls[b].at_ms == static_cast<long long>(b * 10 + 9) * 1000);
  }
  h.run_until(200s);  // traffic stops: the remainder goes by idle flush
  REQUIRE(h.calls.size() == 10);
  CHECK(h.calls[9].entries.size() == 5);
}

TEST_CASE("coalescing mode closes F after the first entry", "[flush]") {
  auto o = kong_opts(100);
  o.process_delay = 0ms;
  o.flush = batchq::flush_mode::coalescing;
  o.flush_timeout = 1s;
  harness h(o);
  h.add("a");
  h.run_until(500ms);
  h.add("b");
  h.run_until(900ms);
  h.add("c");
  h.run_until(1000ms);
  REQUIRE(h.calls.size() == 1);
  CHECK(h.calls[0].at_ms == 1000);
  CHECK(h.calls[0].entries.size() == 3);
  h.run_until(1200ms);
  h.add("d");
  h.run_until(5s);
  REQUIRE(h.calls.size() == 2);
  CHECK(h.calls[1].at_ms == 2200);
}

TEST_CASE("an endpoint that is down: Kong's ten attempts, then one drop", "[kong][retry]") {
  auto o = kong_opts(1);
  o.retry_count = 10;
  o.process_delay = 0ms;
  harness h(o);
  h.behaviour = [](const call&) { return fail("connection refused"); };
  h.add(R"({"id":1})");
  h.run_until(3600s);
  const std::vector<long long> expected = {0, 4, 13, 29, 54, 90, 139, 199, 259, 319};
  std::vector<long long> got;
  for (auto t : h.call_times()) got.push_back(t / 1000);
  CHECK(got == expected);
  for (auto t : h.call_times()) CHECK(t % 1000 == 0);
  REQUIRE(h.drops.size() == 1);
  CHECK(h.drops[0].entries == std::vector<std::string>{R"({"id":1})"});
  CHECK(h.drops[0].reason == drop_reason::retries_exhausted);
  CHECK(h.drops[0].attempts == 10);
  CHECK(h.drops[0].last_error == "connection refused");
  CHECK(h.drops[0].at_ms == 319000);
  CHECK(h.count_logs(log_level::warn, "failed to process entries: connection refused") == 9);
  CHECK(h.count_logs(log_level::error, "entry batch was already tried 10 times, dropping it") == 1);
  auto s = h.q->stats();
  CHECK(s.dropped_for(drop_reason::retries_exhausted) == 1);
  CHECK(s.attempts == 10);
  CHECK(s.failed_attempts == 10);
  CHECK(s.retried == 9);
  CHECK(s.balanced());
  CHECK(s.pending == 0);
}

TEST_CASE("retry_count below 1 acts as 1", "[kong][retry]") {
  auto o = kong_opts(1);
  o.retry_count = GENERATE(0, -3, 1);
  o.process_delay = 0ms;
  harness h(o);
  h.behaviour = [](const call&) { return fail(); };
  h.add("a");
  h.run_until(600s);
  CHECK(h.calls.size() == 1);
  REQUIRE(h.drops.size() == 1);
  CHECK(h.drops[0].attempts == 1);
}

TEST_CASE("a failed batch goes behind newer ones; one backoff counter per queue", "[kong][retry]") {
  auto o = kong_opts(1);
  o.process_delay = 0ms;
  SECTION("two failing batches share the counter: 4, 9, 16 ...") {
    harness h(o);
    h.behaviour = [](const call&) { return fail(); };
    h.add_all({"a", "b"});
    h.run_until(60s);
    std::vector<std::pair<long long, std::string>> seq;
    for (const auto& c : h.calls) seq.emplace_back(c.at_ms / 1000, c.entries[0]);
    // a fails at 0 (wait 4), b at 4 (wait 9), a at 13 (wait 16), b at 29 (wait 25), a at 54
    std::vector<std::pair<long long, std::string>> want = {{0, "a"}, {4, "b"}, {13, "a"}, {29, "b"}, {54, "a"}};
    CHECK(seq == want);
  }
  SECTION("a success resets the counter") {
    harness h(o);
    h.behaviour = [](const call& c) {
      return c.entries[0] == "a" && c.attempt < 3 ? fail() : batchq::process_result::success();
    };
    h.add_all({"a", "b"});
    h.run_until(60s);
    std::vector<std::pair<long long, std::string>> seq;
    for (const auto& c : h.calls) seq.emplace_back(c.at_ms, c.entries[0]);
    // a fails at 0 -> behind b, wait 4 s; b succeeds at 4 s -> counter reset,
    // next at once: a fails again at 4 s -> wait 4 s (not 9); a succeeds at 8 s.
    std::vector<std::pair<long long, std::string>> want = {{0, "a"}, {4000, "b"}, {4000, "a"}, {8000, "a"}};
    CHECK(seq == want);
    CHECK(h.q->stats().delivered == 2);
    CHECK(h.drops.empty());
  }
  SECTION("batches closed while one waits queue behind it, and the failed one behind them") {
    auto o2 = kong_opts(1);
    o2.process_delay = 0ms;
    harness h(o2);
    int fails_left = 1;
    h.behaviour = [&](const call&) {
      if (fails_left > 0) {
        --fails_left;
        return fail();
      }
      return batchq::process_result::success();
    };
    // old fails at 0 while new1 and new2 wait: it goes behind them. (A batch
    // that fails alone is simply next again, as in Kong.)
    h.add_all({"old", "new1", "new2"});
    h.run_until(30s);
    std::vector<std::string> order;
    for (const auto& c : h.calls) order.push_back(c.entries[0]);
    CHECK(order == std::vector<std::string>{"old", "new1", "new2", "old"});
  }
}

TEST_CASE("the backoff also grows on the failure that drops a batch", "[kong][retry]") {
  auto o = kong_opts(1);
  o.process_delay = 0ms;
  o.retry_count = 2;
  harness h(o);
  h.behaviour = [](const call& c) { return c.entries[0] == "b" ? batchq::process_result::success() : fail(); };
  h.add("a");
  h.run_until(1s);
  h.add("b");  // closed at 1 s, queued behind a's retry
  h.run_until(60s);
  std::vector<std::pair<long long, std::string>> seq;
  for (const auto& c : h.calls) seq.emplace_back(c.at_ms / 1000, c.entries[0]);
  // a fails at 0 (counter 2: wait 4) and goes to the tail: [a]; b joins: [a, b].
  // a fails at 4 and is dropped (2 attempts), counter 3: wait 9, so b goes at
  // 13, not at once.
  std::vector<std::pair<long long, std::string>> want = {{0, "a"}, {4, "a"}, {13, "b"}};
  CHECK(seq == want);
  REQUIRE(h.drops.size() == 1);
  CHECK(h.drops[0].entries == std::vector<std::string>{"a"});
}

TEST_CASE("a throwing process function is a failure and the queue goes on", "[retry]") {
  auto o = kong_opts(1);
  o.process_delay = 0ms;
  harness h(o);
  int n = 0;
  h.behaviour = [&](const call&) -> batchq::process_result {
    if (n++ == 0) throw std::runtime_error("kaboom");
    return batchq::process_result::success();
  };
  h.add("a");
  h.run_until(10s);
  CHECK(h.calls.size() == 2);
  CHECK(h.calls[1].at_ms == 4000);
  CHECK(h.count_logs(log_level::warn, "process function threw: kaboom") == 1);
  h.add("b");
  CHECK(h.calls.size() == 3);
  CHECK(h.q->stats().delivered == 2);
  CHECK(h.drops.empty());
}

TEST_CASE("Retry-After holds the next attempt back", "[retry]") {
  auto o = kong_opts(1);
  o.process_delay = 0ms;
  harness h(o);
  int n = 0;
  h.behaviour = [&](const call&) {
    return n++ == 0 ? batchq::process_result::failure("503", 30s) : batchq::process_result::success();
  };
  h.add("a");
  h.run_until(100s);
  REQUIRE(h.calls.size() == 2);
  CHECK(h.calls[1].at_ms == 30000);  // not 4 s
}

TEST_CASE("a permanent failure drops at once with its reason", "[retry]") {
  auto o = kong_opts(1);
  o.process_delay = 0ms;
  harness h(o);
  h.behaviour = [](const call&) { return batchq::process_result::reject("400 bad request"); };
  h.add("a");
  h.add("b");
  h.run_until(100s);
  CHECK(h.calls.size() == 2);
  CHECK(h.calls[1].at_ms == 0);  // the receiver answered: no backoff
  REQUIRE(h.drops.size() == 2);
  CHECK(h.drops[0].reason == drop_reason::rejected);
  CHECK(h.drops[0].attempts == 1);
  CHECK(h.drops[0].last_error == "400 bad request");
}

TEST_CASE("max_entries drops the oldest entries as queue_full", "[bounds]") {
  auto o = kong_opts(2);
  o.max_entries = 4;
  o.process_delay = 1h;  // nothing is sent during the test
  harness h(o);
  for (const auto& e : names("e", 7)) CHECK(h.add(e) == enqueue_result::accepted);
  std::vector<std::string> dropped;
  for (const auto& d : h.drops) {
    CHECK(d.reason == drop_reason::queue_full);
    dropped.insert(dropped.end(), d.entries.begin(), d.entries.end());
  }
  CHECK(dropped == std::vector<std::string>{"e0", "e1", "e2"});
  auto s = h.q->stats();
  CHECK(s.pending == 4);
  CHECK(s.dropped_for(drop_reason::queue_full) == 3);
  CHECK(s.balanced());
  CHECK(h.count_logs(log_level::error, "queue full, dropping old entries until processing is successful again") == 1);
  h.q->flush(0ms);
  std::vector<std::string> sent;
  for (const auto& c : h.calls) sent.insert(sent.end(), c.entries.begin(), c.entries.end());
  CHECK(sent == std::vector<std::string>{"e3", "e4", "e5", "e6"});
}

TEST_CASE("push-outs part-way into a ready batch: it goes out with the rest, also when a split goes ahead of it",
          "[bounds]") {
  // make_room_locked moves pushed-out entries out of the first ready batch
  // and erases them only when that batch is next used: what is sent, held,
  // counted and dropped must be as if each had been erased at once.
  auto o = kong_opts(4);
  o.max_entries = 8;
  o.process_delay = 0ms;
  o.concurrency = 1;
  harness h(o);
  bool split_once = true;
  h.behaviour = [&](const call& c) {
    if (c.entries.front() == "e0" && split_once) {
      // While A = e0..e3 is in flight, B = e4..e7 is the first ready batch:
      // two entries push e4 and e5 out of it; then A is split, its halves
      // going ahead of B.
      split_once = false;
      for (const auto& e : names("n", 2)) CHECK(h.q->enqueue(std::string(e)) == enqueue_result::accepted);
      const auto s = h.q->stats();
      CHECK(s.pending == 4);  // e6 e7 in B, n0 n1 open
      CHECK(s.in_flight == 4);
      CHECK(s.dropped_for(drop_reason::queue_full) == 2);
      CHECK(s.balanced());
      auto r = batchq::process_result::failure("refused in part");
      r.split = true;
      return r;
    }
    return batchq::process_result::success();
  };
  for (const auto& e : names("e", 8)) h.q->enqueue(std::string(e));
  h.run_for(10ms);
  std::vector<std::string> dropped;
  for (const auto& d : h.drops) dropped.insert(dropped.end(), d.entries.begin(), d.entries.end());
  CHECK(dropped == std::vector<std::string>{"e4", "e5"});
  CHECK(h.q->flush(0ms));
  const std::vector<std::vector<std::string>> want{{"e0", "e1"}, {"e2", "e3"}, {"e6", "e7"}, {"n0", "n1"}};
  CHECK(h.delivered == want);
  const auto s = h.q->stats();
  CHECK(s.delivered == 8);
  CHECK(s.pending == 0);
  CHECK(s.bytes_held == 0);
  CHECK(s.balanced());

  SECTION("a batch emptied by push-outs leaves the line; the next one is pushed out from its start") {
    harness g(o);
    g.behaviour = [](const call&) { return fail(); };  // nothing is delivered: batches stay in line
    for (const auto& e : names("a", 4)) g.q->enqueue(std::string(e));
    g.q->run_due();  // a0..a3 in flight (and failed: back in line)
    for (const auto& e : names("b", 8)) g.q->enqueue(std::string(e));  // b0..b3, b4..b7 closed; a0..a3 pushed out
    for (const auto& e : names("c", 5)) g.q->enqueue(std::string(e));  // b0..b4 pushed out, part-way into b4..b7
    g.q->run_due();  // hands the drops over; the retry's backoff is not due yet
    CHECK(g.calls.size() == 1);
    std::vector<std::string> gone;
    for (const auto& d : g.drops) gone.insert(gone.end(), d.entries.begin(), d.entries.end());
    CHECK(gone == std::vector<std::string>{"a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3", "b4"});
    const auto t = g.q->stats();
    CHECK(t.pending == 8);  // b5 b6 b7 + c0..c3 closed + c4 open
    CHECK(t.balanced());
    g.behaviour = [](const call&) { return batchq::process_result::success(); };
    g.run_for(1h);
    const std::vector<std::vector<std::string>> sent{{"b5", "b6", "b7"}, {"c0", "c1", "c2", "c3"}, {"c4"}};
    CHECK(g.delivered == sent);
  }
}

TEST_CASE("max_bytes drops the oldest, refuses an entry larger than the bound", "[bounds]") {
  auto o = kong_opts(10);
  o.max_entries = 0;
  o.max_bytes = 10;
  o.process_delay = 1h;
  harness h(o);
  CHECK(h.add("aaaa") == enqueue_result::accepted);
  CHECK(h.add("bbbb") == enqueue_result::accepted);
  CHECK(h.add("cccc") == enqueue_result::accepted);  // 12 > 10: "aaaa" goes
  REQUIRE(h.drops.size() == 1);
  CHECK(h.drops[0].entries == std::vector<std::string>{"aaaa"});
  CHECK(h.drops[0].reason == drop_reason::queue_full);
  CHECK(h.count_logs(log_level::error, "byte capacity exceeded, 1 queue entries were dropped") == 1);
  std::string big(11, 'x');
  CHECK(h.q->enqueue(std::move(big)) == enqueue_result::too_large);
  CHECK(big == std::string(11, 'x'));  // refused: the caller still has it
  auto s = h.q->stats();
  CHECK(s.bytes_held == 8);
  CHECK(s.refused_for(enqueue_result::too_large) == 1);
  CHECK(s.enqueued == 3);
  CHECK(s.balanced());
}

TEST_CASE("refuse_new keeps the queued entries and refuses the new one", "[bounds]") {
  auto o = kong_opts(2);
  o.max_entries = 3;
  o.overflow = batchq::overflow_policy::refuse_new;
  o.process_delay = 1h;
  harness h(o);
  CHECK(h.add("a") == enqueue_result::accepted);
  CHECK(h.add("b") == enqueue_result::accepted);
  CHECK(h.add("c") == enqueue_result::accepted);
  std::string d = "d";
  CHECK(h.q->enqueue(std::move(d)) == enqueue_result::queue_full);
  CHECK(d == "d");
  CHECK(h.drops.empty());
  CHECK(h.q->stats().refused_for(enqueue_result::queue_full) == 1);
}

TEST_CASE("max_retry_time with exponential backoff drops with retry_time_exceeded", "[retry]") {
  auto o = kong_opts(1);
  o.process_delay = 0ms;
  o.backoff = batchq::backoff_policy::exponential;
  o.initial_retry_delay = 1s;
  o.max_retry_delay = 60s;
  o.max_retry_time = 10s;
  o.retry_count = 100;
  harness h(o);
  h.behaviour = [](const call&) { return fail("down"); };
  h.add("a");
  h.run_until(600s);
  // waits 1, 2, 4, 8: attempts at 0, 1, 3, 7, 15; at 15 s the 10 s budget is spent
  CHECK(h.call_times() == std::vector<long long>{0, 1000, 3000, 7000, 15000});
  REQUIRE(h.drops.size() == 1);
  CHECK(h.drops[0].reason == drop_reason::retry_time_exceeded);
  CHECK(h.drops[0].attempts == 5);
  CHECK(h.count_logs(log_level::error, "could not send entries due to max_retry_time exceeded. 1 queue entries were lost") == 1);
}

TEST_CASE("exponential backoff is capped by max_retry_delay", "[retry]") {
  auto o = kong_opts(1);
  o.process_delay = 0ms;
  o.backoff = batchq::backoff_policy::exponential;
  o.initial_retry_delay = 10ms;
  o.max_retry_delay = 50ms;
  o.retry_count = 6;
  harness h(o);
  h.behaviour = [](const call&) { return fail(); };
  h.add("a");
  h.run_until(10s);
  CHECK(h.call_times() == std::vector<long long>{0, 10, 30, 70, 120, 170});
}

TEST_CASE("max_retry_delay below initial_retry_delay caps every wait (Kong accepts it)", "[retry][kong]") {
  auto o = kong_opts(1);
  o.process_delay = 0ms;
  o.backoff = batchq::backoff_policy::exponential;
  o.initial_retry_delay = 86400s;  // Kong 3.x allows up to 1e6 s
  o.max_retry_delay = 1ms;         // ... and down to 0.001 s
  o.retry_count = 4;
  REQUIRE(batchq::validate(o).empty());
  harness h(o);
  h.behaviour = [](const call&) { return fail(); };
  h.add("a");
  h.run_until(10s);
  // min(max_retry_delay, initial * 2^n) = 1 ms every time
  CHECK(h.call_times() == std::vector<long long>{0, 1, 2, 3});
  REQUIRE(h.drops.size() == 1);
  CHECK(h.drops[0].reason == drop_reason::retries_exhausted);
}

TEST_CASE("max_entries below batch_max_size is raised to one batch", "[bounds][kong]") {
  auto o = kong_opts(20000);  // http-log queue_size 20000 with the default max_entries 10000
  o.overflow = batchq::overflow_policy::refuse_new;
  o.process_delay = 0ms;
  o.max_entries = 10000;
  REQUIRE(batchq::validate(o).empty());
  harness h(o);
  CHECK(h.q->options().max_entries == 20000);
  for (int i = 0; i < 20000; ++i) REQUIRE(h.q->enqueue("e" + std::to_string(i)) == enqueue_result::accepted);
  CHECK(h.q->enqueue("one too many") == enqueue_result::queue_full);
  h.q->run_due();
  REQUIRE(h.calls.size() == 1);
  CHECK(h.calls[0].entries.size() == 20000);  // one full batch, as Kong sends it

  auto unbounded = kong_opts(5);
  unbounded.max_entries = 0;
  harness u(unbounded);
  CHECK(u.q->options().max_entries == 0);  // 0 stays "no bound"
}

TEST_CASE("full jitter draws each wait from [0, wait], reproducibly with a seed", "[retry]") {
  auto run = [](std::uint64_t seed) {
    auto o = kong_opts(1);
    o.process_delay = 0ms;
    o.jitter = true;
    o.jitter_seed = seed;
    o.retry_count = 8;
    harness h(o);
    h.behaviour = [](const call&) { return fail(); };
    h.add("a");
    h.run_until(3600s);
    return h.call_times();
  };
  auto a = run(42), b = run(42), c = run(43);
  CHECK(a == b);
  CHECK(a != c);
  REQUIRE(a.size() == 8);
  const long long cap[] = {4000, 9000, 16000, 25000, 36000, 49000, 60000};
  for (std::size_t i = 1; i < a.size(); ++i) {
    CHECK(a[i] - a[i - 1] >= 0);
    CHECK(a[i] - a[i - 1] <= cap[i - 1]);
  }
}

TEST_CASE("flush() skips process_delay; shutdown() reports what it cannot deliver", "[shutdown]") {
  auto o = kong_opts(100);
  o.process_delay = 1s;
  harness h(o);
  h.add("a");
  h.add("b");
  CHECK(h.q->flush(0ms));
  REQUIRE(h.calls.size() == 1);
  CHECK(h.calls[0].at_ms == 0);

  h.behaviour = [](const call&) { return fail("down"); };
  h.add("c");
  h.add("d");
  CHECK_FALSE(h.q->shutdown(0ms));
  // the attempt made during shutdown failed; what is left is reported
  REQUIRE(h.drops.size() == 1);
  CHECK(h.drops[0].reason == drop_reason::shutdown);
  CHECK(h.drops[0].entries == std::vector<std::string>{"c", "d"});
  CHECK(h.drops[0].attempts == 1);
  CHECK(h.drops[0].last_error == "down");
  std::string e = "e";
  CHECK(h.q->enqueue(std::move(e)) == enqueue_result::shut_down);
  CHECK(e == "e");
  auto s = h.q->stats();
  CHECK(s.enqueued == 4);
  CHECK(s.delivered == 2);
  CHECK(s.dropped_for(drop_reason::shutdown) == 2);
  CHECK(s.refused_for(enqueue_result::shut_down) == 1);
  CHECK(s.balanced());
  CHECK_FALSE(h.q->shutdown(0ms));  // idempotent
}

TEST_CASE("shutdown() with a healthy endpoint delivers everything", "[shutdown]") {
  auto o = kong_opts(3);
  harness h(o);
  for (const auto& e : names("e", 10)) h.add(e);
  CHECK(h.q->shutdown(1s));
  CHECK(h.q->stats().delivered == 10);
  CHECK(h.drops.empty());
}

TEST_CASE("invalid options are refused with the field and the allowed range", "[options]") {
  auto expect_error = [](batchq::batch_queue_options o, const std::string& field, const std::string& allowed) {
    o.exec = batchq::execution::manual;
    batchq::batch_queue_callbacks<std::string> cb;
    cb.process = [](batchq::span<const std::string>, const batchq::attempt_context&) {
      return batchq::process_result::success();
    };
    try {
      batchq::batch_queue<std::string> q(o, cb);
      FAIL("no error for " << field);
    } catch (const batchq::options_error& e) {
      CHECK(e.field() == field);
      CHECK(std::string(e.what()).find(field) == 0);
      CHECK(std::string(e.what()).find(allowed) != std::string::npos);
    }
  };
  batchq::batch_queue_options o;
  o.batch_max_size = 0;
  expect_error(o, "batch_max_size", "allowed: 1 or more");
  o = {};
  o.flush_timeout = -5ms;
  expect_error(o, "flush_timeout", "allowed: 1 ms or more");
  o = {};
  o.process_delay = -1ms;
  expect_error(o, "process_delay", "allowed: 0 or more");
  o = {};
  o.max_bytes = 100;
  o.batch_max_bytes = 1000;
  expect_error(o, "batch_max_bytes", "at most max_bytes");
  o = {};
  o.concurrency = 0;
  expect_error(o, "concurrency", "1 to 64");
  o = {};
  o.max_retry_delay = 0ms;
  expect_error(o, "max_retry_delay", "1 ms or more");
  o = {};
  o.max_retry_time = -1s;
  expect_error(o, "max_retry_time", "allowed");

  batchq::batch_queue_callbacks<std::string> none;
  batchq::batch_queue_options ok;
  ok.exec = batchq::execution::manual;
  CHECK_THROWS_AS(batchq::batch_queue<std::string>(ok, none), batchq::options_error);
}

TEST_CASE("batch_max_bytes closes a batch before it would grow past the bound", "[size]") {
  auto o = kong_opts(100);
  o.batch_max_bytes = 10;
  o.process_delay = 0ms;
  harness h(o);
  h.add("aaaa");
  h.add("bbbb");
  h.add("cccc");  // 12 > 10: aaaa+bbbb close first
  h.add(std::string(20, 'z'));  // alone in its batch
  h.run_until(10s);
  REQUIRE(h.calls.size() == 3);
  CHECK(h.calls[0].entries == std::vector<std::string>{"aaaa", "bbbb"});
  CHECK(h.calls[1].entries == std::vector<std::string>{"cccc"});
  CHECK(h.calls[2].entries.size() == 1);
}

TEST_CASE("a seeded random sequence keeps the books balanced at every step", "[invariant]") {
  for (std::uint32_t seed = 1; seed <= 25; ++seed) {
    std::mt19937 rng(seed);
    batchq::batch_queue_options o;
    o.batch_max_size = 1 + rng() % 5;
    o.max_entries = (rng() % 2) ? 0 : o.batch_max_size + rng() % 10;
    o.max_bytes = (rng() % 3 == 0) ? 40 + rng() % 40 : 0;
    o.retry_count = static_cast<int>(rng() % 4);
    o.process_delay = ms(rng() % 2000);
    o.flush_timeout = ms(100 + rng() % 3000);
    o.flush = (rng() % 2) ? batchq::flush_mode::coalescing : batchq::flush_mode::kong_idle;
    o.backoff = (rng() % 2) ? batchq::backoff_policy::exponential : batchq::backoff_policy::kong_quadratic;
    o.max_retry_time = (rng() % 2) ? ms(rng() % 30000) : 0ms;
    harness h(o);
    bool down = false;
    h.behaviour = [&](const call&) {
      if (rng() % 11 == 0) throw std::runtime_error("random throw");
      return down ? fail("down") : batchq::process_result::success();
    };
    std::vector<std::string> accepted;
    int next = 0;
    for (int step = 0; step < 400; ++step) {
      switch (rng() % 6) {
        case 0:
        case 1: {
          std::string e = "s" + std::to_string(seed) + "-" + std::to_string(next++) + std::string(rng() % 20, '.');
          std::string copy = e;
          if (h.q->enqueue(std::move(e)) == enqueue_result::accepted) accepted.push_back(copy);
          break;
        }
        case 2: down = !down; break;
        case 3: h.run_for(ms(rng() % 5000)); break;
        case 4: h.q->run_due(); break;
        case 5: h.q->flush(0ms); break;
      }
      auto s = h.q->stats();
      REQUIRE(s.balanced());
      REQUIRE(s.enqueued == accepted.size());
    }
    h.q->shutdown(0ms);
    auto s = h.q->stats();
    REQUIRE(s.balanced());
    REQUIRE(s.pending + s.in_flight == 0);
    // Every accepted entry ended exactly once: delivered or dropped.
    std::multiset<std::string> ended;
    for (const auto& b : h.delivered) ended.insert(b.begin(), b.end());
    for (const auto& d : h.drops) ended.insert(d.entries.begin(), d.entries.end());
    REQUIRE(ended == std::multiset<std::string>(accepted.begin(), accepted.end()));
    std::uint64_t dropped = 0;
    for (const auto& d : h.drops) dropped += d.entries.size();
    REQUIRE(dropped == s.dropped_total());
  }
}

// Issue 12, item 13: a retry and a flush tick due at the same instant run in
// the order they were armed, as nginx runs Kong's timers. A batch of 5 fails
// at 104 ms (due again at 4104); an entry at 3104 arms a 1 s flush, also due
// at 4104. Kong attempts the old batch at 4104, requeues it, then the flush
// closes the new batch behind it: the old batch goes first again at 13104.
TEST_CASE("a retry and a flush due at the same instant run in the order armed", "[kong][retry][flush]") {
  auto o = kong_opts(5);
  o.flush_timeout = 1s;
  o.process_delay = 104ms;
  harness h(o);
  h.behaviour = [](const call&) { return fail(); };
  h.add_all({"a0", "a1", "a2", "a3", "a4"});  // closed by size at 0, first attempt at 104
  h.run_until(3104ms);
  REQUIRE(h.call_times() == std::vector<long long>{104});
  h.add("n0");  // arms the flush for 4104, after the retry was armed (at 104)
  SECTION("both due at 4104") {
    h.run_until(30s);
    std::vector<std::pair<long long, std::string>> seq;
    for (const auto& c : h.calls) seq.emplace_back(c.at_ms, c.entries[0]);
    // 104 +4 s -> 4104 (old; requeued before the flush closes n0) +9 s -> 13104 (old) +16 s -> 29104 (new)
    std::vector<std::pair<long long, std::string>> want = {{104, "a0"}, {4104, "a0"}, {13104, "a0"}, {29104, "n0"}};
    CHECK(seq == want);
  }
  SECTION("both overdue when the worker wakes late") {
    h.clock().set(h.clock().now() + 1500ms);  // 4604: no run_due at 4104
    h.q->run_due();
    h.run_until(31s);
    std::vector<std::pair<long long, std::string>> seq;
    for (const auto& c : h.calls) seq.emplace_back(c.at_ms, c.entries[0]);
    std::vector<std::pair<long long, std::string>> want = {{104, "a0"}, {4604, "a0"}, {13604, "a0"}, {29604, "n0"}};
    CHECK(seq == want);
  }
}
