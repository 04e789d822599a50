#include "batchq/payload.hpp"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace batchq {

namespace {

// One implementation for entries held as std::string or as std::string_view.
template <class S>
std::size_t size_of_payload(span<const S> entries, payload_format format) noexcept {
  std::size_t bytes = 0;
  for (const auto& e : entries) bytes += e.size();
  const std::size_t n = entries.size();
  switch (format) {
    case payload_format::kong:
      if (n == 1) return bytes;
      [[fallthrough]];
    case payload_format::json_array:
      return bytes + 2 + (n > 0 ? n - 1 : 0);  // brackets and commas
    case payload_format::ndjson:
      return bytes + n;  // one '\n' after each entry
  }
  return bytes;
}

template <class S>
void build_into(span<const S> entries, payload_format format, std::string& out) {
  out.clear();
  out.reserve(size_of_payload(entries, format));
  if (format == payload_format::ndjson) {
    for (const auto& e : entries) {
      out += e;
      out += '\n';
    }
    return;
  }
  if (format == payload_format::kong && entries.size() == 1) {
    out += entries[0];
    return;
  }
  out += '[';
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (i) out += ',';
    out += entries[i];
  }
  out += ']';
}

}  // namespace

std::size_t payload_size(span<const std::string> entries, payload_format format) noexcept {
  return size_of_payload(entries, format);
}
std::size_t payload_size(span<const std::string_view> entries, payload_format format) noexcept {
  return size_of_payload(entries, format);
}
void build_payload(span<const std::string> entries, payload_format format, std::string& out) {
  build_into(entries, format, out);
}
void build_payload(span<const std::string_view> entries, payload_format format, std::string& out) {
  build_into(entries, format, out);
}

std::string build_payload(span<const std::string> entries, payload_format format) {
  std::string out;
  build_payload(entries, format, out);
  return out;
}

bool validate_json(std::string_view s, std::string* error) {
  // Iterative: a hostile "[[[[..." cannot overflow the stack. Numbers as
  // strings: we only validate, so skip the float conversion.
  constexpr unsigned flags = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag |
                             rapidjson::kParseNumbersAsStringsFlag;
  rapidjson::MemoryStream ms(s.data(), s.size());
  rapidjson::Reader reader;
  rapidjson::BaseReaderHandler<> handler;
  const rapidjson::ParseResult r = reader.Parse<flags>(ms, handler);
  auto fail = [&](std::size_t offset, const char* what) {
    if (error) *error = "invalid JSON at offset " + std::to_string(offset) + ": " + what;
    return false;
  };
  if (r.IsError()) return fail(r.Offset(), rapidjson::GetParseError_En(r.Code()));
  // MemoryStream reports '\0' at its end, so a NUL byte inside the input
  // looks like the end to the parser; anything left unread is that case.
  if (ms.Tell() != s.size()) return fail(ms.Tell(), "NUL byte in the input.");
  if (error) error->clear();
  return true;
}

std::string json_escape(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += hex[u >> 4];
          out += hex[u & 0xf];
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace batchq
