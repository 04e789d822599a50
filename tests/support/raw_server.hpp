// tests/support/raw_server.hpp - a tiny TCP server on 127.0.0.1 whose
// connections are driven byte by byte by the test, for the faults a real HTTP
// server library will not produce: closing or resetting a connection without
// any response, tearing a response mid-way, answering one keep-alive request
// and then dropping the connection when the next one arrives.
//
//   batchq::test::raw_server srv([](batchq::test::raw_connection& c) {
//     batchq::test::raw_request req;
//     if (!c.read_request(req)) return;
//     c.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart");
//     c.reset();                                   // RST mid-body
//   });
//   ... send to srv.url("/") ...
//
// Each accepted connection runs the handler on its own thread; when the
// handler returns the connection is closed (FIN) unless it was reset. Every
// request read with read_request() is recorded (requests()).
//
// Thread-safety: public members of raw_server may be called from any thread;
// a raw_connection belongs to its handler's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/receiver.hpp"  // header_list, find_header

namespace batchq::test {

/// One HTTP/1.1 request as read off a raw connection.
struct raw_request {
  std::string method;
  std::string target;
  header_list headers;
  std::string body;
  /// 0-based number of the connection it arrived on.
  std::size_t connection = 0;
  std::string header(std::string_view name) const { return find_header(headers, name); }
};

class raw_server;

/// The server side of one accepted connection.
class raw_connection {
 public:
  /// 0-based accept order.
  std::size_t index() const { return index_; }
  /// Reads one request: request line, headers and a Content-Length body
  /// (chunked bodies are not supported). false on EOF, error or timeout.
  bool read_request(raw_request& out, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  /// Waits until bytes (or EOF) can be read, without reading them.
  bool wait_readable(std::chrono::milliseconds timeout);
  /// Writes all of `data`; false if the peer is gone.
  bool write(std::string_view data);
  /// "HTTP/1.1 <status> X\r\nContent-Length: n\r\n\r\n<body>", keep-alive.
  bool respond(int status, std::string_view body = {});
  /// Orderly close (FIN). Unread input makes the kernel send RST instead.
  void close();
  /// Abortive close: RST at once (SO_LINGER 0).
  void reset();

 private:
  friend class raw_server;
  raw_connection(raw_server* owner, int fd, std::size_t index) : owner_(owner), fd_(fd), index_(index) {}
  bool fill(std::chrono::steady_clock::time_point deadline);

  raw_server* owner_;
  int fd_;
  std::size_t index_;
  std::string buf_;  // bytes read but not consumed yet
};

class raw_server {
 public:
  using handler = std::function<void(raw_connection&)>;

  /// Binds 127.0.0.1 on an ephemeral port and starts accepting. Throws
  /// std::runtime_error if it cannot.
  explicit raw_server(handler h);
  /// Stops accepting, shuts every live connection down and joins all threads.
  ~raw_server();
  raw_server(const raw_server&) = delete;
  raw_server& operator=(const raw_server&) = delete;

  int port() const { return port_; }
  std::string url(std::string_view path = "/") const;
  std::string host_port() const;
  /// Connections accepted so far.
  std::size_t connections() const { return accepted_.load(); }
  /// Requests read by handlers, in order.
  std::vector<raw_request> requests() const;

 private:
  friend class raw_connection;
  void accept_loop();
  void record(const raw_request& r);

  handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> accepted_{0};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<int> live_fds_;
  std::vector<raw_request> requests_;
};

}  // namespace batchq::test
