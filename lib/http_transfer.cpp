#include "http_transfer.hpp"

#define ZLIB_CONST
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <new>
#include <stdexcept>

namespace batchq::detail {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

void replace_all(std::string& s, const std::string& what, std::string_view with) {
  if (what.empty()) return;
  for (std::size_t pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + with.size()))
    s.replace(pos, what.size(), with);
}

// Retry-After: delta-seconds or an HTTP-date. Clamped to a day so that a
// hostile or broken header cannot park the queue for years.
std::chrono::milliseconds parse_retry_after(const std::string& v) {
  constexpr long long max_s = 24 * 3600;
  if (v.empty()) return std::chrono::milliseconds{0};
  long long secs = -1;
  if (std::all_of(v.begin(), v.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    secs = v.size() > 9 ? max_s : std::stoll(v);
  } else {
    const std::time_t when = curl_getdate(v.c_str(), nullptr);
    if (when == -1) return std::chrono::milliseconds{0};
    // time() truncates: the result is never shorter than the real remainder.
    secs = static_cast<long long>(when) - static_cast<long long>(std::time(nullptr));
  }
  secs = std::clamp(secs, 0LL, max_s);
  return std::chrono::milliseconds{secs * 1000};
}

}  // namespace

http_target::~http_target() {
  if (header_list) curl_slist_free_all(header_list);
}

void http_target::scrub(std::string& s) const {
  for (const auto& secret : secrets) replace_all(s, secret, "***");
}

// Every secret occurrence in what was read (which runs longest_secret bytes
// past the cut) is masked first, so none survives in part at the cut.
std::string http_target::quoted_body(const std::string& body) const {
  std::vector<bool> masked(body.size(), false);
  for (const auto& secret : secrets)
    for (std::size_t pos = body.find(secret); pos != std::string::npos; pos = body.find(secret, pos + 1))
      std::fill(masked.begin() + static_cast<std::ptrdiff_t>(pos),
                masked.begin() + static_cast<std::ptrdiff_t>(pos + secret.size()), true);
  std::string out;
  const std::size_t n = std::min(body.size(), opts.max_error_body);
  for (std::size_t i = 0; i < n; ++i) {
    if (!masked[i]) {
      out += body[i];
    } else if (i == 0 || !masked[i - 1]) {
      out += "***";
    }
  }
  return out;
}

void gzip_pieces(const std::vector<std::string_view>& pieces, std::string& out) {
  std::size_t total = 0;
  for (const auto& p : pieces) total += p.size();
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::bad_alloc();
  // deflateBound of the whole is enough for any split of the input; grown
  // below anyway rather than trusted.
  out.resize(deflateBound(&zs, static_cast<uLong>(std::min<std::size_t>(total, std::numeric_limits<uLong>::max()))) + 64);
  std::size_t used = 0;
  constexpr std::size_t slice = std::numeric_limits<uInt>::max();  // avail_in/avail_out are 32-bit
  int rc = Z_OK;
  auto pump = [&](std::string_view in, int flush) {
    zs.next_in = reinterpret_cast<const Bytef*>(in.data());
    std::size_t in_left = in.size();
    for (;;) {
      if (used == out.size()) out.resize(out.size() * 2);
      zs.avail_in = static_cast<uInt>(std::min(in_left, slice));
      zs.next_out = reinterpret_cast<Bytef*>(&out[used]);
      zs.avail_out = static_cast<uInt>(std::min(out.size() - used, slice));
      const uInt in_before = zs.avail_in, out_before = zs.avail_out;
      const int f = (flush == Z_FINISH && in_left == zs.avail_in) ? Z_FINISH : Z_NO_FLUSH;
      rc = deflate(&zs, f);
      in_left -= in_before - zs.avail_in;
      used += out_before - zs.avail_out;
      if (rc == Z_STREAM_END || rc == Z_STREAM_ERROR) return;
      // Done with this input once it is consumed and deflate had output room
      // left (so it holds nothing it still wants to write for Z_NO_FLUSH).
      if (f == Z_NO_FLUSH && in_left == 0 && zs.avail_out != 0) return;
    }
  };
  for (const auto& p : pieces)
    if (!p.empty()) pump(p, Z_NO_FLUSH);
  pump(std::string_view(), Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("batchq: gzip compression failed");
  out.resize(used);
}

http_transfer::http_transfer(std::shared_ptr<const http_target> target) : target_(std::move(target)) {
  easy_ = curl_easy_init();
  if (!easy_) throw std::runtime_error("batchq: cannot create a libcurl handle");
  try {
    setup();
  } catch (...) {
    curl_easy_cleanup(easy_);
    throw;
  }
}

http_transfer::~http_transfer() { curl_easy_cleanup(easy_); }

void http_transfer::setup() {
  const http_sender_options& opts = target_->opts;
  const bool per_op = opts.scope == timeout_scope::operation;
  const auto timeout_ms = static_cast<long>(opts.timeout.count());
  long connect_ms = static_cast<long>(opts.connect_timeout.count());
  // Per operation, connecting is one operation bounded by `timeout` (as
  // cosocket connect); the whole request has no bound but progress.
  if (connect_ms == 0) connect_ms = per_op ? timeout_ms : std::min(timeout_ms, 5000L);
  const long maxage_s = static_cast<long>((opts.keepalive.count() + 999) / 1000);

  CURLcode rc = CURLE_OK;
  auto set = [&rc](CURLcode r) {
    if (rc == CURLE_OK) rc = r;
  };
  CURL* easy = easy_;
  set(curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf_));
  set(curl_easy_setopt(easy, CURLOPT_PRIVATE, static_cast<void*>(this)));
  set(curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(easy, CURLOPT_URL, target_->ep.url.c_str()));
  set(curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L));
  // Ignore http_proxy & co. NOPROXY "*" as well as PROXY "": with no
  // NOPROXY set, libcurl reads no_proxy / NO_PROXY from the environment for
  // every transfer, even with the proxy switched off.
  set(curl_easy_setopt(easy, CURLOPT_PROXY, ""));
  set(curl_easy_setopt(easy, CURLOPT_NOPROXY, "*"));
  // HTTP/2 where a TLS endpoint offers it in ALPN (one connection then
  // carries every concurrent request); HTTP/1.1 over plain http (no h2c
  // Upgrade round trip, which some receivers mishandle on a POST).
  set(curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS)));
  // Wait for a connection that can multiplex rather than open another.
  set(curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L));
  set(curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, per_op ? 0L : timeout_ms));
  set(curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms));
  set(curl_easy_setopt(easy, CURLOPT_MAXAGE_CONN, std::max(1L, maxage_s)));
  if (opts.keepalive.count() == 0) set(curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L));
  set(curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L));
  set(curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L));
  set(curl_easy_setopt(easy, CURLOPT_HTTPHEADER, target_->header_list));
  set(curl_easy_setopt(easy, CURLOPT_POST, 1L));
  if (opts.method != "POST") set(curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, opts.method.c_str()));
  set(curl_easy_setopt(easy, CURLOPT_READFUNCTION, &http_transfer::on_read));
  set(curl_easy_setopt(easy, CURLOPT_READDATA, this));
  set(curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, &http_transfer::on_seek));
  set(curl_easy_setopt(easy, CURLOPT_SEEKDATA, this));
  set(curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &http_transfer::on_body));
  set(curl_easy_setopt(easy, CURLOPT_WRITEDATA, this));
  set(curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &http_transfer::on_header));
  set(curl_easy_setopt(easy, CURLOPT_HEADERDATA, this));
  // No progress callback (CURLOPT_NOPROGRESS stays 1): the loops that drive
  // a transfer (sender_pool.cpp, http_sender.cpp) look at cancellation after
  // every call into libcurl and poll at most kCancelPollMs, so a callback
  // that libcurl calls on every one of its updates only added work to each
  // request.
  set(curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, opts.ssl_verify ? 1L : 0L));
  set(curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, opts.ssl_verify ? 2L : 0L));
  if (!opts.ca_file.empty()) set(curl_easy_setopt(easy, CURLOPT_CAINFO, opts.ca_file.c_str()));
  if (!opts.client_cert.empty()) set(curl_easy_setopt(easy, CURLOPT_SSLCERT, opts.client_cert.c_str()));
  if (!opts.client_key.empty()) set(curl_easy_setopt(easy, CURLOPT_SSLKEY, opts.client_key.c_str()));
  if (rc != CURLE_OK)
    throw std::runtime_error(std::string("batchq: libcurl refused an option: ") + curl_easy_strerror(rc));
}

// Runs on the thread driving the transfer; no batchq lock is held.
std::size_t http_transfer::on_read(char* out, std::size_t size, std::size_t n, void* self) {
  auto* me = static_cast<http_transfer*>(self);
  const std::size_t room = size * n;
  std::size_t done = 0;
  while (done < room && me->piece_ < me->pieces_.size()) {
    const std::string_view p = me->pieces_[me->piece_];
    const std::size_t k = std::min(room - done, p.size() - me->offset_);
    std::memcpy(out + done, p.data() + me->offset_, k);
    done += k;
    me->offset_ += k;
    if (me->offset_ == p.size()) {
      ++me->piece_;
      me->offset_ = 0;
    }
  }
  return done;
}

// libcurl rewinds to resend the body (a kept-alive connection found closed,
// an auth or redirect round): always to the start in practice, but any
// absolute offset is served.
int http_transfer::on_seek(void* self, curl_off_t offset, int origin) {
  auto* me = static_cast<http_transfer*>(self);
  if (origin != SEEK_SET || offset < 0) return CURL_SEEKFUNC_CANTSEEK;
  auto left = static_cast<std::size_t>(offset);
  me->piece_ = 0;
  me->offset_ = 0;
  while (me->piece_ < me->pieces_.size() && left >= me->pieces_[me->piece_].size()) {
    left -= me->pieces_[me->piece_].size();
    ++me->piece_;
  }
  if (me->piece_ == me->pieces_.size() && left > 0) return CURL_SEEKFUNC_FAIL;
  me->offset_ = left;
  return CURL_SEEKFUNC_OK;
}

std::size_t http_transfer::on_body(char* data, std::size_t size, std::size_t n, void* self) {
  auto* me = static_cast<http_transfer*>(self);
  const std::size_t len = size * n;
  // longest_secret bytes more than will be quoted: a secret that starts
  // inside the quoted part is then seen whole and scrubbed whole.
  const std::size_t max = me->target_->opts.max_error_body;
  const std::size_t longest = me->target_->longest_secret;
  const std::size_t keep = max > SIZE_MAX - longest ? SIZE_MAX : max + longest;
  const std::size_t room = keep - std::min(keep, me->err_body_.size());
  me->err_body_.append(data, std::min(room, len));
  return len;  // the rest is read and discarded, keeping the connection usable
}

std::size_t http_transfer::on_header(char* data, std::size_t size, std::size_t n, void* self) {
  auto* me = static_cast<http_transfer*>(self);
  const std::size_t len = size * n;
  std::string_view line(data, len);
  if (line.substr(0, 5) == "HTTP/") {  // a new response (after 1xx or a retry): forget the old one
    me->retry_after_value_.clear();
    me->err_body_.clear();
  } else if (constexpr std::string_view name = "retry-after:";
             line.size() > name.size() && iequals(line.substr(0, name.size()), name)) {
    line.remove_prefix(name.size());
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
    me->retry_after_value_.assign(line);
  }
  return len;
}

bool http_transfer::begin(const std::vector<std::string_view>& pieces, const attempt_context* ctx,
                          send_result* early) {
  if (ctx && ctx->cancelled()) {
    early->ok = false;
    early->error = "failed request to " + target_->ep.host_port + ": cancelled before the request was made";
    return false;
  }
  pieces_.clear();
  if (target_->opts.gzip) {
    gzip_pieces(pieces, gz_);
    pieces_.emplace_back(gz_);
  } else {
    pieces_.assign(pieces.begin(), pieces.end());
  }
  std::size_t total = 0;
  for (const auto& p : pieces_) total += p.size();
  // A small body goes out with the request head in one write, as libcurl
  // does with CURLOPT_POSTFIELDS below 64 KiB (a read callback would send it
  // after the head: one more segment and one more wake-up of the receiver per
  // request, which at one entry per request halved the rate). One piece is
  // used in place; several are joined into a buffer of at most k_inline
  // bytes. Larger bodies are streamed.
  const char* inline_body = nullptr;
  if (pieces_.size() == 1) {
    inline_body = pieces_[0].data();
  } else if (total <= k_inline) {
    small_.clear();
    for (const auto& p : pieces_) small_.append(p);
    inline_body = small_.data();
  }
  piece_ = offset_ = 0;
  ctx_ = ctx;
  last_progress_ = std::chrono::steady_clock::now();
  seen_up_ = seen_down_ = seen_header_ = 0;
  stalled_ = false;
  err_body_.clear();
  retry_after_value_.clear();
  errbuf_[0] = '\0';
  // A streamed body is copied by libcurl through its upload buffer: at the
  // default 64 KiB a 512 KB batch took 10 send()s and 18 polls per request;
  // with k_upload_buffer 7 and 12, and about a fifth less of the worker's CPU
  // per entry (bench/results.md case 3). Set once, on a handle's first
  // streamed body: a handle that only sends small bodies keeps the default.
  if (inline_body == nullptr && !upload_buffer_set_) {
    curl_easy_setopt(easy_, CURLOPT_UPLOAD_BUFFERSIZE, static_cast<long>(k_upload_buffer));
    upload_buffer_set_ = true;
  }
  // The size is known: Content-Length, never chunked. POSTFIELDS null: the
  // read callback supplies the body.
  curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, total == 0 ? "" : inline_body);
  curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(total));
  return true;
}

// Bytes are read off the handle's counters here, by the loop that drives the
// transfer after each call into libcurl, rather than stamped with the clock in
// the header and body callbacks (one clock read per header line).
long long http_transfer::idle_ms_left() {
  curl_off_t up = 0, down = 0;
  long header = 0;
  curl_easy_getinfo(easy_, CURLINFO_SIZE_UPLOAD_T, &up);
  curl_easy_getinfo(easy_, CURLINFO_SIZE_DOWNLOAD_T, &down);
  curl_easy_getinfo(easy_, CURLINFO_HEADER_SIZE, &header);
  const auto now = std::chrono::steady_clock::now();
  if (up != seen_up_ || down != seen_down_ || header != seen_header_) {
    seen_up_ = up;
    seen_down_ = down;
    seen_header_ = header;
    last_progress_ = now;
  }
  const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_progress_);
  const long long left = static_cast<long long>((target_->opts.timeout - idle).count());
  if (left <= 0) stalled_ = true;
  return left;
}

send_result http_transfer::finish(CURLcode rc, const std::string& multi_error) {
  const http_sender_options& opts = target_->opts;
  const std::string& host_port = target_->ep.host_port;
  send_result r;
  const bool cancelled = rc == CURLE_ABORTED_BY_CALLBACK && ctx_ && ctx_->cancelled();
  ctx_ = nullptr;
  pieces_.clear();  // no view of the caller's entries outlives the attempt
  curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, static_cast<const char*>(nullptr));
  if (gz_.capacity() > (std::size_t{64} << 20)) std::string().swap(gz_);

  if (rc == CURLE_OK) {
    long code = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &code);
    r.status = static_cast<int>(code);
    if (code >= 200 && code <= opts.success_status_max) {
      r.ok = true;
      return r;
    }
    r.error = "request to " + host_port + " returned status code " + std::to_string(code) + " and body " +
              target_->quoted_body(err_body_);
    if (code == 429 || code == 503) r.retry_after = parse_retry_after(retry_after_value_);
    if (opts.drop_permanent_4xx && code >= 400 && code < 500 && code != 408 && code != 429) {
      r.permanent = true;
      r.permanent_reason = code == 413 ? drop_reason::too_large : drop_reason::rejected;
    }
  } else {
    std::string why;
    if (cancelled)
      why = "cancelled";
    else if (stalled_)
      why = "timeout (nothing sent or received for " + std::to_string(opts.timeout.count()) + " ms)";
    else if (!multi_error.empty())
      why = multi_error;
    else if (errbuf_[0] != '\0')
      why = errbuf_;
    else
      why = curl_easy_strerror(rc);
    while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
    r.error = "failed request to " + host_port + ": " + why;
  }
  target_->scrub(r.error);
  return r;
}

}  // namespace batchq::detail
