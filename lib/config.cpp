// The JSON configuration of http_log (what the C ABI and the Kong plugin
// pass): Kong http-log's keys and units, plus batchq's own. RapidJSON stays
// inside this file.
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "batchq/http_log.hpp"
#include "batchq/payload.hpp"

namespace batchq {

namespace {

using rapidjson::Value;
using setter = std::function<void(const Value&, http_log_options&)>;

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

template <class E>
E get_enum(const std::string& key, const Value& v, std::initializer_list<std::pair<const char*, E>> choices) {
  std::string allowed;
  for (const auto& c : choices) allowed += (allowed.empty() ? "" : ", ") + std::string(c.first);
  if (!v.IsString()) bad(key, "must be one of " + allowed + ", got " + type_name(v));
  const std::string s(v.GetString(), v.GetStringLength());
  for (const auto& c : choices)
    if (s == c.first) return c.second;
  const std::string shown = json_escape(std::string_view(s).substr(0, 64)) + (s.size() > 64 ? "..." : "");
  bad(key, "must be one of " + allowed + ", got \"" + shown + "\"");
}

constexpr std::int64_t k_max_ms = 24LL * 3600 * 1000;  // a day
constexpr std::int64_t k_max_count = 100000000;
constexpr std::int64_t k_max_bytes = std::numeric_limits<std::int64_t>::max();
constexpr std::size_t k_unlimited_concurrency = 16;

const std::vector<std::pair<const char*, setter>>& keys() {
  using ms = std::chrono::milliseconds;
  static const std::vector<std::pair<const char*, setter>> table = {
      // --- Kong http-log ---
      {"http_endpoint", [](const Value& v, http_log_options& o) { o.http.http_endpoint = get_string("http_endpoint", v); }},
      {"method", [](const Value& v, http_log_options& o) { o.http.method = get_string("method", v); }},
      {"content_type", [](const Value& v, http_log_options& o) { o.http.content_type = get_string("content_type", v); }},
      {"headers",
       [](const Value& v, http_log_options& o) {
         if (v.IsNull()) return;
         if (!v.IsObject()) bad("headers", std::string("must be an object of name: string value, got ") + type_name(v));
         o.http.headers.clear();
         for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
           const std::string name(it->name.GetString(), it->name.GetStringLength());
           if (it->value.IsString()) {
             o.http.headers.emplace_back(name, std::string(it->value.GetString(), it->value.GetStringLength()));
           } else if (it->value.IsArray()) {  // Kong 2.x allowed arrays of values
             std::string joined;
             for (const auto& e : it->value.GetArray()) {
               if (!e.IsString()) bad("headers", "header \"" + name + "\": values must be strings");
               joined += (joined.empty() ? "" : ", ") + std::string(e.GetString(), e.GetStringLength());
             }
             o.http.headers.emplace_back(name, joined);
           } else {
             bad("headers", "header \"" + name + "\" must be a string, got " + type_name(it->value));
           }
         }
       }},
      {"timeout",
       [](const Value& v, http_log_options& o) {
         o.http.timeout = get_ms("timeout", v);
         if (o.http.timeout.count() == 0) o.http.timeout = ms(60000);  // OpenResty: 0 = lua_socket_*_timeout, 60 s
       }},
      {"keepalive", [](const Value& v, http_log_options& o) { o.http.keepalive = get_ms("keepalive", v); }},
      {"connect_timeout", [](const Value& v, http_log_options& o) { o.http.connect_timeout = get_ms("connect_timeout", v); }},
      {"queue_size",
       [](const Value& v, http_log_options& o) {
         // Kong 2.x: any integer; one below 1 closes a batch per entry, as 1 does.
         o.queue.batch_max_size = static_cast<std::size_t>(std::max<std::int64_t>(
             1, get_int_clamped("queue_size", v, std::numeric_limits<std::int64_t>::min(), k_max_count)));
       }},
      {"retry_count",
       [](const Value& v, http_log_options& o) {
         // Kong 2.x: any integer; below 1 acts as 1 attempt.
         o.queue.retry_count = static_cast<int>(std::max<std::int64_t>(
             0, get_int_clamped("retry_count", v, std::numeric_limits<std::int64_t>::min(), 1000000)));
       }},
      {"flush_timeout",
       [](const Value& v, http_log_options& o) {
         o.queue.flush_timeout = std::max(ms(1), get_seconds_clamped("flush_timeout", v, 0));  // 0 acts as 1 ms
       }},
      // --- batchq: queue ---
      {"process_delay",
       [](const Value& v, http_log_options& o) { o.queue.process_delay = get_seconds_clamped("process_delay", v, 0); }},
      {"batch_max_bytes",
       [](const Value& v, http_log_options& o) {
         o.queue.batch_max_bytes = static_cast<std::size_t>(get_int("batch_max_bytes", v, 0, k_max_bytes));
       }},
      {"max_entries",
       [](const Value& v, http_log_options& o) {
         o.queue.max_entries = static_cast<std::size_t>(get_int("max_entries", v, 0, k_max_count));
       }},
      {"max_bytes",
       [](const Value& v, http_log_options& o) {
         o.queue.max_bytes = static_cast<std::size_t>(get_int_clamped("max_bytes", v, 0, k_max_bytes));
       }},
      {"overflow",
       [](const Value& v, http_log_options& o) {
         o.queue.overflow = get_enum<overflow_policy>(
             "overflow", v, {{"drop_oldest", overflow_policy::drop_oldest}, {"refuse_new", overflow_policy::refuse_new}});
       }},
      {"max_retry_time",
       [](const Value& v, http_log_options& o) {
         // Negative (Kong 3.x: -1) = no retries: see parse_http_log_config.
         if (v.IsNumber() && v.GetDouble() < 0) {
           o.queue.max_retry_time = ms(-1);
           return;
         }
         o.queue.max_retry_time = get_seconds_clamped("max_retry_time", v, 0);
       }},
      {"backoff",
       [](const Value& v, http_log_options& o) {
         o.queue.backoff = get_enum<backoff_policy>(
             "backoff", v, {{"kong_quadratic", backoff_policy::kong_quadratic}, {"exponential", backoff_policy::exponential}});
       }},
      {"initial_retry_delay",
       [](const Value& v, http_log_options& o) {
         o.queue.initial_retry_delay = get_seconds_clamped("initial_retry_delay", v, 0.001);
       }},
      {"max_retry_delay",
       [](const Value& v, http_log_options& o) { o.queue.max_retry_delay = get_seconds_clamped("max_retry_delay", v, 0.001); }},
      {"jitter", [](const Value& v, http_log_options& o) { o.queue.jitter = get_bool("jitter", v); }},
      {"jitter_seed",
       [](const Value& v, http_log_options& o) {
         o.queue.jitter_seed = static_cast<std::uint64_t>(get_int("jitter_seed", v, 0, std::numeric_limits<std::int64_t>::max()));
       }},
      {"flush_mode",
       [](const Value& v, http_log_options& o) {
         o.queue.flush = get_enum<flush_mode>("flush_mode", v,
                                              {{"kong_idle", flush_mode::kong_idle}, {"coalescing", flush_mode::coalescing}});
       }},
      {"concurrency",
       [](const Value& v, http_log_options& o) {
         // -1: Kong 3.x concurrency_limit -1 ("unlimited"), bounded here at
         // k_unlimited_concurrency threads (they are started with the queue).
         if (v.IsInt64() && v.GetInt64() == -1) {
           o.queue.concurrency = k_unlimited_concurrency;
           return;
         }
         const std::string range = "-1 (as many as allowed: " + std::to_string(k_unlimited_concurrency) + ") or an integer from 1 to 64";
         if (!v.IsInt64() || v.GetInt64() < 1 || v.GetInt64() > 64)
           bad("concurrency", "must be " + range + ", got " + (v.IsNumber() ? std::to_string(v.GetDouble()) : type_name(v)));
         o.queue.concurrency = static_cast<std::size_t>(v.GetInt64());
       }},
      {"shutdown_timeout",
       [](const Value& v, http_log_options& o) { o.queue.shutdown_timeout = get_seconds("shutdown_timeout", v, 0, 3600); }},
      // --- batchq: HTTP ---
      {"format",
       [](const Value& v, http_log_options& o) {
         o.format = get_enum<payload_format>(
             "format", v,
             {{"kong", payload_format::kong}, {"json_array", payload_format::json_array}, {"ndjson", payload_format::ndjson}});
       }},
      {"validate_json", [](const Value& v, http_log_options& o) { o.validate_json = get_bool("validate_json", v); }},
      {"gzip", [](const Value& v, http_log_options& o) { o.http.gzip = get_bool("gzip", v); }},
      {"ssl_verify", [](const Value& v, http_log_options& o) { o.http.ssl_verify = get_bool("ssl_verify", v); }},
      {"ca_file", [](const Value& v, http_log_options& o) { o.http.ca_file = get_string("ca_file", v); }},
      {"client_cert", [](const Value& v, http_log_options& o) { o.http.client_cert = get_string("client_cert", v); }},
      {"client_key", [](const Value& v, http_log_options& o) { o.http.client_key = get_string("client_key", v); }},
      {"drop_permanent_4xx",
       [](const Value& v, http_log_options& o) { o.http.drop_permanent_4xx = get_bool("drop_permanent_4xx", v); }},
      {"success_status_max",
       [](const Value& v, http_log_options& o) {
         o.http.success_status_max = static_cast<int>(get_int("success_status_max", v, 200, 599));
       }},
      {"timeout_scope",
       [](const Value& v, http_log_options& o) {
         o.http.scope = get_enum<timeout_scope>("timeout_scope", v,
                                                {{"request", timeout_scope::request}, {"operation", timeout_scope::operation}});
       }},
      {"max_error_body",
       [](const Value& v, http_log_options& o) {
         o.http.max_error_body = static_cast<std::size_t>(get_int("max_error_body", v, 0, 1 << 20));
       }},
      {"name", [](const Value& v, http_log_options& o) { o.name = get_string("name", v); }},
      // --- batchq: spool ---
      {"spool_dir", [](const Value& v, http_log_options& o) { o.spool.dir = get_string("spool_dir", v); }},
      {"spool_mode",
       [](const Value& v, http_log_options& o) {
         o.spool.mode = get_enum<spool_mode>("spool_mode", v,
                                        {{"dead_letter", spool_mode::dead_letter}, {"write_ahead", spool_mode::write_ahead}});
       }},
      {"spool_max_bytes",
       [](const Value& v, http_log_options& o) {
         o.spool.max_bytes = static_cast<std::uint64_t>(get_int("spool_max_bytes", v, 0, k_max_bytes));
       }},
      {"spool_segment_bytes",
       [](const Value& v, http_log_options& o) {
         o.spool.segment_bytes = static_cast<std::size_t>(get_int("spool_segment_bytes", v, 4096, 1LL << 30));
       }},
      {"spool_fsync",
       [](const Value& v, http_log_options& o) {
         o.spool.fsync = get_enum<fsync_policy>(
             "spool_fsync", v,
             {{"never", fsync_policy::never}, {"interval", fsync_policy::interval}, {"always", fsync_policy::always}});
       }},
      {"spool_fsync_interval",
       [](const Value& v, http_log_options& o) { o.spool.fsync_interval = ms(get_int("spool_fsync_interval", v, 1, k_max_ms)); }},
      // --- batchq: pull buffers ---
      {"drop_buffer_entries",
       [](const Value& v, http_log_options& o) {
         o.drop_buffer_entries = static_cast<std::size_t>(get_int("drop_buffer_entries", v, 0, k_max_count));
       }},
      {"drop_buffer_bytes",
       [](const Value& v, http_log_options& o) {
         o.drop_buffer_bytes = static_cast<std::size_t>(get_int("drop_buffer_bytes", v, 0, k_max_bytes));
       }},
      {"log_buffer_lines",
       [](const Value& v, http_log_options& o) {
         o.log_buffer_lines = static_cast<std::size_t>(get_int("log_buffer_lines", v, 0, 1000000));
       }},
      {"split_on_4xx", [](const Value& v, http_log_options& o) { o.split_on_4xx = get_bool("split_on_4xx", v); }},
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
    auto found = std::find_if(table.begin(), table.end(), [&](const auto& k) { return key == k.first; });
    if (found == table.end()) {
      std::string best;
      std::size_t best_d = 3;  // suggest only close matches
      for (const auto& k : table) {
        // The distance is at least the difference in length: a key that far
        // off (say 1 MB long) costs no quadratic comparison.
        const std::size_t klen = std::char_traits<char>::length(k.first);
        if ((key.size() > klen ? key.size() - klen : klen - key.size()) >= best_d) continue;
        const std::size_t d = edit_distance(key, k.first);
        if (d < best_d) {
          best_d = d;
          best = k.first;
        }
      }
      // The key is quoted back at most 64 bytes long, escaped: the message
      // stays short and printable whatever was sent.
      constexpr std::size_t k_shown = 64;
      const std::string shown = json_escape(std::string_view(key).substr(0, k_shown)) +
                                (key.size() > k_shown ? "... (" + std::to_string(key.size()) + " bytes)" : "");
      throw options_error(shown, shown + ": " +
                                     (best.empty() ? "unknown key (see the configuration reference in the README)"
                                                   : "unknown key (did you mean " + best + "?)"));
    }
    found->second(it->value, o);
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

}  // namespace batchq
