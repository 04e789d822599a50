// Issue 13, item 1: http_log's spool pair and drop reports, through the
// public API with a real (refusing) loopback endpoint and real spool files.
//  - A drop is stamped once, in lib/: the time a report carries (C++ push,
//    pull, C ABI push) is the time kept in the dead-letter record of the
//    same entries. The batch is large so that writing its dead letters takes
//    milliseconds: a second clock reading after them would differ.
//  - A spool_dir that is a regular file is the typed spool_dir_error, and
//    the C ABI maps it (by type) to BATCHQ_ESPOOL.
//  - The spool options nested in http_log_options are checked under their
//    configuration names (spool_segment_bytes...).
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "batchq.h"
#include "batchq/http_log.hpp"
#include "support/test_util.hpp"
#include "spool/spool_test_util.hpp"
#include "support/catch.hpp"

using namespace batchq;
using namespace batchq::test;
using namespace std::chrono_literals;

namespace {

constexpr int k_entries = 3000;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string padded_entry(int i) { return "{\"i\":" + std::to_string(i) + ",\"pad\":\"" + std::string(300, 'x') + "\"}"; }

// One batch of k_entries, one attempt, to an endpoint that refuses connections.
http_log_options one_doomed_batch(const std::string& dir) {
  http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:" + std::to_string(batchq::test::unused_port()) + "/logs";
  o.queue.batch_max_size = k_entries;
  o.queue.max_entries = k_entries;
  o.queue.flush_timeout = 60s;  // the batch closes when full
  o.queue.retry_count = 1;
  o.spool.dir = dir;
  o.spool.fsync = fsync_policy::never;
  o.drop_buffer_entries = k_entries;
  return o;
}

// The dead letters' times, one per record.
std::vector<std::int64_t> dead_letter_times(const std::string& dir) {
  spool_options so;
  so.dir = dir + "/dead-letter";
  so.read_only = true;
  so.max_bytes = 0;
  so.fsync = fsync_policy::never;
  std::vector<std::int64_t> t;
  for (const auto& r : must_open(so)->read_all()) t.push_back(r.time_ms);
  return t;
}

struct drop_times {
  std::mutex mu;
  std::vector<std::int64_t> t;
  void add(std::int64_t ms, std::size_t n) {
    std::lock_guard<std::mutex> g(mu);
    t.insert(t.end(), n, ms);
  }
  std::vector<std::int64_t> get() {
    std::lock_guard<std::mutex> g(mu);
    return t;
  }
};

void check_one_stamp(const std::vector<std::int64_t>& reported, const std::vector<std::int64_t>& kept,
                     std::int64_t t0, std::int64_t t1) {
  REQUIRE(reported.size() == static_cast<std::size_t>(k_entries));
  REQUIRE(kept.size() == static_cast<std::size_t>(k_entries));
  const std::int64_t stamp = reported.front();
  CHECK(stamp >= t0);
  CHECK(stamp <= t1);
  std::size_t other_report = 0, other_kept = 0;
  for (auto t : reported) other_report += t != stamp;
  for (auto t : kept) other_kept += t != stamp;
  CHECK(other_report == 0);
  CHECK(other_kept == 0);
}

}  // namespace

TEST_CASE("a drop is stamped once: reports and dead letters carry the same time", "[spool]") {
  temp_dir dir;
  const http_log_options o = one_doomed_batch(dir.path());
  drop_times reported;
  std::int64_t t0 = 0, t1 = 0;
  SECTION("C++ on_drop") {
    http_log_callbacks cb;
    cb.on_drop = [&reported](span<std::string> e, const drop_info& info, bool) { reported.add(info.time_ms, e.size()); };
    http_log log(o, cb);
    t0 = now_ms();
    for (int i = 0; i < k_entries; ++i) REQUIRE(log.enqueue(padded_entry(i)) == enqueue_result::accepted);
    REQUIRE(log.flush(60s));
    t1 = now_ms();
    REQUIRE(log.shutdown(5s));
  }
  SECTION("pull mode (poll_dropped)") {
    http_log log(o);
    t0 = now_ms();
    for (int i = 0; i < k_entries; ++i) REQUIRE(log.enqueue(padded_entry(i)) == enqueue_result::accepted);
    REQUIRE(log.flush(60s));
    t1 = now_ms();
    std::vector<dropped_entry> out;
    REQUIRE(log.poll_dropped(out, 2 * k_entries) == static_cast<std::size_t>(k_entries));
    for (const auto& d : out) {
      CHECK(d.spooled);
      reported.add(d.time_ms, 1);
    }
    REQUIRE(log.shutdown(5s));
  }
  SECTION("C ABI on_drop") {
    const std::string cfg = "{\"http_endpoint\":\"" + o.http.http_endpoint + "\",\"queue_size\":" +
                            std::to_string(k_entries) + ",\"max_entries\":" + std::to_string(k_entries) +
                            ",\"flush_timeout\":60,\"retry_count\":1,\"spool_fsync\":\"never\",\"spool_dir\":\"" +
                            dir.path() + "\"}";
    batchq_callbacks cb{};
    cb.struct_size = sizeof cb;
    cb.user = &reported;
    cb.on_drop = [](void* user, const batchq_dropped* d, size_t n) {
      for (size_t i = 0; i < n; ++i) static_cast<drop_times*>(user)->add(d[i].time_ms, 1);
    };
    batchq_queue* q = nullptr;
    char err[512];
    REQUIRE(batchq_new_with_callbacks(cfg.data(), cfg.size(), &cb, &q, err, sizeof err) == BATCHQ_OK);
    t0 = now_ms();
    for (int i = 0; i < k_entries; ++i) {
      const std::string e = padded_entry(i);
      REQUIRE(batchq_enqueue(q, e.data(), e.size()) == BATCHQ_OK);
    }
    REQUIRE(batchq_flush(q, 60000) == BATCHQ_OK);
    t1 = now_ms();
    REQUIRE(batchq_shutdown(q, 5000) == BATCHQ_OK);
    batchq_free(q);
  }
  check_one_stamp(reported.get(), dead_letter_times(dir.path()), t0, t1);
}

TEST_CASE("spool_dir a regular file: spool_dir_error (C++), BATCHQ_ESPOOL (C ABI)", "[spool]") {
  temp_dir dir;
  write_file(dir.file("a-file"), "x");
  http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:" + std::to_string(batchq::test::unused_port()) + "/logs";
  o.spool.dir = dir.file("a-file");
  bool typed = false;
  std::string what;
  try {
    http_log log(o);
  } catch (const spool_dir_error& e) {
    typed = true;
    what = e.what();
  } catch (const std::exception& e) {
    what = e.what();
  }
  CHECK(typed);
  CHECK(what == "spool_dir: \"" + o.spool.dir + "\" is not a directory");

  const std::string cfg = "{\"http_endpoint\":\"" + o.http.http_endpoint + "\",\"spool_dir\":\"" + o.spool.dir + "\"}";
  batchq_queue* q = nullptr;
  char err[512];
  CHECK(batchq_new(cfg.data(), cfg.size(), &q, err, sizeof err) == BATCHQ_ESPOOL);
  CHECK(q == nullptr);
  CHECK(std::string(err) == what);
}

TEST_CASE("nested spool options are checked under their configuration names", "[spool]") {
  http_log_options o;
  o.http.http_endpoint = "http://127.0.0.1:9/logs";
  std::string field;
  CHECK(validate(o, &field).empty());  // no spool.dir: the spool fields are not used
  o.spool.segment_bytes = 10;
  CHECK(validate(o, &field).empty());
  o.spool.dir = "/nonexistent/batchq";
  const std::string err = validate(o, &field);
  CHECK(field == "spool_segment_bytes");
  CHECK(err.rfind("spool_segment_bytes: ", 0) == 0);
  o.spool.segment_bytes = 4096;
  o.spool.max_bytes = 4096;  // below 2 * segment_bytes
  CHECK(validate(o, &field).rfind("spool_max_bytes: ", 0) == 0);
  CHECK(field == "spool_max_bytes");
  o.spool.max_bytes = 0;
  o.spool.fsync_interval = 0ms;
  CHECK(validate(o, &field).rfind("spool_fsync_interval: ", 0) == 0);
  CHECK(field == "spool_fsync_interval");
}
