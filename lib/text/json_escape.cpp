// The JSON string escaper: one table per style, a word-at-a-time scan for the
// common case of nothing to escape.
#include <cstdint>
#include <cstring>

#include "text/text.hpp"

namespace batchq::text {

namespace {

struct escape_table {
  char text[256][7];
  unsigned char len[256];  // 0: copied as is
  explicit escape_table(escape_style style) {
    static constexpr char hex[] = "0123456789abcdef";
    const bool cjson = style == escape_style::cjson;
    for (int c = 0; c < 256; ++c) {
      len[c] = 0;
      text[c][0] = '\0';
      if (c < 0x20 || (cjson && c == 0x7f)) {
        std::memcpy(text[c], "\\u00", 4);
        text[c][4] = hex[c >> 4];
        text[c][5] = hex[c & 0xf];
        len[c] = 6;
      }
    }
    auto set = [&](int c, const char* s) {
      std::memcpy(text[c], s, 2);
      len[c] = 2;
    };
    set('\b', "\\b");
    set('\t', "\\t");
    set('\n', "\\n");
    set('\f', "\\f");
    set('\r', "\\r");
    set('"', "\\\"");
    set('\\', "\\\\");
    if (cjson) set('/', "\\/");
  }
};

const escape_table standard_table(escape_style::standard);
const escape_table cjson_table(escape_style::cjson);

constexpr std::uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
constexpr std::uint64_t zero_byte(std::uint64_t v) { return (v - ones) & ~v & high; }

// true if one of the 8 bytes in x may need work: the "has a byte less than
// n / equal to c" bit tricks, exact as a whole (a false positive only costs
// the byte loop). standard: < 0x20, '"', '\\', or >= 0x80 (UTF-8 to check);
// cjson: < 0x20, '"', '/', '\\', 0x7f.
template <bool Cjson>
bool word_needs_work(std::uint64_t x) {
  const std::uint64_t common = ((x - ones * 0x20) & ~x & high) | zero_byte(x ^ (ones * '"')) |
                               zero_byte(x ^ (ones * '\\'));
  if constexpr (Cjson) return (common | zero_byte(x ^ (ones * '/')) | zero_byte(x ^ (ones * 0x7f))) != 0;
  return (common | (x & high)) != 0;
}

// Handles s[*i] (a whole UTF-8 sequence in the standard style) and moves *i
// past it; what is escaped flushes the pending run s[*run, *i) first.
// Where escaped text goes: a std::string, or raw memory with room reserved
// (json_escape_raw).
struct ptr_out {
  char* w;
  void append(const char* p, std::size_t n) {
    std::memcpy(w, p, n);
    w += n;
  }
  void append(const char* p) { append(p, std::strlen(p)); }
};

template <bool Cjson, class Out>
inline void escape_one(const escape_table& t, Out& out, const char* s, std::size_t n, std::size_t& i,
                       std::size_t& run) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (!Cjson && c >= 0x80) {
    const auto* u = reinterpret_cast<const unsigned char*>(s);
    const std::size_t len = utf8_sequence(u + i, u + n);
    if (len != 0) {  // valid UTF-8: copied
      i += len;
      return;
    }
    out.append(s + run, i - run);
    out.append("\\ufffd");
    run = ++i;
    return;
  }
  if (t.len[c] != 0) {
    out.append(s + run, i - run);
    out.append(t.text[c], t.len[c]);
    run = i + 1;
  }
  ++i;
}

// One loop per style, so the per-word test has no branch on the style.
template <bool Cjson, class Out>
void escape_into(Out& out, std::string_view str) {
  const escape_table& t = Cjson ? cjson_table : standard_table;
  const char* const s = str.data();
  const std::size_t n = str.size();
  std::size_t run = 0;  // s[run, i) is pending, copied as is
  std::size_t i = 0;
  while (i + 8 <= n) {  // most strings have nothing to escape
    std::uint64_t x;
    std::memcpy(&x, s + i, 8);
    if (!word_needs_work<Cjson>(x)) {
      i += 8;
      continue;
    }
    for (const std::size_t stop = i + 8; i < stop;) escape_one<Cjson>(t, out, s, n, i, run);
  }
  while (i < n) escape_one<Cjson>(t, out, s, n, i, run);
  out.append(s + run, n - run);
}

}  // namespace

bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const std::size_t n = utf8_sequence(p, end);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

void json_escape_append(std::string& out, std::string_view s, escape_style style) {
  if (style == escape_style::cjson)
    escape_into<true>(out, s);
  else
    escape_into<false>(out, s);
}

char* json_escape_raw(char* w, std::string_view s, escape_style style) noexcept {
  ptr_out out{w};
  if (style == escape_style::cjson)
    escape_into<true>(out, s);
  else
    escape_into<false>(out, s);
  return out.w;
}

std::string json_escaped(std::string_view s, escape_style style) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  json_escape_append(out, s, style);
  return out;
}

}  // namespace batchq::text
