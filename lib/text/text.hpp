// lib/text/text.hpp - batchq's private text toolbox: the one JSON validator,
// the one JSON string escaper and the one base64 encoder of the library.
// Every part of lib/ that checks or writes JSON text by hand uses these; the
// public functions (validate_json, json_escape, is_json, append_json_string)
// are thin wrappers. Not installed; nothing here is part of the API.
#ifndef BATCHQ_LIB_TEXT_TEXT_HPP
#define BATCHQ_LIB_TEXT_TEXT_HPP

#include <cstddef>
#include <string>
#include <string_view>

namespace batchq::text {

// ---- UTF-8 ----

/// Length (1-4) of the valid UTF-8 sequence starting at p (p < end), or 0 if
/// it is not one. RFC 3629: no overlong forms, no surrogates (U+D800-DFFF),
/// nothing above U+10FFFF.
inline std::size_t utf8_sequence(const unsigned char* p, const unsigned char* end) noexcept {
  const unsigned c = p[0];
  if (c < 0x80) return 1;
  auto cont = [&](std::size_t i, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return p + i < end && p[i] >= lo && p[i] <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/// true if all of `s` is valid UTF-8 (utf8_sequence's rules).
bool valid_utf8(std::string_view s) noexcept;

// ---- the JSON validator ----

/// The deepest nesting of arrays and objects json_valid() accepts: 1000, the
/// default of cjson (encode_max_depth and decode_max_depth), which is what an
/// OpenResty/Kong receiver decodes with, and the limit of the Lua encoder
/// (lua_json_max_depth). `[[1]]` has depth 2. The parser is iterative, so the
/// limit protects receivers, not our stack.
constexpr std::size_t json_max_depth = 1000;

/// true if `s` is exactly one JSON value (RFC 8259) with only whitespace
/// around it. Refused: trailing garbage or a second value, invalid UTF-8
/// (overlongs and surrogates included), a lone or reversed surrogate \u
/// escape, NaN/Infinity, comments, trailing commas, NUL bytes anywhere, and
/// nesting deeper than json_max_depth. On failure, if `error` is not null it
/// receives "invalid JSON at offset N: <what>" (N in bytes from the start of
/// `s`). Thread-safe; builds no document.
bool json_valid(std::string_view s, std::string* error = nullptr);

// ---- the JSON string escaper ----

/// How json_escape_append() writes a string's bytes.
enum class escape_style {
  /// RFC 8259 minimal escaping: `"` `\` as \" \\, \b \f \n \r \t, other
  /// bytes below 0x20 as \u00XX; valid UTF-8 is copied as is, and each byte
  /// that does not start a valid UTF-8 sequence becomes \ufffd (U+FFFD), so
  /// the output is always valid JSON. The rule for all text batchq writes.
  standard,
  /// lua-cjson's cjson.encode (lua_cjson.c char2escape), byte for byte: as
  /// standard, plus `/` as \/ and 0x7f as \u007f, and every other byte
  /// copied as is, valid UTF-8 or not (cjson does not look). Only for
  /// lua_json, whose output must equal cjson's.
  cjson,
};

/// Appends the JSON string-literal escaping of `s` to `out`, without the
/// surrounding quotes. Strings with nothing to escape are scanned 8 bytes at
/// a time and copied in one append.
void json_escape_append(std::string& out, std::string_view s, escape_style style = escape_style::standard);

/// json_escape_append into raw memory: writes the escaping of `s` at `w`,
/// which must have room for json_escape_max(s.size()) bytes, and returns the
/// end of what it wrote. For writers that reserve room once per string.
char* json_escape_raw(char* w, std::string_view s, escape_style style = escape_style::standard) noexcept;

/// The most bytes json_escape_raw() writes for `n` input bytes (\u00XX and
/// \ufffd are 6 bytes each; nothing else is longer).
constexpr std::size_t json_escape_max(std::size_t n) { return 6 * n; }

/// json_escape_append into a new string.
std::string json_escaped(std::string_view s, escape_style style = escape_style::standard);

// ---- base64 ----

/// Appends the base64 encoding of `in` to `out` (RFC 4648 section 4: the
/// standard alphabet, '=' padding, no line breaks).
void base64_append(std::string& out, std::string_view in);

/// base64_append into a new string.
std::string base64(std::string_view in);

}  // namespace batchq::text

#endif  // BATCHQ_LIB_TEXT_TEXT_HPP
