// batchq/spool.hpp - an append-only spool of byte strings on local disk.
//
// The spool keeps what a queue must not lose: in `dead_letter` mode every entry
// the queue dropped (with why, how many attempts and the last error), in
// `write_ahead` mode every entry the queue accepted, until its batch is
// delivered and acknowledged. It does not know the queue, the sender or JSON:
// it stores payloads (any bytes) with a little metadata, hands them back in
// order, and deletes them once acknowledged. Standard library only in this
// header; POSIX (Linux) underneath.
//
// In short (docs/spool-format.md has the files, the record format, the damage
// rules and why pwritev rather than mmap):
// - One directory per spool, owned by the process's user and not writable by
//   group or others, and one owner at a time: open() takes a flock on LOCK,
//   which the kernel drops when the process dies. flock belongs to the open
//   file description: do not open a spool and then fork() (nginx: open it in
//   init_worker, not in the master).
// - Every successful append gets the next seq. ACK holds a mark M: every
//   record with seq <= M is acknowledged and never returned again. ack()
//   takes seqs in any order; only M is persisted, so acks above a gap still
//   open when the process dies are forgotten and those records replayed:
//   delivery is at-least-once.
// - One pwritev() per append, no fsync on that path: the record survives the
//   death of the process, not of the machine; fsync_policy covers that.
// - Damaged data (a failed checksum, a record cut short by a crash) is
//   skipped, counted (spool_stats), reported (on_damage) and kept in
//   <dir>/quarantine/; reading never crashes or loops and is linear in the
//   file sizes. Seqs lost to damage count as acknowledged.
#ifndef BATCHQ_SPOOL_HPP
#define BATCHQ_SPOOL_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "batchq/export.hpp"

namespace batchq {

/// What the spool is for. The files and the record format are the same in both
/// modes; the mode tells the owner how the records are meant to be used.
enum class spool_mode : int {
  /// Records are dropped entries, kept until the replay tool removes them or
  /// the size cap evicts them. Nothing acknowledges them during normal work.
  dead_letter = 0,
  /// Records are accepted entries, appended before enqueue returns and
  /// acknowledged when delivered (or dropped); unacknowledged ones are
  /// replayed by the next owner.
  write_ahead = 1,
};

/// When written records are forced to stable storage. An append leaves its
/// record in the page cache (it survives the process, not the machine);
/// stats().durable_seq says how far records are known to be on stable storage.
enum class fsync_policy : int {
  always = 0,    ///< the owner calls sync() once per batch; the spool never does by itself
  interval = 1,  ///< a spool thread calls sync() every fsync_interval if anything changed
  never = 2,     ///< only an explicit sync()
};

/// The kind byte of a record. Append-only; unknown values read back as is.
enum class record_kind : std::uint8_t {
  entry = 0,    ///< an entry accepted by the queue (write_ahead)
  dropped = 1,  ///< an entry the queue dropped (dead_letter); `reason` says why
};

constexpr const char* to_string(spool_mode m) noexcept {
  return m == spool_mode::dead_letter ? "dead_letter" : m == spool_mode::write_ahead ? "write_ahead" : "unknown";
}
constexpr const char* to_string(fsync_policy p) noexcept {
  switch (p) {
    case fsync_policy::always: return "always";
    case fsync_policy::interval: return "interval";
    case fsync_policy::never: return "never";
  }
  return "unknown";
}
constexpr const char* to_string(record_kind k) noexcept {
  return k == record_kind::entry ? "entry" : k == record_kind::dropped ? "dropped" : "unknown";
}

/// Bytes of the fixed record header (docs/spool-format.md).
inline constexpr std::size_t spool_record_header_bytes = 36;
/// The record magic, "BSQ1" in file byte order.
inline constexpr std::uint32_t spool_record_magic = 0x31515342u;
/// Longest last_error kept; longer ones are cut to this many bytes.
inline constexpr std::size_t spool_max_error_bytes = 65535;

/// Metadata stored with a payload. Plain values; last_error is copied.
struct record_meta {
  record_kind kind = record_kind::entry;  ///< entry (write_ahead) or dropped (dead_letter)
  std::uint8_t reason = 0;                ///< why it was dropped (the owner's enum value; 0 for entries)
  std::uint16_t attempts = 0;             ///< delivery attempts made so far
  std::int64_t time_ms = 0;               ///< the owner's timestamp, Unix milliseconds
  std::string_view last_error;            ///< last delivery error; cut to spool_max_error_bytes
};

/// A record as read back. The views point into a buffer of the reader and are
/// valid only during the callback that receives the record: copy (spool_entry)
/// to keep it.
struct spool_record {
  std::uint64_t seq = 0;
  record_kind kind = record_kind::entry;
  std::uint8_t reason = 0;
  std::uint16_t attempts = 0;
  std::int64_t time_ms = 0;
  std::string_view last_error;
  std::string_view payload;
};

/// An owning copy of a spool_record.
struct spool_entry {
  std::uint64_t seq = 0;
  record_kind kind = record_kind::entry;
  std::uint8_t reason = 0;
  std::uint16_t attempts = 0;
  std::int64_t time_ms = 0;
  std::string last_error;
  std::string payload;

  spool_entry() = default;
  explicit spool_entry(const spool_record& r)
      : seq(r.seq), kind(r.kind), reason(r.reason), attempts(r.attempts), time_ms(r.time_ms),
        last_error(r.last_error), payload(r.payload) {}
  /// A view of this entry (valid while the entry lives and is not modified).
  spool_record view() const noexcept {
    return spool_record{seq, kind, reason, attempts, time_ms, last_error, payload};
  }
};

/// The damage found in one segment file (docs/spool-format.md, "Damage").
struct spool_damage {
  std::string file;             ///< path of the segment file
  std::uint64_t offset = 0;     ///< where the first damaged region starts in it
  std::uint64_t bytes = 0;      ///< damaged bytes in the file (all regions)
  std::uint64_t regions = 0;    ///< damaged regions in the file (offset is the first one's)
  bool tail = false;            ///< it runs to the end of the file
  bool torn = false;            ///< ... and starts with an incomplete record (a crash mid-append)
  std::string quarantine;       ///< where its bytes are kept ("" if they could not be: see message)
  std::string message;          ///< one line for a log, with all of the above
};

/// Options of a spool. Every field has its default beside it.
struct spool_options {
  /// The spool directory [spool_dir]. Must exist, be a directory owned by the
  /// effective uid and not writable by group or others (checked by open()
  /// unless read_only). No default: required.
  std::string dir;
  /// See spool_mode. Default dead_letter.
  spool_mode mode = spool_mode::dead_letter;
  /// A segment file is closed and a new one started before it would exceed
  /// this size. A larger record (36-byte header + last_error + payload) gets
  /// a segment of its own, up to 1 GiB and half of max_bytes. Allowed
  /// 4 KiB .. 1 GiB. Default 16 MiB.
  std::size_t segment_bytes = std::size_t{16} << 20;
  /// Upper bound on the bytes of all segment files [spool_max_bytes]. When an
  /// append would pass it, the oldest segments are evicted: their
  /// unacknowledged records are counted as dropped_by_cap and handed to
  /// on_evict, then the files are deleted. 0 = unbounded; otherwise at least
  /// 2 * segment_bytes. Default 1 GiB.
  std::uint64_t max_bytes = std::uint64_t{1} << 30;
  /// See fsync_policy. Default interval.
  fsync_policy fsync = fsync_policy::interval;
  /// Period of fsync_policy::interval, >= 1 ms. Default 1000 ms.
  std::chrono::milliseconds fsync_interval{1000};
  /// Open only to look: no LOCK (works while another process owns the spool),
  /// nothing cut, created or deleted; append and ack fail, sync does
  /// nothing. For listing and printing (batchq-replay list/print). Default
  /// false.
  bool read_only = false;
  /// Called once per unacknowledged record of an evicted segment, so that the
  /// owner can report it as dropped (payload included). Calls never overlap
  /// and come in seq order. Runs on the spool's background thread, or on the
  /// thread calling maintain() or close(); no
  /// lock of the spool is held, so it may call stats(), append() or ack(), but
  /// must not call maintain(), close() or destroy the spool. Must not throw
  /// (an exception is caught and ignored). Default: none (still counted).
  std::function<void(const spool_record&)> on_evict;
  /// Called once per damaged segment file (per spool object and segment),
  /// after its bytes were copied (or the segment linked) into
  /// <dir>/quarantine/. Runs on the thread that read the segment (open(),
  /// for_each(), inspect(), the eviction thread); no lock of the spool is
  /// held; must not throw. Default: none (still counted and quarantined).
  std::function<void(const spool_damage&)> on_damage;
};

/// Checks options without touching the disk. Returns "" when valid, else
/// "<field>: <problem> (allowed: <range>)"; *field (if given) receives the
/// field's name.
BATCHQ_CXX_API std::string validate(const spool_options& o, std::string* field = nullptr);

/// Why open() failed.
enum class spool_errc : int {
  ok = 0,
  invalid_options = 1,  ///< validate() said no; message names the field
  locked = 2,           ///< another owner holds LOCK; retry after it exits
  io_error = 3,         ///< a system call failed; message has the path and strerror
};

/// Details of an open() failure.
struct spool_error {
  spool_errc code = spool_errc::ok;
  int sys_errno = 0;    ///< errno of the failing call (EWOULDBLOCK for locked), else 0
  std::string message;  ///< e.g. `spool: cannot open directory "/x": No such file or directory`
};

/// Counters and positions. Counters count events seen by this spool object
/// since open(); positions are seqs.
struct spool_stats {
  std::uint64_t appended = 0;        ///< records appended
  std::uint64_t appended_bytes = 0;  ///< payload bytes of those records
  std::uint64_t bytes = 0;           ///< bytes of all segment files now (what max_bytes bounds)
  std::uint64_t segments = 0;        ///< segment files now
  std::uint64_t last_seq = 0;        ///< highest seq appended so far (also by earlier owners); 0 = none
  std::uint64_t acked_seq = 0;       ///< the mark M: every seq <= M is acknowledged
  /// Every record with seq <= durable_seq is on stable storage (fsynced, with
  /// its directory entry) or acknowledged. 0 until the first sync.
  std::uint64_t durable_seq = 0;
  std::uint64_t corrupt_records = 0;  ///< damaged regions found (checksum, header), middle or tail
  std::uint64_t torn_records = 0;     ///< incomplete records at a file's end (crash mid-write)
  std::uint64_t skipped_bytes = 0;    ///< bytes of damaged regions skipped in the middle of a file
  std::uint64_t truncated_bytes = 0;  ///< bytes of damaged tails cut off (or, read-only, ignored)
  std::uint64_t dropped_by_cap = 0;        ///< unacknowledged records evicted by max_bytes
  std::uint64_t dropped_by_cap_bytes = 0;  ///< their payload bytes
  std::uint64_t write_errors = 0;     ///< appends that failed on a system call (ENOSPC, EIO, EFBIG...)
  int last_write_errno = 0;           ///< errno of the latest failed append, 0 if none
  std::uint64_t rejected_too_large = 0;  ///< appends refused: record larger than 1 GiB or max_bytes / 2
  std::uint64_t syncs = 0;            ///< sync() calls that reached stable storage
  /// Failed fsync/fdatasync. After the first, durable_seq no longer moves for
  /// this object: Linux may have dropped the pages it could not write, so a
  /// later successful fsync proves nothing about them.
  std::uint64_t sync_errors = 0;
  /// Other failed file operations: writing ACK, deleting a segment, reading a
  /// segment (evicted or listed), an unreadable ACK file (replays from 0).
  std::uint64_t io_errors = 0;
  /// Files written to <dir>/quarantine/ (damaged segments or tails).
  std::uint64_t quarantined = 0;
  /// Reading work: bytes the reader examined (read, checksummed or searched)
  /// across all scans. Linear in the bytes read: at most a small constant
  /// times the segment sizes, whatever the files hold (for tests).
  std::uint64_t scan_work = 0;
};

/// What a segment file holds (spool::inspect(), batchq-replay list).
struct spool_segment_info {
  std::string file;              ///< file name inside the directory
  std::uint64_t first_seq = 0;   ///< from the name
  std::uint64_t last_seq = 0;    ///< highest valid record's seq, 0 if none
  std::uint64_t file_bytes = 0;  ///< size of the file
  std::uint64_t records = 0;     ///< valid records
  std::uint64_t acked = 0;       ///< ... of which acknowledged
  std::uint64_t dropped_kind = 0;  ///< ... of which kind == dropped
  std::uint64_t payload_bytes = 0;
  std::uint64_t corrupt_records = 0;
  std::uint64_t torn_records = 0;
  bool active = false;  ///< the segment this object is appending to
};

/// A spool directory, opened for appending (one owner) or read-only.
///
/// Thread-safety: every member function may be called from any thread
/// concurrently, except that the object must not be destroyed (or close()d)
/// while another call is running. Movable (the moved-from object may only be
/// destroyed or assigned to), not copyable.
class BATCHQ_CXX_API spool {
 public:
  /// Opens (and, unless read_only, locks) the spool in o.dir. Checks the
  /// options and the directory, takes LOCK, reads ACK, lists the segments,
  /// scans the newest one (cutting a damaged tail) and starts the background
  /// thread (when fsync is interval or max_bytes is set). Older segments are
  /// checked when read. Returns nullptr on failure with *error filled in (if
  /// given): the path and strerror for system errors; for a locked spool the
  /// pid written by its owner. Blocking (disk I/O): call it at start-up, not
  /// on a request path.
  static std::unique_ptr<spool> open(const spool_options& o, spool_error* error = nullptr);

  /// close().
  ~spool();
  spool(spool&&) noexcept;
  spool& operator=(spool&&) noexcept;
  spool(const spool&) = delete;
  spool& operator=(const spool&) = delete;

  /// Appends one record: `payload` (any bytes, may be empty) with `meta`,
  /// both copied. On return the record is in the page cache (survives the
  /// process being killed). Returns its seq (>= 1), or 0 if nothing was
  /// written, with *error (if given) set to the errno: ENOSPC, EDQUOT, EFBIG,
  /// EIO... from the write (counted in write_errors; the spool stays usable
  /// and the next append tries again), E2BIG (record larger than 1 GiB or
  /// half of max_bytes, counted in rejected_too_large), EROFS (read_only), EBADF
  /// (closed), ENOMEM, EOVERFLOW (the files claim seqs near 2^62: only a
  /// crafted or corrupt spool can). A failed write leaves no partial record behind.
  /// Cost: one pwritev() and a CRC of the bytes; when a segment is full, also
  /// one file creation. Eviction work (max_bytes) is handed to the background
  /// thread, so append never reads old segments. Thread-safe; appends are
  /// serialized by a mutex held for the pwritev only.
  std::uint64_t append(std::string_view payload, const record_meta& meta = {}, int* error = nullptr) noexcept;

  /// Acknowledges the records with seq in [first_seq, last_seq] (delivered, or
  /// dropped and reported by the owner). Seqs may come in any order and more
  /// than once; seqs not appended yet are ignored. When the mark advances, ACK
  /// is rewritten (no fsync; sync() makes it durable) and segments wholly
  /// below the mark are deleted. Returns false if that I/O failed (counted in
  /// io_errors; the in-memory mark still moved) or the spool is read-only. Thread-safe; does file I/O:
  /// call it from the sending thread, not from enqueue.
  bool ack(std::uint64_t first_seq, std::uint64_t last_seq) noexcept;
  /// ack(1, seq): everything up to seq.
  bool ack_upto(std::uint64_t seq) noexcept;
  /// For the replay tool: ack_upto(seq), then sync(), so that what was
  /// delivered is durably gone before the tool reports success.
  bool remove_upto(std::uint64_t seq) noexcept;

  /// Makes every record appended so far, and the mark, durable: fdatasync of
  /// the segments written since the last sync, fsync of ACK (via its
  /// temporary file) and of the directory. Advances stats().durable_seq and
  /// returns true on success. Blocking (milliseconds on a disk): never call it
  /// from enqueue. Thread-safe; concurrent calls are serialized.
  bool sync() noexcept;

  /// Runs the pending evictions now on the calling thread (calling on_evict)
  /// and waits for one the background thread is running, so that when it
  /// returns every eviction triggered before the call is done. For tests and
  /// hosts that want the drop reports at a known point. Thread-safe.
  void maintain() noexcept;

  /// Calls fn(record) for every valid record that is not acknowledged, in seq
  /// order, with seq >= from_seq, until fn returns false. Sees the records
  /// appended before the call; damage met on the way is counted (once per
  /// segment). Returns the number of records passed to fn. Runs on the calling
  /// thread with no lock of the spool held during fn (fn may call append or
  /// ack). Streams each segment: a fixed buffer plus one record in memory.
  /// Thread-safe; blocking.
  std::size_t for_each(const std::function<bool(const spool_record&)>& fn, std::uint64_t from_seq = 0) const;
  /// for_each, copied into a vector (at most max_records).
  std::vector<spool_entry> read_all(std::size_t max_records = std::numeric_limits<std::size_t>::max()) const;

  /// Reads every segment and describes it, including acknowledged records.
  /// Blocking; thread-safe.
  std::vector<spool_segment_info> inspect() const;

  /// A snapshot of the counters. Thread-safe, cheap (a mutex, no I/O).
  spool_stats stats() const noexcept;
  /// The options given to open().
  const spool_options& options() const noexcept;

  /// Stops the background thread, runs pending evictions (on_evict on this
  /// thread), syncs unless fsync is never, deletes the segments when
  /// everything is acknowledged, and releases LOCK. Idempotent; afterwards
  /// append() fails with EBADF and reads return nothing. Not concurrent with
  /// other calls on the same object.
  void close() noexcept;

 private:
  struct impl;  // lib/spool.cpp
  explicit spool(std::unique_ptr<impl> p) noexcept;
  std::unique_ptr<impl> impl_;
};

}  // namespace batchq

#endif  // BATCHQ_SPOOL_HPP
