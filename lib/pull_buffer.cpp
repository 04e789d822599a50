// The pull-mode buffers of http_log (see pull_buffer.hpp).
#include "pull_buffer.hpp"

namespace batchq::detail {

void pull_buffer::add_drops(span<std::string> entries, const drop_info& info, bool spooled) {
  std::lock_guard<std::mutex> g(mu_);
  for (auto& e : entries) {
    if (drops_.size() >= max_drops_ || drop_bytes_ + e.size() > max_drop_bytes_) {
      ++drop_overflow_;
      continue;
    }
    drop_bytes_ += e.size();
    drops_.push_back(dropped_entry{std::move(e), info.reason, info.attempts, std::string(info.last_error),
                                   info.time_ms, spooled});
  }
}

void pull_buffer::add_log(log_level level, std::string_view text) {
  std::lock_guard<std::mutex> g(mu_);
  if (max_lines_ == 0) {
    ++log_overflow_;
    return;
  }
  if (lines_.size() >= max_lines_) {
    lines_.pop_front();
    ++log_overflow_;
  }
  lines_.emplace_back(level, std::string(text));
}

std::size_t pull_buffer::poll_dropped(std::vector<dropped_entry>& out, std::size_t max) {
  std::lock_guard<std::mutex> g(mu_);
  std::size_t n = 0;
  while (n < max && !drops_.empty()) {
    drop_bytes_ -= drops_.front().data.size();
    out.push_back(std::move(drops_.front()));
    drops_.pop_front();
    ++n;
  }
  return n;
}

bool pull_buffer::poll_log(log_level& level, std::string& line, std::size_t max_size, std::size_t* needed) {
  std::lock_guard<std::mutex> g(mu_);
  if (needed) *needed = 0;
  if (lines_.empty()) return false;
  if (lines_.front().second.size() >= max_size) {
    if (needed) *needed = lines_.front().second.size();
    return false;
  }
  level = lines_.front().first;
  line = std::move(lines_.front().second);
  lines_.pop_front();
  return true;
}

buffer_figures pull_buffer::figures() const {
  std::lock_guard<std::mutex> g(mu_);
  buffer_figures b;
  b.drop_pending = drops_.size();
  b.drop_overflow = drop_overflow_;
  b.log_overflow = log_overflow_;
  return b;
}

void pull_buffer::free_drops() noexcept { std::deque<dropped_entry>().swap(drops_); }

}  // namespace batchq::detail
