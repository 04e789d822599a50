// JSON lines and listings for the spool: the core of `batchq-replay`. A
// validator and an escaper of our own, so the tool needs no JSON library.
#include "replay.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <ostream>
#include <vector>

#include "spool_reader.hpp"  // lib/: scan_segment_file for quarantined files

namespace batchq {
namespace {

// Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), or 0.
std::size_t utf8_sequence(const unsigned char* p, const unsigned char* end) noexcept {
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

class json_checker {
 public:
  explicit json_checker(std::string_view s) noexcept
      : p_(reinterpret_cast<const unsigned char*>(s.data())), end_(p_ + s.size()) {}

  bool document() noexcept {
    if (!value()) return false;
    skip_ws();
    return p_ == end_;
  }

 private:
  static constexpr int kMaxDepth = 256;

  void skip_ws() noexcept {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool eat(unsigned char c) noexcept {
    skip_ws();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool digits() noexcept {
    const unsigned char* start = p_;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    return p_ > start;
  }
  bool literal(std::string_view word) noexcept {
    if (static_cast<std::size_t>(end_ - p_) < word.size()) return false;
    if (std::string_view(reinterpret_cast<const char*>(p_), word.size()) != word) return false;
    p_ += word.size();
    return true;
  }
  bool number() noexcept {
    if (p_ < end_ && *p_ == '-') ++p_;
    if (p_ < end_ && *p_ == '0')
      ++p_;
    else if (!(p_ < end_ && *p_ >= '1' && *p_ <= '9' && digits()))
      return false;
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (!digits()) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!digits()) return false;
    }
    return true;
  }
  bool string() noexcept {
    ++p_;  // the opening quote
    while (p_ < end_) {
      const unsigned char c = *p_;
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++p_ == end_) return false;
        const unsigned char e = *p_++;
        if (e == 'u') {
          for (int i = 0; i < 4; ++i, ++p_) {
            if (p_ == end_) return false;
            const unsigned char h = *p_;
            if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F'))) return false;
          }
        } else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't') {
          return false;
        }
        continue;
      }
      const std::size_t n = utf8_sequence(p_, end_);
      if (n == 0) return false;
      p_ += n;
    }
    return false;
  }
  bool value() noexcept {
    skip_ws();
    if (p_ == end_) return false;
    switch (*p_) {
      case '{': return container('}', true);
      case '[': return container(']', false);
      case '"': return string();
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: return number();
    }
  }
  bool container(unsigned char close, bool object) noexcept {
    if (++depth_ > kMaxDepth) return false;
    ++p_;
    if (eat(close)) {
      --depth_;
      return true;
    }
    for (;;) {
      if (object) {
        skip_ws();
        if (p_ == end_ || *p_ != '"' || !string() || !eat(':')) return false;
      }
      if (!value()) return false;
      if (eat(',')) continue;
      if (!eat(close)) return false;
      --depth_;
      return true;
    }
  }

  const unsigned char* p_;
  const unsigned char* end_;
  int depth_ = 0;
};

void append_base64(std::string* out, std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t n = in.size();
  for (; n >= 3; n -= 3, p += 3) {
    const std::uint32_t v = std::uint32_t{p[0]} << 16 | std::uint32_t{p[1]} << 8 | p[2];
    for (int s = 18; s >= 0; s -= 6) out->push_back(kAlphabet[(v >> s) & 63u]);
  }
  if (n > 0) {
    const std::uint32_t v = std::uint32_t{p[0]} << 16 | (n == 2 ? std::uint32_t{p[1]} << 8 : 0u);
    out->push_back(kAlphabet[(v >> 18) & 63u]);
    out->push_back(kAlphabet[(v >> 12) & 63u]);
    out->push_back(n == 2 ? kAlphabet[(v >> 6) & 63u] : '=');
    out->push_back('=');
  }
}

}  // namespace

bool is_json(std::string_view text) noexcept { return json_checker(text).document(); }

void append_json_string(std::string* out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c >= 0x80) {
      const std::size_t n = utf8_sequence(p, end);
      if (n == 0) {
        out->append("\\ufffd");
        ++p;
      } else {
        out->append(reinterpret_cast<const char*>(p), n);
        p += n;
      }
      continue;
    }
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15u]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++p;
  }
  out->push_back('"');
}

std::string to_json_line(const spool_record& r, reason_namer namer) {
  std::string out;
  out.reserve(r.payload.size() + r.last_error.size() + 128);
  out += "{\"seq\":" + std::to_string(r.seq) + ",\"kind\":";
  if (r.kind == record_kind::entry || r.kind == record_kind::dropped)
    append_json_string(&out, to_string(r.kind));
  else
    out += std::to_string(static_cast<unsigned>(r.kind));
  out += ",\"reason\":" + std::to_string(static_cast<unsigned>(r.reason));
  if (namer != nullptr && r.kind == record_kind::dropped) {  // entries carry no reason
    const char* name = namer(r.reason);
    out += ",\"reason_name\":";
    append_json_string(&out, name != nullptr ? name : "");
  }
  out += ",\"attempts\":" + std::to_string(r.attempts) + ",\"time_ms\":" + std::to_string(r.time_ms) + ",\"error\":";
  append_json_string(&out, r.last_error);
  if (is_json(r.payload)) {
    // Inside valid JSON a line break can only be whitespace between tokens.
    std::string_view v = r.payload;
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t' || v.front() == '\n' || v.front() == '\r'))
      v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\n' || v.back() == '\r'))
      v.remove_suffix(1);
    out += ",\"payload\":";
    for (const char c : v) out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  } else if (valid_utf8(r.payload)) {
    out += ",\"payload\":";
    append_json_string(&out, r.payload);
  } else {
    out += ",\"payload_base64\":\"";
    append_base64(&out, r.payload);
    out += '"';
  }
  out += '}';
  return out;
}

namespace {

std::unique_ptr<spool> open_to_read(const std::string& dir, std::ostream& err) {
  spool_options o;
  o.dir = dir;
  o.read_only = true;
  o.max_bytes = 0;
  o.fsync = fsync_policy::never;
  spool_error e;
  auto s = spool::open(o, &e);
  if (!s) err << e.message << '\n';
  return s;
}

void report_damage(const spool& s, std::ostream& err) {
  const spool_stats st = s.stats();
  if (st.corrupt_records + st.torn_records == 0) return;
  err << "warning: damaged records skipped: corrupt=" << st.corrupt_records << " torn=" << st.torn_records
      << " skipped_bytes=" << st.skipped_bytes << " tail_bytes=" << st.truncated_bytes << '\n';
}

// The regular files in <dir>/quarantine, sorted; false if the folder exists
// but cannot be read.
bool quarantine_files(const std::string& dir, std::vector<std::string>* names, std::string* qdir) {
  *qdir = dir + (dir.empty() || dir.back() != '/' ? "/" : "") + "quarantine";
  DIR* d = ::opendir(qdir->c_str());
  if (d == nullptr) return errno == ENOENT;
  while (const dirent* e = ::readdir(d)) {
    struct stat st;
    const std::string p = *qdir + "/" + e->d_name;
    if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) names->emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names->begin(), names->end());
  return true;
}

void describe_scan(const std::string& name, const detail::segment_file_scan& s, std::ostream& out) {
  out << "quarantine/" << name << " file_bytes=" << s.file_bytes << " records=" << s.records
      << " damaged_regions=" << s.damaged_regions << " damaged_bytes=" << s.damaged_bytes;
  if (s.damaged_regions != 0) out << " first_damage_offset=" << s.first_damage;
  if (s.error != 0) out << " read_error=" << s.error;
  out << '\n';
}

// replay_list's lines for the quarantine folder.
void list_quarantine(const std::string& dir, std::ostream& out, std::ostream& err) {
  std::vector<std::string> names;
  std::string qdir;
  if (!quarantine_files(dir, &names, &qdir)) {
    err << "cannot read " << qdir << '\n';
    return;
  }
  for (const auto& n : names) describe_scan(n, detail::scan_segment_file(qdir + "/" + n), out);
}

}  // namespace

int replay_quarantine(const std::string& dir, const replay_print_options& o, std::ostream& out,
                      std::ostream& err) {
  try {
    std::vector<std::string> names;
    std::string qdir;
    if (!quarantine_files(dir, &names, &qdir)) {
      err << "cannot read " << qdir << '\n';
      return 1;
    }
    if (names.empty()) err << "nothing in quarantine in " << dir << '\n';
    std::size_t n = 0;
    for (const auto& name : names) {
      const detail::segment_file_scan s = detail::scan_segment_file(qdir + "/" + name, [&](const spool_record& r) {
        if (r.seq < o.from_seq || (o.limit != 0 && n >= o.limit)) return;
        out << to_json_line(r, o.namer) << '\n';
        ++n;
      });
      describe_scan(name, s, err);
    }
    return out.good() ? 0 : 1;
  } catch (const std::exception& ex) {
    err << "batchq-replay quarantine: " << ex.what() << '\n';
    return 1;
  }
}

int replay_list(const std::string& dir, std::ostream& out, std::ostream& err) {
  try {
    auto s = open_to_read(dir, err);
    if (!s) return 1;
    const std::vector<spool_segment_info> segs = s->inspect();
    spool_segment_info total;
    for (const auto& g : segs) {
      out << g.file << " first_seq=" << g.first_seq << " last_seq=" << g.last_seq << " records=" << g.records
          << " unacked=" << g.records - g.acked << " dropped=" << g.dropped_kind
          << " payload_bytes=" << g.payload_bytes << " file_bytes=" << g.file_bytes
          << " corrupt=" << g.corrupt_records << " torn=" << g.torn_records << '\n';
      total.records += g.records;
      total.acked += g.acked;
      total.dropped_kind += g.dropped_kind;
      total.payload_bytes += g.payload_bytes;
      total.file_bytes += g.file_bytes;
      total.corrupt_records += g.corrupt_records;
      total.torn_records += g.torn_records;
    }
    const spool_stats st = s->stats();
    out << "total segments=" << segs.size() << " records=" << total.records
        << " unacked=" << total.records - total.acked << " dropped=" << total.dropped_kind
        << " payload_bytes=" << total.payload_bytes << " file_bytes=" << total.file_bytes
        << " corrupt=" << total.corrupt_records << " torn=" << total.torn_records << " acked_seq=" << st.acked_seq
        << '\n';
    list_quarantine(dir, out, err);
    return out.good() ? 0 : 1;
  } catch (const std::exception& ex) {
    err << "batchq-replay list: " << ex.what() << '\n';
    return 1;
  }
}

int replay_print(const std::string& dir, const replay_print_options& o, std::ostream& out, std::ostream& err) {
  try {
    auto s = open_to_read(dir, err);
    if (!s) return 1;
    std::size_t n = 0;
    s->for_each(
        [&](const spool_record& r) {
          out << to_json_line(r, o.namer) << '\n';
          return out.good() && (o.limit == 0 || ++n < o.limit);
        },
        o.from_seq);
    report_damage(*s, err);
    return out.good() ? 0 : 1;
  } catch (const std::exception& ex) {
    err << "batchq-replay print: " << ex.what() << '\n';
    return 1;
  }
}

}  // namespace batchq
