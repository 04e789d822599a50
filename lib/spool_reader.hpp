// lib/spool_reader.hpp - reading segment files, private to the compiled
// library: a streamed reader over one file, the scan that finds the valid
// records and the damaged regions between them (the rules are in
// docs/spool-format.md, "Damage"), and scan_segment_file for a file outside
// any spool (batchq-replay quarantine).
#ifndef BATCHQ_LIB_SPOOL_READER_HPP
#define BATCHQ_LIB_SPOOL_READER_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "batchq/export.hpp"
#include "batchq/spool.hpp"
#include "spool_record.hpp"

namespace batchq {
namespace detail {

struct seg_file;

/// The reader's fixed buffer.
inline constexpr std::size_t read_window_bytes = std::size_t{256} << 10;

/// Called for each valid record; the views are valid during the call only.
using record_fn = std::function<void(const spool_record&)>;

/// Reads one segment file through a fixed window, plus at most one record
/// that is longer than the window. Counts every byte it reads, checksums or
/// searches in `work`, and the part of it spent on candidates that turned out
/// damaged in `failed_work`.
class seg_reader {
 public:
  seg_reader(int fd, std::uint64_t size) : fd_(fd), size_(size) {}
  std::uint64_t size() const noexcept { return size_; }
  /// errno of a failed read, else 0. After a failure nothing more is read.
  int error() const noexcept { return err_; }
  std::uint64_t work = 0;
  std::uint64_t failed_work = 0;

  /// [off, off + n) in memory (n <= read_window_bytes, off + n <= size), or
  /// nullptr on a read error. Valid until the next call.
  const unsigned char* at(std::uint64_t off, std::size_t n);

  /// The next offset >= from holding byte c, or size() if none.
  std::uint64_t find(std::uint64_t from, unsigned char c);

  /// Checks the record at off (seq in (prev, end_seq), end_seq 0 =
  /// open-ended) and, when it is valid, makes *rec view it (valid until the
  /// next call).
  parse_status check(std::uint64_t off, std::uint64_t prev, std::uint64_t end_seq, spool_record* rec,
                     std::uint32_t* length);

 private:
  bool fill(std::string* buf, std::uint64_t off, std::size_t n);
  bool crc_stream(std::uint64_t off, std::uint64_t n, std::uint32_t* crc);

  int fd_;
  std::uint64_t size_;
  int err_ = 0;
  std::string win_;
  std::uint64_t win_off_ = 0;
  std::string big_;
};

/// What a scan of one segment found.
struct scan_result {
  std::uint64_t records = 0;
  std::uint64_t last_seq = 0;  ///< 0: no valid record
  std::uint64_t corrupt = 0;
  std::uint64_t torn = 0;
  std::uint64_t skipped_bytes = 0;
  std::uint64_t tail_bytes = 0;  ///< damaged tail, starting at `valid_end`
  std::uint64_t valid_end = 0;
  std::uint64_t first_damage = 0;  ///< offset of the first damaged region (when corrupt + torn > 0)
  std::uint64_t work = 0;          ///< bytes examined
  int read_error = 0;              ///< a read failed: what follows was not examined (and is not damage)
  std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;  ///< seqs of the range with no valid record
  bool damaged() const noexcept { return corrupt + torn > 0; }
};

/// Reads a segment holding seqs in [first_seq, end_seq) (end_seq 0: unknown)
/// and calls on_record for each valid record. A record only counts as valid
/// if its seq is above the previous one's: that keeps a stale record image
/// inside a payload from being taken for the real thing after a resync.
/// Linear: the work spent on candidates that fail their checksum is capped at
/// 8 times the file's size (plus 1 MiB); past that, the rest of the file is
/// one damaged region.
scan_result scan_segment(seg_reader& rd, std::uint64_t first_seq, std::uint64_t end_seq, const record_fn& on_record);

/// Scans segment `first_seq` of directory dir_fd: through `file` up to
/// `limit` when given (the active one, whose tail may be growing), else
/// opened by name up to its current end. Returns the errno of opening it
/// (ENOENT: gone meanwhile) or of a read, else 0; *out is filled in either
/// way once the file was opened.
int read_segment(int dir_fd, std::uint64_t first_seq, const seg_file* file, std::uint64_t limit, std::uint64_t end_seq,
                 scan_result* out, const record_fn& on_record);

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
BATCHQ_CXX_API segment_file_scan scan_segment_file(const std::string& path, const record_fn& fn = {});

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_LIB_SPOOL_READER_HPP
