#include "batchq/http_sender.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>

#include "batchq/version.h"
#include "http_transfer.hpp"
#include "text/text.hpp"

namespace batchq {

namespace {

using detail::endpoint_parts;

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
  out->tls = iequals(scheme, "https");
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

namespace detail {

std::shared_ptr<const http_target> make_http_target(http_sender_options o) {
  std::string field;
  const std::string problem = validate(o, &field);
  if (!problem.empty()) throw options_error(field, problem);
  ensure_curl_global_init();
  auto t = std::make_shared<http_target>();
  t->opts = std::move(o);
  parse_endpoint(t->opts.http_endpoint, &t->ep);
  const http_sender_options& opts = t->opts;
  const endpoint_parts& ep = t->ep;
  auto add_header = [&t](const std::string& line) {
    curl_slist* n = curl_slist_append(t->header_list, line.c_str());
    if (!n) throw std::bad_alloc();
    t->header_list = n;
  };
  constexpr std::size_t k_min_secret = 4;
  std::vector<std::string>& secrets = t->secrets;
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
  // libcurl's default "Accept: */*" is not sent (Kong's http-log sends none).
  // The User-Agent is a header of the list rather than CURLOPT_USERAGENT,
  // which libcurl formats into a string of its own for every request and
  // then again into the request head; a configured User-Agent replaces it.
  // libcurl formats head lines one character at a time (about 130
  // instructions per character in 7.88), which made the head the largest
  // share of libcurl's work per request at one entry per request.
  add_header("Accept:");
  const bool own_agent = std::none_of(opts.headers.begin(), opts.headers.end(),
                                      [](const auto& h) { return iequals(h.first, "User-Agent"); });
  if (own_agent) add_header("User-Agent: batchq/" BATCHQ_VERSION_STRING);
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
  t->longest_secret = secrets.empty() ? 0 : secrets.front().size();
  return t;
}

}  // namespace detail

// The synchronous sender: one transfer on its own multi handle.
struct http_sender::impl {
  std::shared_ptr<const detail::http_target> target;
  detail::http_transfer transfer;
  CURLM* multi = nullptr;
  std::vector<std::string_view> pieces;

  explicit impl(http_sender_options o) : target(detail::make_http_target(std::move(o))), transfer(target) {
    multi = curl_multi_init();
    if (!multi) throw std::runtime_error("batchq: cannot create a libcurl handle");
  }
  ~impl() { curl_multi_cleanup(multi); }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  // Runs the transfer on our multi handle. curl_easy_perform would do the same
  // but only wakes once a second; here a cancelled context is noticed within
  // kCancelPollMs even while the server is silent.
  CURLcode perform(bool watch_cancel, std::string* multi_error) {
    static constexpr int kCancelPollMs = 100;
    CURL* easy = transfer.easy();
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
      if (transfer.cancelled()) {
        result = CURLE_ABORTED_BY_CALLBACK;
        break;
      }
      int wait_ms = watch_cancel ? kCancelPollMs : 1000;
      if (target->opts.scope == timeout_scope::operation) {
        const long long idle_left = transfer.idle_ms_left();
        if (idle_left <= 0) {
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

  send_result send(std::string_view body, const attempt_context* attempt) {
    send_result r;
    pieces.assign(1, body);
    if (!transfer.begin(pieces, attempt, &r)) return r;
    std::string multi_error;
    const CURLcode rc = perform(attempt != nullptr, &multi_error);
    return transfer.finish(rc, multi_error);
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

std::string http_sender::endpoint_for_logs() const { return impl_ ? impl_->target->ep.host_port : std::string(); }

const http_sender_options& http_sender::options() const {
  static const http_sender_options empty;
  return impl_ ? impl_->target->opts : empty;
}

}  // namespace batchq
