#include "support/raw_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace batchq::test {

namespace {

int ms_until(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<long long>(0, left.count()));
}

}  // namespace

raw_server::raw_server(handler h) : handler_(std::move(h)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("raw_server: socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error("raw_server: cannot listen on 127.0.0.1");
  }
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

raw_server::~raw_server() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listen_fd_);
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (int fd : live_fds_) ::shutdown(fd, SHUT_RDWR);  // wakes handlers blocked in read
    workers.swap(workers_);
  }
  for (auto& t : workers) t.join();
}

std::string raw_server::url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
}

std::string raw_server::host_port() const { return "127.0.0.1:" + std::to_string(port_); }

std::vector<raw_request> raw_server::requests() const {
  std::lock_guard<std::mutex> lk(mu_);
  return requests_;
}

void raw_server::record(const raw_request& r) {
  std::lock_guard<std::mutex> lk(mu_);
  requests_.push_back(r);
}

void raw_server::accept_loop() {
  // Poll with a short timeout rather than block in accept(): the destructor
  // only has to flip stop_.
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const std::size_t index = accepted_++;
    std::lock_guard<std::mutex> lk(mu_);
    live_fds_.push_back(fd);
    workers_.emplace_back([this, fd, index] {
      raw_connection c(this, fd, index);
      handler_(c);
      c.close();
    });
  }
}

bool raw_connection::fill(std::chrono::steady_clock::time_point deadline) {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, ms_until(deadline)) <= 0) return false;
  char tmp[65536];
  const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
  if (n <= 0) return false;
  buf_.append(tmp, static_cast<std::size_t>(n));
  return true;
}

bool raw_connection::wait_readable(std::chrono::milliseconds timeout) {
  if (!buf_.empty()) return true;
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

bool raw_connection::read_request(raw_request& out, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
    if (!fill(deadline)) return false;
  out = raw_request{};
  out.connection = index_;
  std::string_view head(buf_.data(), end);
  std::size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) return false;
  out.method.assign(line.substr(0, sp1));
  out.target.assign(line.substr(sp1 + 1, sp2 - sp1 - 1));
  while (eol != std::string_view::npos && eol < head.size()) {
    const std::size_t start = eol + 2;
    eol = head.find("\r\n", start);
    std::string_view h = head.substr(start, eol == std::string_view::npos ? std::string_view::npos : eol - start);
    const std::size_t colon = h.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view v = h.substr(colon + 1);
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    out.headers.emplace_back(std::string(h.substr(0, colon)), std::string(v));
  }
  const std::size_t body_len = std::strtoull(out.header("Content-Length").c_str(), nullptr, 10);
  const std::size_t body_start = end + 4;
  while (buf_.size() < body_start + body_len)
    if (!fill(deadline)) return false;
  out.body = buf_.substr(body_start, body_len);
  buf_.erase(0, body_start + body_len);
  owner_->record(out);
  return true;
}

bool raw_connection::write(std::string_view data) {
  while (!data.empty() && fd_ >= 0) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return data.empty();
}

bool raw_connection::respond(int status, std::string_view body) {
  return write("HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\nContent-Type: text/plain\r\n\r\n" + std::string(body));
}

void raw_connection::close() {
  if (fd_ < 0) return;
  {
    std::lock_guard<std::mutex> lk(owner_->mu_);
    auto& v = owner_->live_fds_;
    v.erase(std::remove(v.begin(), v.end(), fd_), v.end());
  }
  ::close(fd_);
  fd_ = -1;
}

void raw_connection::reset() {
  if (fd_ < 0) return;
  linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close();
}

}  // namespace batchq::test
