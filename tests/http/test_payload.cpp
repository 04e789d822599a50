// build_payload / payload_size / validate_json / json_escape (label: unit).
#include <string>
#include <vector>

#include "batchq/payload.hpp"
#include "support/catch.hpp"

using batchq::build_payload;
using batchq::payload_format;
using batchq::payload_size;
using batchq::validate_json;

namespace {
const std::vector<std::string> three_entries{R"({"a":1})", R"({ "b" : [1, 2] })", R"("x")"};
const std::vector<std::string>& three() { return three_entries; }
}  // namespace

TEST_CASE("kong format: one entry is the entry itself, several a JSON array", "[payload]") {
  std::vector<std::string> one{R"({ "a" : 1 })"};
  CHECK(build_payload(one, payload_format::kong) == R"({ "a" : 1 })");  // byte for byte, not re-serialized
  CHECK(build_payload(three(), payload_format::kong) == R"([{"a":1},{ "b" : [1, 2] },"x"])");
  std::vector<std::string> none;
  CHECK(build_payload(none, payload_format::kong) == "[]");
}

TEST_CASE("json_array format always brackets", "[payload]") {
  std::vector<std::string> one{R"({"a":1})"};
  CHECK(build_payload(one, payload_format::json_array) == R"([{"a":1}])");
  CHECK(build_payload(three(), payload_format::json_array) == R"([{"a":1},{ "b" : [1, 2] },"x"])");
  std::vector<std::string> none;
  CHECK(build_payload(none, payload_format::json_array) == "[]");
}

TEST_CASE("ndjson format: one line per entry, each ending in a newline", "[payload]") {
  CHECK(build_payload(three(), payload_format::ndjson) == "{\"a\":1}\n{ \"b\" : [1, 2] }\n\"x\"\n");
  std::vector<std::string> none;
  CHECK(build_payload(none, payload_format::ndjson).empty());
}

TEST_CASE("payload_size is exact and build_payload reuses the caller's buffer", "[payload]") {
  for (auto f : {payload_format::kong, payload_format::json_array, payload_format::ndjson}) {
    for (std::size_t n : {0u, 1u, 2u, 3u}) {
      auto all = three();
      all.resize(n);
      std::string out = "stale contents that must go";
      build_payload(all, f, out);
      INFO(batchq::to_string(f) << " n=" << n);
      CHECK(out.size() == payload_size(all, f));
      CHECK(out.find("stale") == std::string::npos);
    }
  }
  std::string out;
  out.reserve(4096);
  const auto* before = out.data();
  build_payload(three(), payload_format::kong, out);
  CHECK(out.data() == before);  // no reallocation when the capacity suffices
}

TEST_CASE("validate_json accepts exactly one JSON value", "[payload][json]") {
  std::string err = "untouched";
  CHECK(validate_json(R"({"a":[1,2.5,-3e2,true,false,null,"\u00e9\n"]})", &err));
  CHECK(err.empty());
  CHECK(validate_json("  [1, 2]\n"));
  CHECK(validate_json("\"just a string\""));
  CHECK(validate_json("42"));
  CHECK(validate_json("{\"k\":\"caf\xc3\xa9\"}"));  // UTF-8
}

TEST_CASE("validate_json reports the offset and RapidJSON's English message", "[payload][json]") {
  std::string err;
  CHECK_FALSE(validate_json(R"({"a":1 "b":2})", &err));
  CHECK(err == "invalid JSON at offset 7: Missing a comma or '}' after an object member.");

  CHECK_FALSE(validate_json("{} x", &err));  // trailing garbage is an error
  CHECK(err == "invalid JSON at offset 3: The document root must not be followed by other values.");
  CHECK_FALSE(validate_json("{}{}", &err));
  CHECK(err.rfind("invalid JSON at offset 2: ", 0) == 0);

  CHECK_FALSE(validate_json("", &err));
  CHECK(err == "invalid JSON at offset 0: The document is empty.");
  CHECK_FALSE(validate_json("   ", &err));
  CHECK_FALSE(validate_json("[NaN]", &err));
  CHECK_FALSE(validate_json("{\"k\":\"\xff\xfe\"}", &err));  // invalid UTF-8
  CHECK(err.find("Invalid encoding") != std::string::npos);
  CHECK_FALSE(validate_json("{'a':1}", &err));
  CHECK_FALSE(validate_json("[1,]", &err));
  CHECK(validate_json("[1]", nullptr));
  CHECK_FALSE(validate_json("[1", nullptr));  // null error pointer is fine
}

TEST_CASE("validate_json: a NUL byte after the value is not taken for the end", "[payload][json]") {
  std::string err;
  const std::string s("{}\0{}", 5);
  CHECK_FALSE(validate_json(s, &err));
  CHECK(err == "invalid JSON at offset 2: NUL byte in the input.");
  CHECK_FALSE(validate_json(std::string("{\"a\":\"x\0\"}", 10), &err));
}

TEST_CASE("validate_json: nesting up to 1000 passes, deeper is refused (not a crash)", "[payload][json]") {
  std::string err;
  CHECK(validate_json(std::string(1000, '[') + std::string(1000, ']'), &err));
  CHECK_FALSE(validate_json(std::string(1001, '[') + std::string(1001, ']'), &err));
  CHECK(err.find("nesting deeper than 1000") != std::string::npos);
  const std::size_t depth = 200000;
  CHECK_FALSE(validate_json(std::string(depth, '[') + std::string(depth, ']'), &err));
  CHECK_FALSE(validate_json(std::string(depth, '['), &err));
  CHECK(err.find("invalid JSON at offset") == 0);
}

TEST_CASE("json_escape escapes quotes, backslashes and control characters", "[payload]") {
  CHECK(batchq::json_escape("plain") == "plain");
  CHECK(batchq::json_escape("a\"b\\c") == "a\\\"b\\\\c");
  CHECK(batchq::json_escape("\n\r\t\b\f") == "\\n\\r\\t\\b\\f");
  CHECK(batchq::json_escape(std::string("\x01\x1f\0", 3)) == "\\u0001\\u001f\\u0000");
  CHECK(batchq::json_escape("caf\xc3\xa9") == "caf\xc3\xa9");
  CHECK(batchq::json_escape("bad \xff byte") == "bad \\ufffd byte");  // invalid UTF-8 -> U+FFFD
  CHECK(validate_json("\"" + batchq::json_escape(std::string("x\"\n\x02\\", 5)) + "\""));
}

TEST_CASE("payload_pieces: the gather list is byte for byte build_payload, entries not copied", "[payload]") {
  const std::vector<std::string> all{R"({"a":1})", R"({ "b" : [1, 2] })", R"("x")", "{}", R"({"e":"\n"})"};
  for (const auto format : {payload_format::kong, payload_format::json_array, payload_format::ndjson}) {
    for (std::size_t n = 0; n <= all.size(); ++n) {
      const std::vector<std::string> entries(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
      std::vector<std::string_view> views(entries.begin(), entries.end());
      std::vector<std::string_view> pieces{"stale"};  // replaced, not appended to
      batchq::payload_pieces(batchq::span<const std::string_view>(views.data(), views.size()), format, pieces);
      std::string joined;
      std::size_t entry_pieces = 0;
      for (const auto& p : pieces) {
        joined += p;
        for (const auto& e : entries)
          if (p.data() == e.data()) ++entry_pieces;  // a view of the entry itself
      }
      INFO("format " << batchq::to_string(format) << ", " << n << " entries");
      CHECK(joined == build_payload(entries, format));
      CHECK(entry_pieces == n);
    }
  }
}
