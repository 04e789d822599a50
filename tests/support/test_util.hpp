// tests/support/test_util.hpp - helpers shared by every test binary (the
// test support library batchq_test_support, with Catch2's main). All test
// helpers live in namespace batchq::test; HTTP receivers are in
// receiver.hpp and raw_server.hpp (library batchq_test_receiver).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "batchq/http_sender.hpp"

namespace batchq::test {

/// A compact JSON log entry numbered `i`, e.g. {"i":3,"msg":"entry 3"}.
std::string entry(int i);
/// entry(0) .. entry(n-1).
std::vector<std::string> entries(int n);

/// A TCP port on 127.0.0.1 with nothing listening (bound, then released).
int unused_port();

/// A fresh 0700 directory under $TMPDIR (or /tmp), removed with everything
/// in it when the object goes (its permissions are restored first, so a test
/// may chmod it).
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

/// A self-signed certificate and its key (make_self_signed) in a directory
/// of their own; `ok` is false if openssl failed.
struct self_signed_files {
  temp_dir dir;
  std::string cert = dir.file("cert.pem");
  std::string key = dir.file("key.pem");
  bool ok = make_self_signed(cert, key);
};

/// Sender options for `url` with a 5 s timeout, everything else default.
http_sender_options options_for(const std::string& url);

/// Milliseconds since `start`.
long long elapsed_ms(std::chrono::steady_clock::time_point start);

/// How many times slower than a plain build this build runs its threads:
/// 1, or 8 under ASan or TSan (GCC's __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__).
/// The slack of a deadline check scales by it; the deadline itself does not.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int sanitizer_slowdown = 8;
#else
inline constexpr int sanitizer_slowdown = 1;
#endif

}  // namespace batchq::test
