// http_log: composes the queue (batch_queue.hpp), the sender (http_sender),
// the payload builder and the spools. The rooms do not know each other; this
// file is where they meet.
//
// Spool layout under spool_dir (created with its parents if missing):
//   dead-letter/   every entry dropped for good, with reason, attempts, last
//                  error and time; sent later with batchq-replay
//   write-ahead/   entries still to be sent: in write_ahead mode every accepted
//                  entry until it is delivered or dead-lettered; in both modes
//                  the entries a shutdown (nginx reload/quit) cut short. The
//                  next owner re-queues them.
// Two spools rather than one: a dead letter stays until a person replays it,
// while write-ahead records are acknowledged within seconds; in one sequence
// the dead letters would hold the acknowledgement mark back forever. And only
// write-ahead records are ever re-queued, so a dead letter is never both
// re-sent and kept.
#include "batchq/http_log.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "batchq/batch_queue.hpp"
#include "batchq/lua_json.hpp"
#include "sender_pool.hpp"

namespace batchq {

namespace {

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An entry as the queue holds it: the bytes and the seq of its record in the
// write-ahead spool (0: it has none).
struct log_record {
  std::string data;
  std::uint64_t seq = 0;
  // data is a LuaJIT string.buffer encoding (enqueue_lua), checked at
  // enqueue; it becomes JSON on the sending thread (lua_to_json_or_error).
  bool lua = false;
  std::size_t size() const noexcept { return data.size(); }
};

// Where enqueue_lua() entries become JSON: here, on the thread that builds a
// body or hands entries to drop reports and spools, never on the enqueue
// path (except in write_ahead mode, whose record must be JSON before
// enqueue returns). They were checked at enqueue with the same decoder, so
// a failure here is a bug; the entry is then sent as a JSON object naming
// the error rather than lost or left unparseable.
void lua_to_json_or_error(std::string_view enc, std::string& out) {
  std::string why;
  if (!lua_to_json(enc, out, &why)) out += "{\"batchq_error\":\"" + json_escape(why) + "\"}";
}

spool_options spool_opts(const http_log_options& o, const std::string& dir, spool_mode mode) {
  spool_options so;
  so.dir = dir;
  so.mode = mode;
  so.max_bytes = o.spool_max_bytes;
  so.segment_bytes = o.spool_segment_bytes;
  so.fsync = o.spool_fsync;
  so.fsync_interval = o.spool_fsync_interval;
  return so;
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

std::atomic<void (*)(std::uint64_t)> g_replay_hook{nullptr};

}  // namespace

namespace detail {
void set_replay_hook(void (*hook)(std::uint64_t seq)) noexcept { g_replay_hook.store(hook); }
}  // namespace detail

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
    std::string f;
    err = validate(spool_opts(o, o.spool_dir, o.spool), &f);
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

  // The sending side: one libcurl multi handle runs every request, up to
  // `concurrency` at once over shared keep-alive connections; the queue's
  // workers hand it their batches (lib/sender_pool.hpp).
  std::unique_ptr<detail::sender_pool> pool;

  // Pull mode buffers.
  mutable std::mutex buf_mu;
  std::deque<dropped_entry> drops;
  std::size_t drop_bytes = 0;
  std::uint64_t drop_overflow = 0;
  std::deque<std::pair<log_level, std::string>> lines;
  std::uint64_t log_overflow = 0;

  // Spools. Opened at construction; a spool another process still holds
  // (an old nginx worker draining after a reload) is taken over by the
  // opener thread once that process lets go. Until then the queue works in
  // memory only. The raw pointers are what the hot paths read.
  std::unique_ptr<spool> dead_owner, wal_owner;
  std::atomic<spool*> dead{nullptr}, wal{nullptr};
  std::atomic<std::uint64_t> replayed{0};
  std::atomic<std::uint64_t> wal_unprotected{0};  // accepted while the WAL was not open
  std::atomic<std::uint64_t> evicted{0};
  std::atomic<std::uint64_t> replay_refused{0};
  std::atomic<bool> spool_down{false};  // a configured spool could not be opened (not: held by another process)
  std::thread opener;
  std::mutex opener_mu;
  std::mutex opener_join_mu;
  std::condition_variable opener_cv;
  bool stopping = false;

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
      lua_to_json_or_error(r.data, lua_json);
      lua_ends.push_back(lua_json.size());
    }
    std::size_t lua_i = 0;
    for (const auto& r : batch) {
      if (!r.lua) {
        views.emplace_back(r.data);
        continue;
      }
      const std::size_t from = lua_i ? lua_ends[lua_i - 1] : 0;
      views.emplace_back(std::string_view(lua_json).substr(from, lua_ends[lua_i] - from));
      ++lua_i;
    }
    payload_pieces(span<const std::string_view>(views.data(), views.size()), opt.format, pieces);
    if (spool* w = wal.load(); w && opt.spool_fsync == fsync_policy::always) w->sync();
    send_result r = pool->send(pieces, &ctx);
    if (lua_json.capacity() > (std::size_t{64} << 20)) std::string().swap(lua_json);
    process_result pr = r.to_process_result();
    // A receiver that refuses a batch (4xx other than 408 and 429; 413 too)
    // may refuse only some of its entries: split it to find them, whether or
    // not such refusals are permanent (drop_permanent_4xx). The halves are
    // sent at once; a lone refused entry is then retried or dropped as usual.
    const bool refused = r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429;
    pr.split = refused && opt.split_on_4xx;
    return pr;
  }

  // Acknowledges write-ahead records, merging consecutive seqs into ranges.
  void ack_seqs(std::vector<std::uint64_t>& seqs) {
    spool* w = wal.load();
    if (!w || seqs.empty()) return;
    std::sort(seqs.begin(), seqs.end());
    for (std::size_t i = 0; i < seqs.size();) {
      std::size_t j = i;
      while (j + 1 < seqs.size() && seqs[j + 1] == seqs[j] + 1) ++j;
      w->ack(seqs[i], seqs[j]);
      i = j + 1;
    }
  }
  void ack(span<const log_record> batch) {
    thread_local std::vector<std::uint64_t> seqs;
    seqs.clear();
    for (const auto& r : batch)
      if (r.seq) seqs.push_back(r.seq);
    ack_seqs(seqs);
  }

  void on_drop(span<log_record> entries, const drop_info& info) {
    for (auto& e : entries) {
      if (!e.lua) continue;  // spools and drop reports always hold JSON
      std::string json;
      lua_to_json_or_error(e.data, json);
      e.data.swap(json);
      e.lua = false;
    }
    bool spooled = true;
    spool* d = dead.load();
    record_meta meta;
    meta.kind = record_kind::dropped;
    meta.reason = static_cast<std::uint8_t>(info.reason);
    meta.attempts = static_cast<std::uint16_t>(std::min<std::size_t>(info.attempts, 65535));
    meta.time_ms = unix_ms();
    meta.last_error = info.last_error;
    thread_local std::vector<std::uint64_t> done;  // write-ahead copies no longer needed
    done.clear();
    spool* w = wal.load();
    // What a shutdown cuts short is written only until its deadline (plus
    // shutdown_write_budget): shutdown(t) must return in time however much
    // is queued. The rest is reported unspooled (already counted as dropped
    // with reason shutdown).
    const bool cut = info.reason == drop_reason::shutdown;
    std::size_t late = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      auto& e = entries[i];
      if (cut && (late || ((i & 255) == 0 && past_shutdown_deadline()))) {
        if (!e.seq) {
          ++late;
          spooled = false;
        }
        continue;  // one already in the write-ahead spool keeps its record there
      }
      if (info.reason == drop_reason::shutdown && w) {
        // Cut short by a shutdown (nginx reload/quit), not by the endpoint:
        // the entry waits in the write-ahead spool for the next owner. One
        // that is already there keeps its record.
        if (e.seq) continue;
        record_meta pending;
        pending.time_ms = meta.time_ms;
        pending.attempts = meta.attempts;
        if (w->append(e.data, pending) != 0) continue;
      }
      if (!d || d->append(e.data, meta) == 0) spooled = false;
      if (e.seq) done.push_back(e.seq);
    }
    if (d && opt.spool_fsync == fsync_policy::always) d->sync();
    ack_seqs(done);
    if (late && (d || w))
      on_log(log_level::error, "shutdown deadline passed: " + std::to_string(late) +
                                   " entries could not be written to the spool in time; they are dropped "
                                   "(reason shutdown)");

    if (cb.on_drop) {
      std::vector<std::string> plain;
      plain.reserve(entries.size());
      for (auto& e : entries) plain.push_back(std::move(e.data));
      cb.on_drop(span<std::string>(plain.data(), plain.size()), info, spooled);
      return;
    }
    std::lock_guard<std::mutex> g(buf_mu);
    const auto now = unix_ms();
    for (auto& e : entries) {
      if (drops.size() >= opt.drop_buffer_entries || drop_bytes + e.data.size() > opt.drop_buffer_bytes) {
        ++drop_overflow;
        continue;
      }
      drop_bytes += e.data.size();
      drops.push_back(dropped_entry{std::move(e.data), info.reason, info.attempts, std::string(info.last_error), now,
                                    spooled});
    }
  }

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

  // Opens one spool; creates its directory (0700) under spool_dir if missing.
  // Returns nullptr with *locked = true when another process holds it.
  std::unique_ptr<spool> open_spool(const char* sub, spool_mode mode, bool* locked) {
    const std::string dir = opt.spool_dir + "/" + sub;
    // spool_dir and its missing parents too (0700, like `mkdir -p`), so a
    // host can give each queue its own directory below a shared root (the
    // Kong plugin: <spool_dir>/<queue-id>/worker-<n>) without a mkdir of its
    // own; again on each retry when they could not be made before.
    for (std::size_t i = 1; i <= opt.spool_dir.size(); ++i) {
      if (i < opt.spool_dir.size() && opt.spool_dir[i] != '/') continue;
      const std::string part = opt.spool_dir.substr(0, i);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
        throw std::runtime_error("spool_dir: cannot create \"" + part + "\": " + std::strerror(errno));
    }
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      throw std::runtime_error("spool_dir: cannot create \"" + dir + "\": " + std::strerror(errno));
    // A symlink planted there would send our records wherever it points.
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw std::runtime_error("spool_dir: \"" + dir + "\" is not a directory (a symlink is refused)");
    spool_options so = spool_opts(opt, dir, mode);
    const bool is_wal = mode == spool_mode::write_ahead;
    so.on_evict = [this, is_wal, dir](const spool_record& r) {
      if (evicted.fetch_add(1) % 10000 == 0)
        post_log(log_level::error, std::string("spool cap (spool_max_bytes) reached in ") + dir + ": the oldest " +
                                     (is_wal ? "write-ahead records are no longer protected against a crash"
                                             : "dead letters are being deleted") +
                                     " (first seq " + std::to_string(r.seq) + ")");
    };
    so.on_damage = [this](const spool_damage& d) { post_log(log_level::error, d.message); };
    spool_error why;
    auto sp = spool::open(so, &why);
    if (!sp) {
      if (why.code == spool_errc::locked) {
        *locked = true;
        return nullptr;
      }
      throw std::runtime_error("spool_dir: " + why.message);
    }
    return sp;
  }

  // Re-queues what a previous owner left in the write-ahead spool. Entries
  // the queue refuses now (full with refuse_new, over max_bytes) become dead
  // letters rather than holding the acknowledgement mark; with the queue shut
  // down they stay for the next owner.
  void replay(spool& w) {
    w.for_each([&](const spool_record& r) {
      if (r.kind != record_kind::entry) return true;
      const enqueue_result res = q->enqueue(log_record{std::string(r.payload), r.seq});
      if (auto hook = g_replay_hook.load()) hook(r.seq);
      if (res == enqueue_result::accepted) {
        replayed.fetch_add(1);
      } else if (res != enqueue_result::shut_down) {
        spool* d = dead.load();
        record_meta meta;
        meta.kind = record_kind::dropped;
        meta.reason = static_cast<std::uint8_t>(res == enqueue_result::too_large ? drop_reason::too_large
                                                                                  : drop_reason::queue_full);
        meta.time_ms = unix_ms();
        meta.last_error = "refused when re-queued from the write-ahead spool";
        if (d && d->append(r.payload, meta) != 0) w.ack(r.seq, r.seq);
        replay_refused.fetch_add(1);
      }
      return true;
    });
  }

  // Opens in the background what could not be opened at construction: a
  // spool another process still holds (an old nginx worker draining after a
  // reload; tried every second) or one this process cannot use (permissions,
  // a read-only disk...; tried with a backoff of 1 s doubling up to 30 s).
  // Until then the queue works in memory. The write-ahead spool is published
  // before its replay, so that entries delivered while the replay still runs
  // are acknowledged like any others.
  void open_later(bool want_dead, bool want_wal) {
    opener = std::thread([this, want_dead, want_wal] {
      bool need[2] = {want_dead, want_wal};
      bool failed_before = spool_down.load();
      std::string last_error;
      auto delay = std::chrono::milliseconds(1000);
      std::unique_lock<std::mutex> lk(opener_mu);
      while (!stopping && (need[0] || need[1])) {
        opener_cv.wait_for(lk, delay);
        if (stopping) break;
        bool failed = false;
        for (int i = 0; i < 2; ++i) {
          if (!need[i]) continue;
          const bool is_dead = i == 0;
          try {
            bool locked = false;
            auto sp = open_spool(is_dead ? "dead-letter" : "write-ahead",
                                 is_dead ? spool_mode::dead_letter : spool_mode::write_ahead, &locked);
            if (!sp) continue;  // still held by another process
            if (is_dead) {
              dead_owner = std::move(sp);
              dead.store(dead_owner.get());
            } else {
              wal_owner = std::move(sp);
              wal.store(wal_owner.get());
              replay(*wal_owner);
            }
            need[i] = false;
          } catch (const std::exception& e) {
            failed = failed_before = true;
            if (last_error != e.what()) {
              last_error = e.what();
              post_log(log_level::error, last_error + "; still working in memory, retrying in the background");
            }
          }
        }
        spool_down.store(failed);
        delay = failed ? std::min<std::chrono::milliseconds>(delay * 2, std::chrono::seconds(30))
                       : std::chrono::milliseconds(1000);
        if (!need[0] && !need[1])
          post_log(log_level::info, failed_before ? "spool in " + opt.spool_dir +
                                                      " opened after earlier failures: entries are protected again"
                                                : std::string("spool taken over from its previous owner"));
      }
    });
  }

  void stop_opener() {
    {
      std::lock_guard<std::mutex> g(opener_mu);
      stopping = true;
    }
    opener_cv.notify_all();
    std::lock_guard<std::mutex> once(opener_join_mu);  // shutdown() may run on two threads at once
    if (opener.joinable()) opener.join();
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

  // A spool_dir that is missing or not a directory is a configuration error
  // (thrown). A spool that cannot be opened under it (permissions, a
  // read-only disk, a file in the way...) is a runtime condition: the queue
  // runs in memory, says so loudly (log, spool_unavailable) and keeps trying.
  bool dead_later = false, wal_later = false;
  std::string open_errors;
  auto try_open = [&](const char* sub, spool_mode mode, bool* later) -> std::unique_ptr<spool> {
    bool locked = false;
    try {
      auto sp = m.open_spool(sub, mode, &locked);
      if (!sp) *later = true;
      return sp;
    } catch (const std::runtime_error& e) {
      *later = true;
      m.spool_down.store(true);
      open_errors += (open_errors.empty() ? "" : "; ") + std::string(e.what());
      return nullptr;
    }
  };
  if (!m.opt.spool_dir.empty()) {
    // The one configuration error: a spool_dir that exists and is not a
    // directory. Missing components are created by open_spool; one this
    // process may not create or look into (EACCES, a file in the path...) is
    // a runtime condition like the others.
    struct stat st {};
    if (::stat(m.opt.spool_dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
      throw std::runtime_error("spool_dir: \"" + m.opt.spool_dir + "\" is not a directory");
    }
    m.dead_owner = try_open("dead-letter", spool_mode::dead_letter, &dead_later);
    m.dead.store(m.dead_owner.get());
    m.wal_owner = try_open("write-ahead", spool_mode::write_ahead, &wal_later);
  }
  // Said before the queue exists (no queue thread can run a callback yet), so
  // the host has the line when the constructor returns.
  if (!open_errors.empty()) {
    m.post_log(log_level::error, open_errors + "; the queue works in memory meanwhile (entries are not protected "
                                             "against a crash, dropped entries are not kept) and retries the spool "
                                             "in the background");
  } else if (dead_later || wal_later) {
    m.post_log(log_level::warn, "spool in " + m.opt.spool_dir +
                                  " is held by another process (an old worker?); working in memory until it "
                                  "lets go");
  }

  batch_queue_callbacks<log_record> qcb;
  qcb.process = [&m](span<const log_record> b, const attempt_context& ctx) { return m.process(b, ctx); };
  qcb.on_delivered = [&m](span<const log_record> b) { m.ack(b); };
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

  if (m.wal_owner) {
    // Published before the replay: acknowledgements of replayed entries
    // delivered while the replay is still running must reach the spool.
    m.wal.store(m.wal_owner.get());
    m.replay(*m.wal_owner);
  }
  if (dead_later || wal_later) m.open_later(dead_later, wal_later);
}

http_log::~http_log() {
  if (impl_->q->forked()) {
    // A child of fork(): the opener, the spools' threads and the senders'
    // connections are the parent's. Free the entries (queue, pull buffer);
    // keep the rest, untouched, for the life of the process.
    impl* m = impl_.release();
    std::deque<dropped_entry>().swap(m->drops);
    m->q.reset();
    detail::keep_forever(std::shared_ptr<void>(m, [](void*) {}));
    return;
  }
  impl_->stop_opener();  // it may be re-queueing into the queue
  {
    std::lock_guard<std::mutex> g(impl_->sd_mu);
    if (impl_->sd_thread.joinable()) impl_->sd_thread.join();  // bounded by its deadline
  }
  shutdown(impl_->opt.queue.shutdown_timeout);
  // The spools close while the (finished) queue still takes their threads'
  // log lines; then the queue goes.
  impl_->dead.store(nullptr);
  impl_->wal.store(nullptr);
  impl_->dead_owner.reset();
  impl_->wal_owner.reset();
  impl_->qlog.store(nullptr);
  impl_->q.reset();
}

enqueue_result http_log::enqueue(std::string entry, std::string* error) {
  impl& m = *impl_;
  if (m.q->forked()) throw fork_error();  // before the write-ahead append
  if (m.opt.validate_json) {
    std::string why;
    if (!validate_json(entry, &why)) {
      m.q->count_refused(enqueue_result::invalid_json);
      if (error) *error = std::move(why);
      return enqueue_result::invalid_json;
    }
  }
  // The poison-entry rule, for every format: an entry that would change the
  // body's framing (two values, unbalanced brackets, a raw newline in ndjson)
  // is refused here, before it can take a batch down with it. An entry
  // validate_json passed is one JSON value: only ndjson's raw newlines can
  // still fail the rule, so the second scan is made for ndjson only.
  const bool framed = m.opt.validate_json && m.opt.format != payload_format::ndjson;
  if (std::string why; !framed && !check_framing(entry, m.opt.format, &why)) {
    m.q->count_refused(enqueue_result::invalid_json);
    if (error) *error = std::move(why);
    return enqueue_result::invalid_json;
  }
  const std::size_t n = entry.size();
  log_record rec{std::move(entry), 0};
  spool* w = m.opt.spool == spool_mode::write_ahead ? m.wal.load(std::memory_order_acquire) : nullptr;
  if (w && !(m.opt.queue.max_bytes && n > m.opt.queue.max_bytes)) {
    // In the page cache before enqueue returns: a kill -9 from here on loses nothing.
    record_meta meta;
    meta.time_ms = unix_ms();
    rec.seq = w->append(rec.data, meta);
    if (rec.seq == 0) m.wal_unprotected.fetch_add(1, std::memory_order_relaxed);  // a write error: counted by the spool too
  } else if (m.opt.spool == spool_mode::write_ahead && !m.opt.spool_dir.empty()) {
    m.wal_unprotected.fetch_add(1, std::memory_order_relaxed);
  }
  const std::uint64_t seq = rec.seq;
  const enqueue_result r = m.q->enqueue(std::move(rec));
  if (r != enqueue_result::accepted && seq) w->ack(seq, seq);  // refused: the caller keeps it
  if (r != enqueue_result::accepted && error) *error = m.refused_text(r, n);
  return r;
}

enqueue_result http_log::enqueue_lua(std::string encoded, std::string* error) {
  impl& m = *impl_;
  std::string why;
  if (!lua_json_check(encoded, &why)) {
    m.q->count_refused(enqueue_result::invalid_json);
    if (error) *error = std::move(why);
    return enqueue_result::invalid_json;
  }
  if (m.opt.spool == spool_mode::write_ahead && !m.opt.spool_dir.empty()) {
    // The write-ahead record is appended before enqueue returns and must be
    // JSON like every spooled entry: in this mode the conversion is here.
    std::string json;
    lua_to_json_or_error(encoded, json);
    return enqueue(std::move(json), error);
  }
  const std::size_t n = encoded.size();
  const enqueue_result r = m.q->enqueue(log_record{std::move(encoded), 0, true});
  if (r != enqueue_result::accepted && error) *error = m.refused_text(r, n);
  return r;
}

bool http_log::flush(std::chrono::milliseconds timeout) noexcept { return impl_->q->flush(timeout); }

bool http_log::forked() const noexcept { return impl_->q->forked(); }

bool http_log::shutdown(std::chrono::milliseconds timeout) noexcept {
  if (impl_->q->forked()) return false;
  impl_->sd_started.store(true);
  if (impl_->q->forked()) return false;
  impl_->stop_opener();  // no spool takeover (nor its log lines) after a shutdown
  using namespace std::chrono;
  const auto deadline = std::chrono::steady_clock::now() + std::min<milliseconds>(timeout, hours(24 * 365 * 10)) +
                        shutdown_write_budget;
  std::int64_t unset = INT64_MAX;  // a second (idempotent) call keeps the first deadline
  impl_->shutdown_deadline_ns.compare_exchange_strong(unset, deadline.time_since_epoch().count());
  const bool ok = impl_->q->shutdown(timeout);
  if (!impl_->past_shutdown_deadline())
    for (spool* s : {impl_->dead.load(), impl_->wal.load()})
      if (s) s->sync();
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
  spool_figures f;
  for (spool* sp : {impl_->dead.load(), impl_->wal.load()}) {
    if (!sp) continue;
    const batchq::spool_stats s = sp->stats();
    f.records += s.appended;
    f.bytes += s.bytes;
    f.durable_seq = s.durable_seq;  // the write-ahead spool's, when there is one (it comes last)
    f.errors += s.write_errors;
    f.damaged_records += s.corrupt_records + s.torn_records;
    f.damaged_bytes += s.skipped_bytes + s.truncated_bytes;
  }
  f.replayed = impl_->replayed.load();
  f.evicted = impl_->evicted.load();
  f.replay_refused = impl_->replay_refused.load();
  f.unprotected = impl_->wal_unprotected.load();
  f.unavailable = impl_->spool_down.load() ? 1 : 0;
  return f;
}

buffer_figures http_log::buffer_stats() const {
  if (impl_->q->forked()) throw fork_error();
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
  if (impl_->q->forked()) throw fork_error();
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
  return poll_log(level, line, std::string::npos, nullptr);
}

bool http_log::poll_log(log_level& level, std::string& line, std::size_t max_size, std::size_t* needed) {
  if (impl_->q->forked()) throw fork_error();
  std::lock_guard<std::mutex> g(impl_->buf_mu);
  if (needed) *needed = 0;
  if (impl_->lines.empty()) return false;
  if (impl_->lines.front().second.size() >= max_size) {
    if (needed) *needed = impl_->lines.front().second.size();
    return false;
  }
  level = impl_->lines.front().first;
  line = std::move(impl_->lines.front().second);
  impl_->lines.pop_front();
  return true;
}

const http_log_options& http_log::options() const noexcept { return impl_->opt; }

}  // namespace batchq
