// batchq/http_sender.hpp - Kong http-log's request, made with libcurl.
//
//   batchq::http_sender_options o;
//   o.http_endpoint = "https://user:secret@logs.example.com:8443/ingest";
//   o.headers = {{"X-Tenant", "blue"}};
//   batchq::http_sender s(o);                       // throws options_error if invalid
//   std::string body;
//   batchq::build_payload(batch, batchq::payload_format::kong, body);
//   batchq::send_result r = s.send(body, &ctx);      // one attempt
//   return r.to_process_result();
//
// What goes on the wire (as Kong's http-log plugin, kong/plugins/http-log/handler.lua):
//   <method> <path?query of http_endpoint> HTTP/1.1
//   Host: <host[:port]>
//   Content-Type: <content_type>
//   Content-Length: <body bytes (after gzip)>
//   Authorization: Basic base64(user:password)   (only with userinfo in the URL)
//   Content-Encoding: gzip                        (only with gzip = true)
//   User-Agent: batchq/<version>                  (unless a header sets it)
//   <headers, in the order given>
// No "Expect: 100-continue" and no "Accept" is sent, redirects are not followed (a 3xx is a
// failure), HTTP/1.1 is used on both http and https, and proxies configured in
// the environment (http_proxy, ...) are ignored.
//
// Classification of one send():
//   200..success_status_max      ok (default 2xx only)
//   other status                 failure, "request to <host>:<port> returned
//                                status code <n> and body <first max_error_body bytes>"
//   429 / 503 with Retry-After   failure with retry_after set
//   4xx except 408, 429          permanent failure when drop_permanent_4xx is on
//                                (413 -> drop_reason::too_large, others rejected)
//   no response                  failure, status 0, "failed request to
//                                <host>:<port>: <libcurl's message>"
// Credentials are scrubbed ("***") from every error text, including response
// bodies quoted in it (a secret cut by max_error_body is masked whole): the
// URL's user info (as written and decoded, and the Basic token), every
// configured header value (Authorization and Proxy-Authorization always;
// others of 4 bytes or more, and the part after a first space, e.g. a Bearer
// token), and every query-string value of 4 bytes or more (as written and
// percent-decoded). Texts are matched byte for byte: a receiver that echoes a
// secret re-encoded (e.g. JSON-escaped) is not caught.
#ifndef BATCHQ_HTTP_SENDER_HPP
#define BATCHQ_HTTP_SENDER_HPP

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "batchq/export.hpp"
#include "batchq/sender.hpp"
#include "batchq/types.hpp"

namespace batchq {

/// What http_sender_options::timeout bounds.
enum class timeout_scope : int {
  /// The whole request: connect, TLS, send, wait, receive (batchq's default;
  /// makes shutdown deadlines and worst cases predictable).
  request = 0,
  /// Each socket operation, as OpenResty cosockets (Kong http-log) do: the
  /// connection must be made within `timeout`, and an attempt fails once no
  /// byte has been sent or received for `timeout` (tracked with ms
  /// resolution). A response that keeps trickling may take longer than
  /// `timeout` in all.
  operation = 1,
};

/// Options of http_sender. Names and defaults follow Kong's http-log plugin
/// where it has the option; every field documents its default.
struct http_sender_options {
  /// Where batches go: an http:// or https:// URL with a host. Required.
  /// Userinfo ("https://user:pass@host/") becomes the header
  /// `Authorization: Basic base64(user ":" pass)` (both parts percent-decoded)
  /// and is removed from the URL libcurl sees. A '#', '?' or '/' in the user
  /// name or password must be percent-encoded (%23, %3F, %2F): a URL where an
  /// '@' follows one of them with no '/' or '?' in between is refused, since
  /// it would send to the wrong host. [http-log http_endpoint]
  std::string http_endpoint;
  /// "POST", "PUT" or "PATCH" (exact spelling). [http-log method, default POST]
  std::string method = "POST";
  /// The Content-Type header. Use "application/x-ndjson" with
  /// payload_format::ndjson. [http-log content_type, default application/json]
  std::string content_type = "application/json";
  /// Extra request headers, sent in this order. Names may not be Host,
  /// Content-Length or Content-Type (any case), nor Authorization when the URL
  /// has userinfo, nor Content-Encoding when gzip is on. [http-log headers]
  std::vector<std::pair<std::string, std::string>> headers;
  /// Upper bound on one whole request: connect, TLS, send, wait, receive
  /// (scope = request), or on each socket operation (scope = operation, as
  /// Kong does). A total bound is what makes shutdown deadlines predictable. Large bodies on slow links
  /// need a larger value. [http-log timeout, default 10000 ms]
  std::chrono::milliseconds timeout{10000};
  /// How long an idle connection is kept for reuse by the next send(); it is
  /// rounded up to whole seconds (libcurl's CURLOPT_MAXAGE_CONN). 0: no
  /// reuse, every request opens a new connection (CURLOPT_FORBID_REUSE). TCP
  /// keep-alive probes are on for open connections. The server may close an
  /// idle connection sooner; that costs no attempt (libcurl reconnects and
  /// resends when a reused connection turns out dead before any byte of the
  /// response arrived). [http-log keepalive, default 60000 ms]
  std::chrono::milliseconds keepalive{60000};
  /// Bound on establishing the connection (TCP + TLS handshake).
  /// 0 (the default) means min(timeout, 5000 ms): an endpoint that does not
  /// answer SYNs fails fast while a slow-but-alive one keeps the full timeout
  /// for the transfer. Never more than `timeout` in effect.
  std::chrono::milliseconds connect_timeout{0};
  /// Verify the server's certificate chain and host name on https.
  /// (Kong 2.x sent with verification off; batchq verifies by default.)
  bool ssl_verify = true;
  /// PEM file of CA certificates to verify the server with; "" = the system
  /// store libcurl was built with.
  std::string ca_file;
  /// PEM client certificate (and chain) for mutual TLS; "" = none.
  std::string client_cert;
  /// PEM private key of client_cert; "" = the key is in client_cert's file.
  std::string client_key;
  /// Compress each body with gzip (zlib, level 6) and send
  /// `Content-Encoding: gzip`. The receiver must support it. Default off.
  bool gzip = false;
  /// Treat 4xx responses other than 408 and 429 as permanent: the batch is
  /// dropped without retries (413 as drop_reason::too_large, the others as
  /// drop_reason::rejected). Off by default, as Kong retries every failure.
  bool drop_permanent_4xx = false;
  /// How many bytes of a failed response's body are quoted in the error text
  /// (the rest is read and discarded). Default 256.
  std::size_t max_error_body = 256;
  /// The highest status that counts as delivered (200..599). Default 299:
  /// only 2xx (Kong 3.x http-log, res.status < 300); 399 makes 3xx a success
  /// too (Kong 2.x http-log, res.status < 400). Statuses above it are failures
  /// as described at the top of this file (Retry-After, drop_permanent_4xx).
  int success_status_max = 299;
  /// What `timeout` bounds; see timeout_scope. Default request.
  timeout_scope scope = timeout_scope::request;
};

/// Checks `o` without opening anything. Returns "" when valid, else
/// "<field>: <problem> (allowed: <what is>)" and, if `field` is not null,
/// stores the field's name there (cleared when valid). The text never
/// contains credentials. Rules (Kong's http-log schema plus batchq's):
///   http_endpoint  an absolute http/https URL with a host
///   method         POST, PUT or PATCH
///   content_type   non-empty, no control characters
///   headers        names are HTTP tokens and not Host/Content-Length/
///                  Content-Type; values have no CR, LF or NUL; no
///                  Authorization together with userinfo in the URL; no
///                  Content-Encoding when gzip is on
///   timeout  > 0;  keepalive, connect_timeout >= 0
///   success_status_max  200..599;  scope  request or operation
///   client_key     only together with client_cert
/// Thread-safe; does not need curl_global_init.
BATCHQ_CXX_API std::string validate(const http_sender_options& o, std::string* field = nullptr);

/// Sends request bodies to one HTTP(S) endpoint with libcurl.
///
/// Owns one libcurl easy handle (with its own error buffer and connection
/// cache) for its whole life, so consecutive send() calls reuse the
/// connection. Not copyable; movable (a moved-from object's send() fails with
/// an error text saying so).
///
/// Thread-safety: send() must not be called concurrently on one object (use
/// one http_sender per sending thread); distinct objects are independent.
/// endpoint_for_logs() and options() may be called from any thread while no
/// move is in progress.
///
/// The first constructor call in the process runs curl_global_init() once
/// (std::call_once); nothing happens at static-initialization time.
/// curl_global_cleanup() is never called (it would be unsafe while a host
/// still uses libcurl).
class BATCHQ_CXX_API http_sender final : public sender {
 public:
  /// Validates `options` (see validate()) and prepares the handle; no
  /// connection is opened until the first send(). Throws options_error
  /// (field() names the option) for invalid options and std::runtime_error
  /// if libcurl cannot be initialised.
  explicit http_sender(http_sender_options options);
  ~http_sender() override;

  http_sender(const http_sender&) = delete;
  http_sender& operator=(const http_sender&) = delete;
  http_sender(http_sender&&) noexcept;
  http_sender& operator=(http_sender&&) noexcept;

  /// Makes one request with `body` (not retained) and classifies the outcome
  /// (see the top of this file). Blocks for at most about `timeout`. When
  /// `ctx` (may be null, not retained) becomes cancelled, the transfer is
  /// aborted within ~100 ms and the result is a failure with status 0 that
  /// says "cancelled"; an already-cancelled context makes no request at all.
  /// Does not throw for delivery problems; std::bad_alloc may escape.
  send_result send(std::string_view body, const attempt_context* ctx = nullptr) override;

  /// "<host>:<port>" of the endpoint (port defaulted from the scheme), the
  /// form used in error texts. Never contains credentials.
  std::string endpoint_for_logs() const;

  /// The options given to the constructor (credentials included: do not log).
  const http_sender_options& options() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace batchq

#endif  // BATCHQ_HTTP_SENDER_HPP
