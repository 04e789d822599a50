// What Kong's http-log accepts and how it behaves, on the library side
// (label: http): every boundary value of http-log's schema (3.9.3 and 2.8.5,
// and 3.9.3's queue record) creates a queue with a documented effective
// option; values really out of range are refused naming the key; the
// success-status bound and the per-operation timeout against real loopback
// servers; keepalive 0.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "batchq/http_log.hpp"
#include "batchq/http_sender.hpp"
#include "support/test_util.hpp"
#include "support/catch.hpp"
#include "support/raw_server.hpp"

using namespace std::chrono_literals;
using batchq::http_log;
using batchq::http_log_options;
using batchq::http_sender;
using batchq::http_sender_options;
using batchq::send_result;
using batchq::test::raw_connection;
using batchq::test::raw_request;
using batchq::test::raw_server;

namespace {

std::string endpoint() { return "http://127.0.0.1:" + std::to_string(batchq::test::unused_port()) + "/"; }

// Parses {"http_endpoint": ..., <extra>} and creates the queue from it, as
// batchq_new does. The queue is shut down at once (nothing was enqueued).
http_log_options created(const std::string& extra) {
  const std::string json = "{\"http_endpoint\":\"" + endpoint() + "\"," + extra + "}";
  INFO(json);
  http_log_options o = batchq::parse_http_log_config(json);
  http_log log(o);
  log.shutdown(0ms);
  return log.options();  // the options in effect
}

// The key an out-of-range value is refused for ("" if it is accepted).
std::string refused_key(const std::string& extra) {
  try {
    batchq::parse_http_log_config("{\"http_endpoint\":\"http://127.0.0.1:9/\"," + extra + "}");
  } catch (const batchq::options_error& e) {
    return e.field();
  }
  return "";
}

constexpr long long k_max_socket_ms = 2147483647;  // documented clamp (OpenResty's settimeout maximum)

}  // namespace

TEST_CASE("http-log timeout, keepalive, connect_timeout: any number of ms Kong accepts", "[http][kong][config]") {
  // Kong's schema says "number" (no bounds): fractions round up, 0 has
  // OpenResty's meaning, huge values clamp.
  CHECK(created("\"timeout\":10000").http.timeout == 10000ms);
  CHECK(created("\"timeout\":0.5").http.timeout == 1ms);
  CHECK(created("\"timeout\":1.2").http.timeout == 2ms);
  CHECK(created("\"timeout\":0").http.timeout == 60000ms);  // settimeout(0): lua_socket_*_timeout, 60 s
  CHECK(created("\"timeout\":1099511627776").http.timeout.count() == k_max_socket_ms);  // 2^40
  CHECK(created("\"timeout\":1e300").http.timeout.count() == k_max_socket_ms);
  CHECK(created("\"keepalive\":0").http.keepalive == 0ms);  // no connection reuse
  CHECK(created("\"keepalive\":60000").http.keepalive == 60000ms);
  CHECK(created("\"keepalive\":0.25").http.keepalive == 1ms);
  CHECK(created("\"keepalive\":1099511627776").http.keepalive.count() == k_max_socket_ms);
  CHECK(created("\"connect_timeout\":2.5").http.connect_timeout == 3ms);
  CHECK(created("\"connect_timeout\":0").http.connect_timeout == 0ms);

  CHECK(refused_key("\"timeout\":-1") == "timeout");
  CHECK(refused_key("\"keepalive\":-0.5") == "keepalive");
  CHECK(refused_key("\"timeout\":\"10s\"") == "timeout");
}

TEST_CASE("http-log queue_size / retry_count / flush_timeout (2.x and 3.x deprecated)", "[http][kong][config]") {
  // queue_size above the default max_entries 10000: one batch fits.
  auto o = created("\"queue_size\":20000");
  CHECK(o.queue.batch_max_size == 20000);
  CHECK(o.queue.max_entries == 20000);
  o = created("\"queue_size\":1000000");  // 3.9.3 max_batch_size's upper bound
  CHECK(o.queue.max_entries == 1000000);
  o = created("\"queue_size\":5,\"max_entries\":3");
  CHECK(o.queue.max_entries == 5);
  o = created("\"queue_size\":5,\"max_entries\":0");
  CHECK(o.queue.max_entries == 0);  // unbounded stays unbounded

  CHECK(created("\"retry_count\":0").queue.retry_count == 0);    // acts as 1 attempt
  CHECK(created("\"retry_count\":-5").queue.retry_count == 0);   // Kong 2.x: any integer
  CHECK(created("\"retry_count\":1099511627776").queue.retry_count == 1000000);

  CHECK(created("\"flush_timeout\":0").queue.flush_timeout == 1ms);  // 3.x max_coalescing_delay 0
  CHECK(created("\"flush_timeout\":3600").queue.flush_timeout == 3600s);
  CHECK(created("\"flush_timeout\":1e12").queue.flush_timeout == std::chrono::milliseconds(100000000000LL));

  CHECK(created("\"queue_size\":0").queue.batch_max_size == 1);   // Kong 2.x batch_queue: acts as 1
  CHECK(created("\"queue_size\":-3").queue.batch_max_size == 1);
  CHECK(created("\"queue_size\":1e300").queue.batch_max_size == 100000000);
  CHECK(refused_key("\"queue_size\":2.5") == "queue_size");
  CHECK(refused_key("\"flush_timeout\":-1") == "flush_timeout");
}

TEST_CASE("every bound of Kong 3.9.3's queue record maps onto a key that takes it", "[http][kong][config]") {
  // max_batch_size 1..1e6 -> queue_size; max_coalescing_delay 0..3600 -> flush_timeout (above)
  CHECK(created("\"queue_size\":1").queue.batch_max_size == 1);
  // max_entries 1..1e6
  CHECK(created("\"max_entries\":1").queue.max_entries == 1);
  CHECK(created("\"max_entries\":1000000").queue.max_entries == 1000000);
  // max_bytes: integer, no bounds in Kong (nil = none)
  CHECK(created("\"max_bytes\":1").queue.max_bytes == 1);
  CHECK(created("\"max_bytes\":1099511627776").queue.max_bytes == (std::size_t{1} << 40));
  CHECK(created("\"max_bytes\":1e300").queue.max_bytes == static_cast<std::size_t>(INT64_MAX));
  // max_retry_time: number, no bounds; -1 (and any negative) = no retries
  auto o = created("\"max_retry_time\":60");
  CHECK(o.queue.max_retry_time == 60s);
  o = created("\"max_retry_time\":-1,\"retry_count\":10");
  CHECK(o.queue.max_retry_time == 0ms);
  CHECK(o.queue.retry_count == 1);
  CHECK(created("\"max_retry_time\":1e12").queue.max_retry_time == std::chrono::milliseconds(100000000000LL));
  // initial_retry_delay / max_retry_delay: 0.001..1e6, in any order
  o = created("\"backoff\":\"exponential\",\"initial_retry_delay\":86400");
  CHECK(o.queue.initial_retry_delay == 86400s);
  CHECK(o.queue.max_retry_delay == 60s);  // below it: every wait is 60 s
  o = created("\"initial_retry_delay\":1000000,\"max_retry_delay\":0.001");
  CHECK(o.queue.initial_retry_delay == 1000000s);
  CHECK(o.queue.max_retry_delay == 1ms);
  CHECK(created("\"initial_retry_delay\":0.001").queue.initial_retry_delay == 1ms);
  CHECK(created("\"max_retry_delay\":1000000").queue.max_retry_delay == 1000000s);
  // concurrency_limit -1 or 1
  CHECK(created("\"concurrency\":1").queue.concurrency == 1);
  CHECK(created("\"concurrency\":-1").queue.concurrency == 16);

  CHECK(refused_key("\"max_entries\":-1") == "max_entries");
  CHECK(refused_key("\"max_bytes\":-1") == "max_bytes");
  CHECK(refused_key("\"initial_retry_delay\":0") == "initial_retry_delay");
  CHECK(refused_key("\"max_retry_delay\":0.0001") == "max_retry_delay");
  CHECK(refused_key("\"concurrency\":0") == "concurrency");
  CHECK(refused_key("\"concurrency\":-2") == "concurrency");
  CHECK(refused_key("\"concurrency\":65") == "concurrency");
}

TEST_CASE("success_status_max and timeout_scope keys", "[http][kong][config]") {
  auto o = created("\"success_status_max\":399,\"timeout_scope\":\"operation\"");
  CHECK(o.http.success_status_max == 399);
  CHECK(o.http.scope == batchq::timeout_scope::operation);
  o = created("\"ssl_verify\":false");
  CHECK(o.http.success_status_max == 299);
  CHECK(o.http.scope == batchq::timeout_scope::request);
  CHECK(created("\"success_status_max\":599").http.success_status_max == 599);
  CHECK(refused_key("\"success_status_max\":199") == "success_status_max");
  CHECK(refused_key("\"success_status_max\":600") == "success_status_max");
  CHECK(refused_key("\"timeout_scope\":\"socket\"") == "timeout_scope");
}

namespace {

http_sender_options sender_for(const std::string& url) {
  http_sender_options o;
  o.http_endpoint = url;
  o.timeout = 5000ms;
  return o;
}

// Answers every request on a connection with `head` and then `body`, one
// byte every `gap` (gap 0: at once); keep-alive.
raw_server answering(std::string status_line, std::string body = "ok",
                     std::chrono::milliseconds gap = 0ms) {
  return raw_server([status_line, body, gap](raw_connection& c) {
    raw_request req;
    while (c.read_request(req)) {
      if (!c.write("HTTP/1.1 " + status_line + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n"))
        return;
      if (gap.count() == 0) {
        if (!c.write(body)) return;
        continue;
      }
      for (char ch : body) {
        // wait_readable: returns early when the client gives up (EOF).
        if (c.wait_readable(gap)) return;
        if (!c.write(std::string(1, ch))) return;
      }
    }
  });
}

}  // namespace

TEST_CASE("success_status_max: 3xx is success with 399 (Kong 2.x) and a failure by default", "[http][kong]") {
  for (const char* status : {"302 Found", "399 Whatever"}) {
    raw_server srv = answering(status);
    const int code = std::atoi(status);
    INFO(status);
    {
      http_sender s(sender_for(srv.url("/")));
      const send_result r = s.send("{}");
      CHECK_FALSE(r.ok);
      CHECK(r.status == code);
      CHECK(r.error.find("returned status code " + std::to_string(code)) != std::string::npos);
    }
    {
      auto o = sender_for(srv.url("/"));
      o.success_status_max = 399;
      http_sender s(o);
      const send_result r = s.send("{}");
      CHECK(r.ok);
      CHECK(r.status == code);
    }
  }
  raw_server srv = answering("400 Bad Request");
  auto o = sender_for(srv.url("/"));
  o.success_status_max = 399;
  http_sender s(o);
  CHECK_FALSE(s.send("{}").ok);  // 400 stays a failure (Kong 2.x: status < 400)
}

TEST_CASE("timeout_scope: a trickling response passes per operation, not per request", "[http][kong][timeout]") {
  // 10 body bytes, one every 200 ms: ~2 s in all, never 1 s without a byte.
  raw_server srv = answering("200 OK", "0123456789", 200ms);
  auto o = sender_for(srv.url("/"));
  o.timeout = 1000ms;

  SECTION("request scope: the whole request is bounded by timeout") {
    http_sender s(o);
    const send_result r = s.send("{}");
    INFO(r.error);
    CHECK_FALSE(r.ok);
    CHECK(r.status == 0);
  }
  SECTION("operation scope: each read is bounded, the whole is not") {
    o.scope = batchq::timeout_scope::operation;
    http_sender s(o);
    const send_result r = s.send("{}");
    INFO(r.error);
    CHECK(r.ok);
    CHECK(r.status == 200);
  }
}

TEST_CASE("timeout_scope: a stalled response fails in both scopes", "[http][kong][timeout]") {
  // Headers and 2 of 10 body bytes, then nothing until the client gives up.
  raw_server srv([](raw_connection& c) {
    raw_request req;
    if (!c.read_request(req)) return;
    c.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01");
    c.wait_readable(30s);
  });
  for (auto scope : {batchq::timeout_scope::request, batchq::timeout_scope::operation}) {
    auto o = sender_for(srv.url("/"));
    o.timeout = 500ms;
    o.scope = scope;
    http_sender s(o);
    const send_result r = s.send("{}");
    INFO(r.error);
    CHECK_FALSE(r.ok);
    CHECK(r.status == 0);
    if (scope == batchq::timeout_scope::operation)
      CHECK(r.error.find("nothing sent or received for 500 ms") != std::string::npos);
  }
}

TEST_CASE("timeout_scope operation: a server that never answers fails after timeout", "[http][kong][timeout]") {
  raw_server srv([](raw_connection& c) {
    raw_request req;
    if (!c.read_request(req)) return;
    c.wait_readable(30s);
  });
  auto o = sender_for(srv.url("/"));
  o.timeout = 300ms;
  o.scope = batchq::timeout_scope::operation;
  http_sender s(o);
  const send_result r = s.send("{}");
  INFO(r.error);
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("nothing sent or received for 300 ms") != std::string::npos);
  CHECK(srv.requests().size() == 1);
}

TEST_CASE("keepalive 0: every request on a new connection; otherwise reused", "[http][kong]") {
  raw_server srv = answering("200 OK");
  {
    auto o = sender_for(srv.url("/"));
    o.keepalive = 0ms;
    http_sender s(o);
    for (int i = 0; i < 3; ++i) REQUIRE(s.send("{}").ok);
  }
  CHECK(srv.connections() == 3);
  {
    http_sender s(sender_for(srv.url("/")));
    for (int i = 0; i < 3; ++i) REQUIRE(s.send("{}").ok);
  }
  CHECK(srv.connections() == 4);
}
