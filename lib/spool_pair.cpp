// http_log's spool pair (see spool_pair.hpp).
#include "spool_pair.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <utility>

#include "spool_record.hpp"

namespace batchq {

namespace {
std::atomic<void (*)(std::uint64_t)> g_replay_hook{nullptr};
}  // namespace

namespace detail {

void set_replay_hook(void (*hook)(std::uint64_t seq)) noexcept { g_replay_hook.store(hook); }

spool_pair::spool_pair(const spool_options& o, hooks h)
    : opt_(o), write_ahead_(!o.dir.empty() && o.mode == spool_mode::write_ahead), hooks_(std::move(h)) {}

spool_pair::~spool_pair() {
  stop_opener();
  close();
}

// Opens one spool; creates its directory (0700) under spool_dir if missing.
// Returns nullptr with *locked = true when another process holds it.
std::unique_ptr<spool> spool_pair::open_one(const char* sub, spool_mode mode, bool* locked) {
  const std::string& root = opt_.dir;
  const std::string dir = root + "/" + sub;
  // spool_dir and its missing parents too (0700, like `mkdir -p`), so a
  // host can give each queue its own directory below a shared root (the
  // Kong plugin: <spool_dir>/<queue-id>/worker-<n>) without a mkdir of its
  // own; again on each retry when they could not be made before.
  for (std::size_t i = 1; i <= root.size(); ++i) {
    if (i < root.size() && root[i] != '/') continue;
    const std::string part = root.substr(0, i);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
      throw spool_dir_error("spool_dir: cannot create \"" + part + "\": " + std::strerror(errno));
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw spool_dir_error("spool_dir: cannot create \"" + dir + "\": " + std::strerror(errno));
  // A symlink planted there would send our records wherever it points.
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw spool_dir_error("spool_dir: \"" + dir + "\" is not a directory (a symlink is refused)");
  spool_options so = opt_;
  so.dir = dir;
  so.mode = mode;
  so.read_only = false;
  const bool is_wal = mode == spool_mode::write_ahead;
  so.on_evict = [this, is_wal, dir](const spool_record& r) {
    if (evicted_.fetch_add(1) % 10000 == 0)
      hooks_.log(log_level::error, std::string("spool cap (spool_max_bytes) reached in ") + dir + ": the oldest " +
                                       (is_wal ? "write-ahead records are no longer protected against a crash"
                                               : "dead letters are being deleted") +
                                       " (first seq " + std::to_string(r.seq) + ")");
  };
  so.on_damage = [this](const spool_damage& d) { hooks_.log(log_level::error, d.message); };
  spool_error why;
  auto sp = spool::open(so, &why);
  if (!sp) {
    if (why.code == spool_errc::locked) {
      *locked = true;
      return nullptr;
    }
    throw spool_dir_error("spool_dir: " + why.message);
  }
  return sp;
}

void spool_pair::open() {
  if (!configured()) return;
  // The one configuration error: a spool_dir that exists and is not a
  // directory. Missing components are created by open_one; one this
  // process may not create or look into (EACCES, a file in the path...) is
  // a runtime condition like the others: the queue runs in memory, says so
  // loudly (log, spool_unavailable) and keeps trying.
  struct stat st {};
  if (::stat(opt_.dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    throw spool_dir_error("spool_dir: \"" + opt_.dir + "\" is not a directory");
  std::string open_errors;
  auto try_open = [&](const char* sub, spool_mode mode, bool* later) -> std::unique_ptr<spool> {
    bool locked = false;
    try {
      auto sp = open_one(sub, mode, &locked);
      if (!sp) *later = true;
      return sp;
    } catch (const spool_dir_error& e) {
      *later = true;
      down_.store(true);
      open_errors += (open_errors.empty() ? "" : "; ") + std::string(e.what());
      return nullptr;
    }
  };
  dead_owner_ = try_open("dead-letter", spool_mode::dead_letter, &dead_later_);
  dead_.store(dead_owner_.get());
  wal_owner_ = try_open("write-ahead", spool_mode::write_ahead, &wal_later_);
  if (!open_errors.empty()) {
    hooks_.log(log_level::error, open_errors + "; the queue works in memory meanwhile (entries are not protected "
                                               "against a crash, dropped entries are not kept) and retries the spool "
                                               "in the background");
  } else if (dead_later_ || wal_later_) {
    hooks_.log(log_level::warn, "spool in " + opt_.dir +
                                    " is held by another process (an old worker?); working in memory until it "
                                    "lets go");
  }
}

void spool_pair::start() {
  if (wal_owner_) {
    // Published before the replay: acknowledgements of replayed entries
    // delivered while the replay is still running must reach the spool.
    wal_.store(wal_owner_.get());
    replay(*wal_owner_);
  }
  if (dead_later_ || wal_later_) open_later(dead_later_, wal_later_);
}

// Re-queues what a previous owner left in the write-ahead spool. Entries the
// queue refuses now (full with refuse_new, over max_bytes) become dead
// letters rather than holding the acknowledgement mark; with the queue shut
// down they stay for the next owner.
void spool_pair::replay(spool& w) {
  w.for_each([&](const spool_record& r) {
    if (r.kind != record_kind::entry) return true;
    log_record rec;
    rec.own = std::string(r.payload);
    rec.seq = r.seq;
    const enqueue_result res = hooks_.requeue(std::move(rec));
    if (auto hook = g_replay_hook.load()) hook(r.seq);
    if (res == enqueue_result::accepted) {
      replayed_.fetch_add(1);
    } else if (res != enqueue_result::shut_down) {
      spool* d = dead_.load();
      record_meta meta;
      meta.kind = record_kind::dropped;
      meta.reason = static_cast<std::uint8_t>(res == enqueue_result::too_large ? drop_reason::too_large
                                                                                : drop_reason::queue_full);
      meta.time_ms = unix_ms();
      meta.last_error = "refused when re-queued from the write-ahead spool";
      if (d && d->append(r.payload, meta) != 0) w.ack(r.seq, r.seq);
      replay_refused_.fetch_add(1);
    }
    return true;
  });
}

// Opens in the background what could not be opened at construction: a spool
// another process still holds (an old nginx worker draining after a reload;
// tried every second) or one this process cannot use (permissions, a
// read-only disk...; tried with a backoff of 1 s doubling up to 30 s). Until
// then the queue works in memory. The write-ahead spool is published before
// its replay, so that entries delivered while the replay still runs are
// acknowledged like any others.
void spool_pair::open_later(bool want_dead, bool want_wal) {
  opener_ = std::thread([this, want_dead, want_wal] {
    bool need[2] = {want_dead, want_wal};
    bool failed_before = down_.load();
    std::string last_error;
    auto delay = std::chrono::milliseconds(1000);
    std::unique_lock<std::mutex> lk(opener_mu_);
    while (!stopping_ && (need[0] || need[1])) {
      opener_cv_.wait_for(lk, delay);
      if (stopping_) break;
      bool failed = false;
      for (int i = 0; i < 2; ++i) {
        if (!need[i]) continue;
        const bool is_dead = i == 0;
        try {
          bool locked = false;
          auto sp = open_one(is_dead ? "dead-letter" : "write-ahead",
                             is_dead ? spool_mode::dead_letter : spool_mode::write_ahead, &locked);
          if (!sp) continue;  // still held by another process
          if (is_dead) {
            dead_owner_ = std::move(sp);
            dead_.store(dead_owner_.get());
          } else {
            wal_owner_ = std::move(sp);
            wal_.store(wal_owner_.get());
            replay(*wal_owner_);
          }
          need[i] = false;
        } catch (const std::exception& e) {
          failed = failed_before = true;
          if (last_error != e.what()) {
            last_error = e.what();
            hooks_.log(log_level::error, last_error + "; still working in memory, retrying in the background");
          }
        }
      }
      down_.store(failed);
      delay = failed ? std::min<std::chrono::milliseconds>(delay * 2, std::chrono::seconds(30))
                     : std::chrono::milliseconds(1000);
      if (!need[0] && !need[1])
        hooks_.log(log_level::info, failed_before ? "spool in " + opt_.dir +
                                                        " opened after earlier failures: entries are protected again"
                                                  : std::string("spool taken over from its previous owner"));
    }
  });
}

void spool_pair::stop_opener() {
  {
    std::lock_guard<std::mutex> g(opener_mu_);
    stopping_ = true;
  }
  opener_cv_.notify_all();
  std::lock_guard<std::mutex> once(opener_join_mu_);  // shutdown() may run on two threads at once
  if (opener_.joinable()) opener_.join();
}

void spool_pair::close() noexcept {
  dead_.store(nullptr);
  wal_.store(nullptr);
  dead_owner_.reset();
  wal_owner_.reset();
}

std::uint64_t spool_pair::protect_slow(std::string_view data, bool fits) {
  spool* w = wal_.load(std::memory_order_acquire);
  if (w && fits) {
    // In the page cache before enqueue returns: a kill -9 from here on loses nothing.
    record_meta meta;
    meta.time_ms = unix_ms();
    const std::uint64_t seq = w->append(data, meta);
    if (seq == 0) unprotected_.fetch_add(1, std::memory_order_relaxed);  // a write error: counted by the spool too
    return seq;
  }
  unprotected_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

void spool_pair::release(std::uint64_t seq) noexcept {
  if (spool* w = wal_.load(); seq && w) w->ack(seq, seq);
}

void spool_pair::sync_before_send() noexcept {
  if (spool* w = wal_.load(); w && opt_.fsync == fsync_policy::always) w->sync();
}

// Acknowledges write-ahead records, merging consecutive seqs into ranges.
void spool_pair::ack_seqs(std::vector<std::uint64_t>& seqs) {
  spool* w = wal_.load();
  if (!w || seqs.empty()) return;
  std::sort(seqs.begin(), seqs.end());
  for (std::size_t i = 0; i < seqs.size();) {
    std::size_t j = i;
    while (j + 1 < seqs.size() && seqs[j + 1] == seqs[j] + 1) ++j;
    w->ack(seqs[i], seqs[j]);
    i = j + 1;
  }
}

void spool_pair::ack(span<const log_record> batch) {
  thread_local std::vector<std::uint64_t> seqs;
  seqs.clear();
  for (const auto& r : batch)
    if (r.seq) seqs.push_back(r.seq);
  ack_seqs(seqs);
}

spool_pair::kept spool_pair::keep_dropped(span<log_record> entries, const drop_info& info,
                                          std::int64_t write_until_ns) {
  kept k;
  spool* d = dead_.load();
  record_meta meta;
  meta.kind = record_kind::dropped;
  meta.reason = static_cast<std::uint8_t>(info.reason);
  meta.attempts = static_cast<std::uint16_t>(std::min<std::size_t>(info.attempts, 65535));
  meta.time_ms = info.time_ms;
  meta.last_error = info.last_error;
  thread_local std::vector<std::uint64_t> done;   // write-ahead copies no longer needed
  thread_local std::vector<std::uint64_t> moved;  // write-ahead records written again at the end
  done.clear();
  moved.clear();
  spool* w = wal_.load();
  // What a shutdown cuts short is written only until its deadline (plus
  // shutdown_write_budget): shutdown(t) must return in time however much is
  // queued. The rest is reported unspooled (already counted as dropped with
  // reason shutdown).
  const bool cut = info.reason == drop_reason::shutdown;
  // Bytes the write-ahead spool can still take before its cap evicts its
  // oldest segment, read once here (4 KiB kept spare for what other threads
  // append meanwhile). An entry that already has a record is written again
  // only within them: a shutdown's copies must not push out of the spool
  // the records it still needs.
  std::uint64_t room = std::numeric_limits<std::uint64_t>::max();
  if (cut && w && opt_.max_bytes != 0) {
    const std::uint64_t used = w->stats().bytes + 4096;
    room = used < opt_.max_bytes ? opt_.max_bytes - used : 0;
  }
  auto past_deadline = [write_until_ns] {
    return std::chrono::steady_clock::now().time_since_epoch().count() > write_until_ns;
  };
  for (std::size_t i = 0; i < entries.size(); ++i) {
    auto& e = entries[i];
    if (cut && (k.late || ((i & 255) == 0 && past_deadline()))) {
      if (!e.seq) {
        ++k.late;
        k.spooled = false;
      }
      continue;  // one already in the write-ahead spool keeps its record there
    }
    if (cut && w) {
      // Cut short by a shutdown (nginx reload/quit), not by the endpoint:
      // the entry waits in the write-ahead spool for the next owner. One
      // that is already there is written again at the end and its old
      // record acknowledged: the ACK file keeps one contiguous mark, so an
      // old record left pending would hold back, on disk, the
      // acknowledgements of everything delivered or dead-lettered above it,
      // and the next owner would send those again. If it cannot be written
      // again, or only past the cap, it keeps its old record.
      const std::uint64_t need = detail::record_header_bytes + e.data().size();
      if (e.seq && need > room) continue;
      room -= std::min(room, need);
      record_meta pending;
      pending.time_ms = meta.time_ms;
      pending.attempts = meta.attempts;
      const bool written = w->append(e.data(), pending) != 0;
      if (written && e.seq) moved.push_back(e.seq);
      if (written || e.seq) continue;  // not written: a new entry becomes a dead letter, an old one stays
    }
    if (!d || d->append(e.data(), meta) == 0) k.spooled = false;
    if (e.seq) done.push_back(e.seq);
  }
  if (d && opt_.fsync == fsync_policy::always) d->sync();
  ack_seqs(done);
  if (!moved.empty()) {
    // The copies on disk before the old records are acknowledged (an ACK
    // file may reach the disk before the segment it refers to).
    if (opt_.fsync != fsync_policy::never) w->sync();
    ack_seqs(moved);
  }
  if (!d && !w) k.late = 0;  // nothing to write to: not a deadline matter
  return k;
}

void spool_pair::sync() noexcept {
  for (spool* s : {dead_.load(), wal_.load()})
    if (s) s->sync();
}

spool_figures spool_pair::figures() const {
  spool_figures f;
  for (spool* sp : {dead_.load(), wal_.load()}) {
    if (!sp) continue;
    const spool_stats s = sp->stats();
    f.records += s.appended;
    f.bytes += s.bytes;
    f.durable_seq = s.durable_seq;  // the write-ahead spool's, when there is one (it comes last)
    f.errors += s.write_errors;
    f.damaged_records += s.corrupt_records + s.torn_records;
    f.damaged_bytes += s.skipped_bytes + s.truncated_bytes;
  }
  f.replayed = replayed_.load();
  f.evicted = evicted_.load();
  f.replay_refused = replay_refused_.load();
  f.unprotected = unprotected_.load();
  f.unavailable = down_.load() ? 1 : 0;
  return f;
}

}  // namespace detail
}  // namespace batchq
