// http_sender when things go wrong on the wire: slow servers, cancellation,
// torn or missing responses, restarted servers and stale keep-alive
// connections (label: http). Durations are only bounded from above, to prove
// nothing hangs.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "batchq/http_sender.hpp"
#include "support/test_util.hpp"
#include "support/catch.hpp"
#include "support/raw_server.hpp"
#include "support/receiver.hpp"

using namespace std::chrono_literals;
using batchq::http_sender;
using batchq::http_sender_options;
using batchq::send_result;
using batchq::test::raw_connection;
using batchq::test::raw_request;
using batchq::test::raw_server;
using batchq::test::options_for;
using batchq::test::receiver;
using batchq::test::reply;

namespace {

std::string failed_prefix(const std::string& host_port) { return "failed request to " + host_port + ": "; }

}  // namespace

TEST_CASE("a response slower than timeout fails quickly", "[http][timeout]") {
  receiver rx;
  rx.set_default(reply::with_status(200).after(10s));
  auto o = options_for(rx.url("/"));
  o.timeout = 200ms;
  http_sender s(o);
  const auto start = std::chrono::steady_clock::now();
  const send_result r = s.send("{}");
  CHECK(batchq::test::elapsed_ms(start) < 5000);
  CHECK_FALSE(r.ok);
  CHECK(r.status == 0);
  CHECK(r.error.rfind(failed_prefix(rx.host_port()), 0) == 0);
  CHECK(r.error.find("timed out") != std::string::npos);
  CHECK(rx.count() == 1);  // the request did reach the server
}

TEST_CASE("cancellation through attempt_context aborts a slow request promptly", "[http][cancel]") {
  receiver rx;
  rx.set_default(reply::with_status(200).after(20s));
  http_sender s(options_for(rx.url("/")));  // timeout 5 s: cancellation must beat it
  std::atomic<bool> cancel{false};
  batchq::attempt_context ctx;
  ctx.cancel = &cancel;
  std::thread canceller([&] {
    rx.wait_for(1, 5s);  // the request is at the server
    std::this_thread::sleep_for(100ms);
    cancel = true;
  });
  const auto start = std::chrono::steady_clock::now();
  const send_result r = s.send("{}", &ctx);
  const auto took = batchq::test::elapsed_ms(start);
  canceller.join();
  CHECK(took < 3000);
  CHECK_FALSE(r.ok);
  CHECK(r.status == 0);
  CHECK(r.error == failed_prefix(rx.host_port()) + "cancelled");

  // The handle is still good afterwards.
  rx.set_default(reply::with_status(200));
  cancel = false;
  CHECK(s.send("{}", &ctx).ok);
}

TEST_CASE("an already-cancelled context makes no request", "[http][cancel]") {
  receiver rx;
  http_sender s(options_for(rx.url("/")));
  std::atomic<bool> cancel{true};
  batchq::attempt_context ctx;
  ctx.cancel = &cancel;
  const send_result r = s.send("{}", &ctx);
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("cancelled") != std::string::npos);
  std::this_thread::sleep_for(50ms);
  CHECK(rx.count() == 0);
  batchq::attempt_context no_cancel;  // cancel pointer null: never cancelled
  CHECK(s.send("{}", &no_cancel).ok);
}

TEST_CASE("a response torn mid-body is a transport failure", "[http][torn]") {
  SECTION("httplib: headers promise more than is sent, then close") {
    receiver rx;
    reply torn = reply::with_status(200, "partial");
    torn.truncate = true;
    rx.push(torn);
    http_sender s(options_for(rx.url("/")));
    const send_result r = s.send("{}");
    CHECK_FALSE(r.ok);
    CHECK(r.status == 0);
    CHECK(r.error.rfind(failed_prefix(rx.host_port()), 0) == 0);
    CHECK(rx.count() == 1);
    CHECK(s.send("{}").ok);  // and the next send opens a fresh connection
  }
  SECTION("raw: status line and part of the body, then reset") {
    raw_server srv([](raw_connection& c) {
      raw_request req;
      if (!c.read_request(req)) return;
      c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
      std::this_thread::sleep_for(50ms);
      c.reset();
    });
    http_sender s(options_for(srv.url("/")));
    const send_result r = s.send("{\"a\":1}");
    CHECK_FALSE(r.ok);
    CHECK(r.status == 0);
    CHECK(r.error.rfind(failed_prefix(srv.host_port()), 0) == 0);
    REQUIRE(srv.requests().size() == 1);
    CHECK(srv.requests()[0].body == "{\"a\":1}");
  }
  SECTION("raw: half a status line, then close") {
    raw_server srv([](raw_connection& c) {
      raw_request req;
      if (!c.read_request(req)) return;
      c.write("HTTP/1.1 2");
    });
    http_sender s(options_for(srv.url("/")));
    const send_result r = s.send("{}");
    CHECK_FALSE(r.ok);
    CHECK(r.status == 0);
  }
}

TEST_CASE("a connection closed or reset without any response is a transport failure", "[http][torn]") {
  const bool reset = GENERATE(false, true);
  raw_server srv([reset](raw_connection& c) {
    raw_request req;
    if (!c.read_request(req)) return;
    if (reset)
      c.reset();
    else
      c.close();
  });
  http_sender s(options_for(srv.url("/")));
  const send_result r = s.send("{}");
  INFO(r.error);
  CHECK_FALSE(r.ok);
  CHECK(r.status == 0);
  CHECK(r.error.rfind(failed_prefix(srv.host_port()), 0) == 0);
  if (!reset) CHECK(r.error.find("Empty reply") != std::string::npos);
  CHECK(srv.requests().size() == 1);  // a fresh connection is not retried
}

TEST_CASE("a server restarted between sends costs no attempt", "[http][keepalive]") {
  receiver rx;
  http_sender s(options_for(rx.url("/")));
  CHECK(s.send(batchq::test::entry(1)).ok);
  const int first_port = rx.requests()[0].remote_port;
  rx.restart();  // the kept-alive connection is now dead
  rx.clear();
  const send_result r = s.send(batchq::test::entry(2));
  INFO(r.error);
  CHECK(r.ok);
  const auto reqs = rx.requests();
  REQUIRE(reqs.size() == 1);  // arrived exactly once
  CHECK(reqs[0].body == batchq::test::entry(2));
  CHECK(reqs[0].remote_port != first_port);
}

TEST_CASE("a server that was down is reached again once it is back", "[http][keepalive]") {
  receiver rx;
  http_sender s(options_for(rx.url("/")));
  CHECK(s.send("{}").ok);
  rx.stop();
  const send_result down = s.send("{}");
  CHECK_FALSE(down.ok);
  CHECK(down.status == 0);
  rx.restart();
  CHECK(s.send("{}").ok);
}

// The race restart tests cannot produce on demand: the server drops the idle
// connection exactly as the next request goes out on it, so libcurl's
// liveness check passes and the failure shows only while sending/receiving.
TEST_CASE("a kept-alive connection that dies under the next request is retried by libcurl", "[http][keepalive]") {
  const int mode = GENERATE(0, 1, 2);  // 0: RST unread, 1: read then FIN, 2: read then RST
  raw_server srv([mode](raw_connection& c) {
    raw_request req;
    if (c.index() == 0) {
      if (!c.read_request(req)) return;
      c.respond(200, "ok");
      if (mode == 0) {
        if (!c.wait_readable(5s)) return;  // the second request is arriving
        c.reset();
        return;
      }
      if (!c.read_request(req)) return;
      if (mode == 1)
        c.close();
      else
        c.reset();
      return;
    }
    while (c.read_request(req)) c.respond(200, "ok");
  });
  http_sender s(options_for(srv.url("/")));
  REQUIRE(s.send(batchq::test::entry(1)).ok);
  const send_result r = s.send(batchq::test::entry(2));
  INFO("mode " << mode << ": " << r.error);
  CHECK(r.ok);
  CHECK(srv.connections() == 2);
  const auto reqs = srv.requests();
  REQUIRE(reqs.size() >= 2);
  CHECK(reqs.back().body == batchq::test::entry(2));
  CHECK(reqs.back().connection == 1);
  // Answered exactly once; with modes 1 and 2 the dead connection had read it
  // too (at-least-once), with mode 0 it never got past the kernel.
  CHECK(reqs.size() == (mode == 0 ? 2u : 3u));
}

TEST_CASE("a server that closes idle keep-alive connections costs no attempt", "[http][keepalive]") {
  raw_server srv([](raw_connection& c) {
    raw_request req;
    if (!c.read_request(req)) return;
    c.respond(200, "ok");  // then FIN while idle, without Connection: close
  });
  http_sender s(options_for(srv.url("/")));
  for (int i = 0; i < 3; ++i) {
    CHECK(s.send(batchq::test::entry(i)).ok);
    std::this_thread::sleep_for(20ms);
  }
  CHECK(srv.requests().size() == 3);
}
