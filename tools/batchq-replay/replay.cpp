// JSON lines and listings for the spool: the core of `batchq-replay`. JSON
// checks, escaping and base64 come from the text toolbox (lib/text).
#include "replay.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <ostream>
#include <vector>

#include "spool_reader.hpp"  // lib/: scan_segment_file for quarantined files
#include "text/text.hpp"

namespace batchq {

bool is_json(std::string_view s) noexcept { return text::json_valid(s); }

void append_json_string(std::string* out, std::string_view s) {
  out->push_back('"');
  text::json_escape_append(*out, s);
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
  } else if (text::valid_utf8(r.payload)) {
    out += ",\"payload\":";
    append_json_string(&out, r.payload);
  } else {
    out += ",\"payload_base64\":\"";
    text::base64_append(out, r.payload);
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
