// tests/http/http_test_util.hpp - small helpers shared by the HTTP tests.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace batchq::test {

/// A compact JSON log entry numbered `i`, e.g. {"i":3,"msg":"entry 3"}.
std::string entry(int i);
/// entry(0) .. entry(n-1).
std::vector<std::string> entries(int n);

/// Parses `body` as a JSON array and returns each element re-serialized
/// compactly; throws std::runtime_error if it is not a JSON array.
std::vector<std::string> json_array_elements(const std::string& body);

/// A TCP port on 127.0.0.1 with nothing listening (bound, then released).
int unused_port();

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it
/// when the object goes.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// Writes a self-signed certificate (CN 127.0.0.1, SAN IP:127.0.0.1 and
/// DNS:localhost, CA:TRUE so it can also be its own client CA) and its key
/// with the openssl CLI. false if openssl is missing or fails.
bool make_self_signed(const std::string& cert_path, const std::string& key_path);

/// Milliseconds since `start`.
long long elapsed_ms(std::chrono::steady_clock::time_point start);

}  // namespace batchq::test
