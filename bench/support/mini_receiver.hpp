// mini_receiver.hpp - the loopback HTTP/1.1 receiver of the benchmarks.
//
// Deliberately minimal so that it costs the same small amount for every
// sender measured against it: one thread per connection, keep-alive, reads
// Content-Length bodies, counts requests, body bytes and occurrences of a
// marker string (one per log entry: the benchmarks put a marker field in every
// entry), answers "200 OK" with an empty body. No JSON parsing. It answers
// "100 Continue" if a client asks for it. Listens on 127.0.0.1 only.
#ifndef BATCHQ_BENCH_MINI_RECEIVER_HPP
#define BATCHQ_BENCH_MINI_RECEIVER_HPP

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace bench {

class mini_receiver {
 public:
  /// port 0 picks a free port; marker: counted in every body.
  explicit mini_receiver(std::string marker, int port = 0) : marker_(std::move(marker)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 512) != 0) {
      ::close(fd_);
      throw std::runtime_error("bind/listen on 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
    }
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~mini_receiver() { stop(); }

  void stop() {
    if (stopped_.exchange(true)) return;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    acceptor_.join();
    // Joined without mu_ held: a handler ending its connection takes mu_
    // (finish()), so joining under it could wait forever.
    std::vector<std::thread> handlers;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (int c : conns_)
        if (c >= 0) ::shutdown(c, SHUT_RDWR);
      handlers.swap(handlers_);
    }
    for (auto& t : handlers) t.join();
  }

  int port() const { return port_; }
  std::uint64_t requests() const { return requests_.load(); }
  std::uint64_t body_bytes() const { return bytes_.load(); }
  std::uint64_t markers() const { return markers_.load(); }
  /// CPU time (ns) the connection threads spent, counted up to each answer
  /// sent (so a sender that has its answers has all of its receiver's CPU).
  std::uint64_t cpu_ns() const { return cpu_ns_.load(); }

 private:
  void accept_loop() {
    for (;;) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (stopped_.load()) return;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      int one = 1;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard<std::mutex> g(mu_);
      conns_.push_back(c);
      handlers_.emplace_back([this, c] { serve(c); });
    }
  }

  static bool send_all(int c, std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(c, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Counts marker occurrences, including ones split across two reads.
  std::uint64_t count_markers(std::string_view body) const {
    std::uint64_t n = 0;
    for (std::size_t p = body.find(marker_); p != std::string_view::npos; p = body.find(marker_, p + marker_.size()))
      ++n;
    return n;
  }

  static std::uint64_t thread_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
  }

  void serve(int c) {
    std::uint64_t cpu_seen = thread_cpu_ns();
    std::string buf;
    buf.reserve(1 << 16);
    std::vector<char> chunk(1 << 16);
    for (;;) {
      // Headers.
      std::size_t hend;
      while ((hend = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(c, chunk.data(), chunk.size(), 0);
        if (n <= 0) return finish(c);
        buf.append(chunk.data(), static_cast<std::size_t>(n));
      }
      std::string_view head(buf.data(), hend);
      std::size_t clen = 0;
      bool expect = false;
      for (std::size_t p = 0; p < head.size();) {
        std::size_t e = head.find("\r\n", p);
        if (e == std::string_view::npos) e = head.size();
        std::string_view line = head.substr(p, e - p);
        if (line.size() > 15 && strncasecmp(line.data(), "content-length:", 15) == 0)
          clen = std::strtoull(std::string(line.substr(15)).c_str(), nullptr, 10);
        if (line.size() > 7 && strncasecmp(line.data(), "expect:", 7) == 0 &&
            line.find("100") != std::string_view::npos)
          expect = true;
        p = e + 2;
      }
      buf.erase(0, hend + 4);
      if (expect && !send_all(c, "HTTP/1.1 100 Continue\r\n\r\n")) return finish(c);
      while (buf.size() < clen) {
        ssize_t n = ::recv(c, chunk.data(), chunk.size(), 0);
        if (n <= 0) return finish(c);
        buf.append(chunk.data(), static_cast<std::size_t>(n));
      }
      const std::uint64_t m = count_markers(std::string_view(buf.data(), clen));
      buf.erase(0, clen);
      // Counted before answering: a sender that has its 200 is sure it counted.
      markers_.fetch_add(m);
      bytes_.fetch_add(clen);
      requests_.fetch_add(1);
      const std::uint64_t cpu_now = thread_cpu_ns();
      cpu_ns_.fetch_add(cpu_now - cpu_seen);
      cpu_seen = cpu_now;
      if (!send_all(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) return finish(c);
    }
  }

  void finish(int c) {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& x : conns_)
      if (x == c) x = -1;
    ::close(c);
  }

  std::string marker_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopped_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> handlers_;
  std::atomic<std::uint64_t> requests_{0}, bytes_{0}, markers_{0}, cpu_ns_{0};
};

}  // namespace bench

#endif
