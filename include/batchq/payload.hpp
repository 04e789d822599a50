// batchq/payload.hpp - turning a batch of serialized JSON entries into one
// request body, and checking that a string is JSON.
//
// Entries are already-serialized JSON values (usually objects, one per log
// entry). build_payload() joins them byte for byte; it never parses them, so
// it costs one allocation and one copy per batch. validate_json() is the
// separate, optional check a host can run at enqueue time.
#ifndef BATCHQ_PAYLOAD_HPP
#define BATCHQ_PAYLOAD_HPP

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "batchq/export.hpp"
#include "batchq/types.hpp"

namespace batchq {

/// How the entries of a batch are laid out in the body.
/// Append-only (the numeric values may be used by the C ABI).
enum class payload_format : int {
  /// Kong http-log: one entry -> the entry itself; N entries -> "[e1,e2,...]".
  /// Zero entries -> "[]".
  kong = 0,
  /// Always an array: "[e1]", "[e1,e2,...]"; zero entries -> "[]".
  json_array = 1,
  /// Newline-delimited JSON: "e1\ne2\n...\n" (each entry followed by '\n');
  /// zero entries -> "". Entries must not contain a raw newline (compact
  /// JSON never does); http_log refuses them (check_framing). Set the
  /// sender's content_type to "application/x-ndjson" yourself.
  ndjson = 2,
};

constexpr const char* to_string(payload_format f) noexcept {
  switch (f) {
    case payload_format::kong: return "kong";
    case payload_format::json_array: return "json_array";
    case payload_format::ndjson: return "ndjson";
  }
  return "unknown";
}

/// Replaces the contents of `out` with the body for `entries` in `format`.
/// `out` keeps its capacity, so a sending thread can reuse one buffer; it is
/// grown once to the exact size needed. Entries are copied, never parsed or
/// modified. Thread-safe for distinct `out` buffers; `entries` are only read.
BATCHQ_CXX_API void build_payload(span<const std::string> entries, payload_format format, std::string& out);
/// The same from views of the entries (the caller keeps the bytes alive).
BATCHQ_CXX_API void build_payload(span<const std::string_view> entries, payload_format format, std::string& out);

/// Convenience: the body as a new string.
BATCHQ_CXX_API std::string build_payload(span<const std::string> entries, payload_format format);

/// The body as a gather list, without copying an entry: replaces `out` with
/// views that, concatenated, are exactly what build_payload() produces -
/// each entry's bytes and the format's framing ("[", ",", "]", "\n"; the
/// framing views point at static storage). The views into `entries` are
/// valid as long as the entries are. This is what the HTTP sender streams
/// from (a request body is never assembled in one buffer). Thread-safe for
/// distinct `out` vectors.
BATCHQ_CXX_API void payload_pieces(span<const std::string_view> entries, payload_format format,
                                   std::vector<std::string_view>& out);

/// The exact number of bytes build_payload() produces for these entries.
BATCHQ_CXX_API std::size_t payload_size(span<const std::string> entries, payload_format format) noexcept;
BATCHQ_CXX_API std::size_t payload_size(span<const std::string_view> entries, payload_format format) noexcept;

/// true if `s` is exactly one JSON value (RFC 8259) with nothing but
/// whitespace around it: trailing garbage, a second value, invalid UTF-8,
/// NaN/Infinity, embedded NUL bytes and nesting deeper than 1000 arrays or
/// objects (cjson's default limit, which OpenResty/Kong receivers decode
/// with) are errors; the parser is iterative, so depth never costs stack.
/// On failure, if
/// `error` is not null it receives e.g.
///   "invalid JSON at offset 12: Missing a comma or '}' after an object member."
/// (offset in bytes from the start of `s`). Thread-safe; does not allocate a
/// document.
BATCHQ_CXX_API bool validate_json(std::string_view s, std::string* error = nullptr);

/// The poison-entry rule: true if `entry` can sit in a body of `format`
/// without changing the body's framing, i.e. it is exactly ONE JSON value in
/// shape: optional whitespace, then an object or array whose brackets and
/// braces balance and match (counted outside strings), a complete string, or
/// one scalar token; then only whitespace. Refused: empty entries, a second
/// value or a top-level ',' / ':' (`{"a":1},{"b":2}`), unbalanced or
/// mismatched brackets, an unterminated string, and for ndjson any raw CR or
/// LF byte (it would end the line). It checks shape only, not grammar:
/// `{"a":tru}` passes (validate_json() catches that; a receiver that refuses
/// it refuses one entry, see http_log's split_on_4xx). One pass, no
/// allocation below 16 levels of nesting. On failure `error` (if not null)
/// receives what is wrong, where, and what to send instead. Thread-safe.
BATCHQ_CXX_API bool check_framing(std::string_view entry, payload_format format, std::string* error = nullptr);

/// The JSON string-literal escaping of `s`, without the surrounding quotes:
/// `"` `\` and control characters below 0x20 are escaped (\n, \t, ... or
/// \u00XX); valid UTF-8 is copied as is and each byte that does not start a
/// valid UTF-8 sequence becomes \ufffd (U+FFFD), so the result is always
/// valid in a JSON string. Use it to build small JSON texts (e.g. error
/// entries) by hand.
BATCHQ_CXX_API std::string json_escape(std::string_view s);

}  // namespace batchq

#endif  // BATCHQ_PAYLOAD_HPP
