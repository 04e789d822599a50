#include "support/test_util.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace batchq::test {

std::string entry(int i) {
  return R"({"i":)" + std::to_string(i) + R"(,"msg":"entry )" + std::to_string(i) + R"("})";
}

std::vector<std::string> entries(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(entry(i));
  return v;
}

int unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);  // not listening: connecting gets ECONNREFUSED
  return ntohs(a.sin_port);
}

temp_dir::temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/batchq-test-XXXXXX";
  if (!::mkdtemp(&tmpl[0])) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
  std::filesystem::remove_all(path_, ec);
}

bool make_self_signed(const std::string& cert_path, const std::string& key_path) {
  const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
      " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
      " -addext basicConstraints=critical,CA:TRUE"
      " -keyout '" + key_path + "' -out '" + cert_path + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

http_sender_options options_for(const std::string& url) {
  http_sender_options o;
  o.http_endpoint = url;
  o.timeout = std::chrono::milliseconds(5000);
  return o;
}

long long elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace batchq::test
