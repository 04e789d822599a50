// batchq/http_log.hpp - Kong's http-log, done properly: a batch_queue of JSON
// strings whose batches go to an HTTP endpoint through an http_sender.
//
//   batchq::http_log_options o;                  // http-log's defaults
//   o.http.http_endpoint = "https://logs.example.com/ingest";
//   batchq::http_log log(o, {.on_drop = keep});  // throws options_error naming the field
//   log.enqueue(R"({"request":{"uri":"/"}})");
//
// Sending happens on the queue's worker thread(s), never on the caller's
// enqueue path. This is the object the C ABI wraps.
#ifndef BATCHQ_HTTP_LOG_HPP
#define BATCHQ_HTTP_LOG_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "batchq/export.hpp"
#include "batchq/http_sender.hpp"
#include "batchq/payload.hpp"
#include "batchq/spool.hpp"
#include "batchq/types.hpp"

namespace batchq {

/// Queue options with Kong http-log's defaults: queue_size 1 (batch_max_size),
/// retry_count 10, flush_timeout 2 s, process_delay 0 (first attempt at once).
inline batch_queue_options http_log_queue_defaults() {
  batch_queue_options q;
  q.batch_max_size = 1;
  q.retry_count = 10;
  q.flush_timeout = std::chrono::seconds(2);
  q.process_delay = std::chrono::milliseconds(0);
  return q;
}

/// Everything an http_log needs, in one struct.
struct http_log_options {
  /// Batching, retries and bounds; see batch_queue_options. http-log defaults.
  batch_queue_options queue = http_log_queue_defaults();
  /// Where and how to send; see http_sender_options. http_endpoint is required.
  http_sender_options http;
  /// Body of a request: kong (1 entry → the entry; N → [e1,...,eN]), json_array, ndjson.
  payload_format format = payload_format::kong;
  /// Parse each entry with RapidJSON at enqueue and refuse invalid JSON.
  /// Off by default (Kong does not re-parse its entries either).
  bool validate_json = false;
  /// A name for logs and metrics labels.
  std::string name = "batchq";

  /// The spool (see batchq/spool.hpp), off unless spool.dir is set. Its
  /// fields are the configuration's spool_* keys: dir [spool_dir] (created
  /// with its parents if missing; the spools live in its subdirectories
  /// dead-letter/ and write-ahead/), mode [spool_mode] (dead_letter: dropped
  /// entries are appended, replay later with batchq-replay; write_ahead:
  /// every accepted entry is appended before enqueue() returns and replayed
  /// after a crash), max_bytes [spool_max_bytes] (per spool; the oldest
  /// segment is evicted, reported), segment_bytes [spool_segment_bytes],
  /// fsync [spool_fsync], fsync_interval [spool_fsync_interval]. read_only,
  /// on_evict and on_damage are http_log's own: what is given there is not
  /// used (evictions and damage go to on_log and the spool figures).
  spool_options spool;

  /// Pull mode (no on_drop callback given): dropped entries wait in a bounded
  /// buffer for poll_dropped(); what does not fit is counted as overflow.
  std::size_t drop_buffer_entries = 10000;
  std::size_t drop_buffer_bytes = std::size_t{16} << 20;
  /// Pull mode (no on_log callback): the last this-many log lines are kept.
  std::size_t log_buffer_lines = 256;
  /// When the receiver refuses a batch of several entries with a 4xx (408
  /// and 429 never; 413 included), split it in halves and send those at once,
  /// recursively, so that only the entries the receiver refuses on their own
  /// are left: they are retried as usual and dropped with the answer to their
  /// own request (at once, as rejected / too_large, with
  /// http.drop_permanent_4xx), while the others are delivered. Bounded: a
  /// batch of n entries costs at most 2n - 1 split requests, each counted in
  /// stats().attempts. Off: a refused batch is retried or dropped whole, as
  /// Kong does. Default on.
  bool split_on_4xx = true;
};

/// Checks every part; "" when valid, else "<field>: <problem> (allowed: ...)".
/// A spool field is named by its configuration key: "spool_" + its name in
/// spool_options (spool_segment_bytes...).
BATCHQ_CXX_API std::string validate(const http_log_options& o, std::string* field = nullptr);

/// Parses the JSON configuration of the C ABI / Kong plugin (http-log's keys
/// and units plus batchq's; see capi/batchq.h and the README) and validates
/// the result. Throws options_error whose field() is the key at fault, for
/// invalid JSON (field ""), an unknown key (with a suggestion), a wrong type
/// or a value out of range.
BATCHQ_CXX_API http_log_options parse_http_log_config(std::string_view json);

/// Thrown by the http_log constructor when spool.dir exists and is not a
/// directory: the one spool problem that is the configuration's (a spool that
/// cannot be created or opened is a runtime condition, see http_log). what()
/// starts with "spool_dir: " and names the path. The C ABI maps it to
/// BATCHQ_ESPOOL.
class spool_dir_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The host's view of what leaves undelivered, and of the queue's log lines.
/// Thread rules as batch_queue_callbacks::on_drop / on_log. on_drop's
/// info.time_ms is when http_log dropped the entries (the time also kept in
/// the dead-letter spool and in dropped_entry::time_ms in pull mode).
struct http_log_callbacks {
  std::function<void(span<std::string> entries, const drop_info& info, bool spooled)> on_drop;
  std::function<void(log_level level, std::string_view message)> on_log;
};

/// A dropped entry kept for poll_dropped() (pull mode).
struct dropped_entry {
  std::string data;
  drop_reason reason = drop_reason::retries_exhausted;
  std::size_t attempts = 0;
  std::string last_error;
  std::int64_t time_ms = 0;  ///< Unix time in ms when it was dropped
  bool spooled = false;      ///< also written to the dead-letter spool
};

/// Pull-mode buffer figures.
struct buffer_figures {
  /// drop_pending, drop_overflow, log_overflow: declared and documented by
  /// the counter table (batchq/detail/counters.hpp).
  BATCHQ_COUNTERS(BATCHQ_COUNTER_FIELD_buffer)
};

/// Spool figures (zeros without a spool).
struct spool_figures {
  /// records, bytes, durable_seq, errors, evicted, replayed, damaged_*,
  /// unprotected, unavailable, replay_refused: declared and documented by
  /// the counter table (batchq/detail/counters.hpp).
  BATCHQ_COUNTERS(BATCHQ_COUNTER_FIELD_spool)
};

class BATCHQ_CXX_API http_log {
 public:
  /// Validates everything (throws options_error naming the field), opens the
  /// spool if configured, and starts the queue's worker thread(s). A
  /// spool.dir that exists and is not a directory throws spool_dir_error
  /// ("spool_dir: ..."); a spool that cannot be created or opened under it
  /// (permissions, read-only disk) does not: the queue works in memory, logs
  /// the error, sets spool_figures::unavailable and retries in the background.
  explicit http_log(http_log_options options, http_log_callbacks callbacks = {});
  /// shutdown(options().queue.shutdown_timeout); while a shutdown_begin()
  /// shutdown still runs, waits for it instead (at most its own deadline,
  /// plus the ~100 ms an attempt in flight takes to notice the cancel).
  ~http_log();
  http_log(const http_log&) = delete;
  http_log& operator=(const http_log&) = delete;

  /// Takes an entry (a serialized JSON value). Thread-safe; never blocks on
  /// sending. Refusals: too_large, queue_full, shut_down, invalid_json (an
  /// entry that would change the body's framing, for every format, see
  /// check_framing(); or, with validate_json, not valid JSON; *error receives
  /// what is wrong and its offset).
  enqueue_result enqueue(std::string entry, std::string* error = nullptr);
  /// Takes an entry as a LuaJIT string.buffer encoding (batchq/lua_json.hpp)
  /// and sends it as the JSON cjson.encode() would have made of the value.
  /// Checked here (a malformed encoding or a value cjson refuses gives
  /// invalid_json, counted as such, with the reason in *error); converted on
  /// the sending thread when a body is built, and before a drop report or a
  /// spool sees it, so those always hold JSON. In write_ahead spool mode it
  /// is converted here instead (the record must be JSON before this
  /// returns). max_bytes counts the encoded bytes. validate_json does not
  /// apply (the JSON is made by batchq). Thread-safe; never blocks on sending.
  enqueue_result enqueue_lua(std::string encoded, std::string* error = nullptr);
  /// enqueue() and enqueue_lua() from bytes the caller keeps (the C ABI's
  /// path): an entry of up to 4 KiB is copied straight into the queue's
  /// storage (no string of its own is made); a larger one is copied into one.
  enqueue_result enqueue_copy(std::string_view entry, std::string* error = nullptr);
  enqueue_result enqueue_lua_copy(std::string_view encoded, std::string* error = nullptr);

  /// See batch_queue::flush / shutdown. noexcept.
  bool flush(std::chrono::milliseconds timeout) noexcept;
  /// shutdown(t) returns within t + about 250 ms however much is queued,
  /// spool or not: what is left at t is written to the spool (write-ahead/)
  /// for at most shutdown_write_budget more; entries not written by then are
  /// dropped with reason shutdown (counted, handed to on_drop / the drop
  /// buffer with spooled = false, one error log line). The final fsync is
  /// skipped when the budget is spent.
  bool shutdown(std::chrono::milliseconds timeout) noexcept;
  static constexpr std::chrono::milliseconds shutdown_write_budget{150};

  /// Non-blocking shutdown. Refuses new entries at once (enqueue returns
  /// shut_down when this returns), then runs shutdown(timeout) on a thread of
  /// its own and returns without waiting for the network or the deadline.
  /// The deadline is counted from this call. What is left at the deadline
  /// goes where shutdown() puts it: the write-ahead spool with a spool_dir,
  /// else on_drop / the drop buffer with reason `shutdown`. A second call, or
  /// a call after shutdown(), does nothing and returns true. Returns false
  /// only if the thread could not be started (intake is closed anyway; call
  /// shutdown() instead). Thread-safe.
  bool shutdown_begin(std::chrono::milliseconds timeout) noexcept;
  /// Whether a shutdown (shutdown_begin() or shutdown()) has finished: every
  /// entry delivered, spooled or handed to on_drop / the drop buffer, the
  /// worker threads joined and the spools synced. After true, the
  /// destructor does not wait. Never blocks. Thread-safe.
  bool shutdown_finished() const noexcept;
  /// Whether shutdown_begin() or shutdown() has been called.
  bool shutdown_started() const noexcept;

  /// A consistent snapshot of the queue's counters.
  queue_stats stats() const;
  spool_figures spool_stats() const;
  /// The counters as a JSON object / Prometheus text (label queue="<name>").
  std::string stats_json() const;
  std::string stats_prometheus() const;

  /// Pull mode: moves up to `max` dropped entries, oldest first, into `out`
  /// (appended). Returns how many. Thread-safe.
  std::size_t poll_dropped(std::vector<dropped_entry>& out, std::size_t max);
  /// Pull mode: the oldest buffered log line, if any. Thread-safe.
  bool poll_log(log_level& level, std::string& line);
  /// The same, but only if the line is shorter than `max_size` bytes; when it
  /// is not, nothing is taken and *needed receives its length. Thread-safe.
  bool poll_log(log_level& level, std::string& line, std::size_t max_size, std::size_t* needed);
  buffer_figures buffer_stats() const;

  const http_log_options& options() const noexcept;

  /// True in a child process after fork() (see batch_queue::forked()): then
  /// enqueue(), stats() and the poll functions throw fork_error, flush() and
  /// shutdown() return false at once, and the destructor frees the entries
  /// without joining the parent's threads or waiting. Cheap; thread-safe.
  bool forked() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

namespace detail {
/// Test hook: called on the replaying thread after each record the
/// write-ahead replay re-queued (seq of the record). nullptr to remove. Not
/// for production use.
BATCHQ_CXX_API void set_replay_hook(void (*hook)(std::uint64_t seq)) noexcept;
}  // namespace detail

/// JSON / Prometheus renderings of any queue's stats (used by http_log).
BATCHQ_CXX_API std::string stats_to_json(const queue_stats& s, const spool_figures& sp, const buffer_figures& b,
                                         std::string_view name);
BATCHQ_CXX_API std::string stats_to_prometheus(const queue_stats& s, const spool_figures& sp,
                                               const buffer_figures& b, std::string_view name);

}  // namespace batchq

#endif  // BATCHQ_HTTP_LOG_HPP
