// The private text toolbox (lib/text): the JSON validator, the JSON string
// escaper in both styles, base64 and the UTF-8 rule (label: unit).
#include <cstdint>
#include <string>
#include <vector>

#include "support/catch.hpp"
#include "text/text.hpp"

using batchq::text::escape_style;
using batchq::text::json_escaped;
using batchq::text::json_max_depth;
using batchq::text::json_valid;

namespace {

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// A deterministic byte soup: mostly ASCII, some UTF-8, some garbage.
std::string soup(std::uint32_t seed, std::size_t n) {
  static const std::vector<std::string> parts = {"a", "bc", " ", "\"", "\\", "/", "\n", "\x01", "\x7f", "\xc3\xa9",
                                                 "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff", "\xc3", "\xed\xa0\x80",
                                                 "\xc0\x80", "\xf4\x90\x80\x80", "0123456789abcdef"};
  std::string s;
  std::uint32_t x = seed * 2654435761u + 1;
  while (s.size() < n) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s += parts[x % parts.size()];
  }
  return s;
}

// The escaping rules written out byte by byte, as the oracle for the
// word-at-a-time scan.
std::string reference_escape(const std::string& s, escape_style style) {
  static constexpr char hex[] = "0123456789abcdef";
  const bool cjson = style == escape_style::cjson;
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c >= 0x80 && !cjson) {
      const std::size_t n = batchq::text::utf8_sequence(p, end);
      if (n == 0) {
        out += "\\ufffd";
        ++p;
      } else {
        out.append(reinterpret_cast<const char*>(p), n);
        p += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (cjson && c == '/') {
          out += "\\/";
        } else if (c < 0x20 || (cjson && c == 0x7f)) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++p;
  }
  return out;
}

}  // namespace

TEST_CASE("json_valid accepts one JSON value and nothing else", "[text]") {
  for (const char* ok : {"{}", "[]", "0", "-1.5e+10", "\"x\"", "true", "null", " {\"a\":[1,2,{\"b\":null}]} ",
                         "{\"k\":\"\\u00e9\\n\"}", "\"\xc3\xa9\"", "\n[1,\n2]\r\n", "\"\\ud83d\\ude00\"",
                         "\"\xf4\x8f\xbf\xbf\""}) {
    std::string err = "stale";
    CHECK(json_valid(ok, &err));
    CHECK(err.empty());
  }
  for (const char* bad : {"", " ", "{", "[1,]", "{\"a\" 1}", "01", "1.", "+1", "tru", "\"\\x\"", "\"a\nb\"", "{} {}",
                          "'a'", "\"\xff\"", "\"\xed\xa0\x80\"", "\"\xc0\x80\"", "\"\xf4\x90\x80\x80\"", "NaN",
                          "{\"a\":1,}", "[1] // c", "\"\\ud800\""}) {
    std::string err;
    CHECK_FALSE(json_valid(bad, &err));
    CHECK(err.rfind("invalid JSON at offset ", 0) == 0);
  }
  std::string err;
  CHECK_FALSE(json_valid(std::string("{}\0{}", 5), &err));
  CHECK(err == "invalid JSON at offset 2: NUL byte in the input.");
  CHECK_FALSE(json_valid(R"({"a":1 "b":2})", &err));
  CHECK(err.rfind("invalid JSON at offset 7: ", 0) == 0);
  CHECK_FALSE(json_valid("[1", nullptr));  // a null error pointer is fine
}

TEST_CASE("json_valid: nesting up to json_max_depth passes, deeper is refused with the limit named", "[text]") {
  STATIC_REQUIRE(json_max_depth == 1000);
  std::string err;
  CHECK(json_valid(nested(json_max_depth), &err));
  CHECK(json_valid("{\"a\":" + nested(json_max_depth - 1) + "}"));
  CHECK_FALSE(json_valid(nested(json_max_depth + 1), &err));
  CHECK(err == "invalid JSON at offset 1000: nesting deeper than 1000 arrays/objects.");
  std::string objects;
  for (std::size_t i = 0; i <= json_max_depth; ++i) objects += "{\"k\":";
  CHECK_FALSE(json_valid(objects + "1" + std::string(json_max_depth + 1, '}'), &err));
  CHECK(err.find("nesting deeper than 1000") != std::string::npos);
  // Far past the limit: refused, not a stack overflow.
  CHECK_FALSE(json_valid(nested(200000), &err));
  CHECK_FALSE(json_valid(std::string(200000, '['), &err));
}

TEST_CASE("the standard escaper: minimal escapes, invalid UTF-8 becomes U+FFFD, output always valid", "[text]") {
  CHECK(json_escaped("plain") == "plain");
  CHECK(json_escaped("a\"b\\c/d") == "a\\\"b\\\\c/d");
  CHECK(json_escaped("\n\r\t\b\f") == "\\n\\r\\t\\b\\f");
  CHECK(json_escaped(std::string("\x01\x1f\0\x7f", 4)) == "\\u0001\\u001f\\u0000\x7f");
  CHECK(json_escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") == "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(json_escaped("\xc3(") == "\\ufffd(");
  CHECK(json_escaped("ab\xff") == "ab\\ufffd");
  CHECK(json_escaped("\xed\xa0\x80") == "\\ufffd\\ufffd\\ufffd");  // a surrogate, byte by byte
  CHECK(json_escaped("\xc0\x80") == "\\ufffd\\ufffd");              // overlong NUL
  CHECK(json_escaped("0123456\xe2\x82\xac tail") == "0123456\xe2\x82\xac tail");  // across an 8-byte word
  for (std::uint32_t seed = 0; seed < 300; ++seed) {
    const std::string s = soup(seed, seed % 97);
    const std::string e = json_escaped(s);
    INFO("seed " << seed);
    CHECK(e == reference_escape(s, escape_style::standard));
    CHECK(json_valid("\"" + e + "\""));
  }
}

TEST_CASE("the cjson style: cjson.encode's bytes, '/' and DEL escaped, other bytes passed through", "[text]") {
  CHECK(json_escaped("a/b", escape_style::cjson) == "a\\/b");
  CHECK(json_escaped("\x7f", escape_style::cjson) == "\\u007f");
  CHECK(json_escaped("\xff\xc3(", escape_style::cjson) == "\xff\xc3(");
  CHECK(json_escaped(std::string("\"\\\n\0", 4), escape_style::cjson) == "\\\"\\\\\\n\\u0000");
  for (std::uint32_t seed = 0; seed < 300; ++seed) {
    const std::string s = soup(seed, seed % 97);
    INFO("seed " << seed);
    CHECK(json_escaped(s, escape_style::cjson) == reference_escape(s, escape_style::cjson));
  }
  std::string out = "keep:";
  batchq::text::json_escape_append(out, "x/", escape_style::cjson);
  CHECK(out == "keep:x\\/");
}

TEST_CASE("base64: RFC 4648 vectors and every byte value", "[text]") {
  using batchq::text::base64;
  CHECK(base64("").empty());
  CHECK(base64("f") == "Zg==");
  CHECK(base64("fo") == "Zm8=");
  CHECK(base64("foo") == "Zm9v");
  CHECK(base64("foob") == "Zm9vYg==");
  CHECK(base64("fooba") == "Zm9vYmE=");
  CHECK(base64("foobar") == "Zm9vYmFy");
  CHECK(base64("alice:p@ss:w rd") == "YWxpY2U6cEBzczp3IHJk");
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  const std::string e = base64(all);
  CHECK(e.size() == 344);
  CHECK(e.rfind("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BB", 0) == 0);
  CHECK(e.substr(e.size() - 8) == "/P3+/w==");
  std::string out = "x=";
  batchq::text::base64_append(out, "\xff\xfe");
  CHECK(out == "x=//4=");
}

TEST_CASE("valid_utf8 follows RFC 3629", "[text]") {
  using batchq::text::valid_utf8;
  CHECK(valid_utf8(""));
  CHECK(valid_utf8("caf\xc3\xa9 \xf4\x8f\xbf\xbf \xef\xbf\xbd"));
  CHECK_FALSE(valid_utf8("\xc3"));              // truncated
  CHECK_FALSE(valid_utf8("\xe0\x80\x80"));      // overlong
  CHECK_FALSE(valid_utf8("\xed\xbf\xbf"));      // surrogate
  CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(valid_utf8("\x80"));              // a lone continuation byte
}
