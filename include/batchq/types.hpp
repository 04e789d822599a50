// batchq/types.hpp - vocabulary types shared by the queue, the HTTP layer and
// the C ABI: results, reasons, options and statistics. Standard library only.
#ifndef BATCHQ_TYPES_HPP
#define BATCHQ_TYPES_HPP

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "batchq/clock.hpp"
#include "batchq/detail/counters.hpp"

namespace batchq {

using std::chrono::milliseconds;

/// A non-owning view of contiguous entries (std::span is C++20; batchq's
/// headers also build as C++17).
template <class T>
class span {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using size_type = std::size_t;
  using iterator = T*;

  constexpr span() noexcept = default;
  constexpr span(T* data, size_type size) noexcept : data_(data), size_(size) {}
  /// From any contiguous container whose data() converts to T* (as std::span).
  template <class Container,
            class = std::enable_if_t<std::is_convertible_v<decltype(std::declval<Container&>().data()), T*>>>
  constexpr span(Container& c) noexcept : data_(c.data()), size_(c.size()) {}  // NOLINT: implicit like std::span
  /// From a const container (or a temporary) when the elements are const, as std::span<const T>.
  template <class Container, class U = T,
            class = std::enable_if_t<std::is_const_v<U> &&
                                     std::is_convertible_v<decltype(std::declval<const Container&>().data()), T*>>>
  constexpr span(const Container& c) noexcept : data_(c.data()), size_(c.size()) {}  // NOLINT

  constexpr T* data() const noexcept { return data_; }
  constexpr size_type size() const noexcept { return size_; }
  constexpr bool empty() const noexcept { return size_ == 0; }
  constexpr T* begin() const noexcept { return data_; }
  constexpr T* end() const noexcept { return data_ + size_; }
  constexpr T& operator[](size_type i) const noexcept { return data_[i]; }
  constexpr T& front() const noexcept { return data_[0]; }
  constexpr T& back() const noexcept { return data_[size_ - 1]; }

 private:
  T* data_ = nullptr;
  size_type size_ = 0;
};

/// Why entries left the queue without being delivered. Append-only: the
/// numeric values are part of the C ABI (BATCHQ_DROP_*).
enum class drop_reason : int {
  retries_exhausted = 0,    ///< every attempt (retry_count) failed
  retry_time_exceeded = 1,  ///< failed, and max_retry_time had passed since the first attempt
  queue_full = 2,           ///< pushed out by newer entries (max_entries / max_bytes, drop_oldest)
  too_large = 3,            ///< the receiver refused the batch as too large (HTTP 413, when permanent 4xx drop is on)
  shutdown = 4,             ///< shutdown()'s deadline passed before it could be delivered
  rejected = 5,             ///< the process function declared a permanent failure (e.g. HTTP 4xx)
};
/// Number of drop_reason values (for arrays indexed by reason).
inline constexpr std::size_t drop_reason_count = 6;

constexpr const char* to_string(drop_reason r) noexcept {
  switch (r) {
    case drop_reason::retries_exhausted: return "retries_exhausted";
    case drop_reason::retry_time_exceeded: return "retry_time_exceeded";
    case drop_reason::queue_full: return "queue_full";
    case drop_reason::too_large: return "too_large";
    case drop_reason::shutdown: return "shutdown";
    case drop_reason::rejected: return "rejected";
  }
  return "unknown";
}

/// What enqueue() did with an entry. On anything but `accepted` the entry was
/// NOT taken: the caller still owns it (an rvalue argument is left untouched)
/// and nothing was counted as enqueued.
enum class enqueue_result : int {
  accepted = 0,
  too_large = 1,   ///< the entry alone is larger than max_bytes
  queue_full = 2,  ///< overflow == refuse_new and the queue is at max_entries / max_bytes
  shut_down = 3,   ///< shutdown() has begun
  invalid_json = 4,  ///< not valid JSON (http_log with validate_json on; the core never returns it)
};

constexpr const char* to_string(enqueue_result r) noexcept {
  switch (r) {
    case enqueue_result::accepted: return "accepted";
    case enqueue_result::too_large: return "too_large";
    case enqueue_result::queue_full: return "queue_full";
    case enqueue_result::shut_down: return "shut_down";
    case enqueue_result::invalid_json: return "invalid_json";
  }
  return "unknown";
}

enum class log_level : int { debug = 0, info = 1, warn = 2, error = 3 };

constexpr const char* to_string(log_level l) noexcept {
  switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
  }
  return "unknown";
}

/// How the wait before the next attempt grows after failures.
enum class backoff_policy : int {
  /// Kong 2.x batch_queue: one counter per queue starting at 1, +1 per
  /// failure, wait min(max_retry_delay, counter^2 seconds): 4, 9, 16, 25, 36,
  /// 49, 60, 60 ... Reset to 1 only by a success.
  kong_quadratic = 0,
  /// Kong 3.x queue: wait min(max_retry_delay, initial_retry_delay * 2^n),
  /// n = consecutive failures of the queue - 1. Reset by a success.
  exponential = 1,
};

/// When an open batch that is not full is closed.
enum class flush_mode : int {
  /// Kong 2.x: a timer ticks every flush_timeout from the batch's first entry;
  /// a tick that finds no entry added since the previous tick closes the batch.
  /// An idle batch is closed between F and 2F after its last entry; under
  /// steady traffic a batch is closed by size only.
  kong_idle = 0,
  /// Kong 3.x max_coalescing_delay: closed flush_timeout after its first entry.
  coalescing = 1,
};

/// What a full queue (max_entries / max_bytes reached) does with a new entry.
enum class overflow_policy : int {
  drop_oldest = 0,  ///< accept it; the oldest queued entries go to on_drop (queue_full). Kong 3.x.
  refuse_new = 1,   ///< refuse it with enqueue_result::queue_full; the caller keeps it.
};

/// Who runs the queue's work (closing batches, calling process, callbacks).
enum class execution : int {
  own_threads = 0,  ///< `concurrency` worker threads owned by the queue (production)
  manual = 1,       ///< no thread: the owner calls run_due() (tests, event loops)
};

/// Options of batch_queue. Every field has the default documented beside it;
/// the Kong name it mirrors is given in brackets.
struct batch_queue_options {
  /// Entries per batch; a batch is closed when it holds this many.
  /// [Kong 2.x batch_max_size, default 1000; http-log queue_size, default 1]
  std::size_t batch_max_size = 1000;
  /// Also close a batch before it would exceed this many bytes (sum of entry
  /// sizes). 0 = no byte limit per batch. An entry larger than this still
  /// travels, alone in its batch.
  std::size_t batch_max_bytes = 0;
  /// See flush_mode. [Kong 2.x flush_timeout 2 s; Kong 3.x max_coalescing_delay 1 s]
  milliseconds flush_timeout{2000};
  /// Delay before the first attempt of a batch closed while nothing was being
  /// processed. Ignored when batch_max_size == 1 (as in Kong).
  /// [Kong 2.x process_delay 1 s; http-log uses 0]
  milliseconds process_delay{1000};
  /// Total attempts per batch (Kong's name, Kong's meaning); values < 1 act as 1.
  /// [Kong 2.x retry_count; http-log default 10]
  int retry_count = 10;
  /// Upper bound on entries held (queued, in open batches and in flight).
  /// 0 = unbounded (Kong 2.x). A value below batch_max_size is raised to
  /// batch_max_size (the queue always holds at least one full batch; Kong
  /// accepts max_entries < max_batch_size too); options() shows the
  /// effective value. [Kong 3.x max_entries 10000]
  std::size_t max_entries = 10000;
  /// Upper bound on bytes held (sum of entry sizes). 0 = none. An entry larger
  /// than this is refused (enqueue_result::too_large). [Kong 3.x max_bytes]
  std::size_t max_bytes = 0;
  /// What a full queue does. [Kong 3.x: drop_oldest]
  overflow_policy overflow = overflow_policy::drop_oldest;
  /// Retry a failing batch only while less than this much time has passed since
  /// its first attempt; 0 = limited by retry_count only. [Kong 3.x max_retry_time 60 s]
  milliseconds max_retry_time{0};
  /// See backoff_policy.
  backoff_policy backoff = backoff_policy::kong_quadratic;
  /// First wait of the exponential policy. [Kong 3.x initial_retry_delay 0.01 s]
  milliseconds initial_retry_delay{10};
  /// Cap on any backoff wait, both policies: a wait is min(max_retry_delay,
  /// what the policy computes), also when it is below initial_retry_delay.
  /// [Kong 2.x: 60 s fixed; Kong 3.x max_retry_delay 60 s]
  milliseconds max_retry_delay{60000};
  /// Full jitter: each backoff wait is drawn uniformly from [0, wait], so many
  /// processes do not retry in lock-step. Off by default (Kong has none).
  bool jitter = false;
  /// Seed for the jitter generator; 0 = seeded from std::random_device.
  std::uint64_t jitter_seed = 0;
  /// See flush_mode.
  flush_mode flush = flush_mode::kong_idle;
  /// Batches in flight at once at most (1..64). 1 keeps batches strictly in
  /// order. With own_threads, this many worker threads; at batch_max_size 1
  /// another one is woken only once 4 entries per batch in flight wait
  /// (docs/intake.md, "Batch size 1: a helper per backlog").
  /// [Kong 3.x concurrency_limit 1]
  std::size_t concurrency = 1;
  /// How long the destructor's shutdown() waits to deliver what is queued.
  milliseconds shutdown_timeout{5000};
  /// See execution.
  execution exec = execution::own_threads;
  /// Time source; nullptr = std::chrono::steady_clock. Not owned: it must
  /// outlive the queue. A manual_clock only makes sense with execution::manual.
  const clock* time_source = nullptr;
  /// Bound on dropped entries waiting to be handed to on_drop (bytes, as
  /// size_of counts them; and entries). Over it, the oldest waiting ones are
  /// destroyed and counted in queue_stats::drops_unreported (and one log
  /// line per episode). The newest pushed-out entry always waits, so the
  /// queue holds at most max_bytes + this + one entry.
  std::size_t max_drop_pending_bytes = std::size_t{4} << 20;
  std::size_t max_drop_pending_entries = 65536;
};

/// Thrown by the batch_queue constructor for invalid options. what() names the
/// field, the value given and the allowed range.
class options_error : public std::invalid_argument {
 public:
  options_error(std::string field, const std::string& message)
      : std::invalid_argument(message), field_(std::move(field)) {}
  const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

/// Thrown by a queue used in a child process after fork() (its threads
/// stayed in the parent: nothing it accepted would ever be sent).
class fork_error : public std::logic_error {
 public:
  fork_error()
      : std::logic_error("queue used in a child process after fork(); create queues after forking") {}
};

/// Checks options without constructing a queue. Returns "" when valid, else a
/// message "<field> <problem> (allowed: <range>)"; *field receives the name.
inline std::string validate(const batch_queue_options& o, std::string* field = nullptr) {
  auto fail = [&](const char* f, const std::string& msg) {
    if (field) *field = f;
    return std::string(f) + ": " + msg;
  };
  auto ms = [](milliseconds d) { return std::to_string(d.count()) + " ms"; };
  if (o.batch_max_size < 1)
    return fail("batch_max_size", "is 0 (allowed: 1 or more)");
  if (o.flush_timeout.count() < 1)
    return fail("flush_timeout", "is " + ms(o.flush_timeout) + " (allowed: 1 ms or more)");
  if (o.process_delay.count() < 0)
    return fail("process_delay", "is " + ms(o.process_delay) + " (allowed: 0 or more)");
  if (o.max_bytes != 0 && o.batch_max_bytes > o.max_bytes)
    return fail("batch_max_bytes", "is " + std::to_string(o.batch_max_bytes) + ", larger than max_bytes " +
                                       std::to_string(o.max_bytes) + " (allowed: 0, or at most max_bytes)");
  if (o.max_retry_time.count() < 0)
    return fail("max_retry_time", "is " + ms(o.max_retry_time) + " (allowed: 0 for none, or more)");
  if (o.initial_retry_delay.count() < 1)
    return fail("initial_retry_delay", "is " + ms(o.initial_retry_delay) + " (allowed: 1 ms or more)");
  if (o.max_retry_delay.count() < 1)
    return fail("max_retry_delay", "is " + ms(o.max_retry_delay) + " (allowed: 1 ms or more)");
  if (o.concurrency < 1 || o.concurrency > 64)
    return fail("concurrency", "is " + std::to_string(o.concurrency) + " (allowed: 1 to 64)");
  if (o.shutdown_timeout.count() < 0)
    return fail("shutdown_timeout", "is " + ms(o.shutdown_timeout) + " (allowed: 0 or more)");
  if (static_cast<int>(o.backoff) < 0 || static_cast<int>(o.backoff) > 1)
    return fail("backoff", "is not a backoff_policy value (allowed: kong_quadratic, exponential)");
  if (static_cast<int>(o.flush) < 0 || static_cast<int>(o.flush) > 1)
    return fail("flush", "is not a flush_mode value (allowed: kong_idle, coalescing)");
  if (static_cast<int>(o.overflow) < 0 || static_cast<int>(o.overflow) > 1)
    return fail("overflow", "is not an overflow_policy value (allowed: drop_oldest, refuse_new)");
  if (static_cast<int>(o.exec) < 0 || static_cast<int>(o.exec) > 1)
    return fail("exec", "is not an execution value (allowed: own_threads, manual)");
  if (field) field->clear();
  return {};
}

/// What the process function reports for one attempt at one batch.
struct process_result {
  bool ok = true;
  /// With ok == false: do not retry; the batch is dropped at once with
  /// `permanent_reason` (e.g. an HTTP 400 the receiver will never accept).
  bool permanent = false;
  drop_reason permanent_reason = drop_reason::rejected;
  /// The failure's text: logged, kept as the batch's last error, handed to on_drop.
  std::string error;
  /// The next attempt (of any batch) is not made before this much time has
  /// passed, even if the backoff is shorter (HTTP Retry-After). 0 = no hint.
  milliseconds retry_after{0};
  /// The refusal may concern only some entries of the batch (e.g. an HTTP
  /// 4xx). A batch of more than one entry is then not retried or dropped
  /// whole but split in two halves, attempted again at once ahead of other
  /// batches (no backoff; each half is a new batch with its own retry_count
  /// and max_retry_time); a single entry is retried or, with `permanent`,
  /// dropped with `permanent_reason`, as without `split`. Bisection: n
  /// entries refused for good cost at most 2n - 1 split process calls.
  /// Ignored once shutdown's deadline has passed.
  bool split = false;

  static process_result success() { return {}; }
  static process_result failure(std::string err, milliseconds retry_after_hint = milliseconds{0}) {
    process_result r;
    r.ok = false;
    r.error = std::move(err);
    r.retry_after = retry_after_hint;
    return r;
  }
  static process_result reject(std::string err, drop_reason reason = drop_reason::rejected) {
    process_result r;
    r.ok = false;
    r.permanent = true;
    r.permanent_reason = reason;
    r.error = std::move(err);
    return r;
  }
};

/// Given to the process function with each attempt.
struct attempt_context {
  /// 1 for the first attempt at this batch.
  std::size_t attempt = 1;
  /// Attempts this batch may have in all (max(1, retry_count)).
  std::size_t max_attempts = 1;
  /// Set when shutdown()'s deadline has passed: a long-running attempt should
  /// give up as soon as it can (the HTTP sender aborts the transfer).
  const std::atomic<bool>* cancel = nullptr;

  bool cancelled() const noexcept { return cancel && cancel->load(std::memory_order_relaxed); }
};

/// Handed to on_drop with the entries that leave undelivered.
struct drop_info {
  drop_reason reason = drop_reason::retries_exhausted;
  /// Attempts made at these entries' batch (0 if never attempted).
  std::size_t attempts = 0;
  /// The last attempt's error text ("" if never attempted).
  std::string_view last_error;
  /// Unix time in ms when the entries were dropped: set once by http_log
  /// (lib/) for its reports and spool; 0 from a bare batch_queue.
  std::int64_t time_ms = 0;
};

/// A consistent snapshot of the queue's counters. At every snapshot:
///   enqueued == delivered + dropped_total() + pending + in_flight
struct queue_stats {
  /// The scalar counters (enqueued, delivered, pending, in_flight,
  /// bytes_held, batches_*, attempts, failed_attempts, retried,
  /// drop_pending, drop_pending_bytes, drops_unreported): one
  /// std::uint64_t each, declared and documented by the counter table
  /// (batchq/detail/counters.hpp).
  BATCHQ_COUNTERS(BATCHQ_COUNTER_FIELD_queue)
  /// Entries dropped, indexed by drop_reason.
  std::array<std::uint64_t, drop_reason_count> dropped{};
  /// Entries refused by enqueue(), indexed by enqueue_result (accepted stays 0).
  std::array<std::uint64_t, 5> refused{};

  std::uint64_t dropped_total() const noexcept {
    std::uint64_t s = 0;
    for (auto d : dropped) s += d;
    return s;
  }
  std::uint64_t dropped_for(drop_reason r) const noexcept { return dropped[static_cast<std::size_t>(r)]; }
  std::uint64_t refused_for(enqueue_result r) const noexcept { return refused[static_cast<std::size_t>(r)]; }
  /// The accounting invariant; true in every snapshot stats() returns.
  bool balanced() const noexcept { return enqueued == delivered + dropped_total() + pending + in_flight; }
};

}  // namespace batchq

#endif  // BATCHQ_TYPES_HPP
