// The batchq-replay executable (BATCHQ_REPLAY_EXE), run as a child process on
// spools built here with the library: list, print, send to a loopback
// receiver (all, a failure half-way, a locked spool), usage errors.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "batchq/types.hpp"
#include "replay.hpp"  // tools/batchq-replay: is_json
#include "support/test_util.hpp"
#include "spool/run_tool.hpp"
#include "spool/spool_test_util.hpp"
#include "support/catch.hpp"
#include "support/receiver.hpp"

using namespace batchq;
using namespace batchq::test;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

tool_result replay(const std::vector<std::string>& args, const temp_dir& scratch) {
  std::vector<std::string> full{BATCHQ_REPLAY_EXE};
  full.insert(full.end(), args.begin(), args.end());
  return run_tool(full, scratch.path());
}

record_meta dropped_meta(std::string_view error, std::uint16_t attempts = 3) {
  record_meta m;
  m.kind = record_kind::dropped;
  m.reason = static_cast<std::uint8_t>(drop_reason::retries_exhausted);
  m.attempts = attempts;
  m.time_ms = 1700000000000;
  m.last_error = error;
  return m;
}

/// A dead-letter spool holding `payloads`, seqs 1..n.
void fill_spool(const std::string& dir, const std::vector<std::string>& payloads) {
  auto s = must_open(small_options(dir));
  for (const auto& p : payloads)
    REQUIRE(s->append(p, dropped_meta("request to 127.0.0.1:9 returned status code 503 and body busy")) != 0);
  s->close();
}

std::vector<spool_entry> read_back(const std::string& dir) {
  auto s = must_open(small_options(dir));
  return s->read_all();
}

/// The entries a request body carried: a JSON array's elements, else the body.
std::vector<std::string> entries_of(const std::string& body) {
  if (!body.empty() && body[0] == '[') return batchq::test::json_array_elements(body);
  return {body};
}

std::vector<std::string> delivered(const batchq::test::receiver& rx) {
  std::vector<std::string> all;
  for (const auto& r : rx.requests())
    for (auto& e : entries_of(r.body)) all.push_back(std::move(e));
  return all;
}

std::vector<std::string> json_entries(int first, int last) {
  std::vector<std::string> v;
  for (int i = first; i <= last; ++i) v.push_back(batchq::test::entry(i));
  return v;
}

}  // namespace

TEST_CASE("batchq-replay list and print a dead-letter spool", "[spool][replay]") {
  temp_dir d;
  temp_dir scratch;
  const std::string binary("\x00\x01\xff\xfe\x80 bin", 9);
  const std::vector<std::string> payloads = {
      R"({"i":1,"msg":"one"})",                    // 1: JSON, acknowledged below
      R"({"i":2,"msg":"two"})",                    // 2: JSON
      "{\n  \"i\": 3,\n  \"list\": [1, 2]\n}\n",  // 3: JSON over several lines
      "plain text, not JSON",                      // 4: UTF-8 text
      binary,                                      // 5: bytes
      "",                                          // 6: empty
  };
  fill_spool(d.path(), payloads);
  {
    auto s = must_open(small_options(d.path()));
    REQUIRE(s->remove_upto(1));
  }
  // Enough records to need a second 4 KiB segment.
  {
    auto s = must_open(small_options(d.path()));
    for (int i = 7; i <= 60; ++i) REQUIRE(s->append(batchq::test::entry(i) + std::string(80, ' '), dropped_meta("x")));
  }

  SECTION("list: one line per segment and a total") {
    const tool_result r = replay({"list", d.path()}, scratch);
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    const auto lines = lines_of(r.out);
    const auto segs = segment_files(d.path());
    REQUIRE(segs.size() >= 2);
    REQUIRE(lines.size() == segs.size() + 1);
    for (std::size_t i = 0; i < segs.size(); ++i) CHECK(lines[i].rfind(segs[i] + " first_seq=", 0) == 0);
    CHECK(contains(lines[0], "first_seq=1 "));
    CHECK(contains(lines.back(),
                   "total segments=" + std::to_string(segs.size()) + " records=60 unacked=59 dropped=60"));
    CHECK(contains(lines.back(), "corrupt=0 torn=0 acked_seq=1"));
  }

  SECTION("list works while the owner holds the spool, and on a spool being written") {
    auto owner = must_open(small_options(d.path()));
    const tool_result r = replay({"list", d.path()}, scratch);
    INFO(r.err);
    CHECK(r.code == 0);
    CHECK(contains(r.out, "records=60 unacked=59"));
  }

  SECTION("print: unacknowledged records as JSON lines") {
    const tool_result r = replay({"print", d.path()}, scratch);
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.empty());
    const auto lines = lines_of(r.out);
    REQUIRE(lines.size() == 59);
    for (const auto& l : lines) CHECK(is_json(l));
    CHECK(lines[0] ==
          R"({"seq":2,"kind":"dropped","reason":0,"reason_name":"retries_exhausted","attempts":3,)"
          R"("time_ms":1700000000000,"error":"request to 127.0.0.1:9 returned status code 503 and body busy",)"
          R"("payload":{"i":2,"msg":"two"}})");
    CHECK(contains(lines[1], R"("seq":3,)"));
    CHECK(contains(lines[1], R"("payload":{   "i": 3,   "list": [1, 2] })"));
    CHECK(contains(lines[2], R"("payload":"plain text, not JSON"})"));
    CHECK(contains(lines[3], R"("payload_base64":"AAH//oAgYmlu"})"));
    CHECK(contains(lines[4], R"("seq":6,)"));
    CHECK(contains(lines[4], R"("payload":""})"));
    CHECK(contains(lines[58], R"("seq":60,)"));
  }

  SECTION("print --from --limit") {
    const tool_result r = replay({"print", d.path(), "--from", "4", "--limit", "2"}, scratch);
    REQUIRE(r.code == 0);
    const auto lines = lines_of(r.out);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].rfind(R"({"seq":4,)", 0) == 0);
    CHECK(lines[1].rfind(R"({"seq":5,)", 0) == 0);
    const tool_result past = replay({"print", d.path(), "--from=1000"}, scratch);
    CHECK(past.code == 0);
    CHECK(past.out.empty());
  }

  SECTION("list and print leave the spool as it was") {
    REQUIRE(replay({"list", d.path()}, scratch).code == 0);
    REQUIRE(replay({"print", d.path()}, scratch).code == 0);
    CHECK(read_back(d.path()).size() == 59);
  }
}

TEST_CASE("batchq-replay send delivers everything in order and empties the spool", "[spool][replay]") {
  temp_dir d;
  temp_dir scratch;
  const auto entries = json_entries(1, 250);
  fill_spool(d.path(), entries);
  batchq::test::receiver rx;

  SECTION("kong format, batches of 100, an extra header") {
    const tool_result r =
        replay({"send", d.path(), "--url", rx.url("/ingest"), "--header", "X-Tenant:  blue "}, scratch);
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK(contains(r.out, "sent 250 records in 3 batches to " + rx.host_port() + "; remaining 0 records"));
    const auto reqs = rx.requests();
    REQUIRE(reqs.size() == 3);
    for (const auto& q : reqs) {
      CHECK(q.method == "POST");
      CHECK(q.path == "/ingest");
      CHECK(q.header("Content-Type") == "application/json");
      CHECK(q.header("X-Tenant") == "blue");
    }
    CHECK(batchq::test::json_array_elements(reqs[2].body).size() == 50);
    CHECK(delivered(rx) == entries);
  }

  SECTION("ndjson, batches of 7") {
    const tool_result r =
        replay({"send", d.path(), "--url=" + rx.url("/nd"), "--batch", "7", "--format", "ndjson"}, scratch);
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    const auto reqs = rx.requests();
    REQUIRE(reqs.size() == 36);  // 35 * 7 + 5
    std::vector<std::string> got;
    for (const auto& q : reqs) {
      CHECK(q.header("Content-Type") == "application/x-ndjson");
      for (auto& l : lines_of(q.body)) got.push_back(std::move(l));
    }
    CHECK(got == entries);
  }

  SECTION("kong format with batch 1: each body is the entry itself") {
    temp_dir d2;
    const std::string binary("\x00\xff raw", 6);
    fill_spool(d2.path(), {R"({"a":1})", binary});
    const tool_result r = replay({"send", d2.path(), "--url", rx.url(), "--batch", "1"}, scratch);
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    const auto reqs = rx.requests();
    REQUIRE(reqs.size() == 2);
    CHECK(reqs[0].body == R"({"a":1})");
    CHECK(reqs[1].body == binary);  // byte for byte, as the queue would have sent it
    CHECK(read_back(d2.path()).empty());
    return;
  }

  SECTION("--dry-run sends and removes nothing") {
    const tool_result r = replay({"send", d.path(), "--url", rx.url(), "--dry-run", "--batch", "200"}, scratch);
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK(contains(r.out, "would send batch 1 (seqs 1..200, 200 records,"));
    CHECK(contains(r.out, "would send batch 2 (seqs 201..250, 50 records,"));
    CHECK(contains(r.out, "dry run: would send 250 records in 2 batches"));
    CHECK(rx.count() == 0);
    CHECK(read_back(d.path()).size() == 250);
    return;
  }

  // The spool is empty: reopened, nothing is left to read, and no segment file.
  CHECK(read_back(d.path()).empty());
  CHECK(segment_files(d.path()).empty());
  // A second run has nothing to do and succeeds.
  const tool_result again = replay({"send", d.path(), "--url", rx.url()}, scratch);
  CHECK(again.code == 0);
  CHECK(contains(again.out, "sent 0 records in 0 batches to"));
}

TEST_CASE("batchq-replay send stops at the first failed batch and keeps the rest", "[spool][replay]") {
  temp_dir d;
  temp_dir scratch;
  const auto entries = json_entries(1, 250);
  fill_spool(d.path(), entries);
  batchq::test::receiver rx;
  rx.push(batchq::test::reply::with_status(200));
  rx.set_default(batchq::test::reply::with_status(500, "storage offline"));

  const tool_result r = replay({"send", d.path(), "--url", rx.url("/in")}, scratch);
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK(contains(r.err, "batch 2 (seqs 101..200, 100 records,"));
  CHECK(contains(r.err, "returned status code 500 and body storage offline"));
  CHECK(contains(r.err, "(HTTP status 500)"));
  CHECK(contains(r.out, "sent 100 records in 1 batch to"));
  CHECK(contains(r.out, "remaining 150 records"));
  CHECK(rx.count() == 2);  // no third request after the failure

  const auto left = read_back(d.path());
  CHECK(seqs_of(left) == range(101, 250));

  // Once the receiver is back, a second run delivers the rest, exactly once.
  rx.set_default(batchq::test::reply::with_status(200));
  rx.clear();
  const tool_result r2 = replay({"send", d.path(), "--url", rx.url("/in")}, scratch);
  INFO(r2.out << r2.err);
  CHECK(r2.code == 0);
  CHECK(delivered(rx) == std::vector<std::string>(entries.begin() + 100, entries.end()));
  CHECK(read_back(d.path()).empty());
}

TEST_CASE("batchq-replay send with nothing listening fails without removing anything", "[spool][replay]") {
  temp_dir d;
  temp_dir scratch;
  fill_spool(d.path(), json_entries(1, 5));
  const std::string url = "http://127.0.0.1:" + std::to_string(batchq::test::unused_port()) + "/";
  const tool_result r = replay({"send", d.path(), "--url", url, "--timeout", "3000"}, scratch);
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK(contains(r.err, "failed request to 127.0.0.1:"));
  CHECK(contains(r.err, "(no response)"));
  CHECK(read_back(d.path()).size() == 5);
}

TEST_CASE("batchq-replay on a damaged segment: counted by list, skipped with a warning by print and send",
          "[spool][replay]") {
  temp_dir d;
  temp_dir scratch;
  const auto entries = json_entries(1, 10);
  fill_spool(d.path(), entries);
  // Flip one payload byte of record 5: its checksum fails, the reader skips it.
  const auto segs = segment_files(d.path());
  REQUIRE(segs.size() == 1);
  std::string bytes = read_file(d.file(segs[0]));
  const std::size_t at = bytes.find(entries[4]);
  REQUIRE(at != std::string::npos);
  bytes[at + 3] ^= 0x20;
  write_file(d.file(segs[0]), bytes);

  const tool_result listed = replay({"list", d.path()}, scratch);
  INFO(listed.out << listed.err);
  CHECK(listed.code == 0);
  CHECK(contains(listed.out, "total segments=1 records=9 unacked=9"));
  CHECK(contains(listed.out, "corrupt=1 torn=0"));

  const tool_result printed = replay({"print", d.path()}, scratch);
  CHECK(printed.code == 0);
  CHECK(lines_of(printed.out).size() == 9);
  CHECK_FALSE(contains(printed.out, R"("seq":5,)"));
  CHECK(contains(printed.err, "batchq-replay print: warning: damaged records skipped: corrupt=1"));

  batchq::test::receiver rx;
  const tool_result sent = replay({"send", d.path(), "--url", rx.url(), "--batch", "4"}, scratch);
  INFO(sent.out << sent.err);
  CHECK(sent.code == 0);
  CHECK(contains(sent.err, "warning: damaged records skipped: corrupt=1"));
  std::vector<std::string> expected = entries;
  expected.erase(expected.begin() + 4);
  CHECK(delivered(rx) == expected);
  CHECK(read_back(d.path()).empty());
}

TEST_CASE("batchq-replay send: SIGTERM finishes the batch in progress, then stops", "[spool][replay]") {
  temp_dir d;
  temp_dir scratch;
  const auto entries = json_entries(1, 20);
  fill_spool(d.path(), entries);
  batchq::test::receiver rx;
  rx.set_default(batchq::test::reply::with_status(200).after(500ms));

  const pid_t pid = spawn_tool({BATCHQ_REPLAY_EXE, "send", d.path(), "--url", rx.url(), "--batch", "1"},
                               scratch.file("out"), scratch.file("err"));
  REQUIRE(rx.wait_for(1, 30s));  // the first request is being answered (slowly)
  REQUIRE(::kill(pid, SIGTERM) == 0);
  const int code = wait_for_exit(pid);
  const std::string out = slurp(scratch.file("out")), err = slurp(scratch.file("err"));
  INFO(out << err);
  CHECK(code == 1);
  CHECK(contains(err, "stopped by signal 15 before batch 2"));
  CHECK(contains(out, "sent 1 record in 1 batch to"));
  CHECK(rx.count() == 1);
  CHECK(seqs_of(read_back(d.path())) == range(2, 20));  // the delivered one was removed
}

TEST_CASE("batchq-replay send on a locked spool exits 3 naming the lock", "[spool][replay]") {
  temp_dir d;
  temp_dir scratch;
  fill_spool(d.path(), json_entries(1, 3));
  batchq::test::receiver rx;
  auto owner = must_open(small_options(d.path()));

  const tool_result r = replay({"send", d.path(), "--url", rx.url()}, scratch);
  INFO(r.out << r.err);
  CHECK(r.code == 3);
  CHECK(contains(r.err, "is locked by another owner (pid " + std::to_string(::getpid()) + ","));
  CHECK(contains(r.err, d.path() + "/LOCK"));
  CHECK(rx.count() == 0);

  // Looking is still allowed.
  CHECK(replay({"print", d.path()}, scratch).code == 0);
  CHECK(replay({"send", d.path(), "--url", rx.url(), "--dry-run"}, scratch).code == 0);
  CHECK(owner->read_all().size() == 3);
}

TEST_CASE("batchq-replay: usage errors exit 2, bad directories exit 1 with the path", "[spool][replay]") {
  temp_dir d;
  temp_dir scratch;
  const std::string url = "http://127.0.0.1:9/";
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"frobnicate", d.path()},
      {"list"},
      {"list", d.path(), d.path()},
      {"list", d.path(), "--limit", "3"},
      {"print", d.path(), "--from"},
      {"print", d.path(), "--from", "-1"},
      {"print", d.path(), "--limit", "ten"},
      {"print", d.path(), "--url", url},
      {"send", d.path()},
      {"send", d.path(), "--url", url, "--batch", "0"},
      {"send", d.path(), "--url", url, "--batch", "99999999999999999999999"},
      {"send", d.path(), "--url", url, "--format", "xml"},
      {"send", d.path(), "--url", url, "--header", "no colon"},
      {"send", d.path(), "--url", url, "--header", "Content-Length: 5"},
      {"send", d.path(), "--url", url, "--timeout", "0"},
      {"send", d.path(), "--url", url, "--insecure=yes"},
      {"send", d.path(), "--url", "ftp://127.0.0.1/"},
      {"send", d.path(), "--url", url, "--bogus"},
  };
  for (const auto& args : bad) {
    const tool_result r = replay(args, scratch);
    std::string shown;
    for (const auto& a : args) shown += " " + a;
    INFO("batchq-replay" << shown << "\n" << r.err);
    CHECK(r.code == 2);
    CHECK(contains(r.err, "usage: batchq-replay"));
    CHECK(r.out.empty());
  }

  const tool_result help = replay({"--help"}, scratch);
  CHECK(help.code == 0);
  CHECK(contains(help.out, "usage: batchq-replay"));

  const std::string missing = d.path() + "/no-such-dir";
  for (const std::string cmd : {"list", "print", "send"}) {
    std::vector<std::string> args{cmd, missing};
    if (cmd == "send") args.insert(args.end(), {"--url", url});
    const tool_result r = replay(args, scratch);
    INFO(cmd << ": " << r.err);
    CHECK(r.code == 1);
    CHECK(contains(r.err, missing));
    CHECK(contains(r.err, "No such file or directory"));
  }
  // An http_log spool_dir is not a spool: print and send say which spool to
  // give (list lists them all, see below) and create nothing there.
  temp_dir parent;
  REQUIRE(::mkdir(parent.file("dead-letter").c_str(), 0700) == 0);
  fill_spool(parent.file("dead-letter"), json_entries(1, 2));
  for (const std::string cmd : {"print", "send"}) {
    std::vector<std::string> args{cmd, parent.path()};
    if (cmd == "send") args.insert(args.end(), {"--url", url});
    const tool_result r = replay(args, scratch);
    INFO(cmd << ": " << r.err);
    CHECK(r.code == 2);
    CHECK(contains(r.err, "is not a spool but holds 1 spool: give one of " + parent.path() + "/dead-letter"));
  }
  CHECK(replay({"list", parent.path()}, scratch).code == 0);
  CHECK_FALSE(fs::exists(parent.file("LOCK")));
  CHECK(replay({"list", parent.file("dead-letter")}, scratch).code == 0);

  write_file(d.file("plain-file"), "x");
  const tool_result not_dir = replay({"list", d.file("plain-file")}, scratch);
  CHECK(not_dir.code == 1);
  CHECK(contains(not_dir.err, "Not a directory"));
}

TEST_CASE("batchq-replay list DIR finds every spool under a tree (one per queue and worker)", "[spool][replay]") {
  // The Kong plugin's layout: <spool_dir>/<queue-id>/worker-<n>/{dead-letter,write-ahead},
  // plus a spool one level deep and a directory with no spool at all.
  temp_dir d;
  temp_dir scratch;
  const std::string a = d.path() + "/queue-a/worker-0/dead-letter";
  const std::string b = d.path() + "/queue-b/worker-1/write-ahead";
  const std::string c = d.path() + "/queue-b/worker-1/dead-letter";
  const std::string shallow = d.path() + "/loose";
  for (const auto& dir : {a, b, c, shallow}) REQUIRE(fs::create_directories(dir));
  REQUIRE(fs::create_directories(d.path() + "/queue-c/worker-0/empty"));
  fill_spool(a, json_entries(1, 3));
  fill_spool(b, json_entries(4, 5));
  fill_spool(c, json_entries(6, 6));
  fill_spool(shallow, json_entries(7, 10));

  const tool_result r = replay({"list", d.path()}, scratch);
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(r.err.empty());
  const auto lines = lines_of(r.out);
  std::vector<std::string> headers;
  for (const auto& l : lines)
    if (l.rfind("spool ", 0) == 0) headers.push_back(l.substr(6));
  // Every spool, sorted by path, each followed by its own listing.
  CHECK(headers == std::vector<std::string>{shallow, a, c, b});
  CHECK(contains(r.out, "spool " + a + "\n"));
  CHECK(contains(r.out, "records=3 unacked=3"));
  CHECK(contains(r.out, "records=2 unacked=2"));
  CHECK(contains(r.out, "records=1 unacked=1"));
  CHECK(contains(r.out, "records=4 unacked=4"));
  REQUIRE_FALSE(lines.empty());
  CHECK(lines.back() == "spools=4 under " + d.path());
  // Read-only, as for one spool: no lock left behind anywhere, nothing created.
  CHECK_FALSE(fs::exists(d.path() + "/LOCK"));
  CHECK(fs::is_empty(d.path() + "/queue-c/worker-0/empty"));

  // A single spool keeps its old output (no "spool" header).
  const tool_result one = replay({"list", a}, scratch);
  REQUIRE(one.code == 0);
  CHECK(one.out.rfind("spool ", 0) != 0);
  CHECK(contains(one.out, "total segments=1 records=3"));

  // print and send need one spool: they name all four.
  const tool_result p = replay({"print", d.path()}, scratch);
  CHECK(p.code == 2);
  for (const auto& dir : {a, b, c, shallow}) CHECK(contains(p.err, dir));
  CHECK(contains(p.err, "holds 4 spools"));
}
