// batchq/detail/counters.hpp - the one table of batchq's counters.
//
// Every counter a queue reports is one row here. The rows produce:
//   - the fields of queue_stats (types.hpp), buffer_figures and spool_figures
//     (http_log.hpp), which are declared by expanding this table;
//   - the stats JSON and the Prometheus text (lib/stats_format.cpp);
//   - the C struct batchq_stats_t is written out in capi/batchq.h (a pure C
//     header that LuaJIT's cdef also reads); capi/batchq.cpp fills it from
//     this table and static_asserts that every row has its field there, in
//     table order, and that the struct has no field the table lacks;
//   - the Lua view (q:stats()) is every uint64_t field of batchq_stats_t as
//     capi/lua/batchq/cdef.lua declares it; tests/lua/test_cdef.lua checks
//     the cdef against batchq.h and q:stats() against this table;
//   - the README's counter reference (batchq_counters_dump --update README.md).
//
// To add a counter: append a row at the END of the list (the C struct is
// append-only), append its field to batchq_stats_t in capi/batchq.h and in
// capi/lua/batchq/cdef.lua, and regenerate the README's reference. The build
// (static_assert in capi/batchq.cpp) and the tests test_counters, lua_cdef
// and counter_reference fail until all of them agree.
//
// A row: X(group, member, c_field, prom, type, help)
//   group    which struct holds the value:
//              queue  - a std::uint64_t field of queue_stats
//              buffer - a field of buffer_figures (http_log's pull buffers)
//              spool  - a field of spool_figures (JSON: nested in "spool")
//              total  - queue_stats::member() (a sum of a family below)
//              reason - the per-drop_reason array queue_stats::member
//              result - the per-enqueue_result array queue_stats::member
//   member   the field's (or function's) name in that struct
//   c_field  the batchq_stats_t field and the key of the Lua view; the JSON
//            key too, except for the spool group (nested under "spool" by
//            member name). reason/result families: see capi/batchq.h.
//   prom     the Prometheus metric after "batchq_" ("" = not a metric of
//            its own: a total is the sum of its family's samples)
//   type     counter or gauge
//   help     one line: the Prometheus # HELP text and the field's doc
//
// No includes: BATCHQ_COUNTERS is plain preprocessor (C or C++); the field
// macros below declare std::uint64_t members (the includer has <cstdint>).
#ifndef BATCHQ_DETAIL_COUNTERS_HPP
#define BATCHQ_DETAIL_COUNTERS_HPP

// clang-format off
#define BATCHQ_COUNTERS(X) \
  X(queue,  enqueued,          enqueued,              "enqueued_total",              counter, "Entries accepted by enqueue.") \
  X(queue,  delivered,         delivered,             "delivered_total",             counter, "Entries in batches delivered successfully.") \
  X(total,  dropped_total,     dropped,               "",                            counter, "Entries that left undelivered, all reasons.") \
  X(queue,  pending,           pending,               "pending",                     gauge,   "Entries waiting to be sent (not yet in a batch, or in a queued batch).") \
  X(queue,  in_flight,         in_flight,             "in_flight",                   gauge,   "Entries in batches being sent.") \
  X(queue,  bytes_held,        bytes_held,            "bytes_held",                  gauge,   "Bytes of pending and in-flight entries.") \
  X(reason, dropped,           dropped_by_reason,     "dropped_total",               counter, "Entries that left undelivered, by reason.") \
  X(queue,  batches_queued,    batches_queued,        "batches_queued",              gauge,   "Closed batches waiting.") \
  X(queue,  batches_in_flight, batches_in_flight,     "batches_in_flight",           gauge,   "Batches being sent.") \
  X(queue,  batches_delivered, batches_delivered,     "batches_delivered_total",     counter, "Batches delivered successfully.") \
  X(queue,  attempts,          attempts,              "attempts_total",              counter, "Send attempts.") \
  X(queue,  failed_attempts,   failed_attempts,       "failed_attempts_total",       counter, "Send attempts that failed.") \
  X(queue,  retried,           retried,               "retried_total",               counter, "Failed batches put back for another attempt.") \
  X(result, refused,           refused,               "refused_total",               counter, "Entries refused by enqueue, by result.") \
  X(buffer, drop_pending,      drop_buffer_pending,   "drop_buffer_pending",         gauge,   "Dropped entries waiting to be polled.") \
  X(buffer, drop_overflow,     drop_buffer_overflow,  "drop_buffer_overflow_total",  counter, "Dropped entries the poll buffer could not keep.") \
  X(buffer, log_overflow,      log_overflow,          "log_overflow_total",          counter, "Log lines the poll buffer could not keep.") \
  X(spool,  records,           spool_records,         "spool_records_total",         counter, "Records appended to the spool.") \
  X(spool,  bytes,             spool_bytes,           "spool_bytes",                 gauge,   "Bytes of spool segment files.") \
  X(spool,  durable_seq,       spool_durable_seq,     "spool_durable_seq",           gauge,   "Highest spool record known to be fsync'ed.") \
  X(spool,  errors,            spool_errors,          "spool_errors_total",          counter, "Failed spool writes.") \
  X(spool,  evicted,           spool_evicted,         "spool_evicted_total",         counter, "Spool records deleted by the spool_max_bytes cap.") \
  X(spool,  replayed,          spool_replayed,        "spool_replayed_total",        counter, "Entries re-queued from the spools at start.") \
  X(spool,  damaged_records,   spool_damaged_records, "spool_damaged_records_total", counter, "Damaged spool regions found (kept in quarantine).") \
  X(spool,  damaged_bytes,     spool_damaged_bytes,   "spool_damaged_bytes_total",   counter, "Bytes of damaged spool regions (kept in quarantine).") \
  X(spool,  unprotected,       spool_unprotected,     "spool_unprotected_total",     counter, "write_ahead: entries accepted without a write-ahead record.") \
  X(spool,  unavailable,       spool_unavailable,     "spool_unavailable",           gauge,   "1 while a configured spool cannot be opened (queue runs in memory).") \
  X(queue,  drop_pending,      drop_pending,          "drop_pending",                gauge,   "Dropped entries waiting inside the queue to be handed over.") \
  X(queue,  drop_pending_bytes, drop_pending_bytes,   "drop_pending_bytes",          gauge,   "Bytes of dropped entries waiting inside the queue.") \
  X(queue,  drops_unreported,  drops_unreported,      "drops_unreported_total",      counter, "Dropped entries destroyed before they could be handed over.") \
  X(spool,  replay_refused,    spool_replay_refused,  "spool_replay_refused_total",  counter, "Entries replayed from the spools at start that the queue refused (kept as dead letters).")
// clang-format on

// Declares the std::uint64_t fields of one group (queue, buffer or spool),
// in table order:  struct queue_stats { BATCHQ_COUNTERS(BATCHQ_COUNTER_FIELD_queue) };
#define BATCHQ_COUNTER_FIELD_queue(g, m, c, p, t, h) BATCHQ_COUNTER_DECL_##g##_queue(m)
#define BATCHQ_COUNTER_FIELD_buffer(g, m, c, p, t, h) BATCHQ_COUNTER_DECL_##g##_buffer(m)
#define BATCHQ_COUNTER_FIELD_spool(g, m, c, p, t, h) BATCHQ_COUNTER_DECL_##g##_spool(m)
#define BATCHQ_COUNTER_DECL_queue_queue(m) std::uint64_t m = 0;
#define BATCHQ_COUNTER_DECL_queue_buffer(m)
#define BATCHQ_COUNTER_DECL_queue_spool(m)
#define BATCHQ_COUNTER_DECL_buffer_queue(m)
#define BATCHQ_COUNTER_DECL_buffer_buffer(m) std::uint64_t m = 0;
#define BATCHQ_COUNTER_DECL_buffer_spool(m)
#define BATCHQ_COUNTER_DECL_spool_queue(m)
#define BATCHQ_COUNTER_DECL_spool_buffer(m)
#define BATCHQ_COUNTER_DECL_spool_spool(m) std::uint64_t m = 0;
#define BATCHQ_COUNTER_DECL_total_queue(m)
#define BATCHQ_COUNTER_DECL_total_buffer(m)
#define BATCHQ_COUNTER_DECL_total_spool(m)
#define BATCHQ_COUNTER_DECL_reason_queue(m)
#define BATCHQ_COUNTER_DECL_reason_buffer(m)
#define BATCHQ_COUNTER_DECL_reason_spool(m)
#define BATCHQ_COUNTER_DECL_result_queue(m)
#define BATCHQ_COUNTER_DECL_result_buffer(m)
#define BATCHQ_COUNTER_DECL_result_spool(m)

#endif  // BATCHQ_DETAIL_COUNTERS_HPP
