// http_log: composes the queue (batch_queue.hpp), the sender (http_sender),
// the payload builder, the spool pair (spool_pair.hpp) and the pull buffers
// (pull_buffer.hpp). The rooms do not know each other; this file is where
// they meet.
#include "batchq/http_log.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "batchq/batch_queue.hpp"
#include "batchq/lua_json.hpp"
#include "text/text.hpp"
#include "log_record.hpp"
#include "record_arena.hpp"
#include "pull_buffer.hpp"
#include "spool_pair.hpp"
#include "sender_pool.hpp"

namespace batchq {

namespace {

using detail::log_record;
using detail::unix_ms;

// Where enqueue_lua() entries become JSON: here, on the thread that builds a
// body or hands entries to drop reports and spools, never on the enqueue
// path (except in write_ahead mode, whose record must be JSON before
// enqueue returns). They were checked at enqueue with the same decoder, so
// a failure here is a bug; the entry is then sent as a JSON object naming
// the error rather than lost or left unparseable.
void lua_to_json_or_error(std::string_view enc, std::string& out) {
  std::string why;
  if (!lua_to_json(enc, out, &why)) out += "{\"batchq_error\":\"" + text::json_escaped(why) + "\"}";
}

// Threads started while this lives block every signal: in an nginx worker a
// signal meant for the worker must not run nginx's handler on our thread.
class block_signals {
 public:
  block_signals() noexcept {
    sigset_t all;
    sigfillset(&all);
    ok_ = pthread_sigmask(SIG_BLOCK, &all, &old_) == 0;
  }
  ~block_signals() {
    if (ok_) pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  block_signals(const block_signals&) = delete;
  block_signals& operator=(const block_signals&) = delete;

 private:
  sigset_t old_{};
  bool ok_ = false;
};

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
  if (std::string f; !o.spool.dir.empty() && !(err = validate(o.spool, &f)).empty()) {
    const std::string key = "spool_" + f;  // as the configuration names it
    if (field) *field = key;
    const auto colon = err.find(':');
    return key + (colon == std::string::npos ? ": " + err : err.substr(colon));
  }
  if (field) field->clear();
  return {};
}

struct http_log::impl {
  http_log_options opt;
  http_log_callbacks cb;

  // The sending side: one libcurl multi handle runs every request, up to
  // `concurrency` at once over shared keep-alive connections; the queue's
  // workers hand it their batches (lib/sender_pool.hpp).
  std::unique_ptr<detail::sender_pool> pool;

  // Pull mode: what waits for poll_dropped() / poll_log().
  std::optional<detail::pull_buffer> buf;
  // The dead-letter and write-ahead spools (open or not; none without a spool.dir).
  std::optional<detail::spool_pair> spools;

  // Small entries' bytes (record_arena.hpp). Declared before q: it outlives
  // the queue and its records.
  detail::record_arena arena;

  std::unique_ptr<batch_queue<log_record>> q;

  // Non-blocking shutdown (shutdown_begin): the thread that runs it.
  std::mutex sd_mu;
  std::thread sd_thread;
  std::atomic<bool> sd_started{false};
  std::atomic<bool> sd_finished{false};
  // Until when a shutdown may write what it cuts short (steady clock, ns).
  std::atomic<std::int64_t> shutdown_deadline_ns{INT64_MAX};
  bool past_shutdown_deadline() const {
    return std::chrono::steady_clock::now().time_since_epoch().count() >
           shutdown_deadline_ns.load(std::memory_order_relaxed);
  }
  // What post_log() reads: set once the queue exists, cleared only after the
  // spools (whose threads post) are closed.
  std::atomic<batch_queue<log_record>*> qlog{nullptr};

  // Log lines from threads that are not the queue's (spool eviction, the
  // opener): through the queue, so that on_log is never entered concurrently.
  void post_log(log_level level, std::string text) {
    if (batch_queue<log_record>* qq = qlog.load(std::memory_order_acquire)) {
      qq->post_log(level, std::move(text));
    } else {
      on_log(level, text);  // before the queue exists: no queue thread runs yet
    }
  }

  process_result process(span<const log_record> batch, const attempt_context& ctx) {
    // The body is streamed from the entries the queue holds (payload_pieces:
    // views of the entries and the framing); only enqueue_lua() entries are
    // decoded into one per-batch buffer first. Buffers per worker thread.
    thread_local std::vector<std::string_view> views;
    thread_local std::vector<std::string_view> pieces;
    views.clear();
    thread_local std::string lua_json;  // this batch's enqueue_lua() entries as JSON, back to back
    thread_local std::vector<std::size_t> lua_ends;
    lua_json.clear();
    lua_ends.clear();
    for (const auto& r : batch) {
      if (!r.lua) continue;
      lua_to_json_or_error(r.data(), lua_json);
      lua_ends.push_back(lua_json.size());
    }
    std::size_t lua_i = 0;
    for (const auto& r : batch) {
      if (!r.lua) {
        views.emplace_back(r.data());
        continue;
      }
      const std::size_t from = lua_i ? lua_ends[lua_i - 1] : 0;
      views.emplace_back(std::string_view(lua_json).substr(from, lua_ends[lua_i] - from));
      ++lua_i;
    }
    payload_pieces(span<const std::string_view>(views.data(), views.size()), opt.format, pieces);
    spools->sync_before_send();
    send_result r = pool->send(pieces, &ctx);
    if (lua_json.capacity() > (std::size_t{64} << 20)) std::string().swap(lua_json);
    process_result pr = r.to_process_result();
    // A receiver that refuses a batch (4xx other than 408 and 429; 413 too)
    // may refuse only some of its entries: split it to find them, whether or
    // not such refusals are permanent (drop_permanent_4xx). The halves are
    // sent at once; a lone refused entry is then retried or dropped as usual.
    const bool refused = r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429;
    pr.split = refused && opt.split_on_4xx;
    if (!pr.ok && (!pr.permanent || pr.split)) compact(batch);
    return pr;
  }

  // A batch whose attempt failed waits for its retry (or is split) while
  // later batches are delivered: its small entries move into one block of
  // their own exact size, so that it does not pin the blocks those later
  // entries shared with it (record_arena.hpp, the memory bound). The bytes
  // are the same, so a retry resends identical bytes. The worker that runs
  // process() holds the batch alone until it returns; only where the bytes
  // live changes, hence the const_cast.
  static void compact(span<const log_record> batch) {
    std::size_t total = 0, n = 0;
    const detail::arena_block* first = nullptr;
    bool one_block = true;  // compacted already (an earlier failed attempt)
    for (const auto& r : batch) {
      if (!r.ref) continue;
      total += r.size();
      ++n;
      if (!first) first = r.ref.block();
      one_block = one_block && r.ref.block() == first;
    }
    if (n == 0 || total > UINT32_MAX || (one_block && first->cap == total)) return;
    detail::arena_block* b = detail::record_arena::exact_block(total, n);
    std::size_t off = 0;
    for (const auto& r : batch) {
      if (!r.ref) continue;
      const std::string_view v = r.data();
      std::memcpy(b->bytes() + off, v.data(), v.size());
      const_cast<log_record&>(r).ref = detail::record_arena::make_ref(b, off, v.size());
      off += v.size();
    }
  }

  void on_drop(span<log_record> entries, const drop_info& dropped) {
    drop_info info = dropped;
    info.time_ms = unix_ms();  // once, for the spool, the report and the drop buffer alike
    for (auto& e : entries) {
      if (!e.lua) continue;  // spools and drop reports always hold JSON
      std::string json;
      lua_to_json_or_error(e.data(), json);
      e.replace(std::move(json));
      e.lua = false;
    }
    const auto kept = spools->keep_dropped(entries, info, shutdown_deadline_ns.load(std::memory_order_relaxed));
    if (kept.late)
      on_log(log_level::error, "shutdown deadline passed: " + std::to_string(kept.late) +
                                   " entries could not be written to the spool in time; they are dropped "
                                   "(reason shutdown)");

    // Handed over in chunks of about drop_chunk_bytes: a chunk's entries are
    // copied out of their blocks, its block references dropped, then it is
    // handed over and its copies freed, so that the copies of a large drop
    // (up to max_drop_pending_bytes at once) and the blocks holding it do
    // not both peak (bench/results.md, case 5). Every chunk is handed over
    // even if on_drop throws for an earlier one (its exceptions are
    // swallowed, as batch_queue does).
    std::vector<std::string> plain;
    for (std::size_t i = 0; i < entries.size();) {
      std::size_t j = i, bytes = 0;
      do {
        bytes += entries[j++].size();
      } while (j < entries.size() && bytes < drop_chunk_bytes);
      plain.clear();
      for (std::size_t k = i; k < j; ++k)
        plain.push_back(entries[k].ref ? std::string(entries[k].data()) : entries[k].own.take());
      detail::release_refs(entries.data() + i, j - i);
      const span<std::string> chunk(plain.data(), plain.size());
      if (cb.on_drop) {
        try {
          cb.on_drop(chunk, info, kept.spooled);
        } catch (...) {
        }
      } else {
        buf->add_drops(chunk, info, kept.spooled);
      }
      i = j;
    }
  }
  static constexpr std::size_t drop_chunk_bytes = 256 << 10;

  std::string refused_text(enqueue_result r, std::size_t n) const {
    switch (r) {
      case enqueue_result::too_large:
        return "string to be queued is longer (" + std::to_string(n) + " bytes) than the queue's max_bytes (" +
               std::to_string(opt.queue.max_bytes) + " bytes)";
      case enqueue_result::queue_full:
        return "queue full (max_entries " + std::to_string(opt.queue.max_entries) + ", max_bytes " +
               std::to_string(opt.queue.max_bytes) + ") and overflow is refuse_new";
      case enqueue_result::shut_down: return "queue is shut down";
      default: return to_string(r);
    }
  }

  enqueue_result admit(std::string_view entry, std::string* owned, bool is_lua, std::string* error);

  void on_log(log_level level, std::string_view text) {
    if (cb.on_log) {
      cb.on_log(level, text);
      return;
    }
    buf->add_log(level, text);
  }
};

http_log::http_log(http_log_options options, http_log_callbacks callbacks) : impl_(std::make_unique<impl>()) {
  std::string field;
  std::string err = validate(options, &field);
  if (!err.empty()) throw options_error(field, err);
  impl_->opt = std::move(options);
  impl_->cb = std::move(callbacks);
  impl& m = *impl_;
  const block_signals no_signals_in_our_threads;  // queue workers, spool fsync thread, opener

  // Fail now, with the sender's own message, rather than on the first send.
  m.pool = std::make_unique<detail::sender_pool>(m.opt.http, m.opt.queue.concurrency);

  m.buf.emplace(m.opt.drop_buffer_entries, m.opt.drop_buffer_bytes, m.opt.log_buffer_lines);
  m.spools.emplace(m.opt.spool, detail::spool_pair::hooks{
                                    [&m](log_level l, std::string t) { m.post_log(l, std::move(t)); },
                                    [&m](log_record&& r) { return m.q->enqueue(std::move(r)); }});
  // Said before the queue exists (no queue thread can run a callback yet), so
  // the host has what could not be opened when the constructor returns.
  m.spools->open();

  batch_queue_callbacks<log_record> qcb;
  qcb.process = [&m](span<const log_record> b, const attempt_context& ctx) { return m.process(b, ctx); };
  qcb.on_delivered = [&m](span<const log_record> b) {
    m.spools->ack(b);
    // The entries are gone once this returns: their block references are
    // dropped here, one atomic subtraction per block instead of one per
    // entry as each record is destroyed. The worker holds the batch alone.
    detail::release_refs(const_cast<log_record*>(b.data()), b.size());
  };
  qcb.on_drop = [&m](span<log_record> e, const drop_info& info) { m.on_drop(e, info); };
  qcb.on_log = [&m](log_level l, std::string_view t) { m.on_log(l, t); };
  m.q = std::make_unique<batch_queue<log_record>>(m.opt.queue, std::move(qcb));
  if (m.q->options().max_entries != m.opt.queue.max_entries) {
    // Kong accepts max_entries (or its default 10000) below the batch size.
    m.on_log(log_level::info, "max_entries " + std::to_string(m.opt.queue.max_entries) + " is below queue_size " +
                                  std::to_string(m.opt.queue.batch_max_size) + ": the queue holds up to " +
                                  std::to_string(m.q->options().max_entries) + " entries (one batch)");
    m.opt.queue.max_entries = m.q->options().max_entries;
  }
  m.qlog.store(m.q.get(), std::memory_order_release);

  m.spools->start();  // replays the write-ahead spool into the queue
}

http_log::~http_log() {
  if (impl_->q->forked()) {
    // A child of fork(): the opener, the spools' threads and the senders'
    // connections are the parent's. Free the entries (queue, pull buffer);
    // keep the rest, untouched, for the life of the process.
    impl* m = impl_.release();
    m->buf->free_drops();
    m->q.reset();
    detail::keep_forever(std::shared_ptr<void>(m, [](void*) {}));
    return;
  }
  impl_->spools->stop_opener();  // it may be re-queueing into the queue
  {
    std::lock_guard<std::mutex> g(impl_->sd_mu);
    if (impl_->sd_thread.joinable()) impl_->sd_thread.join();  // bounded by its deadline
  }
  shutdown(impl_->opt.queue.shutdown_timeout);
  // The spools close while the (finished) queue still takes their threads'
  // log lines; then the queue goes.
  impl_->spools->close();
  impl_->qlog.store(nullptr);
  impl_->q.reset();
}

// One path for every entry: `entry` is its bytes; `owned`, when not null,
// holds them (enqueue(), moved in) and a large entry is moved on from it.
enqueue_result http_log::impl::admit(std::string_view entry, std::string* owned, bool is_lua, std::string* error) {
  if (q->forked()) throw fork_error();  // before the write-ahead append
  // Every refusal of the entry's content: counted, and the reason handed back.
  auto invalid = [&](std::string why) {
    q->count_refused(enqueue_result::invalid_json);
    if (error) *error = std::move(why);
    return enqueue_result::invalid_json;
  };
  if (is_lua) {
    if (std::string why; !lua_json_check(entry, &why)) return invalid(std::move(why));
    if (opt.spool.mode == spool_mode::write_ahead && !opt.spool.dir.empty()) {
      // The write-ahead record is appended before enqueue returns and must be
      // JSON like every spooled entry: in this mode the conversion is here.
      std::string json;
      lua_to_json_or_error(entry, json);
      return admit(json, &json, false, error);
    }
  } else {
    if (std::string why; opt.validate_json && !text::json_valid(entry, &why)) return invalid(std::move(why));
    // The poison-entry rule, for every format: an entry that would change the
    // body's framing (two values, unbalanced brackets, a raw newline in ndjson)
    // is refused here, before it can take a batch down with it. An entry
    // validate_json passed is one JSON value: only ndjson's raw newlines can
    // still fail the rule, so the second scan is made for ndjson only.
    const bool framed = opt.validate_json && opt.format != payload_format::ndjson;
    if (std::string why; !framed && !check_framing(entry, opt.format, &why)) return invalid(std::move(why));
  }
  const std::size_t n = entry.size();
  log_record rec;
  rec.lua = is_lua;
  // Small entries into the calling thread's block (record_arena.hpp); one
  // the queue refuses as too large never gets there.
  const bool fits = !(opt.queue.max_bytes && n > opt.queue.max_bytes);
  if (n <= detail::record_arena::small_max && fits) rec.ref = arena.copy(entry);
  if (!rec.ref) rec.own = owned ? std::move(*owned) : std::string(entry);
  // write_ahead mode: in the spool before it is queued.
  if (!is_lua) rec.seq = spools->protect(rec.data(), fits);
  const std::uint64_t seq = rec.seq;
  const enqueue_result r = q->enqueue(std::move(rec));
  if (r != enqueue_result::accepted && seq) spools->release(seq);  // refused: the caller keeps it
  if (r != enqueue_result::accepted && error) *error = refused_text(r, n);
  return r;
}

enqueue_result http_log::enqueue(std::string entry, std::string* error) {
  return impl_->admit(entry, &entry, false, error);
}

enqueue_result http_log::enqueue_lua(std::string encoded, std::string* error) {
  return impl_->admit(encoded, &encoded, true, error);
}

enqueue_result http_log::enqueue_copy(std::string_view entry, std::string* error) {
  return impl_->admit(entry, nullptr, false, error);
}

enqueue_result http_log::enqueue_lua_copy(std::string_view encoded, std::string* error) {
  return impl_->admit(encoded, nullptr, true, error);
}

bool http_log::flush(std::chrono::milliseconds timeout) noexcept { return impl_->q->flush(timeout); }

bool http_log::forked() const noexcept { return impl_->q->forked(); }

bool http_log::shutdown(std::chrono::milliseconds timeout) noexcept {
  if (impl_->q->forked()) return false;
  impl_->sd_started.store(true);
  if (impl_->q->forked()) return false;
  impl_->spools->stop_opener();  // no spool takeover (nor its log lines) after a shutdown
  using namespace std::chrono;
  const auto deadline = std::chrono::steady_clock::now() + std::min<milliseconds>(timeout, hours(24 * 365 * 10)) +
                        shutdown_write_budget;
  std::int64_t unset = INT64_MAX;  // a second (idempotent) call keeps the first deadline
  impl_->shutdown_deadline_ns.compare_exchange_strong(unset, deadline.time_since_epoch().count());
  const bool ok = impl_->q->shutdown(timeout);
  if (!impl_->past_shutdown_deadline()) impl_->spools->sync();
  impl_->sd_finished.store(true);
  return ok;
}

bool http_log::shutdown_begin(std::chrono::milliseconds timeout) noexcept {
  impl& m = *impl_;
  try {
    std::lock_guard<std::mutex> g(m.sd_mu);
    if (m.sd_started.load()) return true;
    m.q->close();  // from here on enqueue() refuses
    const auto deadline = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(
                                                                  timeout, std::chrono::hours(24 * 365 * 10));
    const block_signals no_signals_in_our_threads;
    m.sd_thread = std::thread([this, deadline] {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      shutdown(std::max(left, std::chrono::milliseconds(0)));
    });
    m.sd_started.store(true);
    return true;
  } catch (...) {
    return false;
  }
}

bool http_log::shutdown_finished() const noexcept { return impl_->sd_finished.load(); }

bool http_log::shutdown_started() const noexcept { return impl_->sd_started.load(); }

queue_stats http_log::stats() const { return impl_->q->stats(); }

spool_figures http_log::spool_stats() const {
  if (impl_->q->forked()) throw fork_error();
  return impl_->spools->figures();
}

buffer_figures http_log::buffer_stats() const {
  if (impl_->q->forked()) throw fork_error();
  return impl_->buf->figures();
}

std::string http_log::stats_json() const {
  return stats_to_json(stats(), spool_stats(), buffer_stats(), impl_->opt.name);
}

std::string http_log::stats_prometheus() const {
  return stats_to_prometheus(stats(), spool_stats(), buffer_stats(), impl_->opt.name);
}

std::size_t http_log::poll_dropped(std::vector<dropped_entry>& out, std::size_t max) {
  if (impl_->q->forked()) throw fork_error();
  return impl_->buf->poll_dropped(out, max);
}

bool http_log::poll_log(log_level& level, std::string& line) {
  return poll_log(level, line, std::string::npos, nullptr);
}

bool http_log::poll_log(log_level& level, std::string& line, std::size_t max_size, std::size_t* needed) {
  if (impl_->q->forked()) throw fork_error();
  return impl_->buf->poll_log(level, line, max_size, needed);
}

const http_log_options& http_log::options() const noexcept { return impl_->opt; }

}  // namespace batchq
