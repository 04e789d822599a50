// lib/spool_io.hpp - the POSIX file helpers of the spool, private to the
// compiled library: whole writes and reads that retry EINTR, error texts,
// the directory listing, and the copy that cuts a damaged tail.
#ifndef BATCHQ_LIB_SPOOL_IO_HPP
#define BATCHQ_LIB_SPOOL_IO_HPP

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace batchq {
namespace detail {

/// strerror_r's text for errno e.
std::string errno_text(int e);
/// s in double quotes, for messages.
std::string quoted(const std::string& s);
/// dir + "/" + name (no doubled slash).
std::string join_path(const std::string& dir, const char* name);

/// Writes all of iov[0..count) at off (the iovecs are consumed). Returns 0 or
/// an errno (EIO if the kernel wrote nothing).
int pwritev_all(int fd, iovec* iov, int count, off_t off) noexcept;
/// Writes all of [data, data + size) at the file position. Returns 0 or an errno.
int write_all(int fd, const void* data, std::size_t size) noexcept;
/// Reads exactly n bytes at off. Returns 0, an errno, or EIO when the file
/// ends first (it shrank under the reader).
int pread_all(int fd, void* data, std::size_t n, std::uint64_t off) noexcept;

/// A file descriptor closed by its destructor; the open segment files are
/// shared (std::shared_ptr) by the appender, sync() and readers, so that a
/// file stays open while any of them uses it.
struct seg_file {
  explicit seg_file(int f) noexcept : fd(f) {}
  ~seg_file();
  seg_file(const seg_file&) = delete;
  seg_file& operator=(const seg_file&) = delete;
  int fd;
};

/// The segment files (regular files named by segment_name) in the directory
/// dfd: (first seq, size) sorted by first seq. False with *err set if the
/// directory cannot be read.
bool list_segments(int dfd, std::vector<std::pair<std::uint64_t, std::uint64_t>>* out, int* err);

/// Replaces file `name` in dir_fd by a new file (mode 0600) holding its first
/// `keep` bytes: copied into <name>.tmp, fdatasync'ed when `durable`, renamed
/// over `name`; keep == 0 removes it. A hard link to the old file keeps all
/// of it. Returns 0 or an errno (the temporary file is removed on failure).
int replace_with_prefix(int dir_fd, const std::string& name, std::uint64_t keep, bool durable);

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_LIB_SPOOL_IO_HPP
