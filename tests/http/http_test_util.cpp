#include "http/http_test_util.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

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
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/batchq-http-XXXXXX";
  if (!::mkdtemp(&tmpl[0])) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
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

long long elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace batchq::test
