// spool_pair: http_log's two spools under spool_dir, and everything about
// them that is not the queue's business. Private to lib/.
//
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
//
// The pair checks and creates the directories, opens both spools (or, when
// another process holds one or it cannot be used, opens it later on a thread
// of its own and takes it over), replays the write-ahead spool into the
// queue, merges acknowledgements into ranges, writes what is dropped, and
// keeps the figures that are not the spool's own (replayed, replay_refused,
// evicted, unprotected, unavailable).
#ifndef BATCHQ_LIB_SPOOL_PAIR_HPP
#define BATCHQ_LIB_SPOOL_PAIR_HPP

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "batchq/http_log.hpp"
#include "log_record.hpp"

namespace batchq::detail {

class spool_pair {
 public:
  /// What the pair needs from its owner. Both are called without a lock of
  /// the pair held.
  struct hooks {
    /// A log line, from open() (the constructor's thread) or the pair's
    /// threads (opener, evictions, damage): http_log posts it through the queue.
    std::function<void(log_level, std::string)> log;
    /// Re-queues an entry of the write-ahead spool (replay; start() or the
    /// opener thread).
    std::function<enqueue_result(log_record&&)> requeue;
  };

  /// `o` as http_log_options::spool; nothing happens on disk until open().
  spool_pair(const spool_options& o, hooks h);
  ~spool_pair();
  spool_pair(const spool_pair&) = delete;
  spool_pair& operator=(const spool_pair&) = delete;

  /// Opens both spools. A spool_dir that exists and is not a directory throws
  /// spool_dir_error; a spool that cannot be opened (held by another process,
  /// permissions, a read-only disk...) is said in one log line and left to
  /// start(). Call once, before the queue exists.
  void open();
  /// Publishes the write-ahead spool and replays it into the queue, then
  /// starts the opener thread for what open() could not open. Call once, when
  /// the queue exists, with every signal blocked (the thread inherits the mask).
  void start();
  /// Stops the opener thread (no takeover after a shutdown). Idempotent; may
  /// run on two threads at once.
  void stop_opener();
  /// Closes both spools (after the queue has finished). Idempotent.
  void close() noexcept;

  /// Enqueue path, write_ahead mode: appends the entry before it is queued
  /// and returns its seq, or 0 when it is not protected (no spool open yet,
  /// a write error, or `fits` false: over the queue's max_bytes, which the
  /// queue refuses anyway), counted in unprotected. 0 at once in
  /// dead_letter mode or without a spool_dir.
  std::uint64_t protect(std::string_view data, bool fits) {
    if (!write_ahead_) return 0;
    return protect_slow(data, fits);
  }
  /// The queue refused an entry protect() appended: the caller keeps it.
  void release(std::uint64_t seq) noexcept;
  /// Sending path: with spool_fsync always, syncs the write-ahead spool
  /// before a batch goes out.
  void sync_before_send() noexcept;
  /// Acknowledges the delivered entries' write-ahead records.
  void ack(span<const log_record> batch);

  /// What keep_dropped() did.
  struct kept {
    bool spooled = true;    ///< every entry is in the dead-letter spool (shutdown: or the write-ahead one)
    std::size_t late = 0;  ///< entries a shutdown cut short and its deadline left unwritten
  };
  /// Writes dropped entries (JSON) to the dead-letter spool, stamped
  /// info.time_ms, and acknowledges their write-ahead records. Entries cut
  /// short by a shutdown (reason shutdown) go to the write-ahead spool for
  /// the next owner, but only while steady-clock ns <= write_until_ns; one
  /// that already has a write-ahead record is written again at the end and
  /// the old record acknowledged, so that no pending record holds back the
  /// mark over entries acknowledged above it (past the deadline, or where
  /// the copy would reach the spool's max_bytes, it keeps its old record).
  kept keep_dropped(span<log_record> entries, const drop_info& info, std::int64_t write_until_ns);
  /// Syncs both spools (the end of a shutdown).
  void sync() noexcept;
  /// Whether a spool is configured at all (spool_dir set).
  bool configured() const noexcept { return !opt_.dir.empty(); }

  spool_figures figures() const;

 private:
  std::unique_ptr<spool> open_one(const char* sub, spool_mode mode, bool* locked);
  void replay(spool& w);
  void open_later(bool want_dead, bool want_wal);
  void ack_seqs(std::vector<std::uint64_t>& seqs);
  std::uint64_t protect_slow(std::string_view data, bool fits);

  const spool_options opt_;
  const bool write_ahead_;
  const hooks hooks_;

  // Opened by open(); a spool another process still holds (an old nginx
  // worker draining after a reload) is taken over by the opener thread once
  // that process lets go. Until then the queue works in memory only. The raw
  // pointers are what the hot paths read.
  std::unique_ptr<spool> dead_owner_, wal_owner_;
  std::atomic<spool*> dead_{nullptr}, wal_{nullptr};
  bool dead_later_ = false, wal_later_ = false;
  std::atomic<std::uint64_t> replayed_{0};
  std::atomic<std::uint64_t> unprotected_{0};  // accepted while the WAL was not open
  std::atomic<std::uint64_t> evicted_{0};
  std::atomic<std::uint64_t> replay_refused_{0};
  std::atomic<bool> down_{false};  // a configured spool could not be opened (not: held by another process)
  std::thread opener_;
  std::mutex opener_mu_;
  std::mutex opener_join_mu_;
  std::condition_variable opener_cv_;
  bool stopping_ = false;
};

}  // namespace batchq::detail

#endif  // BATCHQ_LIB_SPOOL_PAIR_HPP
