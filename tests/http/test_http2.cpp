// HTTP/2 over https (issue 15: "HTTP/2 multiplexing where the endpoint
// offers it"): an http_log with concurrency > 1 against a real HTTP/2 server
// (node's http2 module, tests/support/h2_receiver.js, on 127.0.0.1 with a
// certificate made at test time). Label: http. Registered as skipped (77)
// when CMake finds no node.
#include "support/catch.hpp"
#include "support/test_util.hpp"

#include <batchq/http_log.hpp>

#include <rapidjson/document.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <string>
#include <vector>

extern char** environ;

using namespace std::chrono_literals;

namespace {

// The node server as a child process: stdin and stdout are pipes; closing
// stdin makes it print its JSON summary and exit.
class h2_server {
 public:
  h2_server(const std::string& cert, const std::string& key, int hold) {
    int in[2], out[2];
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    const std::string hold_s = std::to_string(hold);
    std::vector<std::string> args = {BATCHQ_NODE_EXE, BATCHQ_H2_RECEIVER_JS, cert, key, hold_s};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, BATCHQ_NODE_EXE, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    to_ = in[1];
    from_ = out[0];
    REQUIRE(rc == 0);
    const std::string first = read_line(10000);
    INFO("first line from the node server: " << first);
    REQUIRE(first.rfind("port ", 0) == 0);
    port_ = std::stoi(first.substr(5));
  }
  ~h2_server() {
    if (to_ >= 0) ::close(to_);
    if (from_ >= 0) ::close(from_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  h2_server(const h2_server&) = delete;
  h2_server& operator=(const h2_server&) = delete;

  std::string url(const std::string& path) const { return "https://127.0.0.1:" + std::to_string(port_) + path; }

  // Waits (bounded) until the server has had `k` request bodies in full.
  bool wait_arrived(int k) {
    for (;;) {
      const std::string line = read_line(10000);
      if (line.rfind("arrived ", 0) != 0) return false;
      if (std::stoi(line.substr(8)) >= k) return true;
    }
  }

  // Ends the server; its summary, parsed.
  rapidjson::Document finish() {
    ::close(to_);
    to_ = -1;
    std::string line = read_line(10000);
    while (line.rfind("arrived ", 0) == 0) line = read_line(10000);
    INFO("summary line from the node server: " << line);
    rapidjson::Document d;
    d.Parse(line.data(), line.size());
    REQUIRE_FALSE(d.HasParseError());
    REQUIRE(d.IsObject());
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return d;
  }

 private:
  // One line from the child's stdout, within `ms` (the test fails, rather
  // than hangs, if the server never answers).
  std::string read_line(int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      const auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "(no line within the time allowed; read so far: " + buf_ + ")";
      pollfd p{from_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      char chunk[65536];
      const ssize_t n = ::read(from_, chunk, sizeof chunk);
      if (n <= 0) return "(the node server closed its output; read so far: " + buf_ + ")";
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  int port_ = 0;
  std::string buf_;
};

using tls_files = batchq::test::self_signed_files;
using batchq::test::entry;

// The "i" of every entry (batchq::test::entry) in a body: one object or an
// array of them.
std::vector<long> ns_in(const std::string& body) {
  std::vector<long> out;
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError()) return out;
  auto take = [&](const rapidjson::Value& v) {
    if (v.IsObject() && v.HasMember("i") && v["i"].IsInt64()) out.push_back(static_cast<long>(v["i"].GetInt64()));
  };
  if (d.IsArray())
    for (const auto& v : d.GetArray()) take(v);
  else
    take(d);
  return out;
}

batchq::http_log_options h2_options(const std::string& url, const std::string& ca_file) {
  batchq::http_log_options o;
  o.http.http_endpoint = url;
  o.http.ca_file = ca_file;
  o.http.timeout = 10000ms;
  o.queue.retry_count = 2;
  o.queue.initial_retry_delay = 5ms;
  o.queue.max_retry_delay = 20ms;
  o.queue.flush_timeout = 20ms;
  o.queue.max_entries = 0;  // unbounded: nothing may be pushed out here
  return o;
}

}  // namespace

TEST_CASE("https to an HTTP/2 server: concurrent batches are streams multiplexed on one connection, each entry "
          "arrives once",
          "[http2][tls]") {
  tls_files f;
  REQUIRE(f.ok);
  const unsigned concurrency = 4;
  // The server answers when `concurrency` requests are waiting: a sender
  // that ran them one after another would leave max_open at 1.
  h2_server srv(f.cert, f.key, static_cast<int>(concurrency));
  auto o = h2_options(srv.url("/h2"), f.cert);
  o.queue.batch_max_size = 5;
  o.queue.concurrency = concurrency;
  const int n = 400;
  {
    batchq::http_log log(o);
    for (int i = 0; i < n; ++i) REQUIRE(log.enqueue(entry(i)) == batchq::enqueue_result::accepted);
    REQUIRE(log.flush(60s));
    const auto s = log.stats();
    CHECK(s.delivered == static_cast<std::uint64_t>(n));
    CHECK(s.dropped_total() == 0);
    CHECK(s.retried == 0);
  }
  const auto d = srv.finish();
  std::vector<std::string> versions;
  for (const auto& v : d["versions"].GetArray()) versions.emplace_back(v.GetString());
  CAPTURE(versions);
  REQUIRE(versions == std::vector<std::string>{"2.0"});  // every request was HTTP/2
  CHECK(d["tls_connections"].GetInt() == 1);            // ...on one connection
  CHECK(d["sessions"].GetInt() == 1);
  CHECK(d["max_open"].GetInt() >= 2);                   // with several streams open at once
  CHECK(d["max_open"].GetInt() <= static_cast<int>(concurrency));
  CHECK(d["aborted"].GetInt() == 0);
  std::map<long, int> seen;
  for (const auto& b : d["bodies"].GetArray()) {
    const auto ns = ns_in(std::string(b.GetString(), b.GetStringLength()));
    CHECK_FALSE(ns.empty());
    for (long v : ns) ++seen[v];
  }
  CHECK(seen.size() == static_cast<std::size_t>(n));
  CHECK(std::all_of(seen.begin(), seen.end(), [](const auto& kv) { return kv.second == 1; }));
}

TEST_CASE("https to an HTTP/2 server, concurrency 1: one stream at a time, entries in enqueue order", "[http2][tls]") {
  tls_files f;
  REQUIRE(f.ok);
  h2_server srv(f.cert, f.key, 1);
  auto o = h2_options(srv.url("/h2"), f.cert);
  o.queue.batch_max_size = 3;
  o.queue.concurrency = 1;
  const int n = 60;
  {
    batchq::http_log log(o);
    for (int i = 0; i < n; ++i) REQUIRE(log.enqueue(entry(i)) == batchq::enqueue_result::accepted);
    REQUIRE(log.flush(60s));
    CHECK(log.stats().delivered == static_cast<std::uint64_t>(n));
  }
  const auto d = srv.finish();
  CHECK(d["max_open"].GetInt() == 1);
  CHECK(d["tls_connections"].GetInt() == 1);
  std::vector<long> order;
  for (const auto& b : d["bodies"].GetArray()) {
    const auto ns = ns_in(std::string(b.GetString(), b.GetStringLength()));
    order.insert(order.end(), ns.begin(), ns.end());
  }
  std::vector<long> want(n);
  for (int i = 0; i < n; ++i) want[static_cast<std::size_t>(i)] = i;
  CHECK(order == want);
}

TEST_CASE("https to an HTTP/2 server that never answers: shutdown resets the open streams and reports every entry",
          "[http2][tls][cancel]") {
  tls_files f;
  REQUIRE(f.ok);
  h2_server srv(f.cert, f.key, 0);  // holds every request
  auto o = h2_options(srv.url("/h2"), f.cert);
  o.queue.batch_max_size = 1;
  o.queue.concurrency = 4;
  // 18 at once: four streams in flight, 14 entries still queued (at batch
  // size 1 the fourth starts once 12 wait behind three: docs/intake.md)
  const int n = 18;
  std::uint64_t reported = 0;
  batchq::http_log_callbacks cb;
  cb.on_drop = [&](batchq::span<std::string> lost, const batchq::drop_info& why, bool) {
    if (why.reason == batchq::drop_reason::shutdown) reported += lost.size();
  };
  {
    batchq::http_log log(o, cb);
    for (int i = 0; i < n; ++i) REQUIRE(log.enqueue(entry(i)) == batchq::enqueue_result::accepted);
    REQUIRE(srv.wait_arrived(4));  // four streams open in the server
    CHECK(log.stats().in_flight == 4);
    log.shutdown(100ms);
    const auto s = log.stats();
    CHECK(s.delivered == 0);
    CHECK(s.dropped_for(batchq::drop_reason::shutdown) == static_cast<std::uint64_t>(n));
  }
  CHECK(reported == static_cast<std::uint64_t>(n));
  const auto d = srv.finish();
  CHECK(d["tls_connections"].GetInt() == 1);
  CHECK(d["streams"].GetInt() == 4);
  CHECK(d["aborted"].GetInt() == 4);  // the cancelled streams were reset, not left open
}
