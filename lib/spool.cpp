// The spool: segment files of checksummed records. The format, the damage
// rules and the choice of pwritev over mmap are documented in spool.hpp.
#include "batchq/spool.hpp"

#include <dirent.h>
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
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "crc32c.hpp"

namespace batchq {
namespace {

constexpr std::size_t kHdr = spool_record_header_bytes;
constexpr std::uint32_t kMaxRecord = std::uint32_t{1} << 30;
constexpr std::size_t kMinSegment = 4096;
// Highest seq a file may claim (segment name, record header, ACK mark). Real
// spools never get near it (2^62 appends); a larger value can only come from a
// damaged or planted file, and accepting it would wrap next_seq (and the mark)
// around 2^64: acknowledgements stop working, seqs repeat.
constexpr std::uint64_t kMaxSeq = std::uint64_t{1} << 62;
constexpr std::uint32_t kAckMagic = 0x31415142u;  // "BQA1"
constexpr std::size_t kAckBytes = 16;             // magic, crc32c of the mark, mark
constexpr const char* kLockName = "LOCK";
constexpr const char* kAckName = "ACK";
constexpr const char* kAckTmpName = "ACK.tmp";
constexpr const char* kQuarantineName = "quarantine";

void put16(unsigned char* p, std::uint16_t v) noexcept {
  p[0] = static_cast<unsigned char>(v);
  p[1] = static_cast<unsigned char>(v >> 8);
}
void put32(unsigned char* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void put64(unsigned char* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::uint16_t get16(const unsigned char* p) noexcept { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }
std::uint32_t get32(const unsigned char* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
std::uint64_t get64(const unsigned char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

// strerror_r is the XSI (int) or the GNU (char*) variant depending on feature
// macros; overloads take whichever we got.
[[maybe_unused]] const char* pick_error_text(int rc, const char* buf) noexcept {
  return rc == 0 ? buf : "Unknown error";
}
[[maybe_unused]] const char* pick_error_text(const char* text, const char*) noexcept { return text; }
std::string errno_text(int e) {
  char buf[128];
  buf[0] = '\0';
  return pick_error_text(strerror_r(e, buf, sizeof buf), buf);
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }
std::string join_path(const std::string& dir, const char* name) {
  return (!dir.empty() && dir.back() == '/') ? dir + name : dir + "/" + name;
}

std::string segment_name(std::uint64_t first_seq) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "spool-%020llu.seg", static_cast<unsigned long long>(first_seq));
  return buf;
}

bool parse_segment_name(const char* name, std::uint64_t* first_seq) noexcept {
  if (std::strlen(name) != 30 || std::strncmp(name, "spool-", 6) != 0 || std::strcmp(name + 26, ".seg") != 0)
    return false;
  std::uint64_t v = 0;
  for (int i = 6; i < 26; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    const auto d = static_cast<std::uint64_t>(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (v == 0 || v > kMaxSeq) return false;
  *first_seq = v;
  return true;
}

int pwritev_all(int fd, iovec* iov, int count, off_t off) noexcept {
  while (count > 0) {
    const ssize_t w = ::pwritev(fd, iov, count, off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    off += w;
    auto left = static_cast<std::size_t>(w);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

int write_all(int fd, const void* data, std::size_t size) noexcept {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t w = ::write(fd, p, size);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    size -= static_cast<std::size_t>(w);
  }
  return 0;
}

// ---- reading ---------------------------------------------------------------

enum class parse_status { ok, incomplete, bad };

constexpr std::size_t kWindow = std::size_t{256} << 10;  // the reader's fixed buffer

// Reads one segment file through a fixed window, plus at most one record that
// is longer than the window. Counts every byte it reads, checksums or
// searches in `work`, and the part of it spent on candidates that turned out
// damaged in `failed_work`.
class seg_reader {
 public:
  seg_reader(int fd, std::uint64_t size) : fd_(fd), size_(size) {}
  std::uint64_t size() const noexcept { return size_; }
  int error() const noexcept { return err_; }
  std::uint64_t work = 0;
  std::uint64_t failed_work = 0;

  // [off, off + n) in memory (n <= kWindow, off + n <= size), or nullptr on a
  // read error. Valid until the next call.
  const unsigned char* at(std::uint64_t off, std::size_t n) {
    if (off >= win_off_ && off + n <= win_off_ + win_.size()) return bytes(win_) + (off - win_off_);
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kWindow, size_ - off));
    if (!fill(&win_, off, want)) {
      win_.clear();
      return nullptr;
    }
    win_off_ = off;
    return bytes(win_);
  }

  // The next offset >= from holding byte c, or size() if none.
  std::uint64_t find(std::uint64_t from, unsigned char c) {
    while (from < size_) {
      const unsigned char* p = nullptr;
      std::size_t n = 0;
      if (from >= win_off_ && from < win_off_ + win_.size()) {  // what the window holds first
        p = bytes(win_) + (from - win_off_);
        n = static_cast<std::size_t>(win_off_ + win_.size() - from);
      } else {
        n = static_cast<std::size_t>(std::min<std::uint64_t>(kWindow, size_ - from));
        p = at(from, n);
        if (p == nullptr) return size_;
      }
      const void* hit = std::memchr(p, c, n);
      if (hit != nullptr) {
        const auto k = static_cast<std::size_t>(static_cast<const unsigned char*>(hit) - p);
        work += k + 1;
        return from + k;
      }
      work += n;
      from += n;
    }
    return size_;
  }

  // Checks the record at off (seq in (prev, end_seq), end_seq 0 = open-ended)
  // and, when it is valid, makes *rec view it (valid until the next call).
  parse_status check(std::uint64_t off, std::uint64_t prev, std::uint64_t end_seq, spool_record* rec,
                     std::uint32_t* length) {
    unsigned char magic[4];
    put32(magic, spool_record_magic);
    const std::uint64_t avail = size_ - off;
    const std::size_t head = static_cast<std::size_t>(std::min<std::uint64_t>(avail, kHdr));
    const unsigned char* p = at(off, head);
    if (p == nullptr) return parse_status::bad;
    work += head;
    if (head < 4) return std::memcmp(p, magic, head) == 0 ? parse_status::incomplete : parse_status::bad;
    if (std::memcmp(p, magic, 4) != 0) return parse_status::bad;
    if (head < 12) return parse_status::incomplete;
    const std::uint32_t len = get32(p + 8);
    if (len < kHdr || len > kMaxRecord) return parse_status::bad;
    if (len > avail) return parse_status::incomplete;
    // The cheap header checks come before the checksum.
    const std::uint64_t seq = get64(p + 12);
    const std::uint16_t elen = get16(p + 30);
    if (seq == 0 || seq > kMaxSeq || seq <= prev || (end_seq != 0 && seq >= end_seq) || kHdr + elen > len)
      return parse_status::bad;
    unsigned char hdr[kHdr];
    std::memcpy(hdr, p, kHdr);
    std::uint32_t crc = 0;
    const unsigned char* whole = nullptr;
    if (len <= kWindow) {
      whole = at(off, len);
      if (whole == nullptr) return parse_status::bad;
      crc = detail::crc32c(whole + 20, len - 20);
    } else if (!crc_stream(off + 20, len - 20, &crc)) {
      return parse_status::bad;
    }
    work += len;
    crc = detail::crc32c(hdr + 8, 12, crc);
    if (crc != get32(hdr + 4)) {
      failed_work += len;
      return parse_status::bad;
    }
    if (whole == nullptr) {  // a record longer than the window: read it whole, once it is known good
      if (!fill(&big_, off, len)) return parse_status::bad;
      whole = bytes(big_);
    }
    rec->seq = seq;
    rec->time_ms = static_cast<std::int64_t>(get64(hdr + 20));
    rec->attempts = get16(hdr + 28);
    rec->kind = static_cast<record_kind>(hdr[32]);
    rec->reason = hdr[33];
    const char* text = reinterpret_cast<const char*>(whole);
    rec->last_error = std::string_view(text + kHdr, elen);
    rec->payload = std::string_view(text + kHdr + elen, len - kHdr - elen);
    *length = len;
    return parse_status::ok;
  }

 private:
  static const unsigned char* bytes(const std::string& s) noexcept {
    return reinterpret_cast<const unsigned char*>(s.data());
  }

  bool fill(std::string* buf, std::uint64_t off, std::size_t n) {
    buf->resize(n);
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::pread(fd_, &(*buf)[got], n - got, static_cast<off_t>(off + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        err_ = errno;
        return false;
      }
      if (r == 0) {  // the file shrank under us
        err_ = EIO;
        return false;
      }
      got += static_cast<std::size_t>(r);
    }
    work += n;
    return true;
  }

  bool crc_stream(std::uint64_t off, std::uint64_t n, std::uint32_t* crc) {
    std::string chunk;
    std::uint32_t c = 0;
    while (n > 0) {
      const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(kWindow, n));
      if (!fill(&chunk, off, k)) return false;
      c = detail::crc32c(chunk.data(), k, c);
      off += k;
      n -= k;
    }
    *crc = c;
    return true;
  }

  int fd_;
  std::uint64_t size_;
  int err_ = 0;
  std::string win_;
  std::uint64_t win_off_ = 0;
  std::string big_;
};

struct scan_result {
  std::uint64_t records = 0;
  std::uint64_t last_seq = 0;  // 0: no valid record
  std::uint64_t corrupt = 0;
  std::uint64_t torn = 0;
  std::uint64_t skipped_bytes = 0;
  std::uint64_t tail_bytes = 0;  // damaged tail, starting at `valid_end`
  std::uint64_t valid_end = 0;
  std::uint64_t first_damage = 0;  // offset of the first damaged region (when corrupt + torn > 0)
  std::uint64_t work = 0;          // bytes examined
  int read_error = 0;              // a read failed: what follows was not examined (and is not damage)
  std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;  // seqs of the range with no valid record
  bool damaged() const noexcept { return corrupt + torn > 0; }
};

// Reads a segment holding seqs in [first_seq, end_seq) (end_seq 0: unknown)
// and calls on_record for each valid record. A record only counts as valid if
// its seq is above the previous one's: that keeps a stale record image inside
// a payload from being taken for the real thing after a resync. Linear: the
// work spent on candidates that fail their checksum is capped at 8 times the
// file's size (plus 1 MiB); past that, the rest of the file is one damaged
// region.
template <class F>
scan_result scan_segment(seg_reader& rd, std::uint64_t first_seq, std::uint64_t end_seq, F&& on_record) {
  scan_result r;
  const std::uint64_t size = rd.size();
  const std::uint64_t budget = 8 * size + (std::uint64_t{1} << 20);
  std::uint64_t prev = first_seq - 1;
  unsigned char magic[4];
  put32(magic, spool_record_magic);
  std::uint64_t off = 0;
  while (off < size) {
    spool_record rec;
    std::uint32_t len = 0;
    const parse_status st = rd.check(off, prev, end_seq, &rec, &len);
    if (rd.error() != 0) break;
    if (st == parse_status::ok) {
      if (rec.seq > prev + 1) r.gaps.emplace_back(prev + 1, rec.seq - 1);
      prev = rec.seq;
      r.last_seq = rec.seq;
      ++r.records;
      on_record(rec);
      off += len;
      continue;
    }
    // Damaged at `off`: look for the next offset that holds a valid record.
    std::uint64_t next = size;
    for (std::uint64_t pos = off + 1; pos + kHdr <= size && rd.failed_work <= budget; ++pos) {
      pos = rd.find(pos, magic[0]);
      if (pos + kHdr > size || rd.error() != 0) break;
      spool_record cand;
      std::uint32_t cand_len = 0;
      if (rd.check(pos, prev, end_seq, &cand, &cand_len) == parse_status::ok) {
        next = pos;
        break;
      }
      if (rd.error() != 0) break;
    }
    if (rd.error() != 0) break;
    if (!r.damaged()) r.first_damage = off;
    if (next < size) {
      ++r.corrupt;
      r.skipped_bytes += next - off;
      off = next;
      continue;
    }
    if (st == parse_status::incomplete)
      ++r.torn;
    else
      ++r.corrupt;
    r.tail_bytes = size - off;
    off = size;
    break;
  }
  r.read_error = rd.error();
  r.valid_end = r.tail_bytes != 0 ? size - r.tail_bytes : off;
  r.work = rd.work;
  if (r.read_error == 0 && end_seq != 0 && prev + 1 < end_seq) r.gaps.emplace_back(prev + 1, end_seq - 1);
  return r;
}

// ---- files ----------------------------------------------------------------

// An open segment file, shared by the appender, sync() and readers so that it
// stays open while any of them uses it.
struct seg_file {
  explicit seg_file(int f) noexcept : fd(f) {}
  ~seg_file() {
    if (fd >= 0) ::close(fd);
  }
  seg_file(const seg_file&) = delete;
  seg_file& operator=(const seg_file&) = delete;
  int fd;
};

struct segment {
  std::uint64_t first_seq = 0;
  std::uint64_t end_seq = 0;       // one past the last seq it can hold; 0 while being appended to
  std::uint64_t bytes = 0;         // (mu) file size as far as we know
  std::shared_ptr<seg_file> file;  // (mu) while this is the active segment
  std::atomic<bool> counted{false};  // damage already added to the stats
};
using seg_ptr = std::shared_ptr<segment>;

// Scans a segment: through `file` up to `limit` (the active one, whose tail
// may be growing), else opened by name up to its current end. Returns the
// errno of opening it (ENOENT: gone meanwhile), else 0 with *out filled.
template <class F>
int read_segment(int dir_fd, const segment& s, const std::shared_ptr<seg_file>& file, std::uint64_t limit,
                 std::uint64_t end_seq, scan_result* out, F&& on_record) {
  int fd = -1;
  bool own = false;
  std::uint64_t size = limit;
  if (file) {
    fd = file->fd;
  } else {
    fd = ::openat(dir_fd, segment_name(s.first_seq).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno;
    own = true;
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      return e;
    }
    size = static_cast<std::uint64_t>(st.st_size);
  }
  try {
    seg_reader rd(fd, size);
    *out = scan_segment(rd, s.first_seq, end_seq, on_record);
  } catch (...) {
    if (own) ::close(fd);
    throw;
  }
  if (own) ::close(fd);
  return out->read_error;
}

// Acknowledged seqs: everything <= mark, plus disjoint, non-adjacent ranges
// above mark + 1 (acks that arrived out of order, damaged seqs).
struct ack_set {
  std::uint64_t mark = 0;
  std::map<std::uint64_t, std::uint64_t> ranges;  // first -> last

  bool contains(std::uint64_t seq) const noexcept {
    if (seq <= mark) return true;
    auto it = ranges.upper_bound(seq);
    if (it == ranges.begin()) return false;
    --it;
    return seq <= it->second;
  }

  void add(std::uint64_t first, std::uint64_t last) {
    if (last <= mark || first > last) return;
    first = std::max(first, mark + 1);
    auto it = ranges.upper_bound(first);
    if (it != ranges.begin()) {
      auto p = std::prev(it);
      if (p->second + 1 >= first) {
        first = p->first;
        last = std::max(last, p->second);
        it = ranges.erase(p);
      }
    }
    while (it != ranges.end() && it->first <= last + 1) {
      last = std::max(last, it->second);
      it = ranges.erase(it);
    }
    if (first <= mark + 1) {
      mark = last;
    } else {
      ranges.emplace(first, last);
    }
  }

  void raise_mark(std::uint64_t m) {
    if (m <= mark) return;
    mark = m;
    while (!ranges.empty() && ranges.begin()->first <= mark + 1) {
      mark = std::max(mark, ranges.begin()->second);
      ranges.erase(ranges.begin());
    }
  }
};

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

  // Replaces segment `name` by a new file holding its first `keep` bytes
  // (copied, then renamed over it): a hard link to the old file keeps all of
  // it. Returns 0 or an errno.
  int replace_with_prefix(const std::string& name, std::uint64_t keep) {
    const std::string tmp = name + ".tmp";
    if (keep == 0) return ::unlinkat(dir_fd, name.c_str(), 0) == 0 ? 0 : errno;
    const int in = ::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0) return errno;
    const int out = ::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
      const int e = errno;
      ::close(in);
      return e;
    }
    std::string chunk(kWindow, '\0');
    int err = 0;
    for (std::uint64_t off = 0; off < keep && err == 0;) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kWindow, keep - off));
      const ssize_t got = ::pread(in, &chunk[0], want, static_cast<off_t>(off));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        err = got < 0 ? errno : EIO;
        break;
      }
      err = write_all(out, chunk.data(), static_cast<std::size_t>(got));
      off += static_cast<std::uint64_t>(got);
    }
    if (err == 0 && opt.fsync != fsync_policy::never && ::fdatasync(out) != 0) err = errno;
    ::close(in);
    if (::close(out) != 0 && err == 0) err = errno;
    if (err == 0 && ::renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) err = errno;
    if (err != 0) ::unlinkat(dir_fd, tmp.c_str(), 0);
    return err;
  }

  // ---- acknowledgement ----

  bool write_ack_locked(bool durable) {
    unsigned char b[kAckBytes];
    put32(b, kAckMagic);
    put64(b + 8, acked.mark);
    put32(b + 4, detail::crc32c(b + 8, 8));
    const int fd = ::openat(dir_fd, kAckTmpName, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return false;
    bool ok = write_all(fd, b, sizeof b) == 0 && (!durable || ::fdatasync(fd) == 0);
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
    const std::size_t elen = std::min(m.last_error.size(), spool_max_error_bytes);
    const std::uint64_t len = kHdr + elen + static_cast<std::uint64_t>(payload.size());
    // A record longer than segment_bytes gets a segment of its own (below).
    if (len > kMaxRecord || (opt.max_bytes != 0 && len > opt.max_bytes / 2)) {
      rejected.fetch_add(1, std::memory_order_relaxed);
      return fail(E2BIG);
    }
    // Everything but seq is checksummed before taking the lock (see the format).
    unsigned char h[kHdr];
    put32(h, spool_record_magic);
    put32(h + 8, static_cast<std::uint32_t>(len));
    put64(h + 20, static_cast<std::uint64_t>(m.time_ms));
    put16(h + 28, m.attempts);
    put16(h + 30, static_cast<std::uint16_t>(elen));
    h[32] = static_cast<unsigned char>(m.kind);
    h[33] = m.reason;
    put16(h + 34, 0);
    std::uint32_t crc = detail::crc32c(h + 20, kHdr - 20);
    crc = detail::crc32c(m.last_error.data(), elen, crc);
    crc = detail::crc32c(payload.data(), payload.size(), crc);

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
    put64(h + 12, seq);
    crc = detail::crc32c(h + 8, 12, crc);
    put32(h + 4, crc);
    iovec iov[3] = {{h, kHdr},
                    {const_cast<char*>(m.last_error.data()), elen},
                    {const_cast<char*>(payload.data()), payload.size()}};
    const auto off = static_cast<off_t>(active->bytes);
    const int e = pwritev_all(active->file->fd, iov, 3, off);
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
      const int e = read_segment(dir_fd, *s, nullptr, 0, s->end_seq, &r, [&](const spool_record& rec) {
        if (snap.contains(rec.seq)) return;
        ++n;
        bytes += rec.payload.size();
        if (opt.on_evict) {
          try {
            opt.on_evict(rec);
          } catch (...) {
          }
        }
      });
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
      const int e = read_segment(dir_fd, *v.seg, v.file, v.limit, v.end_seq, &r,
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

  static bool list_segments(int dfd, std::vector<std::pair<std::uint64_t, std::uint64_t>>* out, int* err) {
    const int fd = ::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      *err = errno;
      return false;
    }
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      *err = errno;
      ::close(fd);
      return false;
    }
    errno = 0;
    while (const dirent* e = ::readdir(d)) {
      std::uint64_t first = 0;
      struct stat st;
      if (parse_segment_name(e->d_name, &first) && ::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISREG(st.st_mode))
        out->emplace_back(first, static_cast<std::uint64_t>(st.st_size));
      errno = 0;
    }
    *err = errno;
    ::closedir(d);
    std::sort(out->begin(), out->end());
    return *err == 0;
  }

  void read_ack_file() {
    const int fd = ::openat(dir_fd, kAckName, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return;
    unsigned char b[kAckBytes];
    const ssize_t n = ::pread(fd, b, sizeof b, 0);
    ::close(fd);
    // An unreadable mark means replaying more, never losing anything.
    if (n != static_cast<ssize_t>(sizeof b) || get32(b) != kAckMagic || get32(b + 4) != detail::crc32c(b + 8, 8) ||
        get64(b + 8) > kMaxSeq) {
      io_errors.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    acked.mark = written_mark = durable_mark = get64(b + 8);
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
    if (!impl::list_segments(s.dir_fd, &found, &e))
      return fail(spool_errc::io_error, e, "cannot list directory " + quoted(o.dir) + ": " + errno_text(e));

    std::uint64_t next = std::max<std::uint64_t>(1, s.acked.mark + 1);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;
    bool newest_scanned = false;
    // Only the newest segment is read now: it is the one a crash can leave
    // torn, and it gives the next seq. Older ones are checked when read.
    if (!found.empty()) {
      auto& last = found.back();
      auto seg = std::make_shared<segment>();
      seg->first_seq = last.first;
      scan_result r;
      const int re = read_segment(s.dir_fd, *seg, nullptr, 0, 0, &r, [](const spool_record&) {});
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
        const int ce = s.replace_with_prefix(name, r.valid_end);
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

segment_file_scan scan_segment_file(const std::string& path, const std::function<void(const spool_record&)>& fn) {
  segment_file_scan out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    out.error = errno;
    return out;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    out.error = errno;
    ::close(fd);
    return out;
  }
  try {
    seg_reader rd(fd, static_cast<std::uint64_t>(st.st_size));
    const scan_result r = scan_segment(rd, 1, 0, [&](const spool_record& rec) {
      if (fn) fn(rec);
    });
    out.file_bytes = rd.size();
    out.records = r.records;
    out.damaged_regions = r.corrupt + r.torn;
    out.damaged_bytes = r.skipped_bytes + r.tail_bytes;
    out.first_damage = r.first_damage;
    out.work = r.work;
    out.error = r.read_error;
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return out;
}

}  // namespace batchq
