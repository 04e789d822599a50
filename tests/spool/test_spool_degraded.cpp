// Issue 12, items 4 and 11, through http_log with a real loopback receiver:
// a spool directory the process cannot use does not stop delivery (the queue
// works in memory, says so in the log and the stats, and takes the spool once
// it is fixed); write_ahead protects an entry larger than a segment, and an
// entry it cannot protect is counted.
#include <sys/stat.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "batchq/http_log.hpp"
#include "support/test_util.hpp"
#include "spool/spool_test_util.hpp"
#include "support/catch.hpp"
#include "support/receiver.hpp"

using namespace batchq;
using namespace batchq::test;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

struct log_lines {
  std::mutex mu;
  std::vector<std::string> lines;
  http_log_callbacks callbacks() {
    http_log_callbacks cb;
    cb.on_log = [this](log_level, std::string_view line) {
      std::lock_guard<std::mutex> g(mu);
      lines.emplace_back(line);
    };
    cb.on_drop = [](span<std::string>, const drop_info&, bool) {};
    return cb;
  }
  bool any(const std::string& a, const std::string& b = "") {
    std::lock_guard<std::mutex> g(mu);
    for (const auto& l : lines)
      if (contains(l, a) && contains(l, b)) return true;
    return false;
  }
};

spool_options read_only(const std::string& dir) {
  spool_options o;
  o.dir = dir;
  o.read_only = true;
  o.max_bytes = 0;
  o.fsync = fsync_policy::never;
  return o;
}

}  // namespace

TEST_CASE("an unusable spool directory does not stop delivery: memory mode, reported, retried", "[spool]") {
  temp_dir root;
  // The spools' own directories writable by others: refused (for root too).
  for (const char* sub : {"dead-letter", "write-ahead"}) {
    const std::string p = root.file(sub);
    REQUIRE(::mkdir(p.c_str(), 0700) == 0);
    REQUIRE(::chmod(p.c_str(), 0777) == 0);
  }
  batchq::test::receiver rx;
  http_log_options o;
  o.http.http_endpoint = rx.url("/logs");
  o.queue.batch_max_size = 1;
  o.spool.dir = root.path();
  o.spool.mode = spool_mode::write_ahead;
  o.spool.fsync = fsync_policy::never;
  log_lines logs;
  http_log log(o, logs.callbacks());  // before the fix: threw, and the C ABI returned BATCHQ_ESPOOL

  CHECK(log.spool_stats().unavailable == 1);
  CHECK(logs.any(root.file("dead-letter"), "writable by group or others"));
  CHECK(logs.any("works in memory"));
  CHECK(contains(log.stats_json(), "\"unavailable\":1"));
  CHECK(contains(log.stats_prometheus(), "batchq_spool_unavailable{queue=\"batchq\"} 1"));

  for (int i = 0; i < 10; ++i) REQUIRE(log.enqueue(batchq::test::entry(i)) == enqueue_result::accepted);
  REQUIRE(log.flush(10s));
  CHECK(rx.count() == 10);
  CHECK(log.stats().delivered == 10);
  CHECK(log.spool_stats().unprotected == 10);  // accepted in write_ahead mode without a record

  // Fixed: the background retry takes the spools.
  for (const char* sub : {"dead-letter", "write-ahead"}) REQUIRE(::chmod(root.file(sub).c_str(), 0700) == 0);
  for (int i = 0; i < 300 && log.spool_stats().unavailable != 0; ++i) std::this_thread::sleep_for(50ms);
  CHECK(log.spool_stats().unavailable == 0);
  for (int i = 0; i < 100 && !logs.any("opened after earlier failures"); ++i) std::this_thread::sleep_for(50ms);
  CHECK(logs.any("opened after earlier failures"));
  for (int i = 10; i < 15; ++i) REQUIRE(log.enqueue(batchq::test::entry(i)) == enqueue_result::accepted);
  REQUIRE(log.flush(10s));
  CHECK(rx.count() == 15);
  CHECK(log.spool_stats().unprotected == 10);
  CHECK(log.spool_stats().records == 5);  // written ahead now
}

TEST_CASE("write_ahead protects an entry larger than a segment; one it cannot protect is counted", "[spool]") {
  temp_dir root;
  http_log_options o;
  // Nothing listens: the entries stay in the queue (and must be on disk).
  o.http.http_endpoint = "http://127.0.0.1:" + std::to_string(batchq::test::unused_port()) + "/logs";
  o.queue.retry_count = 1000;
  o.queue.initial_retry_delay = 1000ms;
  o.queue.shutdown_timeout = 0ms;
  o.spool.dir = root.path();
  o.spool.mode = spool_mode::write_ahead;
  o.spool.segment_bytes = 4096;
  o.spool.fsync = fsync_policy::never;
  const std::string big = "{\"pad\":\"" + std::string(20000, 'x') + "\"}";

  SECTION("larger than a segment: written ahead, in a segment of its own") {
    o.spool.max_bytes = 0;
    http_log log(o);
    REQUIRE(log.enqueue(big) == enqueue_result::accepted);
    CHECK(log.spool_stats().unprotected == 0);
    // On disk when enqueue returned (a kill -9 from here loses nothing).
    auto sp = must_open(read_only(root.file("write-ahead")));
    const auto recs = sp->read_all();
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].payload == big);
  }
  SECTION("larger than half the spool cap: accepted, not protected, counted") {
    o.spool.max_bytes = 16384;
    http_log log(o);
    REQUIRE(log.enqueue(big) == enqueue_result::accepted);
    CHECK(log.spool_stats().unprotected == 1);
    CHECK(contains(log.stats_json(), "\"unprotected\":1"));
    CHECK(must_open(read_only(root.file("write-ahead")))->read_all().empty());
  }
}

TEST_CASE("spool_dir: created when only its last part is missing; unusable under a file, in memory", "[spool]") {
  temp_dir root;
  http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:" + std::to_string(batchq::test::unused_port()) + "/logs";
  o.queue.shutdown_timeout = 0ms;
  o.spool.fsync = fsync_policy::never;
  SECTION("missing, its parent exists: created 0700 and used") {
    o.spool.dir = root.file("made-by-batchq");
    http_log log(o);
    CHECK(log.spool_stats().unavailable == 0);
    struct stat st {};
    REQUIRE(::stat(o.spool.dir.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    CHECK(fs::is_directory(o.spool.dir + "/dead-letter"));
  }
  SECTION("under a regular file (cannot be created): the queue works in memory") {
    write_file(root.file("a-file"), "x");
    o.spool.dir = root.file("a-file/spool");
    log_lines logs;
    http_log log(o, logs.callbacks());
    CHECK(log.spool_stats().unavailable == 1);
    CHECK(logs.any(o.spool.dir, "works in memory"));
    CHECK(log.enqueue("{}") == enqueue_result::accepted);
  }
  SECTION("missing with its parent: both created (0700)") {
    o.spool.dir = root.file("missing/spool");
    http_log log(o);
    CHECK(log.spool_stats().unavailable == 0);
    CHECK(fs::is_directory(o.spool.dir + "/dead-letter"));
    CHECK((fs::status(root.file("missing")).permissions() & fs::perms::all) == fs::perms::owner_all);
  }

}
