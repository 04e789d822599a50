// The spool itself: segment files of checksummed records in one directory,
// one owner, acknowledgement, eviction, sync. The format and its rationale
// are in docs/spool-format.md; the parts live beside this file: the record
// codec (spool_record), the reader and its damage rules (spool_reader), the
// acknowledged set (spool_ack_set) and the POSIX helpers (spool_io).
#include "batchq/spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "spool_ack_set.hpp"
#include "spool_io.hpp"
#include "spool_reader.hpp"
#include "spool_record.hpp"

namespace batchq {
namespace {

using detail::ack_set;
using detail::errno_text;
using detail::join_path;
using detail::quoted;
using detail::scan_result;
using detail::seg_file;
using detail::segment_name;

constexpr std::size_t kMinSegment = 4096;
constexpr std::uint32_t kMaxRecord = detail::record_max_bytes;
constexpr std::uint64_t kMaxSeq = detail::max_seq;
constexpr const char* kLockName = "LOCK";
constexpr const char* kAckName = "ACK";
constexpr const char* kAckTmpName = "ACK.tmp";
constexpr const char* kQuarantineName = "quarantine";

struct segment {
  std::uint64_t first_seq = 0;
  std::uint64_t end_seq = 0;       // one past the last seq it can hold; 0 while being appended to
  std::uint64_t bytes = 0;         // (mu) file size as far as we know
  std::shared_ptr<seg_file> file;  // (mu) while this is the active segment
  std::atomic<bool> counted{false};  // damage already added to the stats
};
using seg_ptr = std::shared_ptr<segment>;

}  // namespace

// ---------------------------------------------------------------------------

std::string validate(const spool_options& o, std::string* field) {
  auto fail = [&](const char* f, const std::string& msg) {
    if (field) *field = f;
    return std::string(f) + ": " + msg;
  };
  if (o.dir.empty()) return fail("dir", "is empty (allowed: the path of an existing directory)");
  if (o.mode != spool_mode::dead_letter && o.mode != spool_mode::write_ahead)
    return fail("mode", "is " + std::to_string(static_cast<int>(o.mode)) + " (allowed: dead_letter, write_ahead)");
  if (o.segment_bytes < kMinSegment || o.segment_bytes > kMaxRecord)
    return fail("segment_bytes", "is " + std::to_string(o.segment_bytes) + " (allowed: " +
                                     std::to_string(kMinSegment) + " .. " + std::to_string(kMaxRecord) + ")");
  if (o.max_bytes != 0 && o.max_bytes < 2 * static_cast<std::uint64_t>(o.segment_bytes))
    return fail("max_bytes", "is " + std::to_string(o.max_bytes) +
                                 " (allowed: 0 for unbounded, or at least 2 * segment_bytes = " +
                                 std::to_string(2 * static_cast<std::uint64_t>(o.segment_bytes)) + ")");
  if (o.fsync != fsync_policy::always && o.fsync != fsync_policy::interval && o.fsync != fsync_policy::never)
    return fail("fsync", "is " + std::to_string(static_cast<int>(o.fsync)) + " (allowed: always, interval, never)");
  if (o.fsync == fsync_policy::interval && o.fsync_interval.count() < 1)
    return fail("fsync_interval", "is " + std::to_string(o.fsync_interval.count()) + " ms (allowed: 1 ms or more)");
  return {};
}

struct spool::impl {
  spool_options opt;
  int dir_fd = -1;
  int lock_fd = -1;

  // Append state, the segment list and the eviction queue. Held for the
  // pwritev of an append; never while reading a segment or calling back.
  mutable std::mutex mu;
  std::condition_variable cv;  // worker wake-up and eviction completion
  std::deque<seg_ptr> segs;    // oldest first; `active` is the last one when set
  seg_ptr active;
  std::uint64_t next_seq = 1;
  std::uint64_t disk_bytes = 0;
  std::vector<std::shared_ptr<seg_file>> unsynced;  // sealed segments written since the last sync
  std::vector<std::uint64_t> inherited;             // segments found at open, not fsynced by us yet
  bool dir_dirty = false;                           // a name was created or removed since the last sync
  std::deque<seg_ptr> evict_q;
  int evicting = 0;  // 0 or 1: an eviction is running
  bool stop = false;
  bool closed = false;
  std::thread worker;

  // Acknowledgement state. Lock order: ack_mu before mu.
  mutable std::mutex ack_mu;
  ack_set acked;
  std::uint64_t written_mark = 0;  // the mark in the ACK file
  std::uint64_t durable_mark = 0;  // ... and fsynced

  std::mutex sync_mu;          // one sync() at a time
  bool durable_stuck = false;  // (sync_mu) an fsync failed

  std::atomic<std::uint64_t> last_seq{0}, mark_pub{0}, durable_seq{0};
  std::atomic<std::uint64_t> appended{0}, appended_bytes{0}, corrupt{0}, torn{0}, skipped{0}, truncated{0},
      dropped_cap{0}, dropped_cap_bytes{0}, write_errors{0}, rejected{0}, syncs{0}, sync_errors{0}, io_errors{0},
      quarantined{0}, scan_work{0};
  std::atomic<int> last_write_errno{0};

  ~impl() {
    if (lock_fd >= 0) ::close(lock_fd);
    if (dir_fd >= 0) ::close(dir_fd);
  }

  std::string path(const char* name) const { return join_path(opt.dir, name); }

  // ---- acknowledgement ----

  bool write_ack_locked(bool durable) {
    unsigned char b[detail::ack_file_bytes];
    detail::encode_ack(acked.mark, b);
    const int fd = ::openat(dir_fd, kAckTmpName, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return false;
    bool ok = detail::write_all(fd, b, sizeof b) == 0 && (!durable || ::fdatasync(fd) == 0);
    ok = ::close(fd) == 0 && ok;
    ok = ok && ::renameat(dir_fd, kAckTmpName, dir_fd, kAckName) == 0;
    if (ok) written_mark = acked.mark;
    return ok;
  }

  // Called with ack_mu held after the acked set changed.
  bool after_ack_locked(std::uint64_t old_mark) {
    mark_pub.store(acked.mark, std::memory_order_relaxed);
    if (acked.mark == old_mark || opt.read_only) return true;
    bool ok = write_ack_locked(false);
    std::vector<seg_ptr> gone;
    {
      std::lock_guard<std::mutex> lk(mu);
      while (!segs.empty() && segs.front() != active && segs.front()->end_seq - 1 <= acked.mark) {
        disk_bytes -= segs.front()->bytes;
        gone.push_back(std::move(segs.front()));
        segs.pop_front();
      }
      if (!gone.empty()) dir_dirty = true;
    }
    for (const auto& s : gone)
      if (::unlinkat(dir_fd, segment_name(s->first_seq).c_str(), 0) != 0 && errno != ENOENT) ok = false;
    if (!ok) io_errors.fetch_add(1, std::memory_order_relaxed);
    return ok;
  }
  bool ack(std::uint64_t first, std::uint64_t last) {
    if (opt.read_only) return false;
    {
      std::lock_guard<std::mutex> lk(mu);
      if (closed) return false;  // LOCK is released: the files may have a new owner
    }
    last = std::min(last, last_seq.load(std::memory_order_acquire));
    if (first == 0) first = 1;
    if (first > last) return true;
    std::lock_guard<std::mutex> lk(ack_mu);
    const std::uint64_t old = acked.mark;
    acked.add(first, last);
    return after_ack_locked(old);
  }

  // Adds what a first full scan of a segment found: damage to the stats,
  // seqs without a valid record to the acknowledged set.
  void account_scan(segment& s, const scan_result& r) {
    if (s.counted.exchange(true)) return;
    count_damage(s.first_seq, r);
    if (r.gaps.empty()) return;
    std::lock_guard<std::mutex> lk(ack_mu);
    const std::uint64_t old = acked.mark;
    for (const auto& g : r.gaps) acked.add(g.first, g.second);
    after_ack_locked(old);
  }

  // ---- damage ----

  // Hard-links segment `name` into <dir>/quarantine/ (created 0700) as
  // <name>.damaged (.1, .2 ... if taken by another file); a link to the same
  // file already there is reused. Returns the path, or "" with *why.
  std::string quarantine_link(const std::string& name, std::string* why) {
    if (::mkdirat(dir_fd, kQuarantineName, 0700) != 0 && errno != EEXIST) {
      *why = "cannot create " + quoted(path(kQuarantineName)) + ": " + errno_text(errno);
      return {};
    }
    const int qfd = ::openat(dir_fd, kQuarantineName, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (qfd < 0) {
      *why = "cannot open " + quoted(path(kQuarantineName)) + ": " + errno_text(errno);
      return {};
    }
    struct stat seg_st;
    if (::fstatat(dir_fd, name.c_str(), &seg_st, AT_SYMLINK_NOFOLLOW) != 0) {
      *why = "cannot stat " + quoted(path(name.c_str())) + ": " + errno_text(errno);
      ::close(qfd);
      return {};
    }
    std::string result;
    for (int i = 0; i < 1000 && result.empty(); ++i) {
      const std::string target = name + ".damaged" + (i == 0 ? "" : "." + std::to_string(i));
      struct stat q_st;
      if (::fstatat(qfd, target.c_str(), &q_st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (q_st.st_ino == seg_st.st_ino && q_st.st_dev == seg_st.st_dev) result = target;  // kept already
        continue;
      }
      if (::linkat(dir_fd, name.c_str(), qfd, target.c_str(), 0) == 0) {
        quarantined.fetch_add(1, std::memory_order_relaxed);
        result = target;
      } else if (errno != EEXIST) {
        *why = "cannot link " + quoted(path(name.c_str())) + " into " + quoted(path(kQuarantineName)) + ": " +
               errno_text(errno);
        break;
      }
    }
    ::close(qfd);
    if (result.empty()) {
      if (why->empty()) *why = "no free name in " + quoted(path(kQuarantineName));
      io_errors.fetch_add(1, std::memory_order_relaxed);
      return {};
    }
    return path(kQuarantineName) + "/" + result;
  }

  // Counts what a scan of segment `first_seq` found and, if it found damage,
  // keeps the segment in quarantine (writable spools) and reports it.
  void count_damage(std::uint64_t first_seq, const scan_result& r, std::string kept = {}, std::string why = {}) {
    corrupt.fetch_add(r.corrupt, std::memory_order_relaxed);
    torn.fetch_add(r.torn, std::memory_order_relaxed);
    skipped.fetch_add(r.skipped_bytes, std::memory_order_relaxed);
    truncated.fetch_add(r.tail_bytes, std::memory_order_relaxed);
    if (!r.damaged()) return;
    const std::string name = segment_name(first_seq);
    if (kept.empty() && why.empty()) {
      if (opt.read_only)
        why = "opened read-only";
      else
        kept = quarantine_link(name, &why);
    }
    spool_damage d;
    d.file = path(name.c_str());
    d.offset = r.first_damage;
    d.bytes = r.skipped_bytes + r.tail_bytes;
    d.regions = r.corrupt + r.torn;
    d.tail = r.tail_bytes != 0;
    d.torn = r.torn != 0;
    d.quarantine = kept;
    d.message = "spool: damaged data in " + quoted(d.file) + " at offset " + std::to_string(d.offset) + " (" +
                std::to_string(d.regions) + (d.regions == 1 ? " region, " : " regions, ") +
                std::to_string(d.bytes) + " bytes" +
                (d.torn ? ", the last record cut short (a crash while writing it?)" : "") +
                (r.corrupt != 0 ? ", failing the record checksum or format" : "") + "): " +
                (kept.empty() ? "could not be kept in quarantine (" + why + "), left in place"
                              : "kept in " + quoted(kept) + " (batchq-replay quarantine " + opt.dir + ")");
    if (opt.on_damage) {
      try {
        opt.on_damage(d);
      } catch (...) {
      }
    }
  }

  ack_set ack_snapshot() const {
    std::lock_guard<std::mutex> lk(ack_mu);
    return acked;
  }

  // ---- appending ----

  // Starts a new segment whose first record will be next_seq. mu held.
  int rotate_locked() {
    const int fd = ::openat(dir_fd, segment_name(next_seq).c_str(),
                            O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return errno;
    auto s = std::make_shared<segment>();
    s->first_seq = next_seq;
    s->file = std::make_shared<seg_file>(fd);
    s->counted = true;
    if (active) {
      active->end_seq = next_seq;
      if (opt.fsync != fsync_policy::never) unsynced.push_back(active->file);
      active->file.reset();
    }
    active = s;
    segs.push_back(std::move(s));
    dir_dirty = true;
    return 0;
  }

  std::uint64_t append(std::string_view payload, const record_meta& m, int* error) noexcept {
    auto fail = [&](int e) {
      if (error) *error = e;
      return std::uint64_t{0};
    };
    if (opt.read_only) return fail(EROFS);
    // A record longer than segment_bytes gets a segment of its own (below).
    const std::size_t elen = std::min(m.last_error.size(), spool_max_error_bytes);
    const std::uint64_t len = detail::record_length(elen, payload.size());
    if (len > kMaxRecord || (opt.max_bytes != 0 && len > opt.max_bytes / 2)) {
      rejected.fetch_add(1, std::memory_order_relaxed);
      return fail(E2BIG);
    }
    // Everything but seq is checksummed before taking the lock (the CRC's
    // order allows it: docs/spool-format.md).
    detail::record_encoder rec = detail::encode_begin(m, payload);

    bool wake = false;
    std::unique_lock<std::mutex> lk(mu);
    if (closed) return fail(EBADF);
    // Seqs above kMaxSeq read back as damage: a spool whose files claim seqs
    // that high (only a crafted or corrupt file can) takes no more records.
    if (next_seq > kMaxSeq) return fail(EOVERFLOW);
    if (!active || (active->bytes != 0 && active->bytes + len > opt.segment_bytes)) {
      if (const int e = rotate_locked()) {
        write_errors.fetch_add(1, std::memory_order_relaxed);
        last_write_errno.store(e, std::memory_order_relaxed);
        return fail(e);
      }
    }
    if (opt.max_bytes != 0) {
      // The victims leave the list now (the cap holds at once); reading them
      // for on_evict and deleting them is the background thread's work.
      while (disk_bytes + len > opt.max_bytes && segs.front() != active) {
        disk_bytes -= segs.front()->bytes;
        evict_q.push_back(std::move(segs.front()));
        segs.pop_front();
        wake = true;
      }
    }
    const std::uint64_t seq = next_seq;
    detail::encode_finish(&rec, seq);
    iovec iov[3] = {{rec.header, sizeof rec.header},
                    {const_cast<char*>(m.last_error.data()), rec.error_len},
                    {const_cast<char*>(payload.data()), payload.size()}};
    const auto off = static_cast<off_t>(active->bytes);
    const int e = detail::pwritev_all(active->file->fd, iov, 3, off);
    if (e != 0) {
      // Take back a partial record; if even that fails, the next append
      // overwrites it at the same offset.
      if (::ftruncate(active->file->fd, off) != 0) {
      }
      write_errors.fetch_add(1, std::memory_order_relaxed);
      last_write_errno.store(e, std::memory_order_relaxed);
      lk.unlock();
      if (wake) cv.notify_all();
      return fail(e);
    }
    active->bytes += len;
    disk_bytes += len;
    next_seq = seq + 1;
    last_seq.store(seq, std::memory_order_release);
    lk.unlock();
    appended.fetch_add(1, std::memory_order_relaxed);
    appended_bytes.fetch_add(payload.size(), std::memory_order_relaxed);
    if (wake) cv.notify_all();
    if (error) *error = 0;
    return seq;
  }

  // ---- sync ----

  bool sync() noexcept {
    if (opt.read_only) return true;
    std::lock_guard<std::mutex> sl(sync_mu);
    std::vector<std::shared_ptr<seg_file>> files;
    std::vector<std::uint64_t> old;
    std::uint64_t upto = 0;
    bool dir = false;
    {
      std::lock_guard<std::mutex> lk(mu);
      if (closed) return false;
      files.swap(unsynced);
      old.swap(inherited);
      upto = next_seq - 1;
      if (active && upto > durable_seq.load(std::memory_order_relaxed)) files.push_back(active->file);
      dir = dir_dirty;
      dir_dirty = false;
    }
    bool ok = true;
    for (const auto& f : files)
      if (::fdatasync(f->fd) != 0) ok = false;
    // A previous owner may have left its last records in the page cache only
    // (fsync never, or killed): durable_seq covers them only once we flushed.
    for (const std::uint64_t first : old) {
      const int fd = ::openat(dir_fd, segment_name(first).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;  // acknowledged or evicted meanwhile
      if (::fdatasync(fd) != 0) ok = false;
      ::close(fd);
    }
    std::uint64_t mark_written = 0;
    bool ack_rewritten = false;
    if (ok) {
      std::lock_guard<std::mutex> lk(ack_mu);
      if (acked.mark != durable_mark) {
        ok = write_ack_locked(true);
        ack_rewritten = ok;
        mark_written = acked.mark;
      }
    }
    if (ok && (dir || ack_rewritten) && ::fsync(dir_fd) != 0) ok = false;
    if (!ok) {
      // Linux reports a writeback error once and may drop the pages, so a
      // later fsync that succeeds proves nothing about them: durable_seq
      // stops here for the life of this object.
      sync_errors.fetch_add(1, std::memory_order_relaxed);
      durable_stuck = true;
      std::lock_guard<std::mutex> lk(mu);
      dir_dirty = true;
      return false;
    }
    if (ack_rewritten) {
      std::lock_guard<std::mutex> lk(ack_mu);
      durable_mark = std::max(durable_mark, mark_written);
    }
    if (!durable_stuck && upto > durable_seq.load(std::memory_order_relaxed))
      durable_seq.store(upto, std::memory_order_relaxed);
    syncs.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // ---- eviction ----

  void evict(const seg_ptr& s) noexcept {
    try {
      const ack_set snap = ack_snapshot();
      std::uint64_t n = 0, bytes = 0;
      scan_result r;
      const detail::record_fn report = [&](const spool_record& rec) {
        if (snap.contains(rec.seq)) return;
        ++n;
        bytes += rec.payload.size();
        if (opt.on_evict) {
          try {
            opt.on_evict(rec);
          } catch (...) {
          }
        }
      };
      const int e = detail::read_segment(dir_fd, s->first_seq, nullptr, 0, s->end_seq, &r, report);
      scan_work.fetch_add(r.work, std::memory_order_relaxed);
      if (e == 0) {
        if (!s->counted.exchange(true)) count_damage(s->first_seq, r);
        dropped_cap.fetch_add(n, std::memory_order_relaxed);
        dropped_cap_bytes.fetch_add(bytes, std::memory_order_relaxed);
      } else if (e != ENOENT) {
        io_errors.fetch_add(1, std::memory_order_relaxed);
      }
      if (::unlinkat(dir_fd, segment_name(s->first_seq).c_str(), 0) != 0 && errno != ENOENT)
        io_errors.fetch_add(1, std::memory_order_relaxed);
      {
        std::lock_guard<std::mutex> lk(mu);
        dir_dirty = true;
      }
      std::lock_guard<std::mutex> lk(ack_mu);
      const std::uint64_t old = acked.mark;
      acked.add(s->first_seq, s->end_seq - 1);
      after_ack_locked(old);
    } catch (...) {
      io_errors.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Runs queued evictions, one at a time across threads so that on_evict
  // calls never overlap and come in seq order; mu held by `lk` on entry/exit.
  void run_evictions(std::unique_lock<std::mutex>& lk) {
    while (!evict_q.empty()) {
      if (evicting != 0) {
        cv.wait(lk);
        continue;
      }
      seg_ptr s = std::move(evict_q.front());
      evict_q.pop_front();
      ++evicting;
      lk.unlock();
      evict(s);
      lk.lock();
      --evicting;
      cv.notify_all();
    }
  }

  void maintain() noexcept {
    std::unique_lock<std::mutex> lk(mu);
    run_evictions(lk);
    cv.wait(lk, [&] { return evicting == 0 && evict_q.empty(); });
  }

  void worker_loop() noexcept {
    using clk = std::chrono::steady_clock;
    const bool timed = opt.fsync == fsync_policy::interval;
    auto next_sync = clk::now() + opt.fsync_interval;
    std::unique_lock<std::mutex> lk(mu);
    while (!stop) {
      if (!evict_q.empty()) {
        run_evictions(lk);
        continue;
      }
      if (timed && clk::now() >= next_sync) {
        lk.unlock();
        sync();
        lk.lock();
        next_sync = clk::now() + opt.fsync_interval;
        continue;
      }
      if (timed)
        cv.wait_until(lk, next_sync);
      else
        cv.wait(lk);
    }
  }

  // ---- reading ----

  struct seg_view {
    seg_ptr seg;
    std::shared_ptr<seg_file> file;  // set for the active segment
    std::uint64_t limit = 0;
    std::uint64_t end_seq = 0;
  };

  std::vector<seg_view> snapshot() const {
    std::vector<seg_view> v;
    std::lock_guard<std::mutex> lk(mu);
    if (closed) return v;
    v.reserve(segs.size());
    for (const auto& s : segs) v.push_back(seg_view{s, s->file, s->bytes, s->end_seq});
    return v;
  }

  // Scans each segment: skip(v) says whether to pass it by; on_record(v, rec)
  // sees its records; done(v, r) gets the scan's result and says whether to
  // go on.
  template <class S, class R, class D>
  void read_each(S&& skip, R&& on_record, D&& done) {
    for (const auto& v : snapshot()) {
      if (skip(v)) continue;
      scan_result r;
      const int e = detail::read_segment(dir_fd, v.seg->first_seq, v.file.get(), v.limit, v.end_seq, &r,
                                 [&](const spool_record& rec) { on_record(v, rec); });
      scan_work.fetch_add(r.work, std::memory_order_relaxed);
      if (e == ENOENT) continue;  // acknowledged or evicted meanwhile
      if (e != 0) {
        io_errors.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (!done(v, r)) break;
    }
  }

  // ---- opening ----

  void read_ack_file() {
    const int fd = ::openat(dir_fd, kAckName, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return;
    unsigned char b[detail::ack_file_bytes];
    const ssize_t n = ::pread(fd, b, sizeof b, 0);
    ::close(fd);
    // An unreadable mark means replaying more, never losing anything.
    std::uint64_t mark = 0;
    if (n < 0 || !detail::decode_ack(b, static_cast<std::size_t>(n), &mark)) {
      io_errors.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    acked.mark = written_mark = durable_mark = mark;
  }
};

// ---------------------------------------------------------------------------

spool::spool(std::unique_ptr<impl> p) noexcept : impl_(std::move(p)) {}
spool::spool(spool&&) noexcept = default;
spool& spool::operator=(spool&& other) noexcept {
  if (this != &other) {
    close();
    impl_ = std::move(other.impl_);
  }
  return *this;
}
spool::~spool() { close(); }

std::unique_ptr<spool> spool::open(const spool_options& o, spool_error* error) {
  auto fail = [&](spool_errc code, int e, const std::string& msg) -> std::unique_ptr<spool> {
    if (error) *error = spool_error{code, e, "spool: " + msg};
    return nullptr;
  };
  std::string field;
  const std::string bad = validate(o, &field);
  if (!bad.empty()) return fail(spool_errc::invalid_options, 0, "invalid options: " + bad);
  try {
    auto p = std::make_unique<impl>();
    p->opt = o;
    impl& s = *p;
    s.dir_fd = ::open(o.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s.dir_fd < 0) {
      const int e = errno;
      return fail(spool_errc::io_error, e, "cannot open directory " + quoted(o.dir) + ": " + errno_text(e));
    }
    struct stat st;
    if (::fstat(s.dir_fd, &st) != 0) {
      const int e = errno;
      return fail(spool_errc::io_error, e, "cannot stat directory " + quoted(o.dir) + ": " + errno_text(e));
    }
    if (!o.read_only) {
      if (st.st_uid != ::geteuid())
        return fail(spool_errc::io_error, EPERM,
                    "directory " + quoted(o.dir) + " is owned by uid " + std::to_string(st.st_uid) +
                        ", not by this process (uid " + std::to_string(::geteuid()) + ")");
      if ((st.st_mode & 022) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return fail(spool_errc::io_error, EPERM,
                    "directory " + quoted(o.dir) + " is writable by group or others (mode " + mode +
                        "); its owner alone must be able to change the spool (chmod go-w)");
      }
      s.lock_fd = ::openat(s.dir_fd, kLockName, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (s.lock_fd < 0) {
        const int e = errno;
        return fail(spool_errc::io_error, e,
                    "cannot create lock file " + quoted(s.path(kLockName)) + ": " + errno_text(e));
      }
      if (::flock(s.lock_fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        if (e != EWOULDBLOCK)
          return fail(spool_errc::io_error, e, "cannot lock " + quoted(s.path(kLockName)) + ": " + errno_text(e));
        char pid[32] = {};
        const ssize_t n = ::pread(s.lock_fd, pid, sizeof pid - 1, 0);
        std::string holder = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : std::string();
        while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
        return fail(spool_errc::locked, e,
                    quoted(o.dir) + " is locked by another owner (pid " + (holder.empty() ? "unknown" : holder) +
                        ", flock on " + quoted(s.path(kLockName)) + "): " + errno_text(e) +
                        "; it can be opened once that owner closes it or exits");
      }
      const std::string pid = std::to_string(::getpid()) + "\n";
      if (::ftruncate(s.lock_fd, 0) != 0 || ::pwrite(s.lock_fd, pid.data(), pid.size(), 0) < 0)
        s.io_errors.fetch_add(1, std::memory_order_relaxed);  // only the error message of a rival suffers
      ::unlinkat(s.dir_fd, kAckTmpName, 0);
    }
    s.read_ack_file();

    std::vector<std::pair<std::uint64_t, std::uint64_t>> found;
    int e = 0;
    if (!detail::list_segments(s.dir_fd, &found, &e))
      return fail(spool_errc::io_error, e, "cannot list directory " + quoted(o.dir) + ": " + errno_text(e));

    std::uint64_t next = std::max<std::uint64_t>(1, s.acked.mark + 1);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;
    bool newest_scanned = false;
    // Only the newest segment is read now: it is the one a crash can leave
    // torn, and it gives the next seq. Older ones are checked when read.
    if (!found.empty()) {
      auto& last = found.back();
      scan_result r;
      const int re = detail::read_segment(s.dir_fd, last.first, nullptr, 0, 0, &r, {});
      s.scan_work.fetch_add(r.work, std::memory_order_relaxed);
      if (re != 0 && !(re == ENOENT && o.read_only))
        return fail(spool_errc::io_error, re,
                    "cannot read " + quoted(s.path(segment_name(last.first).c_str())) + ": " + errno_text(re));
      gaps = r.gaps;
      std::string kept, why;
      if (r.damaged() && !o.read_only) kept = s.quarantine_link(segment_name(last.first), &why);
      // A damaged tail is cut (appends go to a new segment anyway; the cut
      // spares later readers the search), but only once the whole file is
      // kept in quarantine: the cut copies the good part to a new file that
      // replaces the name, so the kept file stays whole.
      if (r.tail_bytes != 0 && !o.read_only && !kept.empty()) {
        const std::string name = segment_name(last.first);
        const int ce = detail::replace_with_prefix(s.dir_fd, name, r.valid_end, o.fsync != fsync_policy::never);
        if (ce != 0)
          return fail(spool_errc::io_error, ce,
                      "cannot cut the damaged tail of " + quoted(s.path(name.c_str())) + ": " + errno_text(ce));
        last.second = r.valid_end;
      }
      s.count_damage(last.first, r, kept, why);
      next = std::max({next, last.first, r.last_seq + 1});
      if (last.second == 0 && !o.read_only) {
        ::unlinkat(s.dir_fd, segment_name(last.first).c_str(), 0);
        found.pop_back();
      } else {
        newest_scanned = true;
      }
    }
    for (std::size_t i = 0; i < found.size(); ++i) {
      auto seg = std::make_shared<segment>();
      seg->first_seq = found[i].first;
      seg->bytes = found[i].second;
      // Read-only, the newest segment may still be growing under its owner.
      seg->end_seq = i + 1 < found.size() ? found[i + 1].first : o.read_only ? 0 : next;
      s.disk_bytes += seg->bytes;
      if (!o.read_only) s.inherited.push_back(seg->first_seq);
      s.segs.push_back(std::move(seg));
    }
    if (newest_scanned) s.segs.back()->counted = true;
    s.next_seq = next;
    s.last_seq = next - 1;
    s.dir_dirty = !o.read_only;  // a cut tail, a removed empty segment, a LOCK
    // Whatever lies below the oldest segment is gone: acknowledged or evicted.
    s.acked.raise_mark(s.segs.empty() ? next - 1 : s.segs.front()->first_seq - 1);
    for (const auto& g : gaps) s.acked.add(g.first, g.second);
    {
      std::lock_guard<std::mutex> lk(s.ack_mu);
      s.after_ack_locked(s.written_mark);
    }
    if (!o.read_only && (o.fsync == fsync_policy::interval || o.max_bytes != 0)) {
      impl* raw = p.get();
      s.worker = std::thread([raw] { raw->worker_loop(); });
    }
    return std::unique_ptr<spool>(new spool(std::move(p)));
  } catch (const std::exception& ex) {
    return fail(spool_errc::io_error, ENOMEM, std::string("cannot open ") + quoted(o.dir) + ": " + ex.what());
  }
}

std::uint64_t spool::append(std::string_view payload, const record_meta& meta, int* error) noexcept {
  if (!impl_) {
    if (error) *error = EBADF;
    return 0;
  }
  return impl_->append(payload, meta, error);
}

bool spool::ack(std::uint64_t first_seq, std::uint64_t last_seq) noexcept {
  if (!impl_) return false;
  try {
    return impl_->ack(first_seq, last_seq);
  } catch (...) {
    impl_->io_errors.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
}

bool spool::ack_upto(std::uint64_t seq) noexcept { return ack(1, seq); }

bool spool::remove_upto(std::uint64_t seq) noexcept {
  const bool ok = ack_upto(seq);
  return sync() && ok;
}

bool spool::sync() noexcept { return impl_ && impl_->sync(); }

void spool::maintain() noexcept {
  if (impl_) impl_->maintain();
}

std::size_t spool::for_each(const std::function<bool(const spool_record&)>& fn, std::uint64_t from_seq) const {
  if (!impl_) return 0;
  impl& s = *impl_;
  ack_set snap = s.ack_snapshot();
  std::size_t n = 0;
  bool go = true;
  s.read_each(
      [&](const impl::seg_view& v) {
        return v.end_seq != 0 && (v.end_seq - 1 <= snap.mark || v.end_seq <= from_seq);
      },
      [&](const impl::seg_view&, const spool_record& rec) {
        if (!go || rec.seq < from_seq || snap.contains(rec.seq)) return;
        ++n;
        go = fn(rec);
      },
      [&](const impl::seg_view& v, const scan_result& r) {
        if (!v.file) s.account_scan(*v.seg, r);  // the active segment is never damaged
        return go;
      });
  return n;
}

std::vector<spool_entry> spool::read_all(std::size_t max_records) const {
  std::vector<spool_entry> out;
  if (max_records == 0) return out;
  for_each([&](const spool_record& r) {
    out.emplace_back(r);
    return out.size() < max_records;
  });
  return out;
}

std::vector<spool_segment_info> spool::inspect() const {
  std::vector<spool_segment_info> out;
  if (!impl_) return out;
  impl& s = *impl_;
  const ack_set snap = s.ack_snapshot();
  spool_segment_info info;
  s.read_each([](const impl::seg_view&) { return false; },
              [&](const impl::seg_view&, const spool_record& rec) {
                ++info.records;
                info.payload_bytes += rec.payload.size();
                if (snap.contains(rec.seq)) ++info.acked;
                if (rec.kind == record_kind::dropped) ++info.dropped_kind;
              },
              [&](const impl::seg_view& v, const scan_result& r) {
                info.file = segment_name(v.seg->first_seq);
                info.first_seq = v.seg->first_seq;
                info.file_bytes = r.valid_end + r.tail_bytes;
                info.active = static_cast<bool>(v.file);
                info.last_seq = r.last_seq;
                info.corrupt_records = r.corrupt;
                info.torn_records = r.torn;
                if (!v.file) s.account_scan(*v.seg, r);
                out.push_back(std::move(info));
                info = spool_segment_info{};
                return true;
              });
  return out;
}

spool_stats spool::stats() const noexcept {
  spool_stats st;
  if (!impl_) return st;
  const impl& s = *impl_;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    st.bytes = s.disk_bytes;
    st.segments = s.segs.size();
  }
  constexpr auto r = std::memory_order_relaxed;
  st.appended = s.appended.load(r);
  st.appended_bytes = s.appended_bytes.load(r);
  st.last_seq = s.last_seq.load(r);
  st.acked_seq = s.mark_pub.load(r);
  st.durable_seq = s.durable_seq.load(r);
  st.corrupt_records = s.corrupt.load(r);
  st.torn_records = s.torn.load(r);
  st.skipped_bytes = s.skipped.load(r);
  st.truncated_bytes = s.truncated.load(r);
  st.dropped_by_cap = s.dropped_cap.load(r);
  st.dropped_by_cap_bytes = s.dropped_cap_bytes.load(r);
  st.write_errors = s.write_errors.load(r);
  st.last_write_errno = s.last_write_errno.load(r);
  st.rejected_too_large = s.rejected.load(r);
  st.syncs = s.syncs.load(r);
  st.sync_errors = s.sync_errors.load(r);
  st.io_errors = s.io_errors.load(r);
  st.quarantined = s.quarantined.load(r);
  st.scan_work = s.scan_work.load(r);
  return st;
}

const spool_options& spool::options() const noexcept {
  static const spool_options none;
  return impl_ ? impl_->opt : none;
}

void spool::close() noexcept {
  if (!impl_) return;
  impl& s = *impl_;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.closed) return;
    s.stop = true;
  }
  s.cv.notify_all();
  if (s.worker.joinable()) s.worker.join();
  s.maintain();
  if (!s.opt.read_only) {
    if (s.opt.fsync != fsync_policy::never) s.sync();
    std::lock_guard<std::mutex> al(s.ack_mu);
    std::vector<seg_ptr> gone;
    {
      std::lock_guard<std::mutex> lk(s.mu);
      // Everything delivered: leave an empty directory (ACK keeps the seqs
      // growing for the next owner).
      if (s.acked.mark >= s.next_seq - 1) {
        gone.assign(s.segs.begin(), s.segs.end());
        s.segs.clear();
        s.active.reset();
        s.disk_bytes = 0;
      }
    }
    bool changed = !gone.empty();
    for (const auto& g : gone) ::unlinkat(s.dir_fd, segment_name(g->first_seq).c_str(), 0);
    if (s.acked.mark != s.written_mark) changed = s.write_ack_locked(s.opt.fsync != fsync_policy::never) || changed;
    if (changed && s.opt.fsync != fsync_policy::never) ::fsync(s.dir_fd);
  }
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.closed = true;
    s.active.reset();
    s.segs.clear();
    s.unsynced.clear();
  }
  if (s.lock_fd >= 0) ::close(s.lock_fd);  // releases the flock
  s.lock_fd = -1;
}

}  // namespace batchq
