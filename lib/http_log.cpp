// http_log: composes the queue (batch_queue.hpp), the sender (http_sender),
// the payload builder and the spool. The rooms do not know each other; this
// file is where they meet.
#include "batchq/http_log.hpp"

#include <chrono>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "batchq/batch_queue.hpp"

namespace batchq {

namespace {

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string validate(const http_log_options& o, std::string* field) {
  std::string err = validate(o.queue, field);
  if (!err.empty()) return err;
  err = validate(o.http, field);
  if (!err.empty()) return err;
  auto fail = [&](const char* f, const std::string& msg) {
    if (field) *field = f;
    return std::string(f) + ": " + msg;
  };
  if (static_cast<int>(o.format) < 0 || static_cast<int>(o.format) > 2)
    return fail("format", "is not a payload_format (allowed: kong, json_array, ndjson)");
  if (!o.spool_dir.empty()) {
    spool_options so;
    so.dir = o.spool_dir;
    so.mode = o.spool;
    so.max_bytes = o.spool_max_bytes;
    so.segment_bytes = o.spool_segment_bytes;
    so.fsync = o.spool_fsync;
    so.fsync_interval = o.spool_fsync_interval;
    std::string f;
    err = validate(so, &f);
    if (!err.empty()) {
      // The spool names its fields without the prefix the configuration uses.
      const std::string key = f == "dir" ? "spool_dir" : f == "mode" ? "spool_mode" : f == "fsync" ? "spool_fsync"
                              : f == "fsync_interval" ? "spool_fsync_interval" : f == "max_bytes" ? "spool_max_bytes"
                              : f == "segment_bytes" ? "spool_segment_bytes" : f;
      if (field) *field = key;
      const auto colon = err.find(':');
      return key + (colon == std::string::npos ? ": " + err : err.substr(colon));
    }
  }
  if (field) field->clear();
  return {};
}

struct http_log::impl {
  http_log_options opt;
  http_log_callbacks cb;

  // One sender per concurrently running attempt (libcurl handles are never
  // shared between threads); they are reused so connections stay alive.
  std::mutex pool_mu;
  std::vector<std::unique_ptr<http_sender>> idle;

  // Pull mode buffers.
  mutable std::mutex buf_mu;
  std::deque<dropped_entry> drops;
  std::size_t drop_bytes = 0;
  std::uint64_t drop_overflow = 0;
  std::deque<std::pair<log_level, std::string>> lines;
  std::uint64_t log_overflow = 0;

  std::unique_ptr<spool> sp;
  std::atomic<std::uint64_t> replayed{0};

  std::unique_ptr<batch_queue<std::string>> q;

  std::unique_ptr<http_sender> take_sender() {
    {
      std::lock_guard<std::mutex> g(pool_mu);
      if (!idle.empty()) {
        auto s = std::move(idle.back());
        idle.pop_back();
        return s;
      }
    }
    return std::make_unique<http_sender>(opt.http);
  }
  void give_back(std::unique_ptr<http_sender> s) {
    std::lock_guard<std::mutex> g(pool_mu);
    idle.push_back(std::move(s));
  }

  process_result process(span<const std::string> batch, const attempt_context& ctx) {
    // A body buffer per worker thread: a 10 MB batch is built once into
    // memory that is reused, not reallocated, by the next batch.
    thread_local std::string body;
    build_payload(batch, opt.format, body);
    auto s = take_sender();
    send_result r = s->send(body, &ctx);
    give_back(std::move(s));
    if (body.capacity() > (std::size_t{64} << 20)) std::string().swap(body);
    return r.to_process_result();
  }

  void on_drop(span<std::string> entries, const drop_info& info) {
    bool spooled = false;
    if (sp && opt.spool == spool_mode::dead_letter) {
      spooled = true;
      record_meta meta;
      meta.kind = record_kind::dropped;
      meta.reason = static_cast<std::uint8_t>(info.reason);
      meta.attempts = static_cast<std::uint16_t>(std::min<std::size_t>(info.attempts, 65535));
      meta.time_ms = unix_ms();
      meta.last_error = info.last_error;
      for (const auto& e : entries)
        if (sp->append(e, meta) == 0) spooled = false;
      if (opt.spool_fsync == fsync_policy::always) sp->sync();
    }
    if (cb.on_drop) {
      cb.on_drop(entries, info, spooled);
      return;
    }
    std::lock_guard<std::mutex> g(buf_mu);
    const auto now = unix_ms();
    for (auto& e : entries) {
      if (drops.size() >= opt.drop_buffer_entries || drop_bytes + e.size() > opt.drop_buffer_bytes) {
        ++drop_overflow;
        continue;
      }
      drop_bytes += e.size();
      drops.push_back(dropped_entry{std::move(e), info.reason, info.attempts, std::string(info.last_error), now,
                                    spooled});
    }
  }

  void on_log(log_level level, std::string_view text) {
    if (cb.on_log) {
      cb.on_log(level, text);
      return;
    }
    std::lock_guard<std::mutex> g(buf_mu);
    if (opt.log_buffer_lines == 0) {
      ++log_overflow;
      return;
    }
    if (lines.size() >= opt.log_buffer_lines) {
      lines.pop_front();
      ++log_overflow;
    }
    lines.emplace_back(level, std::string(text));
  }
};

http_log::http_log(http_log_options options, http_log_callbacks callbacks) : impl_(std::make_unique<impl>()) {
  std::string field;
  std::string err = validate(options, &field);
  if (!err.empty()) throw options_error(field, err);
  impl_->opt = std::move(options);
  impl_->cb = std::move(callbacks);
  impl& m = *impl_;

  // Fail now, with the sender's own message, rather than on the first send.
  m.idle.push_back(std::make_unique<http_sender>(m.opt.http));

  if (!m.opt.spool_dir.empty()) {
    spool_options so;
    so.dir = m.opt.spool_dir;
    so.mode = m.opt.spool;
    so.max_bytes = m.opt.spool_max_bytes;
    so.segment_bytes = m.opt.spool_segment_bytes;
    so.fsync = m.opt.spool_fsync;
    so.fsync_interval = m.opt.spool_fsync_interval;
    spool_error why;
    m.sp = spool::open(so, &why);
    if (!m.sp) throw std::runtime_error("spool_dir: " + why.message);
  }

  batch_queue_callbacks<std::string> qcb;
  qcb.process = [&m](span<const std::string> b, const attempt_context& ctx) { return m.process(b, ctx); };
  qcb.on_drop = [&m](span<std::string> e, const drop_info& info) { m.on_drop(e, info); };
  qcb.on_log = [&m](log_level l, std::string_view t) { m.on_log(l, t); };
  m.q = std::make_unique<batch_queue<std::string>>(m.opt.queue, std::move(qcb));
}

http_log::~http_log() { shutdown(impl_->opt.queue.shutdown_timeout); }

enqueue_result http_log::enqueue(std::string entry, std::string* error) {
  impl& m = *impl_;
  if (m.opt.validate_json) {
    std::string why;
    if (!validate_json(entry, &why)) {
      m.q->count_refused(enqueue_result::invalid_json);
      if (error) *error = std::move(why);
      return enqueue_result::invalid_json;
    }
  }
  const std::size_t n = entry.size();
  const enqueue_result r = m.q->enqueue(std::move(entry));
  if (r != enqueue_result::accepted && error) {
    switch (r) {
      case enqueue_result::too_large:
        *error = "string to be queued is longer (" + std::to_string(n) + " bytes) than the queue's max_bytes (" +
                 std::to_string(m.opt.queue.max_bytes) + " bytes)";
        break;
      case enqueue_result::queue_full:
        *error = "queue full (max_entries " + std::to_string(m.opt.queue.max_entries) + ", max_bytes " +
                 std::to_string(m.opt.queue.max_bytes) + ") and overflow is refuse_new";
        break;
      case enqueue_result::shut_down: *error = "queue is shut down"; break;
      default: *error = to_string(r); break;
    }
  }
  return r;
}

bool http_log::flush(std::chrono::milliseconds timeout) noexcept { return impl_->q->flush(timeout); }

bool http_log::shutdown(std::chrono::milliseconds timeout) noexcept {
  const bool ok = impl_->q->shutdown(timeout);
  if (impl_->sp) {
    try {
      impl_->sp->sync();
    } catch (...) {
    }
  }
  return ok;
}

queue_stats http_log::stats() const { return impl_->q->stats(); }

spool_figures http_log::spool_stats() const {
  spool_figures f;
  if (!impl_->sp) return f;
  const batchq::spool_stats s = impl_->sp->stats();
  f.records = s.appended;
  f.bytes = s.bytes;
  f.durable_seq = s.durable_seq;
  f.errors = s.write_errors;
  f.replayed = impl_->replayed.load();
  return f;
}

buffer_figures http_log::buffer_stats() const {
  std::lock_guard<std::mutex> g(impl_->buf_mu);
  buffer_figures b;
  b.drop_pending = impl_->drops.size();
  b.drop_overflow = impl_->drop_overflow;
  b.log_overflow = impl_->log_overflow;
  return b;
}

std::string http_log::stats_json() const {
  return stats_to_json(stats(), spool_stats(), buffer_stats(), impl_->opt.name);
}

std::string http_log::stats_prometheus() const {
  return stats_to_prometheus(stats(), spool_stats(), buffer_stats(), impl_->opt.name);
}

std::size_t http_log::poll_dropped(std::vector<dropped_entry>& out, std::size_t max) {
  std::lock_guard<std::mutex> g(impl_->buf_mu);
  std::size_t n = 0;
  while (n < max && !impl_->drops.empty()) {
    impl_->drop_bytes -= impl_->drops.front().data.size();
    out.push_back(std::move(impl_->drops.front()));
    impl_->drops.pop_front();
    ++n;
  }
  return n;
}

bool http_log::poll_log(log_level& level, std::string& line) {
  std::lock_guard<std::mutex> g(impl_->buf_mu);
  if (impl_->lines.empty()) return false;
  level = impl_->lines.front().first;
  line = std::move(impl_->lines.front().second);
  impl_->lines.pop_front();
  return true;
}

const http_log_options& http_log::options() const noexcept { return impl_->opt; }

}  // namespace batchq
