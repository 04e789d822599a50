// http_sender against a real loopback receiver: what arrives on the server,
// and how each answer is classified (label: http).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <string>
#include <vector>

#include "batchq/http_sender.hpp"
#include "batchq/payload.hpp"
#include "support/test_util.hpp"
#include "support/catch.hpp"
#include "support/raw_server.hpp"
#include "support/receiver.hpp"

using namespace std::chrono_literals;
using batchq::http_sender;
using batchq::http_sender_options;
using batchq::payload_format;
using batchq::send_result;
using batchq::test::options_for;
using batchq::test::receiver;
using batchq::test::reply;

TEST_CASE("a batch of one is sent as the bare entry", "[http]") {
  receiver rx;
  http_sender s(options_for(rx.url("/logs")));
  const auto batch = batchq::test::entries(1);
  const send_result r = s.send(build_payload(batch, payload_format::kong));
  CHECK(r.ok);
  CHECK(r.status == 200);
  CHECK(r.error.empty());
  REQUIRE(rx.requests().size() == 1);
  const auto req = rx.requests()[0];
  CHECK(req.method == "POST");
  CHECK(req.path == "/logs");
  CHECK(req.body == batch[0]);
  CHECK(req.header("Content-Type") == "application/json");
  CHECK(req.header("Content-Length") == std::to_string(batch[0].size()));
  CHECK_FALSE(req.has_header("Expect"));
  CHECK_FALSE(req.has_header("Accept"));  // libcurl's default */* is not sent (nor by Kong's http-log)
  CHECK(req.header("User-Agent").rfind("batchq/", 0) == 0);
}

TEST_CASE("a batch of N arrives as a JSON array of the N entries in order", "[http]") {
  receiver rx;
  http_sender s(options_for(rx.url("/")));
  const auto batch = batchq::test::entries(25);
  CHECK(s.send(build_payload(batch, payload_format::kong)).ok);
  REQUIRE(rx.requests().size() == 1);
  CHECK(batchq::test::json_array_elements(rx.requests()[0].body) == batch);
}

TEST_CASE("ndjson arrives one entry per line with the caller's content type", "[http]") {
  receiver rx;
  auto o = options_for(rx.url("/bulk"));
  o.content_type = "application/x-ndjson";
  http_sender s(o);
  const auto batch = batchq::test::entries(3);
  CHECK(s.send(build_payload(batch, payload_format::ndjson)).ok);
  REQUIRE(rx.requests().size() == 1);
  const auto req = rx.requests()[0];
  CHECK(req.header("Content-Type") == "application/x-ndjson");
  CHECK(req.body == batch[0] + "\n" + batch[1] + "\n" + batch[2] + "\n");
}

TEST_CASE("method, content type, custom headers and Basic auth from the URL arrive", "[http]") {
  receiver rx;
  const std::string method = GENERATE(std::string("POST"), std::string("PUT"), std::string("PATCH"));
  auto o = options_for("http://alice:p%40ss%3Aw%20rd@127.0.0.1:" + std::to_string(rx.port()) + "/in?tenant=blue#frag");
  o.method = method;
  o.content_type = "application/json; charset=utf-8";
  o.headers = {{"X-Tenant", "blue"}, {"User-Agent", "kong-http-log"}};
  http_sender s(o);
  CHECK(s.endpoint_for_logs() == rx.host_port());
  CHECK(s.send(batchq::test::entry(1)).ok);
  REQUIRE(rx.requests().size() == 1);
  const auto req = rx.requests()[0];
  CHECK(req.method == method);
  CHECK(req.target == "/in?tenant=blue");  // no userinfo, no fragment on the wire
  CHECK(req.header("Content-Type") == "application/json; charset=utf-8");
  CHECK(req.header("X-Tenant") == "blue");
  CHECK(req.header("User-Agent") == "kong-http-log");
  const auto agents = std::count_if(req.headers.begin(), req.headers.end(), [](const auto& h) {
    return h.first.size() == 10 && std::equal(h.first.begin(), h.first.end(), "user-agent", [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a)) == b;
           });
  });
  CHECK(agents == 1);  // the configured one replaces batchq's, not added to it
  // base64("alice:p@ss:w rd"): userinfo is percent-decoded first.
  CHECK(req.header("Authorization") == "Basic YWxpY2U6cEBzczp3IHJk");
  CHECK(req.body == batchq::test::entry(1));
}

TEST_CASE("a header with an empty value is sent as 'Name:'", "[http]") {
  // httplib drops empty headers when parsing, so look at the raw bytes.
  batchq::test::raw_server srv([](batchq::test::raw_connection& c) {
    batchq::test::raw_request req;
    while (c.read_request(req)) c.respond(200);
  });
  auto o = options_for(srv.url("/"));
  o.headers = {{"X-Empty", ""}, {"X-After", "1"}};
  http_sender s(o);
  CHECK(s.send("{}").ok);
  const auto reqs = srv.requests();
  REQUIRE(reqs.size() == 1);
  const auto& h = reqs[0].headers;
  const auto it = std::find_if(h.begin(), h.end(), [](const auto& kv) { return kv.first == "X-Empty"; });
  REQUIRE(it != h.end());
  CHECK(it->second.empty());
  CHECK(reqs[0].header("X-After") == "1");
}

TEST_CASE("an Authorization header from the options is sent as given", "[http]") {
  receiver rx;
  auto o = options_for(rx.url("/"));
  o.headers = {{"Authorization", "Bearer tok-123"}};
  http_sender s(o);
  CHECK(s.send("{}").ok);
  REQUIRE(rx.count() == 1);
  CHECK(rx.requests()[0].header("Authorization") == "Bearer tok-123");
}

TEST_CASE("consecutive sends reuse one keep-alive connection", "[http]") {
  receiver rx;
  http_sender s(options_for(rx.url("/")));
  for (int i = 0; i < 5; ++i) CHECK(s.send(batchq::test::entry(i)).ok);
  const auto reqs = rx.requests();
  REQUIRE(reqs.size() == 5);
  for (const auto& r : reqs) CHECK(r.remote_port == reqs[0].remote_port);
}

TEST_CASE("a 500 is a failure with Kong's text quoting the body", "[http]") {
  receiver rx;
  rx.push(reply::with_status(500, "oops, database down"));
  http_sender s(options_for(rx.url("/")));
  const send_result r = s.send(batchq::test::entry(0));
  CHECK_FALSE(r.ok);
  CHECK(r.status == 500);
  CHECK_FALSE(r.permanent);
  CHECK(r.retry_after == 0ms);
  CHECK(r.error == "request to " + rx.host_port() + " returned status code 500 and body oops, database down");
  CHECK(rx.count() == 1);  // the server did receive it
  const auto p = r.to_process_result();
  CHECK_FALSE(p.ok);
  CHECK_FALSE(p.permanent);
  CHECK(p.error == r.error);
}

TEST_CASE("only max_error_body bytes of the body are quoted", "[http]") {
  receiver rx;
  rx.push(reply::with_status(502, std::string(5000, 'x')));
  rx.push(reply::with_status(502, "abc"));
  auto o = options_for(rx.url("/"));
  o.max_error_body = 16;
  http_sender s(o);
  send_result r = s.send("{}");
  CHECK(r.error == "request to " + rx.host_port() + " returned status code 502 and body " + std::string(16, 'x'));
  r = s.send("{}");  // the connection stayed usable and nothing leaks from the previous body
  CHECK(r.error == "request to " + rx.host_port() + " returned status code 502 and body abc");
  s = http_sender([&] { auto z = o; z.max_error_body = 0; return z; }());
  rx.push(reply::with_status(500, "hidden"));
  CHECK(s.send("{}").error == "request to " + rx.host_port() + " returned status code 500 and body ");
}

TEST_CASE("3xx is a failure and is not followed", "[http]") {
  receiver rx;
  reply redirect = reply::with_status(302, "moved");
  redirect.headers.emplace_back("Location", rx.url("/elsewhere"));
  rx.push(redirect);
  http_sender s(options_for(rx.url("/")));
  const send_result r = s.send("{}");
  CHECK_FALSE(r.ok);
  CHECK(r.status == 302);
  CHECK(rx.count() == 1);
}

TEST_CASE("4xx is retried by default and permanent with drop_permanent_4xx", "[http]") {
  receiver rx;
  auto o = options_for(rx.url("/"));
  {
    http_sender s(o);
    rx.push(reply::with_status(400, "bad entry"));
    const send_result r = s.send("{}");
    CHECK_FALSE(r.ok);
    CHECK(r.status == 400);
    CHECK_FALSE(r.permanent);
    CHECK_FALSE(r.to_process_result().permanent);
  }
  o.drop_permanent_4xx = true;
  http_sender s(o);
  for (int code : {400, 401, 403, 404, 422}) {
    rx.push(reply::with_status(code, "no"));
    const send_result r = s.send("{}");
    INFO(code);
    CHECK_FALSE(r.ok);
    CHECK(r.permanent);
    CHECK(r.permanent_reason == batchq::drop_reason::rejected);
    const auto p = r.to_process_result();
    CHECK(p.permanent);
    CHECK(p.permanent_reason == batchq::drop_reason::rejected);
  }
  for (int code : {408, 429, 500, 503}) {  // worth retrying even with the option
    rx.push(reply::with_status(code, "later"));
    const send_result r = s.send("{}");
    INFO(code);
    CHECK_FALSE(r.ok);
    CHECK_FALSE(r.permanent);
  }
}

TEST_CASE("413 is too_large when drop_permanent_4xx is on", "[http]") {
  receiver rx;
  auto o = options_for(rx.url("/"));
  o.drop_permanent_4xx = true;
  http_sender s(o);
  rx.push(reply::with_status(413, "Payload Too Large"));
  const send_result r = s.send(std::string(1000, ' ') + "{}");
  CHECK(r.status == 413);
  CHECK(r.permanent);
  CHECK(r.permanent_reason == batchq::drop_reason::too_large);
  CHECK(r.to_process_result().permanent_reason == batchq::drop_reason::too_large);
  CHECK(r.error == "request to " + rx.host_port() + " returned status code 413 and body Payload Too Large");
}

TEST_CASE("429 and 503 honour Retry-After in seconds and as an HTTP-date", "[http]") {
  receiver rx;
  http_sender s(options_for(rx.url("/")));
  for (int code : {429, 503}) {
    INFO(code);
    rx.push(reply::with_status(code).retry_after("7"));
    send_result r = s.send("{}");
    CHECK_FALSE(r.ok);
    CHECK(r.status == code);
    CHECK(r.retry_after == 7000ms);
    CHECK(r.to_process_result().retry_after == 7000ms);

    // An HTTP-date 30 s ahead: at least 29 s after rounding to whole seconds.
    char date[64];
    const std::time_t when = std::time(nullptr) + 30;
    std::tm tm{};
    gmtime_r(&when, &tm);
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    rx.push(reply::with_status(code).retry_after(date));
    r = s.send("{}");
    CHECK(r.retry_after >= 29000ms);
    CHECK(r.retry_after <= 31000ms);

    rx.push(reply::with_status(code).retry_after("Wed, 21 Oct 2015 07:28:00 GMT"));  // in the past
    CHECK(s.send("{}").retry_after == 0ms);
    rx.push(reply::with_status(code).retry_after("soon"));  // garbage is ignored
    CHECK(s.send("{}").retry_after == 0ms);
    rx.push(reply::with_status(code));  // absent
    CHECK(s.send("{}").retry_after == 0ms);
  }
  rx.push(reply::with_status(500).retry_after("7"));  // only 429/503 carry the hint
  CHECK(s.send("{}").retry_after == 0ms);
  rx.push(reply::with_status(429).retry_after("99999999999"));  // clamped to a day
  CHECK(s.send("{}").retry_after == std::chrono::hours(24));
}

TEST_CASE("connection refused is a transport failure naming host:port", "[http]") {
  const int port = batchq::test::unused_port();
  http_sender s(options_for("http://127.0.0.1:" + std::to_string(port) + "/"));
  const auto start = std::chrono::steady_clock::now();
  const send_result r = s.send("{}");
  CHECK(batchq::test::elapsed_ms(start) < 5000);
  CHECK_FALSE(r.ok);
  CHECK(r.status == 0);
  CHECK_FALSE(r.permanent);
  const std::string prefix = "failed request to 127.0.0.1:" + std::to_string(port) + ": ";
  CHECK(r.error.rfind(prefix, 0) == 0);
  CHECK(r.error.size() > prefix.size());
  INFO(r.error);
}

TEST_CASE("credentials never appear in an error text", "[http][secrets]") {
  const std::string password = "s3cr3t-Pa55";
  const std::string token = "YWxpY2U6czNjcjN0LVBhNTU=";  // base64("alice:s3cr3t-Pa55")
  receiver rx;
  // A receiver that echoes the request's Authorization header and the
  // password back in its error body.
  rx.set_responder([&](const batchq::test::recorded_request& req) {
    return reply::with_status(401, "denied " + req.header("Authorization") + " pw=" + password + " end");
  });
  http_sender s(options_for("http://alice:" + password + "@127.0.0.1:" + std::to_string(rx.port()) + "/"));
  std::vector<std::string> errors;
  send_result r = s.send("{}");
  REQUIRE(rx.count() == 1);
  CHECK(rx.requests()[0].header("Authorization") == "Basic " + token);  // it was sent...
  CHECK(r.error == "request to " + rx.host_port() + " returned status code 401 and body denied Basic *** pw=*** end");
  errors.push_back(r.error);

  // Transport errors: refused and timed out.
  const int dead = batchq::test::unused_port();
  http_sender refused(options_for("http://alice:" + password + "@127.0.0.1:" + std::to_string(dead) + "/"));
  errors.push_back(refused.send("{}").error);
  CHECK(refused.endpoint_for_logs() == "127.0.0.1:" + std::to_string(dead));
  rx.set_responder([](const batchq::test::recorded_request&) { return reply::with_status(200).after(3000ms); });
  auto slow = options_for("http://alice:" + password + "@127.0.0.1:" + std::to_string(rx.port()) + "/");
  slow.timeout = 200ms;
  errors.push_back(http_sender(slow).send("{}").error);

  // A header token echoed back.
  rx.set_responder([](const batchq::test::recorded_request& req) {
    return reply::with_status(403, "got " + req.header("Authorization"));
  });
  auto bearer = options_for(rx.url("/"));
  bearer.headers = {{"Authorization", "Bearer tok-" + password}};
  errors.push_back(http_sender(bearer).send("{}").error);

  // validate() and the constructor's exception.
  auto bad = options_for("ftp://alice:" + password + "@127.0.0.1/");
  errors.push_back(batchq::validate(bad));
  bad = options_for("http://alice:" + password + "@127.0.0.1:" + std::to_string(dead) + "/");
  bad.headers = {{"Authorization", "Basic " + token}};
  errors.push_back(batchq::validate(bad));
  try {
    http_sender x(bad);
    FAIL("constructor accepted invalid options");
  } catch (const batchq::options_error& e) {
    errors.push_back(e.what());
  }
  bad = options_for("http://alice:" + password + "@[::1/");
  errors.push_back(batchq::validate(bad));

  for (const auto& e : errors) {
    INFO(e);
    CHECK_FALSE(e.empty());
    CHECK(e.find(password) == std::string::npos);
    CHECK(e.find(token) == std::string::npos);
  }
}

TEST_CASE("a 10 MB body arrives intact", "[http][large]") {
  receiver rx;
  http_sender s(options_for(rx.url("/")));
  std::vector<std::string> batch;
  std::size_t bytes = 0;
  for (int i = 0; bytes < 10 * 1024 * 1024; ++i) {
    batch.push_back(R"({"i":)" + std::to_string(i) + R"(,"pad":")" + std::string(1000, 'a' + i % 26) + R"("})");
    bytes += batch.back().size() + 1;
  }
  const std::string body = build_payload(batch, payload_format::kong);
  REQUIRE(body.size() >= 10u * 1024 * 1024);
  const send_result r = s.send(body);
  INFO(r.error);
  CHECK(r.ok);
  REQUIRE(rx.requests().size() == 1);
  const auto req = rx.requests()[0];
  CHECK(req.body.size() == body.size());
  CHECK(req.body == body);
}

TEST_CASE("gzip bodies are sent compressed and decode to the payload", "[http][gzip]") {
  receiver rx;
  auto o = options_for(rx.url("/"));
  o.gzip = true;
  http_sender s(o);
  const auto batch = batchq::test::entries(500);
  const std::string body = build_payload(batch, payload_format::kong);
  CHECK(s.send(body).ok);
  CHECK(s.send(batchq::test::entry(7)).ok);  // the buffer is reused
  CHECK(s.send("").ok);
  const auto reqs = rx.requests();
  REQUIRE(reqs.size() == 3);
  CHECK(reqs[0].header("Content-Encoding") == "gzip");
  CHECK(reqs[0].body == body);
  CHECK(reqs[0].wire_body_size < body.size() / 4);  // it really was compressed
  CHECK(reqs[1].body == batchq::test::entry(7));
  CHECK(reqs[2].body.empty());
}

TEST_CASE("validate() names the field for each rule", "[http][validate]") {
  auto check = [](http_sender_options o, const std::string& want_field, const std::string& fragment) {
    std::string field = "unset";
    const std::string err = batchq::validate(o, &field);
    INFO(err);
    CHECK(field == want_field);
    CHECK(err.rfind(want_field + ": ", 0) == 0);
    CHECK(err.find(fragment) != std::string::npos);
    CHECK(err.find("(allowed: ") != std::string::npos);
    try {
      http_sender s(o);
      FAIL("constructor accepted: " << err);
    } catch (const batchq::options_error& e) {
      CHECK(e.field() == want_field);
      CHECK(std::string(e.what()) == err);
    }
  };
  const auto base = options_for("http://127.0.0.1:9/");
  std::string field = "unset";
  CHECK(batchq::validate(base, &field).empty());
  CHECK(field.empty());

  auto o = base;
  o.http_endpoint = "";
  check(o, "http_endpoint", "is required");
  o.http_endpoint = "ftp://127.0.0.1/";
  check(o, "http_endpoint", "scheme");
  o.http_endpoint = "localhost:8080/path";
  check(o, "http_endpoint", "");
  o.http_endpoint = "http:///nohost";
  check(o, "http_endpoint", "");
  o.http_endpoint = "http://exa mple.com/";
  check(o, "http_endpoint", "not a valid URL");

  o = base;
  o.method = "GET";
  check(o, "method", "POST, PUT, PATCH");
  o.method = "post";
  check(o, "method", "\"post\"");

  for (const char* h : {"Host", "content-length", "CONTENT-TYPE"}) {
    o = base;
    o.headers = {{"X-Fine", "1"}, {h, "x"}};
    check(o, "headers", std::string("cannot contain '") + h + "' header");
  }
  o = base;
  o.http_endpoint = "https://u:p@127.0.0.1/";
  o.headers = {{"authorization", "Bearer x"}};
  check(o, "headers", "'Authorization' header and user info");
  o.http_endpoint = "https://127.0.0.1/";
  CHECK(batchq::validate(o).empty());  // alone it is fine
  o.headers = {{"Bad Name", "x"}};
  check(o, "headers", "HTTP token");
  o.headers = {{"", "x"}};
  check(o, "headers", "HTTP token");
  o.headers = {{"X-Inject", "a\r\nHost: evil"}};
  check(o, "headers", "CR, LF or NUL");
  o.headers = {{"Content-Encoding", "br"}};
  o.gzip = true;
  check(o, "headers", "Content-Encoding");

  o = base;
  o.content_type = "";
  check(o, "content_type", "empty");
  o.content_type = "application/json\r\nX: y";
  check(o, "content_type", "control");

  o = base;
  o.timeout = 0ms;
  check(o, "timeout", "is 0 ms");
  o = base;
  o.keepalive = -1ms;
  check(o, "keepalive", "is -1 ms");
  o = base;
  o.connect_timeout = -5ms;
  check(o, "connect_timeout", "is -5 ms");
  o = base;
  o.client_key = "/some/key.pem";
  check(o, "client_key", "without client_cert");
}

TEST_CASE("endpoint_for_logs defaults the port from the scheme", "[http]") {
  CHECK(http_sender(options_for("http://logs.example.com/x")).endpoint_for_logs() == "logs.example.com:80");
  CHECK(http_sender(options_for("https://u:p@logs.example.com/x")).endpoint_for_logs() == "logs.example.com:443");
  CHECK(http_sender(options_for("HTTPS://[::1]:8443")).endpoint_for_logs() == "[::1]:8443");
}

TEST_CASE("a moved-from sender fails instead of crashing; the moved-to one works", "[http]") {
  receiver rx;
  http_sender a(options_for(rx.url("/")));
  http_sender b(std::move(a));
  CHECK(b.send("{}").ok);
  const send_result r = a.send("{}");  // NOLINT(bugprone-use-after-move): that is the point
  CHECK_FALSE(r.ok);
  CHECK(r.status == 0);
  CHECK(r.error.find("moved-from") != std::string::npos);
  CHECK(a.endpoint_for_logs().empty());
  CHECK(rx.count() == 1);
}
