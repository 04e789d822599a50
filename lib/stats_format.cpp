// Renders a queue's counters as JSON (RapidJSON writer) and as Prometheus
// text exposition format 0.0.4.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <string>

#include "batchq/http_log.hpp"

namespace batchq {

// Each row of the counter table (batchq/detail/counters.hpp), in table
// order; the spool group is gathered into one "spool" object.
#define BQ_JSON_queue(m, c) u(#c, s.m);
#define BQ_JSON_total(m, c) u(#c, s.m());
#define BQ_JSON_buffer(m, c) u(#c, b.m);
#define BQ_JSON_spool(m, c)
#define BQ_JSON_reason(m, c)                                                                             \
  w.Key(#c);                                                                                             \
  w.StartObject();                                                                                       \
  for (std::size_t r = 0; r < drop_reason_count; ++r) u(to_string(static_cast<drop_reason>(r)), s.m[r]); \
  w.EndObject();
#define BQ_JSON_result(m, c)                                                                         \
  w.Key(#c);                                                                                         \
  w.StartObject();                                                                                   \
  for (std::size_t r = 1; r < s.m.size(); ++r) u(to_string(static_cast<enqueue_result>(r)), s.m[r]); \
  w.EndObject();
#define BQ_JSON(g, m, c, p, t, h) BQ_JSON_##g(m, c)
#define BQ_JSON_SPOOL(g, m, c, p, t, h) BQ_JSON_SPOOL_##g(m)
#define BQ_JSON_SPOOL_spool(m) u(#m, sp.m);
#define BQ_JSON_SPOOL_queue(m)
#define BQ_JSON_SPOOL_total(m)
#define BQ_JSON_SPOOL_buffer(m)
#define BQ_JSON_SPOOL_reason(m)
#define BQ_JSON_SPOOL_result(m)

std::string stats_to_json(const queue_stats& s, const spool_figures& sp, const buffer_figures& b,
                          std::string_view name) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  auto u = [&](const char* k, std::uint64_t v) {
    w.Key(k);
    w.Uint64(v);
  };
  w.StartObject();
  w.Key("name");
  w.String(name.data(), static_cast<rapidjson::SizeType>(name.size()));
  BATCHQ_COUNTERS(BQ_JSON)
  w.Key("spool");
  w.StartObject();
  BATCHQ_COUNTERS(BQ_JSON_SPOOL)
  w.EndObject();
  w.Key("balanced");
  w.Bool(s.balanced());
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

namespace {

// Label values escape backslash, double quote and newline.
std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

// One metric per row of the counter table with a Prometheus name: a single
// sample, or for the reason / result families one labelled sample each.
#define BQ_PROM_queue(m) one(s.m)
#define BQ_PROM_buffer(m) one(b.m)
#define BQ_PROM_spool(m) one(sp.m)
#define BQ_PROM_total(m) one(s.m())
#define BQ_PROM_reason(m)                                 \
  for (std::size_t r = 0; r < drop_reason_count; ++r)     \
    sample("reason", to_string(static_cast<drop_reason>(r)), s.m[r]);
#define BQ_PROM_result(m)                                 \
  for (std::size_t r = 1; r < s.m.size(); ++r)            \
    sample("result", to_string(static_cast<enqueue_result>(r)), s.m[r]);
#define BQ_PROM(g, m, c, p, t, h) \
  if (head(p, #t, h)) {           \
    BQ_PROM_##g(m);               \
  }

std::string stats_to_prometheus(const queue_stats& s, const spool_figures& sp, const buffer_figures& b,
                                std::string_view name) {
  const std::string q = "queue=\"" + label_value(name) + "\"";
  std::string out;
  const char* metric_name = "";
  // Writes # HELP and # TYPE; false for a row that is not a metric.
  auto head = [&](const char* metric, const char* type, const char* help) {
    metric_name = metric;
    if (metric[0] == '\0') return false;
    out += "# HELP batchq_";
    out += metric;
    out += ' ';
    out += help;
    out += "\n# TYPE batchq_";
    out += metric;
    out += ' ';
    out += type;
    out += '\n';
    return true;
  };
  auto one = [&](std::uint64_t v) {
    out += "batchq_";
    out += metric_name;
    out += '{' + q + "} " + std::to_string(v) + '\n';
  };
  auto sample = [&](const char* label, const char* value, std::uint64_t v) {
    out += "batchq_";
    out += metric_name;
    out += '{' + q + ',' + label + "=\"" + value + "\"} " + std::to_string(v) + '\n';
  };
  BATCHQ_COUNTERS(BQ_PROM)
  return out;
}

}  // namespace batchq
