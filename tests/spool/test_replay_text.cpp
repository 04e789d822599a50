// JSON lines and listings: the core of batchq-replay (tools/batchq-replay/replay.hpp).
#include <sstream>

#include "replay.hpp"
#include "spool/spool_test_util.hpp"
#include "support/catch.hpp"

using namespace batchq;
using namespace batchq::test;

namespace {

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

spool_record rec(std::string_view payload, std::string_view error = "") {
  spool_record r;
  r.seq = 7;
  r.kind = record_kind::dropped;
  r.reason = 2;
  r.attempts = 3;
  r.time_ms = 1700000000123;
  r.last_error = error;
  r.payload = payload;
  return r;
}

const char* names(std::uint8_t reason) { return reason == 2 ? "queue_full" : nullptr; }

}  // namespace

TEST_CASE("is_json accepts JSON values and nothing else", "[spool]") {
  for (const char* ok : {"{}", "[]", "0", "-1.5e+10", "\"x\"", "true", "null", " {\"a\":[1,2,{\"b\":null}]} ",
                         "{\"k\":\"\\u00e9\\n\"}", "\"\xc3\xa9\"", "\n[1,\n2]\r\n"})
    CHECK(is_json(ok));
  for (const char* bad : {"", " ", "{", "[1,]", "{\"a\" 1}", "01", "1.", "+1", "tru", "\"\\x\"", "\"a\nb\"",
                          "{} {}", "'a'", "\"\xff\"", "\"\xed\xa0\x80\"", "NaN", "{\"a\":1,}"})
    CHECK_FALSE(is_json(bad));
  CHECK(is_json(std::string(200, '[') + std::string(200, ']')));
  CHECK_FALSE(is_json(std::string(100000, '[') + std::string(100000, ']')));  // too deep, not a crash
}

TEST_CASE("to_json_line: one line per record, payload embedded, escaped or base64", "[spool]") {
  SECTION("a JSON payload goes in as JSON, kept on one line") {
    const std::string line = to_json_line(rec("{\"msg\":\"hi\",\n \"n\":1}\n", "HTTP 503"));
    CHECK(line ==
          "{\"seq\":7,\"kind\":\"dropped\",\"reason\":2,\"attempts\":3,\"time_ms\":1700000000123,"
          "\"error\":\"HTTP 503\",\"payload\":{\"msg\":\"hi\",  \"n\":1}}");
    CHECK(is_json(line));
  }
  SECTION("text with newlines, quotes and NUL is escaped") {
    const std::string line = to_json_line(rec(std::string("a\"b\\c\nd\0e\x01", 10), "bad\nthing"));
    CHECK(contains(line, "\"payload\":\"a\\\"b\\\\c\\nd\\u0000e\\u0001\""));
    CHECK(contains(line, "\"error\":\"bad\\nthing\""));
    CHECK(line.find('\n') == std::string::npos);
    CHECK(is_json(line));
  }
  SECTION("bytes that are not UTF-8 go in as base64, losslessly") {
    const std::string line = to_json_line(rec(std::string("\xff\x00\x01", 3)));
    CHECK(contains(line, "\"payload_base64\":\"/wAB\""));
    CHECK(is_json(line));
    CHECK(contains(to_json_line(rec("")), "\"payload\":\"\""));
    CHECK(contains(to_json_line(rec("ab")), "\"payload\":\"ab\""));
    CHECK(contains(to_json_line(rec("\xff")), "\"payload_base64\":\"/w==\""));
    CHECK(contains(to_json_line(rec("\xff\xfe")), "\"payload_base64\":\"//4=\""));
  }
  SECTION("a reason namer adds the name") {
    CHECK(contains(to_json_line(rec("1"), names), "\"reason\":2,\"reason_name\":\"queue_full\""));
  }
  SECTION("an error that is not UTF-8 is repaired, the line stays valid") {
    const std::string line = to_json_line(rec("1", "\xc3("));
    CHECK(contains(line, "\"error\":\"\\ufffd(\""));
    CHECK(is_json(line));
  }
}

TEST_CASE("replay_list and replay_print read a spool, even one that is owned", "[spool]") {
  temp_dir d;
  spool_options o = small_options(d.path());
  auto owner = must_open(o);
  record_meta m;
  m.kind = record_kind::dropped;
  m.reason = 2;
  m.last_error = "HTTP 500";
  for (std::uint64_t i = 1; i <= 100; ++i)
    REQUIRE(owner->append("{\"i\":" + std::to_string(i) + "}", m) == i);
  owner->ack(1, 10);

  std::ostringstream out, err;
  REQUIRE(replay_list(d.path(), out, err) == 0);
  INFO(out.str());
  CHECK(err.str().empty());
  CHECK(contains(out.str(), "spool-00000000000000000001.seg first_seq=1 "));
  CHECK(contains(out.str(), "total segments=" + std::to_string(segment_files(d.path()).size()) +
                                " records=100 unacked=90 dropped=100 "));
  CHECK(contains(out.str(), "acked_seq=10"));

  std::ostringstream lines, err2;
  replay_print_options po;
  po.from_seq = 20;
  po.limit = 3;
  po.namer = names;
  REQUIRE(replay_print(d.path(), po, lines, err2) == 0);
  CHECK(lines.str() ==
        "{\"seq\":20,\"kind\":\"dropped\",\"reason\":2,\"reason_name\":\"queue_full\",\"attempts\":0,\"time_ms\":0,"
        "\"error\":\"HTTP 500\",\"payload\":{\"i\":20}}\n"
        "{\"seq\":21,\"kind\":\"dropped\",\"reason\":2,\"reason_name\":\"queue_full\",\"attempts\":0,\"time_ms\":0,"
        "\"error\":\"HTTP 500\",\"payload\":{\"i\":21}}\n"
        "{\"seq\":22,\"kind\":\"dropped\",\"reason\":2,\"reason_name\":\"queue_full\",\"attempts\":0,\"time_ms\":0,"
        "\"error\":\"HTTP 500\",\"payload\":{\"i\":22}}\n");

  std::ostringstream all, err3;
  REQUIRE(replay_print(d.path(), {}, all, err3) == 0);
  std::size_t n = 0;
  for (char c : all.str()) n += c == '\n';
  CHECK(n == 90);  // acknowledged ones are not printed

  std::ostringstream none, err4;
  CHECK(replay_list(d.file("missing"), none, err4) == 1);
  CHECK(contains(err4.str(), d.file("missing")));
}
