#include "spool_io.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "spool_record.hpp"

namespace batchq {
namespace detail {
namespace {

constexpr std::size_t kCopyChunk = std::size_t{256} << 10;

// strerror_r is the XSI (int) or the GNU (char*) variant depending on feature
// macros; overloads take whichever we got.
[[maybe_unused]] const char* pick_error_text(int rc, const char* buf) noexcept {
  return rc == 0 ? buf : "Unknown error";
}
[[maybe_unused]] const char* pick_error_text(const char* text, const char*) noexcept {
  return text;
}

}  // namespace

std::string errno_text(int e) {
  char buf[128];
  buf[0] = '\0';
  return pick_error_text(strerror_r(e, buf, sizeof buf), buf);
}

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

std::string join_path(const std::string& dir, const char* name) {
  return (!dir.empty() && dir.back() == '/') ? dir + name : dir + "/" + name;
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

int pread_all(int fd, void* data, std::size_t n, std::uint64_t off) noexcept {
  auto* p = static_cast<char*>(data);
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, p + got, n - got, static_cast<off_t>(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (r == 0) return EIO;
    got += static_cast<std::size_t>(r);
  }
  return 0;
}

seg_file::~seg_file() {
  if (fd >= 0) ::close(fd);
}

bool list_segments(int dfd, std::vector<std::pair<std::uint64_t, std::uint64_t>>* out, int* err) {
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

int replace_with_prefix(int dir_fd, const std::string& name, std::uint64_t keep, bool durable) {
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
  std::string chunk(kCopyChunk, '\0');
  int err = 0;
  for (std::uint64_t off = 0; off < keep && err == 0;) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kCopyChunk, keep - off));
    const ssize_t got = ::pread(in, &chunk[0], want, static_cast<off_t>(off));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      err = got < 0 ? errno : EIO;
      break;
    }
    err = write_all(out, chunk.data(), static_cast<std::size_t>(got));
    off += static_cast<std::uint64_t>(got);
  }
  if (err == 0 && durable && ::fdatasync(out) != 0) err = errno;
  ::close(in);
  if (::close(out) != 0 && err == 0) err = errno;
  if (err == 0 && ::renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) err = errno;
  if (err != 0) ::unlinkat(dir_fd, tmp.c_str(), 0);
  return err;
}

}  // namespace detail
}  // namespace batchq
