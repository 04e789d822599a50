// http_log end to end: the core queue + the libcurl sender + payloads against
// a real receiver on 127.0.0.1. Every test counts what the receiver got.
#include "support/catch.hpp"
#include "support/receiver.hpp"

#include <batchq/http_log.hpp>

#include <rapidjson/document.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace std::chrono_literals;
using batchq::drop_reason;
using batchq::enqueue_result;
using batchq::test::receiver;
using batchq::test::reply;

namespace {

// Entries the receiver accepted (2xx), by their "n" field, from each body:
// a bare object (batch of one) or an array.
std::map<long, int> received_ns(const receiver& r, std::size_t skip_failed = 0) {
  std::map<long, int> seen;
  auto reqs = r.requests();
  for (std::size_t i = skip_failed; i < reqs.size(); ++i) {
    const auto& req = reqs[i];
    rapidjson::Document d;
    d.Parse(req.body.data(), req.body.size());
    if (d.HasParseError()) continue;
    auto take = [&](const rapidjson::Value& v) {
      if (v.IsObject() && v.HasMember("n")) ++seen[static_cast<long>(v["n"].GetInt64())];
    };
    if (d.IsArray())
      for (const auto& v : d.GetArray()) take(v);
    else
      take(d);
  }
  return seen;
}

std::string entry(long n) { return "{\"n\":" + std::to_string(n) + ",\"msg\":\"hello\"}"; }

batchq::http_log_options fast_retry(const std::string& url, int retry_count) {
  batchq::http_log_options o;
  o.http.http_endpoint = url;
  o.http.timeout = 2000ms;
  o.queue.retry_count = retry_count;
  o.queue.backoff = batchq::backoff_policy::exponential;
  o.queue.initial_retry_delay = 5ms;
  o.queue.max_retry_delay = 20ms;
  o.queue.flush_timeout = 20ms;
  return o;
}

struct drop_log {
  std::mutex mu;
  std::vector<std::string> entries;
  std::vector<drop_reason> reasons;
  std::vector<std::string> errors;
  batchq::http_log_callbacks callbacks() {
    batchq::http_log_callbacks cb;
    cb.on_drop = [this](batchq::span<std::string> e, const batchq::drop_info& info, bool) {
      std::lock_guard<std::mutex> g(mu);
      for (auto& s : e) {
        entries.push_back(s);
        reasons.push_back(info.reason);
        errors.emplace_back(info.last_error);
      }
    };
    return cb;
  }
};

}  // namespace

TEST_CASE("http_log options default to Kong http-log's", "[http_log]") {
  batchq::http_log_options o;
  CHECK(o.queue.batch_max_size == 1);
  CHECK(o.queue.retry_count == 10);
  CHECK(o.queue.flush_timeout == 2s);
  CHECK(o.queue.process_delay == 0ms);
  CHECK(o.http.method == "POST");
  CHECK(o.http.content_type == "application/json");
  CHECK(o.http.timeout == 10000ms);
  CHECK(o.http.keepalive == 60000ms);
  CHECK(o.format == batchq::payload_format::kong);
  CHECK_FALSE(o.validate_json);
}

TEST_CASE("configuration JSON: Kong's units, batchq's keys, errors that name the key", "[http_log][config]") {
  auto o = batchq::parse_http_log_config(R"({
      "http_endpoint": "http://127.0.0.1:9/x", "method": "PUT", "timeout": 1500, "keepalive": 100,
      "queue_size": 50, "retry_count": 3, "flush_timeout": 0.5, "process_delay": 0.25,
      "headers": {"X-A": "1", "X-B": ["2", "3"]}, "max_entries": 500, "max_bytes": 100000,
      "overflow": "refuse_new", "backoff": "exponential", "initial_retry_delay": 0.01,
      "max_retry_delay": 2, "max_retry_time": 60, "jitter": true, "jitter_seed": 7,
      "flush_mode": "coalescing", "concurrency": 2, "format": "ndjson", "validate_json": true,
      "gzip": true, "ssl_verify": false, "drop_permanent_4xx": true, "name": "edge",
      "shutdown_timeout": 1.5, "drop_buffer_entries": 9, "log_buffer_lines": 3 })");
  CHECK(o.http.http_endpoint == "http://127.0.0.1:9/x");
  CHECK(o.http.method == "PUT");
  CHECK(o.http.timeout == 1500ms);
  CHECK(o.http.keepalive == 100ms);
  CHECK(o.queue.batch_max_size == 50);
  CHECK(o.queue.retry_count == 3);
  CHECK(o.queue.flush_timeout == 500ms);
  CHECK(o.queue.process_delay == 250ms);
  REQUIRE(o.http.headers.size() == 2);
  CHECK(o.http.headers[1] == std::make_pair(std::string("X-B"), std::string("2, 3")));
  CHECK(o.queue.max_entries == 500);
  CHECK(o.queue.max_bytes == 100000);
  CHECK(o.queue.overflow == batchq::overflow_policy::refuse_new);
  CHECK(o.queue.backoff == batchq::backoff_policy::exponential);
  CHECK(o.queue.initial_retry_delay == 10ms);
  CHECK(o.queue.max_retry_delay == 2000ms);
  CHECK(o.queue.max_retry_time == 60000ms);
  CHECK(o.queue.jitter);
  CHECK(o.queue.jitter_seed == 7);
  CHECK(o.queue.flush == batchq::flush_mode::coalescing);
  CHECK(o.queue.concurrency == 2);
  CHECK(o.format == batchq::payload_format::ndjson);
  CHECK(o.validate_json);
  CHECK(o.http.gzip);
  CHECK_FALSE(o.http.ssl_verify);
  CHECK(o.http.drop_permanent_4xx);
  CHECK(o.name == "edge");
  CHECK(o.queue.shutdown_timeout == 1500ms);
  CHECK(o.drop_buffer_entries == 9);
  CHECK(o.log_buffer_lines == 3);

  auto error_of = [](const std::string& json) -> std::pair<std::string, std::string> {
    try {
      batchq::parse_http_log_config(json);
    } catch (const batchq::options_error& e) {
      return {e.field(), e.what()};
    }
    return {"", "no error"};
  };
  auto e = error_of(R"({"http_endpoint":"http://h/","flush_timout":1})");
  CHECK(e.first == "flush_timout");
  CHECK(e.second == "flush_timout: unknown key (did you mean flush_timeout?)");
  e = error_of(R"({"http_endpoint":"http://h/","timeout":"10s"})");
  CHECK(e.first == "timeout");
  CHECK(e.second.find("must be a number of milliseconds") != std::string::npos);
  e = error_of(R"({"http_endpoint":"http://h/","headers":{"Content-Length":"1"}})");
  CHECK(e.first == "headers");
  e = error_of(R"({"http_endpoint":"http://u:p@h/","headers":{"Authorization":"Basic x"}})");
  CHECK(e.first == "headers");
  CHECK(e.second.find(":p@") == std::string::npos);
  e = error_of(R"({"http_endpoint":"http://h/","concurrency":0})");
  CHECK(e.first == "concurrency");
  e = error_of(R"({"http_endpoint":"http://h/","spool_fsync":"sometimes"})");
  CHECK(e.second == "spool_fsync: must be one of never, interval, always, got \"sometimes\"");
  e = error_of(R"({"http_endpoint": 5})");
  CHECK(e.first == "http_endpoint");
  e = error_of("{\"http_endpoint\":\"http://h/\",}");
  CHECK(e.second.find("not valid JSON at offset") != std::string::npos);
  CAPTURE(e.second);
}

TEST_CASE("a healthy endpoint gets every entry exactly once, from several producers", "[http_log]") {
  receiver r;
  drop_log drops;
  auto o = fast_retry(r.url("/ingest"), 3);
  o.queue.batch_max_size = GENERATE(1, 100);
  const int producers = 2, per = 600;
  {
    batchq::http_log log(o, drops.callbacks());
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
      threads.emplace_back([&, p] {
        for (int i = 0; i < per; ++i) log.enqueue(entry(p * per + i));
      });
    for (auto& t : threads) t.join();
    REQUIRE(log.flush(60s));
    auto s = log.stats();
    CHECK(s.enqueued == producers * per);
    CHECK(s.delivered == producers * per);
    CHECK(s.balanced());
  }
  auto seen = received_ns(r);
  CHECK(seen.size() == static_cast<std::size_t>(producers * per));
  int dup = 0;
  for (const auto& kv : seen)
    if (kv.second != 1) ++dup;
  CHECK(dup == 0);
  CHECK(drops.entries.empty());
  for (const auto& req : r.requests()) {
    CHECK(req.method == "POST");
    CHECK(req.path == "/ingest");
    CHECK(req.header("Content-Type") == "application/json");
  }
}

TEST_CASE("an endpoint down for the whole retry budget: exactly the reported drops", "[http_log]") {
  int dead_port;
  {
    receiver gone;
    dead_port = gone.port();
  }
  drop_log drops;
  auto o = fast_retry("http://127.0.0.1:" + std::to_string(dead_port) + "/", 3);
  o.queue.batch_max_size = 10;
  batchq::http_log log(o, drops.callbacks());
  for (int i = 0; i < 95; ++i) REQUIRE(log.enqueue(entry(i)) == enqueue_result::accepted);
  REQUIRE(log.flush(60s));
  auto s = log.stats();
  CHECK(s.dropped_for(drop_reason::retries_exhausted) == 95);
  CHECK(s.attempts == 30);  // 10 batches x 3 attempts
  CHECK(s.balanced());
  std::lock_guard<std::mutex> g(drops.mu);
  std::set<std::string> got(drops.entries.begin(), drops.entries.end());
  CHECK(got.size() == 95);
  CHECK(drops.entries.size() == 95);
  for (const auto& why : drops.reasons) CHECK(why == drop_reason::retries_exhausted);
  for (const auto& err : drops.errors)
    CHECK(err.rfind("failed request to 127.0.0.1:" + std::to_string(dead_port), 0) == 0);
}

TEST_CASE("an endpoint that recovers gets every entry once", "[http_log]") {
  receiver r;
  r.fail_first(6, 503, "busy");
  drop_log drops;
  auto o = fast_retry(r.url(), 10);
  o.queue.batch_max_size = 7;
  {
    batchq::http_log log(o, drops.callbacks());
    for (int i = 0; i < 70; ++i) log.enqueue(entry(i));
    REQUIRE(log.flush(60s));
    auto s = log.stats();
    CHECK(s.delivered == 70);
    CHECK(s.failed_attempts == 6);
    CHECK(s.retried == 6);
  }
  auto seen = received_ns(r, 6);  // the first six were answered 503
  CHECK(seen.size() == 70);
  for (const auto& kv : seen) CHECK(kv.second == 1);
  CHECK(drops.entries.empty());
}

TEST_CASE("Retry-After on 503 holds the next attempt back end to end", "[http_log]") {
  receiver r;
  r.push(reply::with_status(503, "later").retry_after("1"));
  auto o = fast_retry(r.url(), 3);
  batchq::http_log log(o);
  log.enqueue(entry(1));
  REQUIRE(log.flush(30s));
  auto reqs = r.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[1].received_at - reqs[0].received_at >= 1s);  // not earlier than Retry-After
}

TEST_CASE("permanent 4xx drops at once when asked, with its reason", "[http_log]") {
  receiver r;
  r.set_responder([](const batchq::test::recorded_request& req) {
    return req.body.find("\"n\":1,") != std::string::npos ? reply::with_status(413, "too big")
                                                           : reply::with_status(400, "bad");
  });
  drop_log drops;
  auto o = fast_retry(r.url(), 10);
  o.http.drop_permanent_4xx = true;
  batchq::http_log log(o, drops.callbacks());
  log.enqueue(entry(1));
  log.enqueue(entry(2));
  REQUIRE(log.flush(30s));
  CHECK(r.count() == 2);  // one attempt each
  std::lock_guard<std::mutex> g(drops.mu);
  REQUIRE(drops.reasons.size() == 2);
  std::multiset<drop_reason> reasons(drops.reasons.begin(), drops.reasons.end());
  CHECK(reasons.count(drop_reason::too_large) == 1);
  CHECK(reasons.count(drop_reason::rejected) == 1);
}

TEST_CASE("refusals say what to fix and keep nothing half-taken", "[http_log]") {
  receiver r;
  auto o = fast_retry(r.url(), 1);
  o.validate_json = true;
  o.queue.max_bytes = 40;
  o.queue.max_entries = 0;
  batchq::http_log log(o);
  std::string err;
  CHECK(log.enqueue("{\"a\":", &err) == enqueue_result::invalid_json);
  CHECK(err.find("offset 5") != std::string::npos);
  CHECK(log.enqueue("{\"pad\":\"" + std::string(40, 'x') + "\"}", &err) == enqueue_result::too_large);
  CHECK(err.find("than the queue's max_bytes (40 bytes)") != std::string::npos);
  CHECK(log.enqueue(entry(5), &err) == enqueue_result::accepted);
  REQUIRE(log.flush(30s));
  auto s = log.stats();
  CHECK(s.enqueued == 1);
  CHECK(s.delivered == 1);
  CHECK(s.refused_for(enqueue_result::invalid_json) == 1);
  CHECK(s.refused_for(enqueue_result::too_large) == 1);
}

TEST_CASE("pull mode: poll_dropped hands out every drop, bounded, overflow counted", "[http_log]") {
  int dead_port;
  {
    receiver gone;
    dead_port = gone.port();
  }
  auto o = fast_retry("http://127.0.0.1:" + std::to_string(dead_port) + "/", 1);
  o.queue.batch_max_size = 5;
  o.drop_buffer_entries = 12;
  batchq::http_log log(o);
  for (int i = 0; i < 20; ++i) log.enqueue(entry(i));
  REQUIRE(log.flush(30s));
  auto b = log.buffer_stats();
  CHECK(b.drop_pending == 12);
  CHECK(b.drop_overflow == 8);
  std::vector<batchq::dropped_entry> out;
  CHECK(log.poll_dropped(out, 5) == 5);
  CHECK(log.poll_dropped(out, 100) == 7);
  CHECK(log.poll_dropped(out, 100) == 0);
  REQUIRE(out.size() == 12);
  CHECK(out[0].data == entry(0));  // oldest first
  CHECK(out[0].reason == drop_reason::retries_exhausted);
  CHECK(out[0].attempts == 1);
  CHECK(out[0].time_ms > 0);
  batchq::log_level lvl;
  std::string line;
  int lines = 0;
  while (log.poll_log(lvl, line)) {
    ++lines;
    CHECK(line == "entry batch was already tried 1 times, dropping it");
  }
  CHECK(lines == 4);
  auto json = log.stats_json();
  CHECK(json.find("\"drop_buffer_overflow\":8") != std::string::npos);
  CHECK(json.find("\"balanced\":true") != std::string::npos);
}
