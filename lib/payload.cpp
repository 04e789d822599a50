#include "batchq/payload.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

#include "text/text.hpp"

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

// The framing bytes the pieces point at.
constexpr std::string_view k_open("[", 1), k_sep(",", 1), k_close("]", 1), k_newline("\n", 1);

}  // namespace

void payload_pieces(span<const std::string_view> entries, payload_format format, std::vector<std::string_view>& out) {
  out.clear();
  if (format == payload_format::ndjson) {
    out.reserve(2 * entries.size());
    for (const auto& e : entries) {
      out.push_back(e);
      out.push_back(k_newline);
    }
    return;
  }
  if (format == payload_format::kong && entries.size() == 1) {
    out.push_back(entries[0]);
    return;
  }
  out.reserve(2 * entries.size() + 1);
  out.push_back(k_open);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (i) out.push_back(k_sep);
    out.push_back(entries[i]);
  }
  out.push_back(k_close);
}

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

bool validate_json(std::string_view s, std::string* error) { return text::json_valid(s, error); }

bool check_framing(std::string_view s, payload_format format, std::string* error) {
  const char* const p = s.data();
  const std::size_t n = s.size();
  auto fail = [&](std::size_t at, const std::string& what) {
    if (error)
      *error = "entry would change the " + std::string(to_string(format)) + " batch's framing: " + what +
               " at offset " + std::to_string(at) + " (send exactly one JSON value per entry, compact or with "
               "newlines escaped)";
    return false;
  };
  // ndjson: no raw CR or LF anywhere (outside strings it would end the line,
  // inside one it is invalid JSON and would end the line too). memchr is
  // vectorised: two passes cost less than a byte loop.
  if (format == payload_format::ndjson && n) {
    const void* lf = std::memchr(p, '\n', n);
    const void* cr = std::memchr(p, '\r', lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - p) : n);
    if (const void* first = cr ? cr : lf)
      return fail(static_cast<std::size_t>(static_cast<const char*>(first) - p),
                  "a raw newline (CR or LF) would split the ndjson line");
  }
  auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  // From the '"' at p[at]: the offset after the closing quote, or npos if
  // there is none. Short strings (most of a log entry) byte by byte; past 32
  // bytes, memchr to the next quote, which is escaped iff an odd run of
  // backslashes precedes it.
  auto skip_string = [&](std::size_t at) -> std::size_t {
    std::size_t k = at + 1;
    for (const std::size_t stop = std::min(n, at + 33); k < stop; ++k) {
      if (p[k] == '"') return k + 1;
      if (p[k] == '\\') ++k;
    }
    // k is not inside an escape here (the byte loop stepped over any).
    while (k < n) {
      const void* q = std::memchr(p + k, '"', n - k);
      if (!q) return std::string_view::npos;
      const std::size_t pos = static_cast<std::size_t>(static_cast<const char*>(q) - p);
      std::size_t bs = 0;
      while (pos - bs > at + 1 && p[pos - bs - 1] == '\\') ++bs;
      if (bs % 2 == 0) return pos + 1;
      k = pos + 1;
    }
    return std::string_view::npos;
  };
  std::size_t i = 0;
  while (i < n && is_ws(p[i])) ++i;
  if (i == n) return fail(i, "the entry is empty or only whitespace");
  const std::size_t start = i;
  const char first = p[i];
  if (first == '{' || first == '[') {
    std::string open;  // the bracket stack; SSO keeps shallow entries off the heap
    // Bytes that matter outside strings: quotes and brackets.
    static constexpr auto special = [] {
      std::array<bool, 256> t{};
      for (const unsigned char c : {'"', '{', '[', '}', ']'}) t[c] = true;
      return t;
    }();
    while (i < n) {
      while (i < n && !special[static_cast<unsigned char>(p[i])]) ++i;
      if (i == n) break;
      const char c = p[i];
      if (c == '"') {
        const std::size_t at = i;
        i = skip_string(i);
        if (i == std::string_view::npos) return fail(at, "an unterminated string starting");
        continue;
      }
      if (c == '{' || c == '[') {
        open += c;
      } else if (c == '}' || c == ']') {
        if (open.empty() || open.back() != (c == '}' ? '{' : '['))
          return fail(i, std::string("a '") + c + "' that closes nothing open or the wrong bracket");
        open.pop_back();
        if (open.empty()) {
          ++i;
          break;
        }
      }
      ++i;
    }
    if (!open.empty()) return fail(start, "an unclosed '" + open.substr(0, 1) + "' (brackets do not balance) starting");
  } else if (first == '"') {
    i = skip_string(i);
    if (i == std::string_view::npos) return fail(start, "an unterminated string starting");
  } else if (first == '}' || first == ']' || first == ',' || first == ':') {
    return fail(i, std::string("a '") + first + "' where a value should start");
  } else {
    // One scalar token (number, true, false, null, or garbage the receiver
    // will refuse on its own): it ends at whitespace or a structural byte.
    auto structural = [](char c) {
      return c == '{' || c == '}' || c == '[' || c == ']' || c == '"' || c == ',' || c == ':';
    };
    while (i < n && !is_ws(p[i]) && !structural(p[i])) ++i;
  }
  for (; i < n; ++i) {
    if (is_ws(p[i])) continue;
    const auto u = static_cast<unsigned char>(p[i]);
    char shown[8];
    std::snprintf(shown, sizeof shown, u < 0x20 || u > 0x7e ? "\\x%02x" : "%c", u);
    return fail(i, std::string("a second value or separator '") + shown + "' after the first value");
  }
  return true;
}

std::string json_escape(std::string_view s) { return text::json_escaped(s); }

}  // namespace batchq
