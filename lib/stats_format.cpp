// Renders a queue's counters as JSON (RapidJSON writer) and as Prometheus
// text exposition format 0.0.4.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <string>

#include "batchq/http_log.hpp"

namespace batchq {

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
  u("enqueued", s.enqueued);
  u("delivered", s.delivered);
  u("dropped", s.dropped_total());
  u("pending", s.pending);
  u("in_flight", s.in_flight);
  u("bytes_held", s.bytes_held);
  w.Key("dropped_by_reason");
  w.StartObject();
  for (std::size_t r = 0; r < drop_reason_count; ++r) u(to_string(static_cast<drop_reason>(r)), s.dropped[r]);
  w.EndObject();
  u("batches_queued", s.batches_queued);
  u("batches_in_flight", s.batches_in_flight);
  u("batches_delivered", s.batches_delivered);
  u("attempts", s.attempts);
  u("failed_attempts", s.failed_attempts);
  u("retried", s.retried);
  w.Key("refused");
  w.StartObject();
  for (std::size_t r = 1; r < s.refused.size(); ++r) u(to_string(static_cast<enqueue_result>(r)), s.refused[r]);
  w.EndObject();
  u("drop_buffer_pending", b.drop_pending);
  u("drop_buffer_overflow", b.drop_overflow);
  u("log_overflow", b.log_overflow);
  w.Key("spool");
  w.StartObject();
  u("records", sp.records);
  u("bytes", sp.bytes);
  u("durable_seq", sp.durable_seq);
  u("errors", sp.errors);
  u("replayed", sp.replayed);
  u("replay_refused", sp.replay_refused);
  u("evicted", sp.evicted);
  u("damaged_records", sp.damaged_records);
  u("damaged_bytes", sp.damaged_bytes);
  u("unprotected", sp.unprotected);
  u("unavailable", sp.unavailable);
  w.EndObject();
  u("drop_pending", s.drop_pending);
  u("drop_pending_bytes", s.drop_pending_bytes);
  u("drops_unreported", s.drops_unreported);
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

std::string stats_to_prometheus(const queue_stats& s, const spool_figures& sp, const buffer_figures& b,
                                std::string_view name) {
  const std::string q = "queue=\"" + label_value(name) + "\"";
  std::string out;
  auto metric = [&](const char* metric_name, const char* type, const char* help, std::uint64_t v) {
    out += "# HELP batchq_";
    out += metric_name;
    out += ' ';
    out += help;
    out += "\n# TYPE batchq_";
    out += metric_name;
    out += ' ';
    out += type;
    out += "\nbatchq_";
    out += metric_name;
    out += '{' + q + "} " + std::to_string(v) + '\n';
  };
  metric("enqueued_total", "counter", "Entries accepted by enqueue.", s.enqueued);
  metric("delivered_total", "counter", "Entries in batches delivered successfully.", s.delivered);
  out += "# HELP batchq_dropped_total Entries that left undelivered, by reason.\n# TYPE batchq_dropped_total counter\n";
  for (std::size_t r = 0; r < drop_reason_count; ++r)
    out += "batchq_dropped_total{" + q + ",reason=\"" + to_string(static_cast<drop_reason>(r)) + "\"} " +
           std::to_string(s.dropped[r]) + '\n';
  out += "# HELP batchq_refused_total Entries refused by enqueue, by result.\n# TYPE batchq_refused_total counter\n";
  for (std::size_t r = 1; r < s.refused.size(); ++r)
    out += "batchq_refused_total{" + q + ",result=\"" + to_string(static_cast<enqueue_result>(r)) + "\"} " +
           std::to_string(s.refused[r]) + '\n';
  metric("pending", "gauge", "Entries waiting to be sent.", s.pending);
  metric("in_flight", "gauge", "Entries in batches being sent.", s.in_flight);
  metric("bytes_held", "gauge", "Bytes of pending and in-flight entries.", s.bytes_held);
  metric("batches_queued", "gauge", "Closed batches waiting.", s.batches_queued);
  metric("attempts_total", "counter", "Send attempts.", s.attempts);
  metric("failed_attempts_total", "counter", "Send attempts that failed.", s.failed_attempts);
  metric("retried_total", "counter", "Failed batches put back for another attempt.", s.retried);
  metric("drop_buffer_pending", "gauge", "Dropped entries waiting to be polled.", b.drop_pending);
  metric("drop_buffer_overflow_total", "counter", "Dropped entries the poll buffer could not keep.", b.drop_overflow);
  metric("spool_records_total", "counter", "Records appended to the spool.", sp.records);
  metric("spool_bytes", "gauge", "Bytes of spool segment files.", sp.bytes);
  metric("spool_errors_total", "counter", "Failed spool writes.", sp.errors);
  metric("spool_evicted_total", "counter", "Spool records deleted by the spool_max_bytes cap.", sp.evicted);
  metric("spool_replayed_total", "counter", "Entries re-queued from the spools at start.", sp.replayed);
  metric("spool_damaged_records_total", "counter", "Damaged spool regions found (kept in quarantine).",
         sp.damaged_records);
  metric("spool_damaged_bytes_total", "counter", "Bytes of damaged spool regions (kept in quarantine).",
         sp.damaged_bytes);
  metric("spool_unprotected_total", "counter", "write_ahead: entries accepted without a write-ahead record.",
         sp.unprotected);
  metric("spool_unavailable", "gauge", "1 while a configured spool cannot be opened (queue runs in memory).",
         sp.unavailable);
  metric("drop_pending", "gauge", "Dropped entries waiting inside the queue to be handed over.", s.drop_pending);
  metric("drop_pending_bytes", "gauge", "Bytes of dropped entries waiting inside the queue.", s.drop_pending_bytes);
  metric("drops_unreported_total", "counter", "Dropped entries destroyed before they could be handed over.",
         s.drops_unreported);
  return out;
}

}  // namespace batchq
