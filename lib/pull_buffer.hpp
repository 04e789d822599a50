// pull_buffer: where an http_log without callbacks keeps what the host pulls
// (poll_dropped, poll_log): the dropped entries and the log lines, each
// bounded, with what did not fit counted. Private to lib/.
#ifndef BATCHQ_LIB_PULL_BUFFER_HPP
#define BATCHQ_LIB_PULL_BUFFER_HPP

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "batchq/http_log.hpp"

namespace batchq::detail {

class pull_buffer {
 public:
  /// The bounds: http_log_options::drop_buffer_entries, drop_buffer_bytes,
  /// log_buffer_lines.
  pull_buffer(std::size_t drop_entries, std::size_t drop_bytes, std::size_t log_lines) noexcept
      : max_drops_(drop_entries), max_drop_bytes_(drop_bytes), max_lines_(log_lines) {}

  /// Keeps the entries (moved from) of one drop, stamped `time_ms`, as far
  /// as the bounds allow; the rest is counted in drop_overflow.
  void add_drops(span<std::string> entries, const drop_info& info, bool spooled);
  /// Keeps the line; when log_lines are kept already, the oldest goes
  /// (counted in log_overflow).
  void add_log(log_level level, std::string_view text);

  /// See http_log::poll_dropped / poll_log.
  std::size_t poll_dropped(std::vector<dropped_entry>& out, std::size_t max);
  bool poll_log(log_level& level, std::string& line, std::size_t max_size, std::size_t* needed);
  buffer_figures figures() const;

  /// Frees the dropped entries (a child of fork(), which keeps the rest).
  void free_drops() noexcept;

 private:
  const std::size_t max_drops_, max_drop_bytes_, max_lines_;
  mutable std::mutex mu_;
  std::deque<dropped_entry> drops_;
  std::size_t drop_bytes_ = 0;
  std::uint64_t drop_overflow_ = 0;
  std::deque<std::pair<log_level, std::string>> lines_;
  std::uint64_t log_overflow_ = 0;
};

}  // namespace batchq::detail

#endif  // BATCHQ_LIB_PULL_BUFFER_HPP
