// tests/soak/soak.cpp - producers at a steady rate through batchq::http_log
// against a loopback receiver that flaps, for a configurable time.
//
//   batchq_soak [--seconds N] [--rate N] [--producers N] [--phase-ms N]
//               [--rss-margin-mib N] [--warmup-seconds N] [--default-seconds N]
//   environment: SOAK_SECONDS, SOAK_RATE, SOAK_PRODUCERS, SOAK_PHASE_MS
//   (command-line flags win; --default-seconds is used when neither
//   --seconds nor SOAK_SECONDS is given; built-in default 60 s, 2000/s)
//
// The receiver cycles through phases of --phase-ms each:
//   ok (200) -> 500 -> ok -> 429 + Retry-After: 1 -> ok -> reset -> ok -> slow
// "reset" stops the server (every open connection closed at once, new
// connections refused) and restarts it at the end of the phase; "slow" answers
// 200 only after 600 ms, past the 300 ms request timeout. A flusher thread
// calls flush(500 ms) every 3 s. Retries are deliberately short (5 attempts,
// exponential 10..250 ms, max_retry_time 1.5 s) so that the failure phases do
// drop batches: the run checks both paths, delivery and reported drops.
//
// At the end (receiver healthy again, everything flushed, queue shut down):
//   produced == stats.enqueued (nothing refused)
//   produced == stats.delivered + dropped reported by on_drop, stats balanced
//   loss == 0: every entry id was either answered 200 by the receiver in
//     time or reported to on_drop (checked per id, on the receiver's side)
//   no id reported dropped twice; the ids not dropped == delivered
//   RSS at the end <= RSS after warm-up + margin (a leak check, not a speed
//     check); file descriptors after everything is torn down <= before.
// Prints one summary line ("soak: ...") and exits 0, or 1 naming what failed.
#include <dirent.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "batchq/batch_queue.hpp"
#include "batchq/http_log.hpp"
#include "support/receiver.hpp"

// Under ASan freed memory sits in a quarantine (up to 256 MiB) before it is
// reused, so RSS grows without any leak: there LeakSanitizer does the leak
// check at exit and the RSS figures are only printed.
#if defined(__SANITIZE_ADDRESS__)
#define BATCHQ_SOAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BATCHQ_SOAK_ASAN 1
#endif
#endif
#ifndef BATCHQ_SOAK_ASAN
#define BATCHQ_SOAK_ASAN 0
#endif

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct settings {
  double seconds = 60;
  double rate = 2000;  // entries per second, all producers together
  int producers = 2;
  int phase_ms = 2000;
  double warmup_seconds = -1;  // default: a quarter of the run, at most 60 s
  double rss_margin_mib = 16;
};

double env_or(const char* name, double dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atof(v) : dflt;
}

settings parse_args(int argc, char** argv) {
  settings s;
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::string(argv[i]) == "--default-seconds") s.seconds = std::atof(argv[i + 1]);
  s.seconds = env_or("SOAK_SECONDS", s.seconds);
  s.rate = env_or("SOAK_RATE", s.rate);
  s.producers = static_cast<int>(env_or("SOAK_PRODUCERS", s.producers));
  s.phase_ms = static_cast<int>(env_or("SOAK_PHASE_MS", s.phase_ms));
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (k == "--seconds") s.seconds = v;
    else if (k == "--rate") s.rate = v;
    else if (k == "--producers") s.producers = static_cast<int>(v);
    else if (k == "--phase-ms") s.phase_ms = static_cast<int>(v);
    else if (k == "--warmup-seconds") s.warmup_seconds = v;
    else if (k == "--rss-margin-mib") s.rss_margin_mib = v;
    else if (k == "--default-seconds") continue;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (s.seconds <= 0 || s.rate <= 0 || s.producers < 1 || s.phase_ms < 50) {
    std::fprintf(stderr, "bad settings\n");
    std::exit(2);
  }
  if (s.warmup_seconds < 0) s.warmup_seconds = std::min(60.0, s.seconds / 4);
  return s;
}

long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

int open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the directory stream itself
}

enum class phase : int { ok = 0, status500, status429, reset, slow };
constexpr const char* phase_name[] = {"ok", "500", "429", "reset", "slow"};
constexpr phase schedule[] = {phase::ok, phase::status500, phase::ok, phase::status429,
                              phase::ok, phase::reset,     phase::ok, phase::slow};

// Per entry id: bit 0 = answered 200 in time by the receiver, bit 1 = reported
// dropped, bit 2 = reported dropped more than once.
constexpr std::uint8_t k_ok = 1, k_dropped = 2, k_twice = 4;

// The id at the start of an entry: {"id":123,...}
bool id_of(std::string_view e, std::uint64_t* id) {
  constexpr std::string_view prefix = "{\"id\":";
  if (e.substr(0, prefix.size()) != prefix) return false;
  std::uint64_t v = 0;
  std::size_t i = prefix.size();
  if (i >= e.size() || e[i] < '0' || e[i] > '9') return false;
  for (; i < e.size() && e[i] >= '0' && e[i] <= '9'; ++i) v = v * 10 + static_cast<std::uint64_t>(e[i] - '0');
  *id = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const settings cfg = parse_args(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);

  const int fds_start = open_fds();
  const std::uint64_t capacity =
      static_cast<std::uint64_t>(cfg.rate * cfg.seconds * 1.2) + 1000 * static_cast<std::uint64_t>(cfg.producers);
  // Allocated and touched before any RSS sample.
  std::unique_ptr<std::atomic<std::uint8_t>[]> marks(new std::atomic<std::uint8_t>[capacity]);
  for (std::uint64_t i = 0; i < capacity; ++i) marks[i].store(0, std::memory_order_relaxed);

  std::atomic<int> current{static_cast<int>(phase::ok)};
  std::atomic<std::uint64_t> requests_by_phase[5] = {};
  std::atomic<std::uint64_t> bad_lines{0};
  std::uint64_t resets = 0;

  auto rx_opts = batchq::test::receiver_options{};
  rx_opts.record = false;  // hours of requests must not pile up in memory
  rx_opts.on_request = [&](const batchq::test::recorded_request& req, const batchq::test::reply& rep) {
    const bool ok = rep.status == 200 && rep.delay.count() == 0;
    std::string_view body(req.body);
    while (!body.empty()) {
      const std::size_t nl = body.find('\n');
      const std::string_view line = body.substr(0, nl);
      body = nl == std::string_view::npos ? std::string_view() : body.substr(nl + 1);
      if (line.empty()) continue;
      std::uint64_t id = 0;
      if (!id_of(line, &id) || id >= capacity) {
        ++bad_lines;
        continue;
      }
      if (ok) marks[id].fetch_or(k_ok, std::memory_order_relaxed);
    }
  };
  auto rx = std::make_unique<batchq::test::receiver>(rx_opts);
  rx->set_responder([&](const batchq::test::recorded_request&) {
    const auto p = static_cast<phase>(current.load());
    ++requests_by_phase[static_cast<int>(p)];
    switch (p) {
      case phase::status500: return batchq::test::reply::with_status(500, "soak: injected 500");
      case phase::status429: return batchq::test::reply::with_status(429, "slow down").retry_after("1");
      case phase::slow: return batchq::test::reply::with_status(200).after(600ms);
      default: return batchq::test::reply::with_status(200);
    }
  });

  batchq::http_log_options o;
  o.http.http_endpoint = rx->url("/soak");
  o.http.timeout = 300ms;
  o.http.connect_timeout = 200ms;
  o.http.content_type = "application/x-ndjson";
  o.format = batchq::payload_format::ndjson;
  o.queue.batch_max_size = 100;
  o.queue.flush_timeout = 50ms;
  o.queue.process_delay = 0ms;
  o.queue.retry_count = 5;
  o.queue.max_retry_time = 1500ms;
  o.queue.backoff = batchq::backoff_policy::exponential;
  o.queue.initial_retry_delay = 10ms;
  o.queue.max_retry_delay = 250ms;
  o.queue.max_entries = 50000;
  o.queue.concurrency = 2;
  o.queue.shutdown_timeout = 10s;

  std::atomic<std::uint64_t> dropped_reported{0};
  std::atomic<std::uint64_t> drop_calls{0};
  std::atomic<std::uint64_t> foreign_drops{0};
  std::atomic<std::uint64_t> dropped_by_reason[batchq::drop_reason_count] = {};
  batchq::http_log_callbacks cb;
  cb.on_drop = [&](batchq::span<std::string> entries, const batchq::drop_info& info, bool) {
    ++drop_calls;
    dropped_reported += entries.size();
    dropped_by_reason[static_cast<std::size_t>(info.reason)] += entries.size();
    for (const auto& e : entries) {
      std::uint64_t id = 0;
      if (!id_of(e, &id) || id >= capacity) {
        ++foreign_drops;
        continue;
      }
      const std::uint8_t before = marks[id].fetch_or(k_dropped, std::memory_order_relaxed);
      if (before & k_dropped) marks[id].fetch_or(k_twice, std::memory_order_relaxed);
    }
  };
  std::atomic<std::uint64_t> log_lines{0};
  cb.on_log = [&](batchq::log_level, std::string_view) { ++log_lines; };

  auto log = std::make_unique<batchq::http_log>(o, cb);

  const auto t0 = clock_type::now();
  const auto t_end = t0 + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(cfg.seconds));
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> produced{0}, refused{0}, out_of_ids{0};
  std::vector<std::uint64_t> made_by(static_cast<std::size_t>(cfg.producers), 0);

  std::vector<std::thread> producers;
  for (int p = 0; p < cfg.producers; ++p) {
    producers.emplace_back([&, p] {
      // Ticks of 10 ms; each tick catches up to the entries due by then.
      const double per_s = cfg.rate / cfg.producers;
      const std::string pad(80, 'x');
      std::uint64_t made = 0;
      std::uint64_t next_id = static_cast<std::uint64_t>(p);
      auto tick = clock_type::now();
      while (!stop.load(std::memory_order_relaxed)) {
        tick += 10ms;
        std::this_thread::sleep_until(tick);
        const double elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
        const auto due = static_cast<std::uint64_t>(elapsed * per_s);
        while (made < due && !stop.load(std::memory_order_relaxed)) {
          if (next_id >= capacity) {
            ++out_of_ids;
            break;
          }
          std::string e = "{\"id\":" + std::to_string(next_id) + ",\"producer\":" + std::to_string(p) +
                          ",\"pad\":\"" + pad + "\"}";
          const auto r = log->enqueue(std::move(e));
          if (r == batchq::enqueue_result::accepted) ++produced;
          else ++refused;
          next_id += static_cast<std::uint64_t>(cfg.producers);
          ++made;
        }
      }
      made_by[static_cast<std::size_t>(p)] = made;
    });
  }

  std::atomic<std::uint64_t> flushes{0}, flush_timeouts{0};
  std::thread flusher([&] {
    while (!stop.load()) {
      for (int i = 0; i < 30 && !stop.load(); ++i) std::this_thread::sleep_for(100ms);
      if (stop.load()) break;
      ++flushes;
      if (!log->flush(500ms)) ++flush_timeouts;
    }
  });

  // The conductor: phases, RSS samples.
  long rss_warm = -1, rss_max = 0;
  std::size_t phase_index = 0;
  auto phase_end = t0;
  bool server_down = false;
  while (clock_type::now() < t_end) {
    const auto now = clock_type::now();
    if (now >= phase_end) {
      if (server_down) {
        rx->restart();
        server_down = false;
      }
      const phase p = schedule[phase_index++ % (sizeof schedule / sizeof schedule[0])];
      current.store(static_cast<int>(p));
      if (p == phase::reset) {
        rx->stop();
        server_down = true;
        ++resets;
      }
      phase_end = now + std::chrono::milliseconds(cfg.phase_ms);
    }
    if (rss_warm < 0 && now - t0 >= std::chrono::duration<double>(cfg.warmup_seconds)) rss_warm = rss_kib();
    rss_max = std::max(rss_max, rss_kib());
    std::this_thread::sleep_for(50ms);
  }
  stop.store(true);
  for (auto& t : producers) t.join();
  flusher.join();

  // Healthy again; deliver or drop everything still queued.
  if (server_down) rx->restart();
  current.store(static_cast<int>(phase::ok));
  bool settled = false;
  for (int i = 0; i < 12 && !settled; ++i) settled = log->flush(5s);
  const long rss_end = rss_kib();
  rss_max = std::max(rss_max, rss_end);
  const bool shut_ok = log->shutdown(10s);
  const batchq::queue_stats st = log->stats();
  log.reset();
  rx.reset();
  // Everything is joined by now; allow a moment in case a descriptor is
  // released asynchronously, then compare.
  int fds_end = open_fds();
  for (int i = 0; i < 20 && fds_end > fds_start; ++i) {
    std::this_thread::sleep_for(100ms);
    fds_end = open_fds();
  }
  const double duration = std::chrono::duration<double>(clock_type::now() - t0).count();

  // Per-id accounting over exactly the ids the producers used: producer p
  // used p, p + P, p + 2P, ... (made[p] of them).
  std::uint64_t loss = 0, twice = 0, not_dropped = 0, dup_ok_and_dropped = 0;
  for (int p = 0; p < cfg.producers; ++p) {
    for (std::uint64_t k = 0; k < made_by[static_cast<std::size_t>(p)]; ++k) {
      const std::uint64_t id = static_cast<std::uint64_t>(p) + k * static_cast<std::uint64_t>(cfg.producers);
      const std::uint8_t m = marks[id].load(std::memory_order_relaxed);
      if (m & k_twice) ++twice;
      if (m & k_dropped) {
        if (m & k_ok) ++dup_ok_and_dropped;
      } else if (m & k_ok) {
        ++not_dropped;
      } else {
        ++loss;  // nobody answered it 200 in time and nobody reported it dropped
      }
    }
  }

  std::vector<std::string> failures;
  auto expect = [&](bool cond, const std::string& what) {
    if (!cond) failures.push_back(what);
  };
  const std::uint64_t dropped = dropped_reported.load();
  expect(refused.load() == 0, "refused " + std::to_string(refused.load()) + " entries");
  expect(out_of_ids.load() == 0, "ran out of entry ids");
  expect(st.enqueued == produced.load(), "stats.enqueued " + std::to_string(st.enqueued) + " != produced");
  expect(st.balanced(), "stats not balanced");
  expect(st.pending == 0 && st.in_flight == 0, "entries left pending/in flight after shutdown");
  expect(produced.load() == st.delivered + dropped,
         "produced " + std::to_string(produced.load()) + " != delivered " + std::to_string(st.delivered) +
             " + dropped reported " + std::to_string(dropped));
  expect(st.dropped_total() == dropped, "stats dropped " + std::to_string(st.dropped_total()) +
                                            " != reported " + std::to_string(dropped));
  expect(loss == 0, "loss " + std::to_string(loss));
  expect(twice == 0, std::to_string(twice) + " entries reported dropped twice");
  expect(foreign_drops.load() == 0 && bad_lines.load() == 0, "unparseable entries seen");
  expect(not_dropped == st.delivered,
         "ids delivered and not dropped " + std::to_string(not_dropped) + " != delivered " + std::to_string(st.delivered));
  expect(settled, "final flush did not settle");
  expect(shut_ok, "shutdown timed out");
  const long margin_kib = static_cast<long>(cfg.rss_margin_mib * 1024);
  expect(BATCHQ_SOAK_ASAN || (rss_warm > 0 && rss_end <= rss_warm + margin_kib),
         "RSS grew from " + std::to_string(rss_warm) + " KiB after warm-up to " + std::to_string(rss_end) + " KiB");
  expect(fds_end <= fds_start, "fds " + std::to_string(fds_start) + " -> " + std::to_string(fds_end));

  std::printf(
      "soak: entries=%" PRIu64 " duration=%.1fs rate=%.0f/s producers=%d delivered=%" PRIu64 " dropped=%" PRIu64
      " (retries_exhausted=%" PRIu64 " retry_time_exceeded=%" PRIu64 " queue_full=%" PRIu64 " shutdown=%" PRIu64
      ") loss=%" PRIu64 " duplicates_at_receiver_of_dropped=%" PRIu64 " attempts=%" PRIu64 " failed=%" PRIu64
      " faults: 500=%" PRIu64 " 429=%" PRIu64 " slow=%" PRIu64 " resets=%" PRIu64 " (phases of %d ms)"
      " flushes=%" PRIu64 " (timed out %" PRIu64 ") drop_calls=%" PRIu64 " log_lines=%" PRIu64 " rss_kib: warm=%ld end=%ld max=%ld%s fds: start=%d end=%d -> %s\n",
      produced.load(), duration, cfg.rate, cfg.producers, st.delivered, dropped,
      dropped_by_reason[static_cast<int>(batchq::drop_reason::retries_exhausted)].load(),
      dropped_by_reason[static_cast<int>(batchq::drop_reason::retry_time_exceeded)].load(),
      dropped_by_reason[static_cast<int>(batchq::drop_reason::queue_full)].load(),
      dropped_by_reason[static_cast<int>(batchq::drop_reason::shutdown)].load(), loss, dup_ok_and_dropped,
      st.attempts, st.failed_attempts, requests_by_phase[static_cast<int>(phase::status500)].load(),
      requests_by_phase[static_cast<int>(phase::status429)].load(),
      requests_by_phase[static_cast<int>(phase::slow)].load(), resets, cfg.phase_ms, flushes.load(),
      flush_timeouts.load(), drop_calls.load(), log_lines.load(), rss_warm, rss_end, rss_max,
      BATCHQ_SOAK_ASAN ? " (not checked: ASan quarantine)" : "", fds_start, fds_end, failures.empty() ? "PASS" : "FAIL");
  for (const auto& f : failures) std::printf("soak: FAILED: %s\n", f.c_str());
  return failures.empty() ? 0 : 1;
}
