#include "spool_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "crc32c.hpp"
#include "spool_io.hpp"

namespace batchq {
namespace detail {
namespace {

constexpr std::size_t kHdr = record_header_bytes;
constexpr std::size_t kWindow = read_window_bytes;

const unsigned char* bytes(const std::string& s) noexcept {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

const unsigned char* seg_reader::at(std::uint64_t off, std::size_t n) {
  if (off >= win_off_ && off + n <= win_off_ + win_.size()) return bytes(win_) + (off - win_off_);
  const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kWindow, size_ - off));
  if (!fill(&win_, off, want)) {
    win_.clear();
    return nullptr;
  }
  win_off_ = off;
  return bytes(win_);
}

std::uint64_t seg_reader::find(std::uint64_t from, unsigned char c) {
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

parse_status seg_reader::check(std::uint64_t off, std::uint64_t prev, std::uint64_t end_seq, spool_record* rec,
                               std::uint32_t* length) {
  const std::uint64_t avail = size_ - off;
  const std::size_t head = static_cast<std::size_t>(std::min<std::uint64_t>(avail, kHdr));
  const unsigned char* p = at(off, head);
  if (p == nullptr) return parse_status::bad;
  work += head;
  std::uint32_t len = 0;
  // The cheap header checks come before the checksum.
  const parse_status st = check_header(p, avail, prev, end_seq, &len);
  if (st != parse_status::ok) return st;
  unsigned char hdr[kHdr];  // `p` does not survive a refill of the window
  std::memcpy(hdr, p, kHdr);
  std::uint32_t crc = 0;
  const unsigned char* whole = nullptr;
  if (len <= kWindow) {
    whole = at(off, len);
    if (whole == nullptr) return parse_status::bad;
    crc = crc32c(whole + 20, len - 20);
  } else if (!crc_stream(off + 20, len - 20, &crc)) {
    return parse_status::bad;
  }
  work += len;
  if (!checksum_matches(hdr, crc)) {
    failed_work += len;
    return parse_status::bad;
  }
  if (whole == nullptr) {  // a record longer than the window: read it whole, once it is known good
    if (!fill(&big_, off, len)) return parse_status::bad;
    whole = bytes(big_);
  }
  view_record(whole, len, rec);
  *length = len;
  return parse_status::ok;
}

bool seg_reader::fill(std::string* buf, std::uint64_t off, std::size_t n) {
  buf->resize(n);
  if (const int e = pread_all(fd_, &(*buf)[0], n, off)) {  // EIO: the file shrank under us
    err_ = e;
    return false;
  }
  work += n;
  return true;
}

bool seg_reader::crc_stream(std::uint64_t off, std::uint64_t n, std::uint32_t* crc) {
  std::string chunk;
  std::uint32_t c = 0;
  while (n > 0) {
    const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(kWindow, n));
    if (!fill(&chunk, off, k)) return false;
    c = crc32c(chunk.data(), k, c);
    off += k;
    n -= k;
  }
  *crc = c;
  return true;
}

scan_result scan_segment(seg_reader& rd, std::uint64_t first_seq, std::uint64_t end_seq, const record_fn& on_record) {
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
      if (on_record) on_record(rec);
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

int read_segment(int dir_fd, std::uint64_t first_seq, const seg_file* file, std::uint64_t limit, std::uint64_t end_seq,
                 scan_result* out, const record_fn& on_record) {
  int fd = -1;
  bool own = false;
  std::uint64_t size = limit;
  if (file != nullptr) {
    fd = file->fd;
  } else {
    fd = ::openat(dir_fd, segment_name(first_seq).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
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
    *out = scan_segment(rd, first_seq, end_seq, on_record);
  } catch (...) {
    if (own) ::close(fd);
    throw;
  }
  if (own) ::close(fd);
  return out->read_error;
}

segment_file_scan scan_segment_file(const std::string& path, const record_fn& fn) {
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
    const scan_result r = scan_segment(rd, 1, 0, fn);
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

}  // namespace detail
}  // namespace batchq
