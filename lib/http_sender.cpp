#include "batchq/http_sender.hpp"

#include <curl/curl.h>

#define ZLIB_CONST
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>

#include "batchq/version.h"
#include "text/text.hpp"

namespace batchq {

namespace {

// curl_global_init() is not safe to run while other threads use libcurl and
// must not run from a static initializer, so the first constructor does it.
// curl_global_cleanup() is never called: the host may still use libcurl.
void ensure_curl_global_init() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK)
    throw std::runtime_error(std::string("batchq: curl_global_init failed: ") + curl_easy_strerror(rc));
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_token_char(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

// The parts of http_endpoint we need. Filled only from a URL that parsed.
struct endpoint_parts {
  std::string url;           // what libcurl gets: no userinfo, no fragment
  std::string host_port;     // "host:port" for error texts
  bool has_userinfo = false;
  std::string user;          // percent-decoded
  std::string password;      // percent-decoded
  std::string password_raw;  // as written in the URL, for scrubbing
  std::vector<std::string> query_values;  // raw and decoded, for scrubbing
};

using curlu_ptr = std::unique_ptr<CURLU, decltype(&curl_url_cleanup)>;

std::string url_part(CURLU* u, CURLUPart part, unsigned flags, bool* present = nullptr) {
  char* s = nullptr;
  const CURLUcode rc = curl_url_get(u, part, &s, flags);
  if (present) *present = (rc == CURLUE_OK);
  std::string out = (rc == CURLUE_OK && s) ? s : "";
  curl_free(s);
  return out;
}

// Returns "" or the problem (without the field name). The URL itself is never
// quoted back: it may hold a password.
std::string parse_endpoint(const std::string& url, endpoint_parts* out) {
  const char* allowed = " (allowed: an absolute http:// or https:// URL with a host)";
  if (url.empty()) return std::string("is required") + allowed;
  // libcurl's parser is lenient ("http:///x" means host x); demand the
  // "scheme://authority" shape first.
  const std::size_t sep = url.find("://");
  if (sep == std::string::npos || sep == 0) return std::string("is not an absolute URL") + allowed;
  if (sep + 3 >= url.size() || std::strchr("/?#", url[sep + 3])) return std::string("has no host") + allowed;
  {
    // "https://user:pa#ss@host/": the authority ends at the first '/', '?'
    // or '#', so a password holding one of them makes the text before it
    // the host (the request would go elsewhere, and the rest of the password
    // would be quoted as a host or port). An '@' after that point with no
    // '/' or '?' in between means user info was meant: refuse, saying how to
    // write it. (A path or query holding an '@', as /ingest?mail=a@b, passes.)
    const std::size_t auth_end = url.find_first_of("/?#", sep + 3);
    if (auth_end != std::string::npos && url.find('@', sep + 3) > auth_end) {
      const std::size_t at = url.find('@', auth_end);
      const std::size_t next_sep = url.find_first_of("/?", auth_end + 1);
      if (at != std::string::npos && (next_sep == std::string::npos || at < next_sep))
        return "has '" + std::string(1, url[auth_end]) +
               "' before an '@': percent-encode '#' (%23), '?' (%3F), '/' (%2F) and '@' (%40) in the user name "
               "and password, e.g. https://user:pa%23ss@host/ (allowed: an absolute http:// or https:// URL "
               "with a host)";
    }
  }
  curlu_ptr u(curl_url(), &curl_url_cleanup);
  if (!u) throw std::bad_alloc();
  // NON_SUPPORT_SCHEME: parse any scheme, so that we can say which rule broke.
  const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (rc != CURLUE_OK) return std::string("is not a valid URL: ") + curl_url_strerror(rc) + allowed;
  const std::string scheme = url_part(u.get(), CURLUPART_SCHEME, 0);
  if (!iequals(scheme, "http") && !iequals(scheme, "https")) return std::string("has a scheme other than http or https") + allowed;
  const std::string host = url_part(u.get(), CURLUPART_HOST, 0);
  if (host.empty()) return std::string("has no host") + allowed;
  if (!out) return {};

  out->host_port = host + ":" + url_part(u.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  bool has_user = false;
  bool has_password = false;
  out->user = url_part(u.get(), CURLUPART_USER, CURLU_URLDECODE, &has_user);
  out->password = url_part(u.get(), CURLUPART_PASSWORD, CURLU_URLDECODE, &has_password);
  out->password_raw = url_part(u.get(), CURLUPART_PASSWORD, 0);
  out->has_userinfo = has_user || has_password;
  // Query-string values may be credentials too (?api_key=...): each value,
  // as written and percent-decoded, is scrubbed from error texts.
  const std::string query = url_part(u.get(), CURLUPART_QUERY, 0);
  for (std::size_t pos = 0; pos < query.size();) {
    std::size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    const std::string pair = query.substr(pos, amp - pos);
    const std::size_t eq = pair.find('=');
    const std::string value = eq == std::string::npos ? pair : pair.substr(eq + 1);
    if (!value.empty()) {
      out->query_values.push_back(value);
      int len = 0;
      if (char* d = curl_easy_unescape(nullptr, value.c_str(), static_cast<int>(value.size()), &len)) {
        out->query_values.emplace_back(d, static_cast<std::size_t>(len));
        curl_free(d);
      }
    }
    pos = amp + 1;
  }
  curl_url_set(u.get(), CURLUPART_USER, nullptr, 0);
  curl_url_set(u.get(), CURLUPART_PASSWORD, nullptr, 0);
  curl_url_set(u.get(), CURLUPART_OPTIONS, nullptr, 0);
  curl_url_set(u.get(), CURLUPART_FRAGMENT, nullptr, 0);
  out->url = url_part(u.get(), CURLUPART_URL, 0);
  return {};
}

// gzip (RFC 1952) of `in` into `out`, replacing its contents.
void gzip_into(std::string_view in, std::string& out) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::bad_alloc();
  out.resize(deflateBound(&zs, static_cast<uLong>(in.size())) + 64);
  zs.next_in = reinterpret_cast<const Bytef*>(in.data());
  zs.next_out = reinterpret_cast<Bytef*>(&out[0]);
  std::size_t in_left = in.size();
  std::size_t out_left = out.size();
  int rc = Z_OK;
  // avail_in/avail_out are 32-bit: feed in slices.
  constexpr std::size_t slice = std::numeric_limits<uInt>::max();
  while (rc == Z_OK) {
    zs.avail_in = static_cast<uInt>(std::min(in_left, slice));
    zs.avail_out = static_cast<uInt>(std::min(out_left, slice));
    const uInt in_before = zs.avail_in;
    const uInt out_before = zs.avail_out;
    rc = deflate(&zs, in_left == zs.avail_in ? Z_FINISH : Z_NO_FLUSH);
    in_left -= in_before - zs.avail_in;
    out_left -= out_before - zs.avail_out;
    if (rc == Z_OK && out_left == 0) {  // cannot happen with deflateBound, but never loop forever
      const std::size_t used = out.size();
      out.resize(used * 2);
      zs.next_out = reinterpret_cast<Bytef*>(&out[used]);
      out_left = used;
    }
  }
  const std::size_t produced = out.size() - out_left;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("batchq: gzip compression failed");
  out.resize(produced);
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

std::string fail_field(std::string* field, const char* name, const std::string& problem) {
  if (field) *field = name;
  return std::string(name) + ": " + problem;
}

}  // namespace

std::string validate(const http_sender_options& o, std::string* field) {
  endpoint_parts ep;
  const std::string url_problem = parse_endpoint(o.http_endpoint, &ep);
  if (!url_problem.empty()) return fail_field(field, "http_endpoint", url_problem);
  if (o.method != "POST" && o.method != "PUT" && o.method != "PATCH")
    return fail_field(field, "method", "\"" + o.method + "\" is not supported (allowed: POST, PUT, PATCH)");
  auto has_ctl = [](std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
  };
  if (o.content_type.empty() || has_ctl(o.content_type))
    return fail_field(field, "content_type", "is empty or has control characters (allowed: a media type such as application/json)");
  for (const auto& [name, value] : o.headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char))
      return fail_field(field, "headers", "a header name is empty or not an HTTP token (allowed: letters, digits and !#$%&'*+-.^_`|~)");
    if (iequals(name, "Host") || iequals(name, "Content-Length") || iequals(name, "Content-Type"))
      return fail_field(field, "headers", "cannot contain '" + name +
                                              "' header (allowed: any header but Host, Content-Length and "
                                              "Content-Type; set content_type instead)");
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
      return fail_field(field, "headers", "the value of '" + name + "' has CR, LF or NUL (allowed: one-line values)");
    if (ep.has_userinfo && iequals(name, "Authorization"))
      return fail_field(field, "headers",
                        "specifying both an 'Authorization' header and user info in 'http_endpoint' is not "
                        "allowed (allowed: one of the two)");
    if (o.gzip && iequals(name, "Content-Encoding"))
      return fail_field(field, "headers", "cannot contain 'Content-Encoding' when gzip is on (allowed: gzip sets it)");
  }
  auto ms = [](std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; };
  if (o.timeout.count() <= 0) return fail_field(field, "timeout", "is " + ms(o.timeout) + " (allowed: 1 ms or more)");
  if (o.keepalive.count() < 0)
    return fail_field(field, "keepalive", "is " + ms(o.keepalive) + " (allowed: 0 for no reuse, or more)");
  if (o.success_status_max < 200 || o.success_status_max > 599)
    return fail_field(field, "success_status_max",
                      "is " + std::to_string(o.success_status_max) + " (allowed: 200 to 599; 299 = 2xx only, 399 = Kong 2.x)");
  if (static_cast<int>(o.scope) < 0 || static_cast<int>(o.scope) > 1)
    return fail_field(field, "timeout_scope", "is not a timeout_scope value (allowed: request, operation)");
  if (o.connect_timeout.count() < 0)
    return fail_field(field, "connect_timeout",
                      "is " + ms(o.connect_timeout) + " (allowed: 0 for min(timeout, 5000 ms), or more)");
  if (!o.client_key.empty() && o.client_cert.empty())
    return fail_field(field, "client_key", "is set without client_cert (allowed: only together with client_cert)");
  if (field) field->clear();
  return {};
}

struct http_sender::impl {
  http_sender_options opts;
  endpoint_parts ep;
  static constexpr std::size_t k_min_secret = 4;
  std::vector<std::string> secrets;  // scrubbed from every error text
  std::size_t longest_secret = 0;
  CURL* easy = nullptr;
  CURLM* multi = nullptr;
  curl_slist* header_list = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};  // lives exactly as long as `easy`
  std::string gz;                      // reused compression buffer

  // Per-send state, written by the callbacks during a transfer.
  std::string err_body;
  std::string retry_after_value;
  const attempt_context* ctx = nullptr;
  // timeout_scope::operation: when a byte last moved (or the attempt began).
  std::chrono::steady_clock::time_point last_progress{};
  curl_off_t seen_up = 0, seen_down = 0, seen_header = 0;
  bool stalled = false;

  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  explicit impl(http_sender_options o) : opts(std::move(o)) {
    std::string field;
    const std::string problem = validate(opts, &field);
    if (!problem.empty()) throw options_error(field, problem);
    parse_endpoint(opts.http_endpoint, &ep);
    ensure_curl_global_init();
    try {
      setup();
    } catch (...) {
      cleanup();
      throw;
    }
  }
  ~impl() { cleanup(); }

  void cleanup() noexcept {
    if (multi) curl_multi_cleanup(multi);
    if (easy) curl_easy_cleanup(easy);
    if (header_list) curl_slist_free_all(header_list);
    multi = nullptr;
    easy = nullptr;
    header_list = nullptr;
  }

  void add_header(const std::string& line) {
    curl_slist* n = curl_slist_append(header_list, line.c_str());
    if (!n) throw std::bad_alloc();
    header_list = n;
  }

  void setup() {
    easy = curl_easy_init();
    multi = curl_multi_init();
    if (!easy || !multi) throw std::runtime_error("batchq: cannot create a libcurl handle");

    add_header("Content-Type: " + opts.content_type);
    if (ep.has_userinfo) {
      const std::string token = text::base64(ep.user + ":" + ep.password);
      add_header("Authorization: Basic " + token);
      secrets.push_back(token);
      secrets.push_back(ep.password);
      secrets.push_back(ep.password_raw);
    }
    if (opts.gzip) add_header("Content-Encoding: gzip");
    add_header("Expect:");  // no 100-continue round trip for large bodies (Kong sends none)
    for (const auto& [name, value] : opts.headers) {
      // "Name;" is libcurl's spelling of a header with an empty value.
      add_header(value.empty() ? name + ";" : name + ": " + value);
      // Every configured header value may be a credential (X-Api-Key,
      // apikey, ...): all are scrubbed. Values under k_min_secret bytes of
      // headers other than Authorization are not (they cannot be secret, and
      // "1" or "on" would garble every text).
      const bool auth = iequals(name, "Authorization") || iequals(name, "Proxy-Authorization");
      if (auth || value.size() >= k_min_secret) secrets.push_back(value);
      const auto sp = value.find(' ');  // "Bearer <token>": the token alone too
      if (sp != std::string::npos && (auth || value.size() - sp - 1 >= k_min_secret))
        secrets.push_back(value.substr(sp + 1));
    }
    for (const auto& v : ep.query_values)
      if (v.size() >= k_min_secret) secrets.push_back(v);
    // Longest first, so that a secret containing another is replaced whole.
    secrets.erase(std::remove_if(secrets.begin(), secrets.end(), [](const std::string& s) { return s.empty(); }),
                  secrets.end());
    std::sort(secrets.begin(), secrets.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    secrets.erase(std::unique(secrets.begin(), secrets.end()), secrets.end());
    longest_secret = secrets.empty() ? 0 : secrets.front().size();

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
    set(curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf));
    set(curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L));
    set(curl_easy_setopt(easy, CURLOPT_URL, ep.url.c_str()));
    set(curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https"));
    set(curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L));
    set(curl_easy_setopt(easy, CURLOPT_PROXY, ""));  // ignore http_proxy & co.
    set(curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1)));
    set(curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, per_op ? 0L : timeout_ms));
    set(curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms));
    set(curl_easy_setopt(easy, CURLOPT_MAXAGE_CONN, std::max(1L, maxage_s)));
    if (opts.keepalive.count() == 0) set(curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L));
    set(curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L));
    set(curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L));
    set(curl_easy_setopt(easy, CURLOPT_USERAGENT, "batchq/" BATCHQ_VERSION_STRING));
    set(curl_easy_setopt(easy, CURLOPT_HTTPHEADER, header_list));
    set(curl_easy_setopt(easy, CURLOPT_POST, 1L));
    if (opts.method != "POST") set(curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, opts.method.c_str()));
    set(curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &impl::on_body));
    set(curl_easy_setopt(easy, CURLOPT_WRITEDATA, this));
    set(curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &impl::on_header));
    set(curl_easy_setopt(easy, CURLOPT_HEADERDATA, this));
    set(curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &impl::on_progress));
    set(curl_easy_setopt(easy, CURLOPT_XFERINFODATA, this));
    set(curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L));
    set(curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, opts.ssl_verify ? 1L : 0L));
    set(curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, opts.ssl_verify ? 2L : 0L));
    if (!opts.ca_file.empty()) set(curl_easy_setopt(easy, CURLOPT_CAINFO, opts.ca_file.c_str()));
    if (!opts.client_cert.empty()) set(curl_easy_setopt(easy, CURLOPT_SSLCERT, opts.client_cert.c_str()));
    if (!opts.client_key.empty()) set(curl_easy_setopt(easy, CURLOPT_SSLKEY, opts.client_key.c_str()));
    if (rc != CURLE_OK)
      throw std::runtime_error(std::string("batchq: libcurl refused an option: ") + curl_easy_strerror(rc));
  }

  static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* self) {
    auto* me = static_cast<impl*>(self);
    const std::size_t len = size * n;
    me->last_progress = std::chrono::steady_clock::now();
    // longest_secret bytes more than will be quoted: a secret that starts
    // inside the quoted part is then seen whole and scrubbed whole.
    const std::size_t max = me->opts.max_error_body;
    const std::size_t keep = max > SIZE_MAX - me->longest_secret ? SIZE_MAX : max + me->longest_secret;
    const std::size_t room = keep - std::min(keep, me->err_body.size());
    me->err_body.append(data, std::min(room, len));
    return len;  // the rest is read and discarded, keeping the connection usable
  }

  static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* self) {
    auto* me = static_cast<impl*>(self);
    const std::size_t len = size * n;
    std::string_view line(data, len);
    me->last_progress = std::chrono::steady_clock::now();
    if (line.substr(0, 5) == "HTTP/") {  // a new response (after 1xx or a retry): forget the old one
      me->retry_after_value.clear();
      me->err_body.clear();
    } else if (constexpr std::string_view name = "retry-after:"; line.size() > name.size() && iequals(line.substr(0, name.size()), name)) {
      line.remove_prefix(name.size());
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
      me->retry_after_value.assign(line);
    }
    return len;
  }

  static int on_progress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    const auto* me = static_cast<const impl*>(self);
    return (me->ctx && me->ctx->cancelled()) ? 1 : 0;  // non-zero aborts: CURLE_ABORTED_BY_CALLBACK
  }

  // Runs the transfer on our multi handle. curl_easy_perform would do the same
  // but only wakes once a second; here a cancelled context is noticed within
  // kCancelPollMs even while the server is silent.
  CURLcode perform(std::string* multi_error) {
    static constexpr int kCancelPollMs = 100;
    CURLMcode mc = curl_multi_add_handle(multi, easy);
    if (mc != CURLM_OK) {
      *multi_error = curl_multi_strerror(mc);
      return CURLE_FAILED_INIT;
    }
    CURLcode result = CURLE_OK;
    for (;;) {
      int running = 0;
      mc = curl_multi_perform(multi, &running);
      bool done = false;
      int left = 0;
      while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
        if (m->msg == CURLMSG_DONE && m->easy_handle == easy) {
          result = m->data.result;
          done = true;
        }
      }
      if (done) break;
      if (ctx && ctx->cancelled()) {
        result = CURLE_ABORTED_BY_CALLBACK;
        break;
      }
      int wait_ms = ctx ? kCancelPollMs : 1000;
      if (opts.scope == timeout_scope::operation) {
        const long long idle_left = idle_ms_left();
        if (idle_left <= 0) {
          stalled = true;
          result = CURLE_OPERATION_TIMEDOUT;
          break;
        }
        wait_ms = static_cast<int>(std::min<long long>(wait_ms, idle_left));
      }
      if (mc == CURLM_OK) mc = curl_multi_poll(multi, nullptr, 0, wait_ms, nullptr);
      if (mc != CURLM_OK) {
        *multi_error = curl_multi_strerror(mc);
        result = CURLE_FAILED_INIT;
        break;
      }
    }
    // Removing an unfinished transfer closes its connection; a finished one
    // goes back to the multi handle's cache for the next send().
    curl_multi_remove_handle(multi, easy);
    return result;
  }

  // timeout_scope::operation: ms until the attempt counts as stalled (no
  // byte sent or received for opts.timeout). Bytes are read off the handle's
  // counters here rather than in the progress callback, whose call rate
  // libcurl does not promise.
  long long idle_ms_left() {
    curl_off_t up = 0, down = 0;
    long header = 0;
    curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
    curl_easy_getinfo(easy, CURLINFO_HEADER_SIZE, &header);
    const auto now = std::chrono::steady_clock::now();
    if (up != seen_up || down != seen_down || header != seen_header) {
      seen_up = up;
      seen_down = down;
      seen_header = header;
      last_progress = now;
    }
    const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_progress);
    return static_cast<long long>((opts.timeout - idle).count());
  }

  void scrub(std::string& s) const {
    for (const auto& secret : secrets) replace_all(s, secret, "***");
  }

  // The first max_error_body bytes of the response body as they may be
  // quoted: every secret occurrence in what was read (which runs
  // longest_secret bytes past the cut) is masked first, so none survives in
  // part at the cut.
  std::string quoted_body() const {
    std::vector<bool> masked(err_body.size(), false);
    for (const auto& secret : secrets)
      for (std::size_t pos = err_body.find(secret); pos != std::string::npos; pos = err_body.find(secret, pos + 1))
        std::fill(masked.begin() + static_cast<std::ptrdiff_t>(pos),
                  masked.begin() + static_cast<std::ptrdiff_t>(pos + secret.size()), true);
    std::string out;
    const std::size_t n = std::min(err_body.size(), opts.max_error_body);
    for (std::size_t i = 0; i < n; ++i) {
      if (!masked[i]) {
        out += err_body[i];
      } else if (i == 0 || !masked[i - 1]) {
        out += "***";
      }
    }
    return out;
  }

  send_result send(std::string_view body, const attempt_context* attempt) {
    send_result r;
    if (attempt && attempt->cancelled()) {
      r.error = "failed request to " + ep.host_port + ": cancelled before the request was made";
      return r;
    }
    if (opts.gzip) {
      gzip_into(body, gz);
      body = gz;
    }
    ctx = attempt;
    last_progress = std::chrono::steady_clock::now();
    seen_up = seen_down = seen_header = 0;
    stalled = false;
    err_body.clear();
    retry_after_value.clear();
    errbuf[0] = '\0';
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.empty() ? "" : body.data());
    std::string multi_error;
    const CURLcode rc = perform(&multi_error);
    const bool cancelled = rc == CURLE_ABORTED_BY_CALLBACK && attempt && attempt->cancelled();
    ctx = nullptr;
    // Do not keep a pointer to the caller's body in the handle.
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));

    if (rc == CURLE_OK) {
      long code = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
      r.status = static_cast<int>(code);
      if (code >= 200 && code <= opts.success_status_max) {
        r.ok = true;
        return r;
      }
      r.error = "request to " + ep.host_port + " returned status code " + std::to_string(code) + " and body " + quoted_body();
      if (code == 429 || code == 503) r.retry_after = parse_retry_after(retry_after_value);
      if (opts.drop_permanent_4xx && code >= 400 && code < 500 && code != 408 && code != 429) {
        r.permanent = true;
        r.permanent_reason = code == 413 ? drop_reason::too_large : drop_reason::rejected;
      }
    } else {
      std::string why;
      if (cancelled)
        why = "cancelled";
      else if (stalled)
        why = "timeout (nothing sent or received for " + std::to_string(opts.timeout.count()) + " ms)";
      else if (!multi_error.empty())
        why = multi_error;
      else if (errbuf[0] != '\0')
        why = errbuf;
      else
        why = curl_easy_strerror(rc);
      while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
      r.error = "failed request to " + ep.host_port + ": " + why;
    }
    scrub(r.error);
    return r;
  }
};

http_sender::http_sender(http_sender_options options) : impl_(std::make_unique<impl>(std::move(options))) {}
http_sender::~http_sender() = default;
http_sender::http_sender(http_sender&&) noexcept = default;
http_sender& http_sender::operator=(http_sender&&) noexcept = default;

send_result http_sender::send(std::string_view body, const attempt_context* ctx) {
  if (!impl_) {
    send_result r;
    r.error = "http_sender: send() on a moved-from object";
    return r;
  }
  return impl_->send(body, ctx);
}

std::string http_sender::endpoint_for_logs() const { return impl_ ? impl_->ep.host_port : std::string(); }

const http_sender_options& http_sender::options() const {
  static const http_sender_options empty;
  return impl_ ? impl_->opts : empty;
}

}  // namespace batchq
