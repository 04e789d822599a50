// http_sender over https against a loopback httplib::SSLServer with a
// certificate made at test time by the openssl CLI (label: http).
#include <chrono>
#include <string>

#include "batchq/http_sender.hpp"
#include "support/test_util.hpp"
#include "support/catch.hpp"
#include "support/receiver.hpp"

using namespace std::chrono_literals;
using batchq::http_sender;
using batchq::http_sender_options;
using batchq::send_result;
using batchq::test::options_for;
using batchq::test::receiver;
using batchq::test::receiver_options;

namespace {

using tls_fixture = batchq::test::self_signed_files;


}  // namespace

TEST_CASE("https: a self-signed server is refused without ca_file and reached with it", "[http][tls]") {
  tls_fixture f;
  REQUIRE(f.ok);  // the openssl CLI is a documented test dependency
  receiver_options ro;
  ro.tls_cert_file = f.cert;
  ro.tls_key_file = f.key;
  receiver rx(ro);
  REQUIRE(rx.url("/").rfind("https://", 0) == 0);

  SECTION("verification fails with a clear error") {
    http_sender s(options_for(rx.url("/")));
    const send_result r = s.send("{}");
    INFO(r.error);
    CHECK_FALSE(r.ok);
    CHECK(r.status == 0);
    CHECK(r.error.rfind("failed request to " + rx.host_port() + ": ", 0) == 0);
    CHECK(r.error.find("certificate") != std::string::npos);
    CHECK(rx.count() == 0);  // nothing was sent
  }
  SECTION("ca_file makes it verify, by IP and by name") {
    auto o = options_for(rx.url("/secure"));
    o.ca_file = f.cert;
    http_sender s(o);
    const auto body = batchq::test::entry(1);
    send_result r = s.send(body);
    INFO(r.error);
    CHECK(r.ok);
    CHECK(s.send(body).ok);  // keep-alive over TLS too
    auto reqs = rx.requests();
    REQUIRE(reqs.size() == 2);
    CHECK(reqs[0].tls);
    CHECK(reqs[0].body == body);
    CHECK(reqs[1].remote_port == reqs[0].remote_port);
  }
  SECTION("ssl_verify = false skips verification (Kong 2.x behaviour)") {
    auto o = options_for(rx.url("/"));
    o.ssl_verify = false;
    http_sender s(o);
    CHECK(s.send("{}").ok);
  }
  SECTION("ssl_verify = false with a ca_file that does not match still connects; true with it is refused") {
    tls_fixture other;  // an unrelated CA: verifying with it must fail
    REQUIRE(other.ok);
    auto o = options_for(rx.url("/"));
    o.ca_file = other.cert;
    o.ssl_verify = false;  // the Kong plugin's default for http-log configurations
    http_sender lax(o);
    const send_result r = lax.send("{}");
    INFO(r.error);
    CHECK(r.ok);
    o.ssl_verify = true;
    http_sender strict(o);
    CHECK_FALSE(strict.send("{}").ok);
  }
  SECTION("a name the certificate does not carry is refused") {
    tls_fixture other;  // a second, unrelated CA
    REQUIRE(other.ok);
    auto o = options_for(rx.url("/"));
    o.ca_file = other.cert;
    http_sender s(o);
    const send_result r = s.send("{}");
    CHECK_FALSE(r.ok);
    CHECK(r.status == 0);
  }
}

TEST_CASE("https: a client certificate for mutual TLS", "[http][tls]") {
  tls_fixture server;
  tls_fixture client;
  REQUIRE(server.ok);
  REQUIRE(client.ok);
  receiver_options ro;
  ro.tls_cert_file = server.cert;
  ro.tls_key_file = server.key;
  ro.tls_client_ca_file = client.cert;  // the client's self-signed cert is its own CA
  receiver rx(ro);
  auto o = options_for(rx.url("/"));
  o.ca_file = server.cert;

  send_result r = http_sender(o).send("{}");
  CHECK_FALSE(r.ok);
  CHECK(r.status == 0);
  CHECK(rx.count() == 0);

  o.client_cert = client.cert;
  o.client_key = client.key;
  r = http_sender(o).send("{}");
  INFO(r.error);
  CHECK(r.ok);
  CHECK(rx.count() == 1);
}
