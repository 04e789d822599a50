#include "support/receiver.hpp"

#include <httplib.h>

#include <zlib.h>  // httplib.h has included it already, without ZLIB_CONST

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <stdexcept>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace batchq::test {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Undoes gzip (or zlib) framing; returns false if `in` is not a valid stream.
bool gunzip(std::string_view in, std::string& out) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) return false;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));  // inflate does not write it
  zs.avail_in = static_cast<uInt>(in.size());
  char buf[65536];
  int rc = Z_OK;
  out.clear();
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;  // truncated input
  }
  inflateEnd(&zs);
  return rc == Z_STREAM_END;
}

}  // namespace

std::string find_header(const header_list& headers, std::string_view name) {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

std::vector<std::string> json_array_elements(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError() || !d.IsArray()) throw std::runtime_error("not a JSON array: " + body.substr(0, 80));
  std::vector<std::string> out;
  for (const auto& e : d.GetArray()) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    e.Accept(w);
    out.emplace_back(sb.GetString(), sb.GetSize());
  }
  return out;
}

bool recorded_request::has_header(std::string_view name) const {
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); });
}

receiver::receiver(receiver_options options) : opts_(std::move(options)) {
  port_ = opts_.port;
  start();
}

receiver::~receiver() { stop(); }

std::string receiver::url(std::string_view path) const {
  return std::string(opts_.tls_cert_file.empty() ? "http" : "https") + "://127.0.0.1:" + std::to_string(port_) +
         std::string(path);
}

std::string receiver::host_port() const { return "127.0.0.1:" + std::to_string(port_); }

void receiver::start() {
  std::unique_ptr<httplib::Server> s;
  if (!opts_.tls_cert_file.empty()) {
    s = std::make_unique<httplib::SSLServer>(
        opts_.tls_cert_file.c_str(), opts_.tls_key_file.c_str(),
        opts_.tls_client_ca_file.empty() ? nullptr : opts_.tls_client_ca_file.c_str());
  } else {
    s = std::make_unique<httplib::Server>();
  }
  if (!s->is_valid()) throw std::runtime_error("receiver: cannot set up the server (TLS files?)");
  s->set_keep_alive_max_count(opts_.keep_alive_max_count);
  s->set_keep_alive_timeout(opts_.keep_alive_timeout_s);
  s->set_read_timeout(10, 0);
  s->set_write_timeout(10, 0);
  auto h = [this](const httplib::Request& req, httplib::Response& res) { handle(&req, &res); };
  s->Get(".*", h);
  s->Post(".*", h);
  s->Put(".*", h);
  s->Patch(".*", h);
  s->Delete(".*", h);
  if (port_ == 0) {
    port_ = s->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("receiver: cannot bind an ephemeral port");
  } else {
    // SO_REUSEADDR (httplib's default) lets a restart bind while old
    // connections sit in TIME_WAIT; retry briefly anyway.
    bool bound = false;
    for (int i = 0; i < 50 && !bound; ++i) {
      bound = s->bind_to_port("127.0.0.1", port_);
      if (!bound) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!bound) throw std::runtime_error("receiver: cannot bind 127.0.0.1:" + std::to_string(port_));
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = false;
  }
  server_ = std::move(s);
  // The socket is listening already (bind_* calls listen()): connections made
  // before the thread reaches accept() wait in the backlog.
  httplib::Server* raw = server_.get();
  thread_ = std::thread([raw] { raw->listen_after_bind(); });
  // Server::stop() is a no-op until the accept loop runs; wait for it so that
  // a stop() right after start() cannot be lost.
  for (int i = 0; i < 5000 && !raw->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void receiver::stop() {
  if (!server_) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  server_->stop();
  // httplib waits up to the keep-alive timeout for idle connections; a
  // restarting server would drop them at once, so we do.
  close_open_connections();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

void receiver::restart() {
  stop();
  start();
}

bool receiver::running() const { return server_ != nullptr; }

void receiver::close_open_connections() {
  // httplib does not expose its accepted sockets. Find them among our file
  // descriptors: connected TCP sockets whose local port is ours (curl's
  // client sockets in this process have the port as their *peer* port).
  DIR* d = opendir("/proc/self/fd");
  if (!d) return;
  while (dirent* e = readdir(d)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(d)) continue;
    sockaddr_in local{};
    sockaddr_in peer{};
    socklen_t ll = sizeof local;
    socklen_t pl = sizeof peer;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0 || local.sin_family != AF_INET) continue;
    if (ntohs(local.sin_port) != port_) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;  // the listener
    ::shutdown(fd, SHUT_RDWR);
  }
  closedir(d);
}

void receiver::handle(const void* req_p, void* res_p) {
  const auto& req = *static_cast<const httplib::Request*>(req_p);
  auto& res = *static_cast<httplib::Response*>(res_p);

  recorded_request r;
  r.method = req.method;
  r.target = req.target;
  r.path = req.path;
  for (const auto& [k, v] : req.headers) r.headers.emplace_back(k, v);
  r.remote_addr = req.remote_addr;
  r.remote_port = req.remote_port;
  r.tls = !opts_.tls_cert_file.empty();
  r.received_at = std::chrono::steady_clock::now();
  const std::string cl = r.header("Content-Length");
  r.wire_body_size = cl.empty() ? req.body.size() : std::strtoull(cl.c_str(), nullptr, 10);
  // httplib may already have decoded a gzip body; decode it if it did not.
  const bool gz_magic = req.body.size() >= 2 && static_cast<unsigned char>(req.body[0]) == 0x1f &&
                        static_cast<unsigned char>(req.body[1]) == 0x8b;
  if (r.header("Content-Encoding").find("gzip") != std::string::npos && gz_magic) {
    if (!gunzip(req.body, r.body)) r.body = req.body;
  } else {
    r.body = req.body;
  }

  reply rep;
  std::function<reply(const recorded_request&)> responder;
  {
    std::lock_guard<std::mutex> lk(mu_);
    responder = responder_;
    if (!responder) {
      if (!script_.empty()) {
        rep = std::move(script_.front());
        script_.pop_front();
      } else {
        rep = default_;
      }
    }
  }
  if (responder) rep = responder(r);
  if (opts_.on_request) opts_.on_request(r, rep);
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++count_;
    if (opts_.record) requests_.push_back(std::move(r));
  }
  cv_.notify_all();

  if (rep.delay.count() > 0) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, rep.delay, [this] { return stopping_; });
  }

  res.status = rep.status;
  for (const auto& [k, v] : rep.headers) res.set_header(k.c_str(), v.c_str());
  if (rep.truncate) {
    auto body = std::make_shared<std::string>(rep.body);
    res.set_content_provider(
        body->size() + 100, rep.content_type,
        [body](std::size_t offset, std::size_t, httplib::DataSink& sink) {
          if (offset == 0 && !body->empty()) return sink.write(body->data(), body->size());
          return false;  // abort: httplib closes the connection mid-body
        });
  } else {
    res.set_content(rep.body, rep.content_type);
  }
}

void receiver::set_default(reply r) {
  std::lock_guard<std::mutex> lk(mu_);
  default_ = std::move(r);
}

void receiver::push(reply r) {
  std::lock_guard<std::mutex> lk(mu_);
  script_.push_back(std::move(r));
}

void receiver::fail_first(std::size_t k, int status, std::string body) {
  std::lock_guard<std::mutex> lk(mu_);
  for (std::size_t i = 0; i < k; ++i) script_.push_back(reply::with_status(status, body));
}

void receiver::set_responder(std::function<reply(const recorded_request&)> f) {
  std::lock_guard<std::mutex> lk(mu_);
  responder_ = std::move(f);
}

std::vector<recorded_request> receiver::requests() const {
  std::lock_guard<std::mutex> lk(mu_);
  return requests_;
}

std::size_t receiver::count() const {
  std::lock_guard<std::mutex> lk(mu_);
  return count_;
}

bool receiver::wait_for(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return count_ >= n; });
}

void receiver::clear() {
  std::lock_guard<std::mutex> lk(mu_);
  requests_.clear();
  count_ = 0;
}

}  // namespace batchq::test
