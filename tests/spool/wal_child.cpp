// batchq_wal_child - the process test_spool_e2e kills: an http_log in
// write_ahead mode that enqueues {"id":N} entries and logs each accepted N.
//
// Usage:
//   batchq_wal_child --spool DIR --url URL --accepted FILE --first N
//   batchq_wal_child --spool DIR --url URL --drain [--slow-replay MS] [--retry-count N]
//
// Feed mode (the default): opens the http_log on spool_dir DIR (which replays
// what an earlier, killed child left in DIR/write-ahead), then enqueues
// {"id":N}, {"id":N+1}, ... at a steady pace until it is killed. After each
// enqueue that returned `accepted`, N and a newline are appended to FILE with
// one write(2), so when the process dies the file lists exactly the ids the
// queue had accepted (an id enqueued but not yet written there may still be
// delivered: that is an extra, never a loss). A refused id (queue full) is
// written as -N and not retried.
//
// Drain mode: opens the http_log (replaying what is left), waits until the
// queue is empty (flush), shuts down and prints one line
//   drained replayed=<R> delivered=<D> dropped=<X> left=<L>
// where L is what is still unacknowledged in DIR/write-ahead afterwards.
// Exit 0 if nothing was dropped and nothing is left, else 1. --slow-replay MS
// pauses the replay for MS ms after its first record (a test hook of
// http_log), so that deliveries start while the replay still runs, as on a
// busy machine. --retry-count N replaces the retry count (1000) of the queue.
//
// Exit status 2 for bad arguments or options, 1 if the http_log cannot start.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>

#include "batchq/http_log.hpp"
#include "batchq/spool.hpp"

namespace {

struct config {
  std::string spool_dir;
  std::string url;
  std::string accepted_file;
  unsigned long long first = 1;
  bool drain = false;
  long slow_replay_ms = 0;
  long retry_count = 1000;  // the receiver is up: nothing should ever be dropped
};

long g_slow_replay_ms = 0;
void slow_replay(std::uint64_t) {
  static bool paused = false;  // the replay runs on one thread
  if (paused) return;
  paused = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(g_slow_replay_ms));
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "batchq_wal_child: %s\n"
               "usage: batchq_wal_child --spool DIR --url URL (--accepted FILE --first N | --drain)\n",
               why.c_str());
  std::exit(2);
}

config parse(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--spool") {
      c.spool_dir = value();
    } else if (a == "--url") {
      c.url = value();
    } else if (a == "--accepted") {
      c.accepted_file = value();
    } else if (a == "--first") {
      const std::string v = value();
      char* end = nullptr;
      c.first = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0') usage("bad number for --first");
    } else if (a == "--drain") {
      c.drain = true;
    } else if (a == "--slow-replay") {
      c.slow_replay_ms = std::strtol(value().c_str(), nullptr, 10);
    } else if (a == "--retry-count") {
      c.retry_count = std::strtol(value().c_str(), nullptr, 10);
    } else {
      usage("unknown argument " + a);
    }
  }
  if (c.spool_dir.empty() || c.url.empty()) usage("--spool and --url are required");
  if (!c.drain && c.accepted_file.empty()) usage("--accepted is required unless --drain");
  return c;
}

batchq::http_log_options log_options(const config& c) {
  batchq::http_log_options o;
  o.http.http_endpoint = c.url;
  o.http.timeout = std::chrono::milliseconds(5000);
  o.format = batchq::payload_format::json_array;
  o.queue.batch_max_size = 50;
  o.queue.flush_timeout = std::chrono::milliseconds(20);
  o.queue.flush = batchq::flush_mode::coalescing;
  o.queue.process_delay = std::chrono::milliseconds(0);
  o.queue.max_entries = 2000;  // more than the pace lets pile up: replay never hits it
  o.queue.overflow = batchq::overflow_policy::refuse_new;
  o.queue.retry_count = static_cast<int>(c.retry_count);
  o.queue.backoff = batchq::backoff_policy::exponential;
  o.queue.initial_retry_delay = std::chrono::milliseconds(5);
  o.queue.max_retry_delay = std::chrono::milliseconds(100);
  o.queue.shutdown_timeout = std::chrono::milliseconds(20000);
  o.spool.dir = c.spool_dir;
  o.spool.mode = batchq::spool_mode::write_ahead;
  o.spool.fsync = batchq::fsync_policy::interval;  // kill -9 needs no fsync; exercise the thread anyway
  o.spool.fsync_interval = std::chrono::milliseconds(50);
  return o;
}

bool write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

int feed(const config& c) {
  const int fd = ::open(c.accepted_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "batchq_wal_child: cannot open %s: %s\n", c.accepted_file.c_str(), std::strerror(errno));
    return 1;
  }
  batchq::http_log log(log_options(c));
  for (unsigned long long id = c.first;; ++id) {
    const batchq::enqueue_result r = log.enqueue("{\"id\":" + std::to_string(id) + "}");
    if (r == batchq::enqueue_result::accepted) {
      if (!write_all(fd, std::to_string(id) + "\n")) {
        std::fprintf(stderr, "batchq_wal_child: cannot write %s: %s\n", c.accepted_file.c_str(),
                     std::strerror(errno));
        return 1;
      }
    } else {
      // Refused (queue full): logged as "-N" so that the parent can tell such
      // an id apart if it arrives anyway.
      if (!write_all(fd, "-" + std::to_string(id) + "\n")) return 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let it drain
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

int drain(const config& c) {
  std::atomic<std::uint64_t> dropped{0};
  batchq::http_log_callbacks cb;
  cb.on_drop = [&](batchq::span<std::string> entries, const batchq::drop_info&, bool) {
    dropped.fetch_add(entries.size());
  };
  cb.on_log = [](batchq::log_level, std::string_view) {};
  std::uint64_t replayed = 0, delivered = 0;
  if (c.slow_replay_ms > 0) {
    g_slow_replay_ms = c.slow_replay_ms;
    batchq::detail::set_replay_hook(slow_replay);
  }
  {
    batchq::http_log log(log_options(c), cb);
    replayed = log.spool_stats().replayed;
    if (!log.flush(std::chrono::seconds(30))) std::fprintf(stderr, "batchq_wal_child: flush timed out\n");
    log.shutdown(std::chrono::seconds(20));
    delivered = log.stats().delivered;
  }
  batchq::spool_options so;
  so.dir = c.spool_dir + "/write-ahead";
  so.read_only = true;
  so.max_bytes = 0;
  so.fsync = batchq::fsync_policy::never;
  batchq::spool_error why;
  const auto sp = batchq::spool::open(so, &why);
  if (!sp) {
    std::fprintf(stderr, "batchq_wal_child: %s\n", why.message.c_str());
    return 1;
  }
  const std::size_t left = sp->read_all().size();
  std::printf("drained replayed=%llu delivered=%llu dropped=%llu left=%zu\n",
              static_cast<unsigned long long>(replayed), static_cast<unsigned long long>(delivered),
              static_cast<unsigned long long>(dropped.load()), left);
  std::fflush(stdout);
  return dropped.load() == 0 && left == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const config c = parse(argc, argv);
  try {
    return c.drain ? drain(c) : feed(c);
  } catch (const batchq::options_error& e) {
    std::fprintf(stderr, "batchq_wal_child: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "batchq_wal_child: %s\n", e.what());
    return 1;
  }
}
