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
// ---------------------------------------------------------------------------
// Files. One directory per spool, owned by the process's user and not writable
// by group or others; everything in it is created with mode 0600:
//
//   LOCK                        flock(LOCK_EX|LOCK_NB) held while open; holds
//                               the owner's pid as text (for error messages)
//   ACK                         the acknowledgement mark (below); replaced
//                               atomically with rename(ACK.tmp, ACK)
//   spool-<first seq, 20 digits>.seg
//                               segment files: records back to back, each file
//                               at most `segment_bytes`; the name sorts by seq
//
// Record format (all integers little-endian, no padding, 36-byte header):
//
//   offset size  field
//        0    4  magic      0x31515342, the bytes "BSQ1" (format version 1)
//        4    4  crc        CRC-32C (Castagnoli, as iSCSI/ext4) - see below
//        8    4  length     whole record in bytes, header included (36..2^30)
//       12    8  seq        sequence number, 1 .. 2^62, strictly increasing
//       20    8  time_ms    record_meta::time_ms (signed, Unix ms)
//       28    2  attempts   record_meta::attempts
//       30    2  error_len  bytes of last_error that follow the header
//       32    1  kind       record_kind
//       33    1  reason     record_meta::reason (drop reason, 0 for entries)
//       34    2  flags      0; reserved, ignored by this reader
//       36    -  last_error (error_len bytes), then payload (the rest)
//
// The CRC covers every byte after itself: it is computed over bytes
// [20, length) and then continued over bytes [8, 20) (length and seq). Feeding
// those 12 bytes last lets append() checksum the payload before it takes its
// lock: only the seq is known late. A corrupt length or seq is caught like any
// other byte. Why this shape: the magic lets a reader resynchronise after a
// damaged record, the length bounds the read before the checksum is known,
// CRC-32C has hardware support (SSE4.2) and catches all burst errors up to 32
// bits, and the seq makes every record identifiable on its own (acks, replay,
// deduplication downstream) without counting records from the file start.
// A later incompatible format gets a new magic.
//
// Damage. A segment is read record by record. A record that is incomplete
// (length past the end of the file) or fails its checksum starts a damaged
// region; the reader searches forward for the next offset holding a valid
// record (magic, length, CRC and a seq above the last good one). If it finds
// one, the region in between is skipped and counted (corrupt_records,
// skipped_bytes) and reading continues; if not, the region is the file's tail:
// it is counted (torn_records when the record was merely incomplete, the
// signature of a crash mid-write; corrupt_records otherwise) and, when the
// spool is opened for writing and it is the newest segment, cut off with
// ftruncate. A reader never crashes and never loops: every step moves forward.
// Reading is linear and streamed: a segment is read through a fixed buffer
// (256 KiB) plus at most one record; a resync checks candidate offsets, and
// the bytes all failed candidates of one segment may cost are capped at 8
// times the segment's size, after which the rest of the file is treated as
// one damaged region (kept in quarantine, see below, never deleted). A record
// longer than 1 GiB is damage; a long candidate's checksum is computed through
// the buffer, and only a record that passes is read into memory.
//
// Every damaged region is counted (stats), reported (on_damage: file, offset,
// bytes) and kept: a writable spool hard-links the damaged segment into
// <dir>/quarantine/<segment name>.damaged before the segment can be deleted,
// and copies a damaged tail to <segment name>.tail-<offset> before cutting
// it. batchq-replay quarantine <dir> prints what still reads back from them.
// Seqs lost to damage count as acknowledged once their segment has been read,
// so they never hold back the mark.
//
// Sequence numbers and acknowledgement. Every successful append gets the next
// seq (a failed append consumes none). ACK holds a mark M: every record with
// seq <= M is acknowledged (delivered, or removed by the replay tool) and is
// never returned again. ack() accepts seqs in any order (batches can be
// delivered out of order); M advances over the contiguous prefix. Only M is
// persisted, so acks above a gap that is still open when the process dies are
// forgotten and those records replayed again: delivery is at-least-once. A
// segment whose seqs are all <= M is deleted.
//
// Write path: one pwritev() per append, no fsync. The record is in the page
// cache when append() returns, which survives the death of the process (kill
// -9, abort, OOM kill) but not of the machine; machine crashes are what the
// fsync policy is for, and it runs off the append path. Measured against the
// alternative, a memory-mapped segment (memcpy into a MAP_SHARED mapping of a
// file extended with posix_fallocate; the same durability against kill -9),
// with a throwaway program: 1,000,000 appends, one thread, 16 MiB segments,
// fsync never, ext4 on a virtio disk, 2-core Xeon VM that was also running
// other builds (load ~4), g++ 12 -O2; ns/append is the median of 5 runs (the
// range over repeated invocations), latencies are per call in the first run
// (steady_clock around each call):
//
//                      ns/append   p50      p99      p99.9     max
//   pwritev, 200 B       795-979   0.5 us   2.8-5 us  9-14 us  0.5-8 ms
//   mmap,    200 B       267-311   0.1 us   2.2 us    4.7 us   3.7-4 ms
//   pwritev, 1 KiB          1370   0.7 us   6.4 us    17 us    2.7 ms
//   mmap,    1 KiB          1044   0.3 us   5.4 us    24 us    9 ms
//
// The mapping saves about half a microsecond of system call per record; the
// tails are alike (page allocation, dirty-page throttling of a fast writer,
// segment rotation). Half a microsecond is nothing next to an nginx request,
// and pwritev is the one that fails cleanly: a full disk is ENOSPC from the
// call (counted, append() returns 0, the queue carries on in memory), whereas
// a store into a mapping whose blocks cannot be allocated is SIGBUS inside the
// nginx worker unless every segment is preallocated in full; a file cut short
// by a crash also needs no tail of zeroes told apart from data, and readers
// need no mapping. So: pwritev.
//
// Durability (fsync_policy). `always`: the owner calls sync() for each batch
// (e.g. on its sending thread before reporting it delivered); the spool never
// fsyncs by itself. `interval`: a background thread of the spool calls sync()
// every fsync_interval when something changed, and close() once more.
// `never`: only an explicit sync(). stats().durable_seq says how far records
// are known to be on stable storage.
//
// Ownership. One process (one object) per directory at a time: open() takes
// the LOCK with flock, which the kernel drops when the process dies, so a new
// owner (a new nginx worker after a reload) can take over once the old one is
// gone; until then open() fails with spool_errc::locked and the owner retries
// later. The new owner then replays what is left with for_each(). flock belongs to the open file description: do not open a spool and
// then fork() (nginx: open it in init_worker, not in the master).
// ---------------------------------------------------------------------------
#ifndef BATCHQ_SPOOL_HPP
#define BATCHQ_SPOOL_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "batchq/export.hpp"

namespace batchq {

/// What the spool is for. The files and the record format are the same in both
/// modes; the mode tells the owner (and the replay tool, via stats) how the
/// records are meant to be used.
enum class spool_mode : int {
  /// Records are dropped entries, kept until the replay tool removes them or
  /// the size cap evicts them. Nothing acknowledges them during normal work.
  dead_letter = 0,
  /// Records are accepted entries, appended before enqueue returns and
  /// acknowledged when delivered (or dropped); unacknowledged ones are
  /// replayed by the next owner.
  write_ahead = 1,
};

/// When written records are forced to stable storage (see the file comment).
enum class fsync_policy : int {
  always = 0,    ///< the owner calls sync() once per batch; the spool never does by itself
  interval = 1,  ///< a spool thread calls sync() every fsync_interval if anything changed
  never = 2,     ///< only close() / an explicit sync()
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

/// Bytes of the fixed record header (see the format above).
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

/// The damage found in one segment file (see "Damage" above).
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
  /// nothing cut, created or deleted; append/ack/sync fail. For listing and
  /// printing (batchq-replay list/print). Default false.
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

/// What scan_segment_file found in one file.
struct segment_file_scan {
  std::uint64_t file_bytes = 0;
  std::uint64_t records = 0;          ///< valid records (passed to fn)
  std::uint64_t damaged_regions = 0;  ///< damaged regions (as corrupt_records + torn_records)
  std::uint64_t damaged_bytes = 0;    ///< their bytes
  std::uint64_t first_damage = 0;     ///< offset of the first one
  std::uint64_t work = 0;             ///< bytes examined (see spool_stats::scan_work)
  int error = 0;                      ///< errno of opening or reading the file, else 0
};

/// Reads one file in the segment format on its own, outside any spool (a
/// quarantined segment): fn gets each valid record (seqs increasing; views
/// valid during the call), damage is counted. Streams: a fixed buffer plus
/// one record in memory; linear time. Thread-safe.
BATCHQ_CXX_API segment_file_scan scan_segment_file(const std::string& path,
                                                   const std::function<void(const spool_record&)>& fn = {});

// ---------------------------------------------------------------------------
// Text output: the reusable core of the `batchq-replay` tool.

/// True if `text` is exactly one JSON value (RFC 8259), whitespace around it
/// allowed, strings valid UTF-8; validate_json()'s rules (nesting deeper
/// than 1000 counts as invalid).
BATCHQ_CXX_API bool is_json(std::string_view text) noexcept;

/// Appends `text` to *out as a JSON string literal (quotes included).
/// Invalid UTF-8 sequences become U+FFFD; use this only where that loss is
/// acceptable (error texts), see to_json_line for payloads.
BATCHQ_CXX_API void append_json_string(std::string* out, std::string_view text);

/// Names a record_meta::reason value for output; nullptr = print the number.
using reason_namer = const char* (*)(std::uint8_t reason);

/// One record as one line of JSON (no newline at the end):
///   {"seq":12,"kind":"dropped","reason":0,"reason_name":"...","attempts":3,
///    "time_ms":1700000000000,"error":"HTTP 503","payload":...}
/// reason_name only with a namer. The payload goes in as JSON when it is
/// JSON (line breaks between tokens become spaces, so it stays one line);
/// otherwise as a string when it is valid UTF-8; otherwise, losslessly, as
/// "payload_base64":"...". Thread-safe.
BATCHQ_CXX_API std::string to_json_line(const spool_record& r, reason_namer namer = nullptr);

/// Options of replay_print.
struct replay_print_options {
  std::uint64_t from_seq = 0;  ///< first seq to print
  std::size_t limit = 0;       ///< at most this many records; 0 = all
  reason_namer namer = nullptr;
};

/// `batchq-replay list <dir>`: opens the spool read-only (works while an owner
/// holds it) and writes one line per segment (file, seqs, records, acked,
/// bytes, damage) and a total line to `out`. Returns 0, or 1 with the reason
/// written to `err`.
BATCHQ_CXX_API int replay_list(const std::string& dir, std::ostream& out, std::ostream& err);

/// `batchq-replay print <dir>`: the unacknowledged records as JSON lines
/// (to_json_line) on `out`. Read-only, as replay_list. Returns 0 or 1.
BATCHQ_CXX_API int replay_print(const std::string& dir, const replay_print_options& o, std::ostream& out,
                                std::ostream& err);

/// `batchq-replay quarantine <dir>`: every record that still reads back from
/// the files in <dir>/quarantine/ as JSON lines (to_json_line) on `out`, and
/// per file one line on `err`: records, damaged regions, bytes, first offset.
/// Read-only. Returns 0, or 1 if the folder cannot be read.
BATCHQ_CXX_API int replay_quarantine(const std::string& dir, const replay_print_options& o, std::ostream& out,
                                     std::ostream& err);

}  // namespace batchq

#endif  // BATCHQ_SPOOL_HPP
