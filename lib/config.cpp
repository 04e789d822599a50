// The JSON configuration of http_log (what the C ABI and the Kong plugin
// pass): Kong http-log's keys and units, plus batchq's own. RapidJSON stays
// inside this file.
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "batchq/http_log.hpp"
#include "batchq/payload.hpp"
#include "text/text.hpp"
#include "config_keys.hpp"

namespace batchq {

namespace {

using rapidjson::Value;

[[noreturn]] void bad(const std::string& key, const std::string& msg) { throw options_error(key, key + ": " + msg); }

const char* type_name(const Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsBool()) return "a boolean";
  if (v.IsString()) return "a string";
  if (v.IsNumber()) return "a number";
  if (v.IsArray()) return "an array";
  return "an object";
}

std::string get_string(const std::string& key, const Value& v) {
  if (!v.IsString()) bad(key, std::string("must be a string, got ") + type_name(v));
  return std::string(v.GetString(), v.GetStringLength());
}

bool get_bool(const std::string& key, const Value& v) {
  if (!v.IsBool()) bad(key, std::string("must be true or false, got ") + type_name(v));
  return v.GetBool();
}

std::int64_t get_int(const std::string& key, const Value& v, std::int64_t lo, std::int64_t hi) {
  const std::string range = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (!v.IsNumber()) bad(key, "must be " + range + ", got " + type_name(v));
  double d = v.GetDouble();
  if (v.IsInt64()) d = static_cast<double>(v.GetInt64());
  if (!v.IsInt64() && !v.IsUint64() && std::floor(d) != d) bad(key, "must be " + range + ", got " + std::to_string(d));
  if (v.IsUint64() && !v.IsInt64()) bad(key, "must be " + range + ", got " + std::to_string(v.GetUint64()));
  // A double such as 1e300 has no int64 value: converting it would be UB.
  if (!v.IsInt64() && !(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) {
    char shown[32];
    std::snprintf(shown, sizeof shown, "%g", d);
    bad(key, "must be " + range + ", got " + shown);
  }
  const std::int64_t n = v.IsInt64() ? v.GetInt64() : static_cast<std::int64_t>(d);
  if (n < lo || n > hi) bad(key, "must be " + range + ", got " + std::to_string(n));
  return n;
}

// Seconds (fractions allowed), as Kong's queue options are given.
std::chrono::milliseconds get_seconds(const std::string& key, const Value& v, double lo, double hi) {
  auto fmt = [](double x) {
    std::string s = std::to_string(x);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  };
  const std::string range = "a number of seconds from " + fmt(lo) + " to " + fmt(hi);
  if (!v.IsNumber()) bad(key, "must be " + range + ", got " + type_name(v));
  const double d = v.GetDouble();
  if (!(d >= lo && d <= hi)) bad(key, "must be " + range + ", got " + fmt(d));
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(d * 1000.0)));
}

// Kong's http-log timeout / keepalive: a number of ms, fractions allowed
// (Kong's schema says "number"). Rounded up to whole ms; values above
// k_max_socket_ms are clamped to it; negative values are refused.
constexpr std::int64_t k_max_socket_ms = 2147483647;  // 2^31-1: OpenResty's settimeout refuses more

std::chrono::milliseconds get_ms(const std::string& key, const Value& v) {
  const std::string range = "a number of milliseconds, 0 or more";
  if (!v.IsNumber()) bad(key, "must be " + range + ", got " + type_name(v));
  if (v.IsUint64() || v.IsInt64()) {
    if (v.IsInt64() && v.GetInt64() < 0) bad(key, "must be " + range + ", got " + std::to_string(v.GetInt64()));
    const std::uint64_t n = v.IsUint64() ? v.GetUint64() : static_cast<std::uint64_t>(v.GetInt64());
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::min<std::uint64_t>(n, k_max_socket_ms)));
  }
  const double d = v.GetDouble();
  if (!(d >= 0)) {
    char shown[32];
    std::snprintf(shown, sizeof shown, "%g", d);
    bad(key, "must be " + range + ", got " + shown);
  }
  if (d >= static_cast<double>(k_max_socket_ms)) return std::chrono::milliseconds(k_max_socket_ms);
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(d)));
}

// An integer (Kong "integer") of at least `lo`; values above `hi` are
// clamped to `hi` instead of refused (Kong's schema has no upper bound there).
std::int64_t get_int_clamped(const std::string& key, const Value& v, std::int64_t lo, std::int64_t hi) {
  const std::string range = lo == std::numeric_limits<std::int64_t>::min()
                                ? std::string("an integer")
                                : "an integer from " + std::to_string(lo) + " (larger values are clamped to " +
                                      std::to_string(hi) + ")";
  if (!v.IsNumber()) bad(key, "must be " + range + ", got " + type_name(v));
  if (v.IsInt64()) {
    const std::int64_t n = v.GetInt64();
    if (n < lo) bad(key, "must be " + range + ", got " + std::to_string(n));
    return std::min(n, hi);
  }
  if (v.IsUint64()) return hi;  // above INT64_MAX
  const double d = v.GetDouble();
  char shown[32];
  std::snprintf(shown, sizeof shown, "%g", d);
  if (std::floor(d) != d) bad(key, "must be " + range + ", got " + shown);
  if (!(d >= static_cast<double>(lo))) bad(key, "must be " + range + ", got " + shown);
  return hi;  // an integral double outside int64 (1e300)
}

// Seconds with an upper bound that clamps rather than refuses: Kong's
// http-log 2.x / queue schema leave these unbounded; k_clamp_s (more than
// three years) already means "never" for every one of them.
constexpr double k_clamp_s = 1e8;
std::chrono::milliseconds get_seconds_clamped(const std::string& key, const Value& v, double lo) {
  if (v.IsNumber() && v.GetDouble() > k_clamp_s) return std::chrono::milliseconds(static_cast<std::int64_t>(k_clamp_s * 1000));
  return get_seconds(key, v, lo, k_clamp_s);
}

// One configuration key: what the parser takes (kind and range), how it sets
// the options (set) and reads them back (show: the value as JSON, which is
// how the reference shows the default), and the reference's text.
struct config_key {
  const char* name;
  const char* section;
  detail::config_kind kind;
  double lo, hi;       // accepted numbers (see config_keys.hpp)
  bool unbounded_lo;   // any number below hi is taken (and mapped, see doc)
  bool clamp;          // numbers above hi are clamped to hi
  std::vector<const char*> choices;
  bool required;
  const char* doc;
  void (*set)(const config_key& k, const Value& v, http_log_options& o);
  std::string (*show)(const http_log_options& o);
};

// The value of a choice key: values[i] is the option for k.choices[i].
template <class E>
E get_choice(const config_key& k, const Value& v, std::initializer_list<E> values) {
  std::string allowed;
  for (const char* c : k.choices) allowed += (allowed.empty() ? "" : ", ") + std::string(c);
  if (!v.IsString()) bad(k.name, "must be one of " + allowed + ", got " + type_name(v));
  const std::string s(v.GetString(), v.GetStringLength());
  std::size_t i = 0;
  for (E e : values) {
    if (i < k.choices.size() && s == k.choices[i]) return e;
    ++i;
  }
  const std::string shown = text::json_escaped(std::string_view(s).substr(0, 64)) + (s.size() > 64 ? "..." : "");
  bad(k.name, "must be one of " + allowed + ", got \"" + shown + "\"");
}

// JSON text of a value, for show.
std::string js(const std::string& s) { return "\"" + text::json_escaped(s) + "\""; }
std::string js(bool b) { return b ? "true" : "false"; }
std::string js(const char* s) { return js(std::string(s)); }  // not js(bool)
std::string js_num(double d) {
  char buf[32];
  if (std::floor(d) == d && std::fabs(d) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", d);
    return buf;
  }
  // the shortest text that reads back as d
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  return buf;
}
std::string js_int(std::uint64_t n) { return std::to_string(n); }
std::string js_s(std::chrono::milliseconds ms) { return js_num(static_cast<double>(ms.count()) / 1000.0); }
std::string js_ms(std::chrono::milliseconds ms) { return std::to_string(ms.count()); }
// The name a choice key gives `e` (values[i] is k.choices[i], as get_choice).
template <class E>
std::string js_choice(E e, std::initializer_list<std::pair<E, const char*>> names) {
  for (const auto& n : names)
    if (n.first == e) return js(n.second);
  return "null";
}

constexpr std::int64_t k_max_ms = 24LL * 3600 * 1000;  // a day
constexpr std::int64_t k_max_count = 100000000;
constexpr std::int64_t k_max_bytes = std::numeric_limits<std::int64_t>::max();
constexpr std::size_t k_unlimited_concurrency = 16;

// Bounds as the table holds them (doubles: seconds have fractions).
constexpr double k_any_bytes = static_cast<double>(k_max_bytes);  // 2^63, read back as INT64_MAX
constexpr double k_socket_ms = static_cast<double>(k_max_socket_ms);

std::int64_t to_i64(double d) {
  if (d >= 9223372036854775807.0) return std::numeric_limits<std::int64_t>::max();
  return static_cast<std::int64_t>(d);
}

using kind = detail::config_kind;
using ms = std::chrono::milliseconds;

std::int64_t int_of(const config_key& k, const Value& v) {
  if (k.clamp)
    return get_int_clamped(k.name, v, k.unbounded_lo ? std::numeric_limits<std::int64_t>::min() : to_i64(k.lo),
                           to_i64(k.hi));
  return get_int(k.name, v, to_i64(k.lo), to_i64(k.hi));
}
ms seconds_of(const config_key& k, const Value& v) {
  if (k.clamp) return get_seconds_clamped(k.name, v, k.lo);
  return get_seconds(k.name, v, k.lo, k.hi);
}

// The table: the parser, the README's reference (config_reference_markdown)
// and the tests all read it. Sections and rows in the reference's order.
const std::vector<config_key>& keys() {
  static const std::vector<config_key> table = {
      // --- Kong http-log ---
      {"http_endpoint", "Kong http-log", kind::string, 0, 0, false, false, {}, true,
       "`http://` or `https://` URL; userinfo becomes Basic auth",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.http_endpoint = get_string(k.name, v); },
       [](const http_log_options& o) { return js(o.http.http_endpoint); }},
      {"method", "Kong http-log", kind::string, 0, 0, false, false, {}, false, "`POST`, `PUT` or `PATCH`",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.method = get_string(k.name, v); },
       [](const http_log_options& o) { return js(o.http.method); }},
      {"content_type", "Kong http-log", kind::string, 0, 0, false, false, {}, false, "the requests' `Content-Type`",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.content_type = get_string(k.name, v); },
       [](const http_log_options& o) { return js(o.http.content_type); }},
      {"headers", "Kong http-log", kind::object, 0, 0, false, false, {}, false,
       "name → string (Kong 2.x: or an array of strings, joined with `, `); not `Host`, `Content-Length`, "
       "`Content-Type`; no `Authorization` with URL userinfo",
       [](const config_key& k, const Value& v, http_log_options& o) {
         if (v.IsNull()) return;
         if (!v.IsObject()) bad(k.name, std::string("must be an object of name: string value, got ") + type_name(v));
         o.http.headers.clear();
         for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
           const std::string name(it->name.GetString(), it->name.GetStringLength());
           if (it->value.IsString()) {
             o.http.headers.emplace_back(name, std::string(it->value.GetString(), it->value.GetStringLength()));
           } else if (it->value.IsArray()) {  // Kong 2.x allowed arrays of values
             std::string joined;
             for (const auto& e : it->value.GetArray()) {
               if (!e.IsString()) bad(k.name, "header \"" + name + "\": values must be strings");
               joined += (joined.empty() ? "" : ", ") + std::string(e.GetString(), e.GetStringLength());
             }
             o.http.headers.emplace_back(name, joined);
           } else {
             bad(k.name, "header \"" + name + "\" must be a string, got " + type_name(it->value));
           }
         }
       },
       [](const http_log_options& o) {
         std::string out = "{";
         for (const auto& h : o.http.headers) out += (out.size() > 1 ? "," : "") + js(h.first) + ":" + js(h.second);
         return out + "}";
       }},
      {"timeout", "Kong http-log", kind::millis, 0, k_socket_ms, false, true, {}, false,
       "bounds the whole request, or each socket operation with `timeout_scope = \"operation\"`; fractions round "
       "up, 0 = 60000 (OpenResty's default)",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.http.timeout = get_ms(k.name, v);
         if (o.http.timeout.count() == 0) o.http.timeout = ms(60000);  // OpenResty: 0 = lua_socket_*_timeout, 60 s
       },
       [](const http_log_options& o) { return js_ms(o.http.timeout); }},
      {"timeout_scope", "Kong http-log", kind::choice, 0, 0, false, false, {"request", "operation"}, false,
       "`operation`: as Kong http-log, no byte sent or received for `timeout` fails the attempt; connect bounded "
       "by `timeout`",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.http.scope = get_choice(k, v, {timeout_scope::request, timeout_scope::operation});
       },
       [](const http_log_options& o) {
         return js_choice(o.http.scope, {{timeout_scope::request, "request"}, {timeout_scope::operation, "operation"}});
       }},
      {"keepalive", "Kong http-log", kind::millis, 0, k_socket_ms, false, true, {}, false,
       "idle connection reuse; 0 = a new connection per request (OpenResty's `setkeepalive(0)` instead keeps idle "
       "connections without limit); rounding as `timeout`",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.keepalive = get_ms(k.name, v); },
       [](const http_log_options& o) { return js_ms(o.http.keepalive); }},
      {"connect_timeout", "Kong http-log", kind::millis, 0, k_socket_ms, false, true, {}, false,
       "0 = min(timeout, 5000) (`timeout` with scope operation); rounding as `timeout`",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.connect_timeout = get_ms(k.name, v); },
       [](const http_log_options& o) { return js_ms(o.http.connect_timeout); }},
      {"success_status_max", "Kong http-log", kind::integer, 200, 599, false, false, {}, false,
       "highest status that counts as delivered (Kong 3.x: 299, Kong 2.x: 399)",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.http.success_status_max = static_cast<int>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(static_cast<std::uint64_t>(o.http.success_status_max)); }},
      {"queue_size", "Kong http-log", kind::integer, 1, k_max_count, true, true, {}, false,
       "entries per batch (`batch_max_size`); < 1 acts as 1 (Kong 2.x)",
       [](const config_key& k, const Value& v, http_log_options& o) {
         // Kong 2.x: any integer; one below 1 closes a batch per entry, as 1 does.
         o.queue.batch_max_size = static_cast<std::size_t>(std::max<std::int64_t>(1, int_of(k, v)));
       },
       [](const http_log_options& o) { return js_int(o.queue.batch_max_size); }},
      {"retry_count", "Kong http-log", kind::integer, 1, 1000000, true, true, {}, false,
       "**total** attempts per batch; < 1 acts as 1",
       [](const config_key& k, const Value& v, http_log_options& o) {
         // Kong 2.x: any integer; below 1 acts as 1 attempt.
         o.queue.retry_count = static_cast<int>(std::max<std::int64_t>(0, int_of(k, v)));
       },
       [](const http_log_options& o) { return js_int(static_cast<std::uint64_t>(o.queue.retry_count)); }},
      {"flush_timeout", "Kong http-log", kind::seconds, 0, k_clamp_s, false, true, {}, false,
       "see `flush_mode`; 0 acts as 1 ms",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.flush_timeout = std::max(ms(1), seconds_of(k, v));  // 0 acts as 1 ms
       },
       [](const http_log_options& o) { return js_s(o.queue.flush_timeout); }},
      // --- batchq: queue ---
      {"process_delay", "queue", kind::seconds, 0, k_clamp_s, false, true, {}, false,
       "delay before a new chain's first attempt",
       [](const config_key& k, const Value& v, http_log_options& o) { o.queue.process_delay = seconds_of(k, v); },
       [](const http_log_options& o) { return js_s(o.queue.process_delay); }},
      {"flush_mode", "queue", kind::choice, 0, 0, false, false, {"kong_idle", "coalescing"}, false,
       "`kong_idle`: a batch is sent after `flush_timeout` without a new entry (Kong 2.x); `coalescing`: at most "
       "`flush_timeout` after its first entry (Kong 3.x)",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.flush = get_choice(k, v, {flush_mode::kong_idle, flush_mode::coalescing});
       },
       [](const http_log_options& o) {
         return js_choice(o.queue.flush,
                          {{flush_mode::kong_idle, "kong_idle"}, {flush_mode::coalescing, "coalescing"}});
       }},
      {"batch_max_bytes", "queue", kind::integer, 0, k_any_bytes, false, false, {}, false,
       "close a batch before it exceeds this many bytes; 0 = none",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.batch_max_bytes = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.queue.batch_max_bytes); }},
      {"max_entries", "queue", kind::integer, 0, k_max_count, false, false, {}, false,
       "bound on entries held; 0 = unbounded; below `queue_size` it is raised to `queue_size` (one batch always "
       "fits; logged at info)",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.max_entries = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.queue.max_entries); }},
      {"max_bytes", "queue", kind::integer, 0, k_any_bytes, false, true, {}, false,
       "bound on bytes held; 0 = none; larger entries refused",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.max_bytes = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.queue.max_bytes); }},
      {"overflow", "queue", kind::choice, 0, 0, false, false, {"drop_oldest", "refuse_new"}, false,
       "what a full queue does with a new entry",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.overflow = get_choice(k, v, {overflow_policy::drop_oldest, overflow_policy::refuse_new});
       },
       [](const http_log_options& o) {
         return js_choice(o.queue.overflow, {{overflow_policy::drop_oldest, "drop_oldest"},
                                             {overflow_policy::refuse_new, "refuse_new"}});
       }},
      {"max_drop_pending_entries", "queue", kind::integer, 0, k_max_count, false, false, {}, false,
       "bound on dropped entries waiting inside the queue to be handed over (to `batchq_poll_dropped`'s "
       "buffer); beyond it the oldest are destroyed and counted in `drops_unreported`",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.max_drop_pending_entries = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.queue.max_drop_pending_entries); }},
      {"max_drop_pending_bytes", "queue", kind::integer, 0, k_any_bytes, false, false, {}, false,
       "the same bound in bytes",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.max_drop_pending_bytes = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.queue.max_drop_pending_bytes); }},
      {"max_retry_time", "queue", kind::seconds, 0, k_clamp_s, true, true, {}, false,
       "drop a batch still failing this long after its first attempt; 0 = none; negative = no retries (Kong 3.x "
       "gives up once more than `max_retry_time` has passed, so its 0 and -1 both mean no retries: pass -1)",
       [](const config_key& k, const Value& v, http_log_options& o) {
         // Negative (Kong 3.x: -1) = no retries: see parse_http_log_config.
         if (v.IsNumber() && v.GetDouble() < 0) {
           o.queue.max_retry_time = ms(-1);
           return;
         }
         o.queue.max_retry_time = seconds_of(k, v);
       },
       [](const http_log_options& o) { return js_s(o.queue.max_retry_time); }},
      {"backoff", "queue", kind::choice, 0, 0, false, false, {"kong_quadratic", "exponential"}, false,
       "`kong_quadratic`: n² s after the n-th failure (Kong 2.x); `exponential`: from `initial_retry_delay` "
       "(Kong 3.x)",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.backoff = get_choice(k, v, {backoff_policy::kong_quadratic, backoff_policy::exponential});
       },
       [](const http_log_options& o) {
         return js_choice(o.queue.backoff, {{backoff_policy::kong_quadratic, "kong_quadratic"},
                                            {backoff_policy::exponential, "exponential"}});
       }},
      {"initial_retry_delay", "queue", kind::seconds, 0.001, k_clamp_s, false, true, {}, false,
       "exponential's first wait",
       [](const config_key& k, const Value& v, http_log_options& o) { o.queue.initial_retry_delay = seconds_of(k, v); },
       [](const http_log_options& o) { return js_s(o.queue.initial_retry_delay); }},
      {"max_retry_delay", "queue", kind::seconds, 0.001, k_clamp_s, false, true, {}, false,
       "cap on any wait: min(max_retry_delay, computed), also below `initial_retry_delay`",
       [](const config_key& k, const Value& v, http_log_options& o) { o.queue.max_retry_delay = seconds_of(k, v); },
       [](const http_log_options& o) { return js_s(o.queue.max_retry_delay); }},
      {"jitter", "queue", kind::boolean, 0, 0, false, false, {}, false, "full jitter on every wait",
       [](const config_key& k, const Value& v, http_log_options& o) { o.queue.jitter = get_bool(k.name, v); },
       [](const http_log_options& o) { return js(o.queue.jitter); }},
      {"jitter_seed", "queue", kind::integer, 0, k_any_bytes, false, false, {}, false,
       "seed of the jitter generator; 0 = from `std::random_device`",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.queue.jitter_seed = static_cast<std::uint64_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.queue.jitter_seed); }},
      {"concurrency", "queue", kind::integer, -1, 64, false, false, {}, false,
       "batches in flight at most, 1 to 64 (at `queue_size` 1, more of them as the backlog grows: see Order); -1 "
       "(Kong's `concurrency_limit = -1`) = 16 (0 is refused)",
       [](const config_key& k, const Value& v, http_log_options& o) {
         // -1: Kong 3.x concurrency_limit -1 ("unlimited"), bounded here at
         // k_unlimited_concurrency threads (they are started with the queue).
         if (v.IsInt64() && v.GetInt64() == -1) {
           o.queue.concurrency = k_unlimited_concurrency;
           return;
         }
         const std::string range = "-1 (as many as allowed: " + std::to_string(k_unlimited_concurrency) +
                                   ") or an integer from 1 to " + std::to_string(static_cast<std::int64_t>(k.hi));
         if (!v.IsInt64() || v.GetInt64() < 1 || v.GetInt64() > static_cast<std::int64_t>(k.hi))
           bad(k.name, "must be " + range + ", got " + (v.IsNumber() ? std::to_string(v.GetDouble()) : type_name(v)));
         o.queue.concurrency = static_cast<std::size_t>(v.GetInt64());
       },
       [](const http_log_options& o) { return js_int(o.queue.concurrency); }},
      {"shutdown_timeout", "queue", kind::seconds, 0, 3600, false, false, {}, false,
       "`batchq_free()`'s delivery deadline",
       [](const config_key& k, const Value& v, http_log_options& o) { o.queue.shutdown_timeout = seconds_of(k, v); },
       [](const http_log_options& o) { return js_s(o.queue.shutdown_timeout); }},
      // --- batchq: HTTP ---
      {"format", "HTTP", kind::choice, 0, 0, false, false, {"kong", "json_array", "ndjson"}, false,
       "request body: `kong` (one entry: itself; several: a JSON array), `json_array`, `ndjson`",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.format = get_choice(k, v, {payload_format::kong, payload_format::json_array, payload_format::ndjson});
       },
       [](const http_log_options& o) {
         return js_choice(o.format, {{payload_format::kong, "kong"},
                                     {payload_format::json_array, "json_array"},
                                     {payload_format::ndjson, "ndjson"}});
       }},
      {"validate_json", "HTTP", kind::boolean, 0, 0, false, false, {}, false,
       "refuse invalid JSON entries (`BATCHQ_EJSON`)",
       [](const config_key& k, const Value& v, http_log_options& o) { o.validate_json = get_bool(k.name, v); },
       [](const http_log_options& o) { return js(o.validate_json); }},
      {"gzip", "HTTP", kind::boolean, 0, 0, false, false, {}, false, "gzip request bodies",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.gzip = get_bool(k.name, v); },
       [](const http_log_options& o) { return js(o.http.gzip); }},
      {"ssl_verify", "HTTP", kind::boolean, 0, 0, false, false, {}, false, "verify the server's certificate",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.ssl_verify = get_bool(k.name, v); },
       [](const http_log_options& o) { return js(o.http.ssl_verify); }},
      {"ca_file", "HTTP", kind::string, 0, 0, false, false, {}, false, "PEM file of the CAs to trust",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.ca_file = get_string(k.name, v); },
       [](const http_log_options& o) { return js(o.http.ca_file); }},
      {"client_cert", "HTTP", kind::string, 0, 0, false, false, {}, false, "PEM file of the client certificate",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.client_cert = get_string(k.name, v); },
       [](const http_log_options& o) { return js(o.http.client_cert); }},
      {"client_key", "HTTP", kind::string, 0, 0, false, false, {}, false, "PEM file of the client key",
       [](const config_key& k, const Value& v, http_log_options& o) { o.http.client_key = get_string(k.name, v); },
       [](const http_log_options& o) { return js(o.http.client_key); }},
      {"drop_permanent_4xx", "HTTP", kind::boolean, 0, 0, false, false, {}, false,
       "drop 4xx (not 408/429) at once instead of retrying",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.http.drop_permanent_4xx = get_bool(k.name, v);
       },
       [](const http_log_options& o) { return js(o.http.drop_permanent_4xx); }},
      {"max_error_body", "HTTP", kind::integer, 0, 1 << 20, false, false, {}, false, "response bytes quoted in errors",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.http.max_error_body = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.http.max_error_body); }},
      {"name", "HTTP", kind::string, 0, 0, false, false, {}, false, "label in stats and metrics",
       [](const config_key& k, const Value& v, http_log_options& o) { o.name = get_string(k.name, v); },
       [](const http_log_options& o) { return js(o.name); }},
      // --- batchq: spool ---
      {"spool_dir", "spool", kind::string, 0, 0, false, false, {}, false, "enables the spool (see below)",
       [](const config_key& k, const Value& v, http_log_options& o) { o.spool.dir = get_string(k.name, v); },
       [](const http_log_options& o) { return js(o.spool.dir); }},
      {"spool_mode", "spool", kind::choice, 0, 0, false, false, {"dead_letter", "write_ahead"}, false,
       "`dead_letter`: dropped entries are kept; `write_ahead`: every entry is written before `enqueue` returns",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.spool.mode = get_choice(k, v, {spool_mode::dead_letter, spool_mode::write_ahead});
       },
       [](const http_log_options& o) {
         return js_choice(o.spool.mode,
                          {{spool_mode::dead_letter, "dead_letter"}, {spool_mode::write_ahead, "write_ahead"}});
       }},
      {"spool_max_bytes", "spool", kind::integer, 0, k_any_bytes, false, false, {}, false,
       "cap on disk; oldest segment evicted",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.spool.max_bytes = static_cast<std::uint64_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.spool.max_bytes); }},
      {"spool_segment_bytes", "spool", kind::integer, 4096, 1LL << 30, false, false, {}, false, "segment file size",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.spool.segment_bytes = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.spool.segment_bytes); }},
      {"spool_fsync", "spool", kind::choice, 0, 0, false, false, {"never", "interval", "always"}, false,
       "when spool writes are fsync'ed",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.spool.fsync = get_choice(k, v, {fsync_policy::never, fsync_policy::interval, fsync_policy::always});
       },
       [](const http_log_options& o) {
         return js_choice(o.spool.fsync, {{fsync_policy::never, "never"},
                                          {fsync_policy::interval, "interval"},
                                          {fsync_policy::always, "always"}});
       }},
      {"spool_fsync_interval", "spool", kind::integer, 1, k_max_ms, false, false, {}, false,
       "ms between fsyncs with `spool_fsync = \"interval\"`",
       [](const config_key& k, const Value& v, http_log_options& o) { o.spool.fsync_interval = ms(int_of(k, v)); },
       [](const http_log_options& o) { return js_ms(o.spool.fsync_interval); }},
      // --- batchq: pull buffers ---
      {"drop_buffer_entries", "pull buffers", kind::integer, 0, k_max_count, false, false, {}, false,
       "bound of the poll buffer of dropped entries",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.drop_buffer_entries = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.drop_buffer_entries); }},
      {"drop_buffer_bytes", "pull buffers", kind::integer, 0, k_any_bytes, false, false, {}, false,
       "bound of the poll buffer of dropped entries, in bytes",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.drop_buffer_bytes = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.drop_buffer_bytes); }},
      {"log_buffer_lines", "pull buffers", kind::integer, 0, 1000000, false, false, {}, false,
       "log lines kept for `batchq_poll_log`",
       [](const config_key& k, const Value& v, http_log_options& o) {
         o.log_buffer_lines = static_cast<std::size_t>(int_of(k, v));
       },
       [](const http_log_options& o) { return js_int(o.log_buffer_lines); }},
      {"split_on_4xx", "HTTP", kind::boolean, 0, 0, false, false, {}, false,
       "bisect a batch refused with a 4xx (not 408/429) so only the refused entries are retried and dropped",
       [](const config_key& k, const Value& v, http_log_options& o) { o.split_on_4xx = get_bool(k.name, v); },
       [](const http_log_options& o) { return js(o.split_on_4xx); }},
  };
  return table;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

http_log_options parse_http_log_config(std::string_view json) {
  // JSON text never holds a raw NUL byte; RapidJSON would take one for the
  // end of the input and ignore whatever follows it.
  const std::size_t nul = json.find('\0');
  if (nul != std::string_view::npos)
    throw options_error("", "configuration is not valid JSON at offset " + std::to_string(nul) + ": NUL byte in the input");
  rapidjson::Document doc;
  // Iterative: "[[[[..." a million deep is an error, not a stack overflow.
  doc.Parse<rapidjson::kParseIterativeFlag>(json.data(), json.size());
  if (doc.HasParseError())
    throw options_error("", "configuration is not valid JSON at offset " + std::to_string(doc.GetErrorOffset()) + ": " +
                                rapidjson::GetParseError_En(doc.GetParseError()));
  if (!doc.IsObject())
    throw options_error("", std::string("configuration must be a JSON object, got ") + type_name(doc));

  http_log_options o;
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    const std::string key(it->name.GetString(), it->name.GetStringLength());
    const auto& table = keys();
    auto found = std::find_if(table.begin(), table.end(), [&](const config_key& k) { return key == k.name; });
    if (found == table.end()) {
      std::string best;
      std::size_t best_d = 3;  // suggest only close matches
      for (const auto& k : table) {
        // The distance is at least the difference in length: a key that far
        // off (say 1 MB long) costs no quadratic comparison.
        const std::size_t klen = std::char_traits<char>::length(k.name);
        if ((key.size() > klen ? key.size() - klen : klen - key.size()) >= best_d) continue;
        const std::size_t d = edit_distance(key, k.name);
        if (d < best_d) {
          best_d = d;
          best = k.name;
        }
      }
      // The key is quoted back at most 64 bytes long, escaped: the message
      // stays short and printable whatever was sent.
      constexpr std::size_t k_shown = 64;
      const std::string shown = text::json_escaped(std::string_view(key).substr(0, k_shown)) +
                                (key.size() > k_shown ? "... (" + std::to_string(key.size()) + " bytes)" : "");
      throw options_error(shown, shown + ": " +
                                     (best.empty() ? "unknown key (see the configuration reference in the README)"
                                                   : "unknown key (did you mean " + best + "?)"));
    }
    found->set(*found, it->value, o);
  }
  if (o.http.http_endpoint.empty()) bad("http_endpoint", "is required (an http:// or https:// URL)");
  if (o.queue.max_retry_time.count() < 0) {  // Kong 3.x max_retry_time -1: give up after the first failure
    o.queue.max_retry_time = std::chrono::milliseconds(0);
    o.queue.retry_count = 1;
  }
  std::string field;
  std::string err = validate(o, &field);
  if (!err.empty()) throw options_error(field, err);
  return o;
}

namespace detail {

std::vector<config_key_info> config_keys() {
  http_log_options defaults;
  std::vector<config_key_info> out;
  for (const config_key& k : keys()) {
    config_key_info i;
    i.name = k.name;
    i.section = k.section;
    i.kind = k.kind;
    i.lo = k.lo;
    i.hi = k.hi;
    i.unbounded_lo = k.unbounded_lo;
    i.clamp = k.clamp;
    for (const char* c : k.choices) i.choices.emplace_back(c);
    i.required = k.required;
    i.default_json = k.show(defaults);
    if (i.default_json == "\"\"" || i.required) i.default_json.clear();  // unset: off / required
    i.doc = k.doc;
    out.push_back(std::move(i));
  }
  return out;
}

std::string config_value(const http_log_options& o, std::string_view key) {
  for (const config_key& k : keys())
    if (key == k.name) return k.show(o);
  return "";
}

namespace {

std::string number_text(double d) {
  if (d == k_any_bytes) return "2^63-1";
  if (d == k_socket_ms) return "2^31-1";
  if (d == k_clamp_s) return "10^8";
  return js_num(d);
}

// The "type" cell: kind, unit and the accepted range.
std::string type_cell(const config_key_info& k) {
  std::string unit;
  switch (k.kind) {
    case config_kind::string: return "string";
    case config_kind::boolean: return "bool";
    case config_kind::object: return "object";
    case config_kind::choice: {
      std::string c;
      for (const auto& x : k.choices) c += (c.empty() ? "" : ", ") + ("`\"" + x + "\"`");
      return "one of " + c;
    }
    case config_kind::integer: unit = "integer"; break;
    case config_kind::seconds: unit = "number s"; break;
    case config_kind::millis: unit = "number ms"; break;
  }
  std::string range;
  if (k.unbounded_lo) {
    range = "any";
  } else if (k.clamp || k.hi == k_any_bytes) {
    range = "≥ " + number_text(k.lo);
  } else {
    range = number_text(k.lo) + "–" + number_text(k.hi);
  }
  if (k.clamp) range += ", above " + number_text(k.hi) + " clamped";
  return unit + " " + range;
}

std::string default_cell(const config_key_info& k) {
  if (k.required) return "required";
  if (k.default_json.empty()) return "–";
  return "`" + k.default_json + "`";
}

}  // namespace

std::string config_reference_markdown() {
  std::string out = "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const config_key_info& k : config_keys())
    out += "| `" + k.name + "` | " + type_cell(k) + " | " + default_cell(k) + " | " + k.doc + " |\n";
  return out;
}

}  // namespace detail

}  // namespace batchq
