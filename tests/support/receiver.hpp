// tests/support/receiver.hpp - a loopback HTTP(S) receiver for tests and demos.
//
// batchq::test::receiver is a real HTTP/1.1 server (cpp-httplib) bound to
// 127.0.0.1 on an ephemeral port (or a given one), serving from background
// threads. It records every request it reads - method, target, headers,
// body (gzip bodies decoded), peer address and port, arrival time - and
// answers each one as scripted:
//
//   batchq::test::receiver rx;                       // listening now
//   rx.push(reply::with_status(503).retry_after("2")); // 1st request: 503
//   rx.fail_first(2, 500, "oops");                   // next 2: 500 "oops"
//   rx.set_default(reply::with_status(204));         // everything after: 204
//   ... point a sender at rx.url("/ingest") ...
//   REQUIRE(rx.wait_for(4, 5s));
//   auto reqs = rx.requests();                       // copies, in arrival order
//
// Order of decisions for each request: the responder function if one is set,
// else the next scripted reply (push/fail_first, consumed FIFO), else the
// default reply (200, empty body).
//
// Faults it can play: any status and body, extra headers (Retry-After), a
// delay before answering (interrupted by stop()), and `truncate` - a response
// whose headers promise more body than is sent before the connection closes.
// Faults httplib cannot express (closing or resetting without any response,
// a torn status line) live in raw_server.hpp.
//
// stop() closes the listening socket AND every open connection at once (as a
// restarting server would), so a client's keep-alive connection goes stale;
// restart() listens again on the same port.
//
// Thread-safety: every public member may be called from any thread. The
// on_request hook runs on a server thread, possibly on several at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace httplib {
class Server;
}

namespace batchq::test {

using header_list = std::vector<std::pair<std::string, std::string>>;

/// Case-insensitive lookup of the first header called `name`; "" if absent.
std::string find_header(const header_list& headers, std::string_view name);

/// Parses `body` (a received batch) as a JSON array and returns each element
/// re-serialized compactly; throws std::runtime_error if it is not one.
std::vector<std::string> json_array_elements(const std::string& body);

/// One request as the receiver read it.
struct recorded_request {
  std::string method;
  std::string target;  ///< path and query as sent
  std::string path;    ///< path only
  header_list headers;
  /// The body after undoing Content-Encoding: gzip (if any).
  std::string body;
  /// Bytes of the body on the wire (before gzip decoding).
  std::size_t wire_body_size = 0;
  std::string remote_addr;
  int remote_port = -1;
  bool tls = false;
  std::chrono::steady_clock::time_point received_at;

  std::string header(std::string_view name) const { return find_header(headers, name); }
  bool has_header(std::string_view name) const;
};

/// How to answer one request.
struct reply {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain";
  header_list headers;  ///< extra response headers
  /// Wait this long before answering (cut short by stop()).
  std::chrono::milliseconds delay{0};
  /// Send the status line and headers with a Content-Length larger than
  /// `body`, then `body`, then close the connection: a response torn mid-body.
  bool truncate = false;

  static reply with_status(int status, std::string body = {}) {
    reply r;
    r.status = status;
    r.body = std::move(body);
    return r;
  }
  reply& retry_after(std::string value) {
    headers.emplace_back("Retry-After", std::move(value));
    return *this;
  }
  reply& after(std::chrono::milliseconds d) {
    delay = d;
    return *this;
  }
};

struct receiver_options {
  /// Port to bind on 127.0.0.1; 0 = an ephemeral port (see receiver::port()).
  int port = 0;
  /// Serve https with this PEM certificate and key (both required for TLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  /// With TLS: require a client certificate signed by this CA file.
  std::string tls_client_ca_file;
  /// Keep requests in memory for requests(). Long-running tools turn it off.
  bool record = true;
  /// Called for every request after its reply is decided and before the
  /// delay; on a server thread; no receiver lock is held.
  std::function<void(const recorded_request&, const reply&)> on_request;
  /// Requests served on one connection before the server closes it.
  std::size_t keep_alive_max_count = 100000;
  /// Idle seconds before the server closes a keep-alive connection.
  int keep_alive_timeout_s = 30;
};

class receiver {
 public:
  /// Binds and starts serving before returning. Throws std::runtime_error if
  /// the port cannot be bound or the TLS files cannot be loaded.
  explicit receiver(receiver_options options = {});
  ~receiver();
  receiver(const receiver&) = delete;
  receiver& operator=(const receiver&) = delete;

  int port() const { return port_; }
  /// "http://127.0.0.1:<port><path>" (https with TLS).
  std::string url(std::string_view path = "/") const;
  /// "127.0.0.1:<port>", the form error texts use.
  std::string host_port() const;

  /// Stops listening, closes every open connection, cuts delays short and
  /// waits for the server threads. Idempotent.
  void stop();
  /// Listens again on the same port (after stop()). Recorded requests and
  /// the script are kept.
  void restart();
  bool running() const;

  /// The reply used when no responder is set and the script is empty.
  void set_default(reply r);
  /// Appends one scripted reply (used by exactly one request, FIFO).
  void push(reply r);
  /// Scripts the next `k` requests to get `status` with `body`.
  void fail_first(std::size_t k, int status, std::string body = {});
  /// Decides every reply from the request (takes precedence over the script).
  /// Runs on a server thread. Pass nullptr to remove.
  void set_responder(std::function<reply(const recorded_request&)> f);

  /// Copies of the requests recorded so far, in arrival order.
  std::vector<recorded_request> requests() const;
  /// Number of requests seen (recorded or not).
  std::size_t count() const;
  /// Waits until at least `n` requests were seen; false on timeout.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout) const;
  /// Forgets the recorded requests (the count too).
  void clear();

 private:
  void start();
  void handle(const void* req, void* res);
  void close_open_connections();

  receiver_options opts_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;  // a request arrived, or stop()
  std::vector<recorded_request> requests_;
  std::size_t count_ = 0;
  std::deque<reply> script_;
  reply default_;
  std::function<reply(const recorded_request&)> responder_;
  bool stopping_ = false;
};

}  // namespace batchq::test
