// http_transfer: one HTTP attempt on one libcurl easy handle, shared by the
// synchronous http_sender (its own multi handle) and the sender_pool (one
// multi thread driving many transfers). Internal to lib/: libcurl types
// appear here and nowhere in include/.
//
// Thread rule: a transfer is used by one thread at a time (libcurl handles
// are never shared concurrently); an http_target is immutable once built and
// is read by any number of transfers.
#ifndef BATCHQ_LIB_HTTP_TRANSFER_HPP
#define BATCHQ_LIB_HTTP_TRANSFER_HPP

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "batchq/http_sender.hpp"

namespace batchq::detail {

// The parts of http_endpoint we need. Filled only from a URL that parsed.
struct endpoint_parts {
  std::string url;           // what libcurl gets: no userinfo, no fragment
  std::string host_port;     // "host:port" for error texts
  bool tls = false;          // https (else plain http)
  bool has_userinfo = false;
  std::string user;          // percent-decoded
  std::string password;      // percent-decoded
  std::string password_raw;  // as written in the URL, for scrubbing
  std::vector<std::string> query_values;  // raw and decoded, for scrubbing
};

// Where every request goes and how: validated options, the parsed endpoint,
// the header list and the secrets scrubbed from error texts. Built once
// (make_http_target, in http_sender.cpp) and then only read.
struct http_target {
  http_sender_options opts;
  endpoint_parts ep;
  std::vector<std::string> secrets;  // longest first
  std::size_t longest_secret = 0;
  curl_slist* header_list = nullptr;

  http_target() = default;
  http_target(const http_target&) = delete;
  http_target& operator=(const http_target&) = delete;
  ~http_target();

  void scrub(std::string& s) const;
  // The first max_error_body bytes of `body` with every secret masked.
  std::string quoted_body(const std::string& body) const;
};

// Validates `o` (options_error on a bad field) and builds the target.
std::shared_ptr<const http_target> make_http_target(http_sender_options o);

// gzip (RFC 1952) of the concatenated pieces into `out` (replaced), read
// piece by piece: the uncompressed body is never assembled.
void gzip_pieces(const std::vector<std::string_view>& pieces, std::string& out);

// One easy handle and the state of the attempt it runs.
class http_transfer {
 public:
  explicit http_transfer(std::shared_ptr<const http_target> target);  // throws on a libcurl failure
  ~http_transfer();
  http_transfer(const http_transfer&) = delete;
  http_transfer& operator=(const http_transfer&) = delete;

  CURL* easy() const noexcept { return easy_; }
  const http_target& target() const noexcept { return *target_; }

  // Prepares one attempt whose body is `pieces` concatenated. The bytes the
  // pieces point at and `ctx` must stay alive and unchanged until finish();
  // the body is read from them as libcurl sends (CURLOPT_READFUNCTION), and
  // read again from the start when libcurl rewinds (CURLOPT_SEEKFUNCTION: a
  // reused connection found dead), so every resend carries identical bytes.
  // With gzip the pieces are compressed first into a buffer the transfer
  // keeps (compressed size only), which the resends reuse. A body of one
  // piece, or of at most k_inline bytes, is sent as CURLOPT_POSTFIELDS (head
  // and body in one write; several pieces joined into a small buffer). Returns false,
  // with *early set, when the attempt must not start (already cancelled).
  bool begin(const std::vector<std::string_view>& pieces, const attempt_context* ctx, send_result* early);

  // timeout_scope::operation: ms until the attempt counts as stalled (no
  // byte moved for opts.timeout). Marks it stalled at 0.
  long long idle_ms_left();
  bool cancelled() const noexcept { return ctx_ && ctx_->cancelled(); }

  // The attempt's outcome from libcurl's result (the handle is no longer in
  // a multi handle). Forgets the body.
  send_result finish(CURLcode rc, const std::string& multi_error);

 private:
  static std::size_t on_read(char* out, std::size_t size, std::size_t n, void* self);
  static int on_seek(void* self, curl_off_t offset, int origin);
  static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* self);
  static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* self);
  void setup();

  std::shared_ptr<const http_target> target_;
  CURL* easy_ = nullptr;
  char errbuf_[CURL_ERROR_SIZE] = {};  // lives exactly as long as easy_
  std::string gz_;                     // the compressed body (gzip), reused
  static constexpr std::size_t k_inline = 64 * 1024;
  // libcurl's upload buffer for streamed bodies (its default is 64 KiB), set
  // on the first body larger than k_inline. libcurl 7.88 allocates it anew
  // for every transfer: kept under glibc's 128 KiB mmap threshold so that it
  // never becomes an mmap, page faults and munmap per request (1 MiB did, in
  // a process with MALLOC_TRIM_THRESHOLD_ set: 10x the worker's CPU), and
  // small enough to stay in the cache between libcurl's copy into it and
  // the kernel's copy out of it.
  static constexpr std::size_t k_upload_buffer = 120 * 1024;
  bool upload_buffer_set_ = false;
  std::string small_;                  // a body of several pieces up to k_inline bytes, joined

  // Per-attempt state, written by the callbacks during a transfer.
  std::vector<std::string_view> pieces_;
  std::size_t piece_ = 0, offset_ = 0;  // read cursor
  std::string err_body_;
  std::string retry_after_value_;
  const attempt_context* ctx_ = nullptr;
  std::chrono::steady_clock::time_point last_progress_{};
  curl_off_t seen_up_ = 0, seen_down_ = 0, seen_header_ = 0;
  bool stalled_ = false;
};

}  // namespace batchq::detail

#endif  // BATCHQ_LIB_HTTP_TRANSFER_HPP
