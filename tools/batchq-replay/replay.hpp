// tools/batchq-replay/replay.hpp - what batchq-replay prints: records as JSON
// lines, segment listings, the quarantine. Private to the tool (and its
// tests); not installed. Reads spools through the public batchq/spool.hpp and
// quarantined files through the library's private reader.
#ifndef BATCHQ_TOOLS_REPLAY_HPP
#define BATCHQ_TOOLS_REPLAY_HPP

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>

#include "batchq/spool.hpp"

namespace batchq {

/// True if `text` is exactly one JSON value (RFC 8259), whitespace around it
/// allowed, strings valid UTF-8. Nesting deeper than 1000 (text::json_max_depth) counts as invalid.
bool is_json(std::string_view text) noexcept;

/// Appends `text` to *out as a JSON string literal (quotes included).
/// Invalid UTF-8 sequences become U+FFFD; use this only where that loss is
/// acceptable (error texts), see to_json_line for payloads.
void append_json_string(std::string* out, std::string_view text);

/// Names a record_meta::reason value for output; nullptr = print the number.
using reason_namer = const char* (*)(std::uint8_t reason);

/// One record as one line of JSON (no newline at the end):
///   {"seq":12,"kind":"dropped","reason":0,"reason_name":"...","attempts":3,
///    "time_ms":1700000000000,"error":"HTTP 503","payload":...}
/// reason_name only with a namer. The payload goes in as JSON when it is
/// JSON (line breaks between tokens become spaces, so it stays one line);
/// otherwise as a string when it is valid UTF-8; otherwise, losslessly, as
/// "payload_base64":"...". Thread-safe.
std::string to_json_line(const spool_record& r, reason_namer namer = nullptr);

/// Options of replay_print and replay_quarantine.
struct replay_print_options {
  std::uint64_t from_seq = 0;  ///< first seq to print
  std::size_t limit = 0;       ///< at most this many records; 0 = all
  reason_namer namer = nullptr;
};

/// `batchq-replay list <dir>`: opens the spool read-only (works while an owner
/// holds it) and writes one line per segment (file, seqs, records, acked,
/// bytes, damage), a total line, and a line per file in <dir>/quarantine to
/// `out`. Returns 0, or 1 with the reason written to `err`.
int replay_list(const std::string& dir, std::ostream& out, std::ostream& err);

/// `batchq-replay print <dir>`: the unacknowledged records as JSON lines
/// (to_json_line) on `out`. Read-only, as replay_list. Returns 0 or 1.
int replay_print(const std::string& dir, const replay_print_options& o, std::ostream& out, std::ostream& err);

/// `batchq-replay quarantine <dir>`: every record that still reads back from
/// the files in <dir>/quarantine/ as JSON lines (to_json_line) on `out`, and
/// per file one line on `err`: records, damaged regions, bytes, first offset.
/// Read-only. Returns 0, or 1 if the folder cannot be read.
int replay_quarantine(const std::string& dir, const replay_print_options& o, std::ostream& out, std::ostream& err);

}  // namespace batchq

#endif  // BATCHQ_TOOLS_REPLAY_HPP
