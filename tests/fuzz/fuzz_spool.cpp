// tests/fuzz/fuzz_spool.cpp - libFuzzer target: the spool reader over
// arbitrary files.
//
// Input layout: byte 0 = flags, byte 1 = which first seq the segment file is
// named after, the rest = the bytes of the segment file (or of two files, see
// flags). The files go into a private temp directory (mode 0700), the spool
// is opened (read-only or for writing), read with read_all / for_each /
// inspect / stats, optionally appended to and read again, closed, and the
// directory emptied. Must never crash, hang, leak or return records that are
// out of order; a record it returns must have a sane shape.
//
// Flags:
//   bit 0  open read_only
//   bit 1  "fix the checksums": every place holding the magic and a plausible
//          length gets a correct CRC first, so the fuzzer gets past the CRC and
//          reaches seq ordering, gaps, kinds, error lengths and resync
//   bit 2  split the data in two segment files (at a point given by byte 2)
//   bit 3  write an ACK file whose mark is taken from the next 8 bytes
//   bit 4  (write mode) append two records, ack some, read again
//   bit 5  segment_bytes 4 KiB instead of 64 KiB (files may exceed it)
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "batchq/spool.hpp"
#include "crc32c.hpp"  // lib/: the library's CRC-32C, to build valid checksums
#include "fuzz_check.hpp"

namespace {

const std::string& work_dir() {
  static const std::string dir = [] {
    const char* t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/batchq-fuzz-spool-XXXXXX";
    std::vector<char> b(tmpl.begin(), tmpl.end());
    b.push_back('\0');
    FUZZ_CHECK(::mkdtemp(b.data()) != nullptr);
    return std::string(b.data());
  }();
  return dir;
}

void empty_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  FUZZ_CHECK(d != nullptr);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
  }
  ::closedir(d);
  for (const auto& n : names) {
    const std::string p = dir + "/" + n;
    if (::unlink(p.c_str()) != 0 && n == "quarantine") {  // damaged segments kept by the spool
      empty_dir(p);
      ::rmdir(p.c_str());
    }
  }
}

void write_file(const std::string& path, const void* data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FUZZ_CHECK(fd >= 0);
  const auto* p = static_cast<const unsigned char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    FUZZ_CHECK(n > 0);
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  ::close(fd);
}

std::uint32_t get32(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
void put32(unsigned char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void put64(unsigned char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

// Gives every record-looking region a correct CRC (docs/spool-format.md: over
// [20, length) then continued over [8, 20)).
void fix_checksums(std::vector<unsigned char>& b) {
  const std::size_t hdr = batchq::spool_record_header_bytes;
  std::size_t off = 0;
  while (off + hdr <= b.size()) {
    if (get32(&b[off]) != batchq::spool_record_magic) {
      ++off;
      continue;
    }
    const std::uint32_t len = get32(&b[off + 8]);
    if (len < hdr || len > b.size() - off) {
      ++off;
      continue;
    }
    std::uint32_t crc = batchq::detail::crc32c(&b[off + 20], len - 20);
    crc = batchq::detail::crc32c(&b[off + 8], 12, crc);
    put32(&b[off + 4], crc);
    off += len;
  }
}

std::string segment_name(std::uint64_t first_seq) {
  char name[64];
  std::snprintf(name, sizeof name, "spool-%020llu.seg", static_cast<unsigned long long>(first_seq));
  return name;
}

// A bounded, deterministic mapping from one byte to a first seq.
std::uint64_t first_seq_of(std::uint8_t b) {
  static const std::uint64_t table[] = {1, 1, 1, 1, 2, 3, 10, 0, 100, 1000000, UINT64_MAX - 1, UINT64_MAX};
  return table[b % (sizeof table / sizeof table[0])];
}

void check_record(const batchq::spool_record& r, std::uint64_t& prev) {
  FUZZ_CHECK(r.seq > prev || prev == 0);
  prev = r.seq;
  FUZZ_CHECK(r.last_error.size() <= batchq::spool_max_error_bytes);
  FUZZ_CHECK(r.payload.size() < (std::size_t{1} << 30));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint8_t flags = data[0];
  const std::uint64_t first = first_seq_of(data[1]);
  const std::uint8_t split_at = data[2];
  data += 3;
  size -= 3;

  const std::string& dir = work_dir();
  empty_dir(dir);

  std::uint64_t ack_mark = 0;
  if ((flags & 8) && size >= 8) {
    for (int i = 7; i >= 0; --i) ack_mark = ack_mark << 8 | data[i];
    data += 8;
    size -= 8;
    // The ACK file: magic, CRC-32C of the mark, the mark (see lib/spool.cpp).
    // Its layout is the library's business; a wrong guess only means the
    // spool counts an unreadable ACK, which is also worth fuzzing.
    unsigned char ack[16];
    put32(ack, 0x31415142u);  // "BQA1"
    put64(ack + 8, ack_mark);
    put32(ack + 4, batchq::detail::crc32c(ack + 8, 8));
    write_file(dir + "/ACK", ack, sizeof ack);
  }

  std::vector<unsigned char> bytes(data, data + size);
  if (flags & 2) fix_checksums(bytes);
  if ((flags & 4) && !bytes.empty()) {
    const std::size_t cut = bytes.size() * split_at / 256;
    write_file(dir + "/" + segment_name(first), bytes.data(), cut);
    const std::uint64_t second = first == UINT64_MAX ? first : first + 1 + split_at % 5;
    write_file(dir + "/" + segment_name(second), bytes.data() + cut, bytes.size() - cut);
  } else {
    write_file(dir + "/" + segment_name(first), bytes.data(), bytes.size());
  }

  batchq::spool_options o;
  o.dir = dir;
  o.read_only = (flags & 1) != 0;
  o.segment_bytes = (flags & 32) ? 4096 : 65536;
  o.max_bytes = 0;  // no background thread, no eviction
  o.fsync = batchq::fsync_policy::never;
  batchq::spool_error err;
  {
    std::unique_ptr<batchq::spool> sp = batchq::spool::open(o, &err);
    if (!sp) {
      // Refusing to open is acceptable (e.g. an unreadable name), but it must say why.
      FUZZ_CHECK(err.code != batchq::spool_errc::ok && !err.message.empty());
      empty_dir(dir);
      return 0;
    }
    const std::vector<batchq::spool_entry> all = sp->read_all();
    std::uint64_t prev = 0;
    for (const auto& e : all) check_record(e.view(), prev);
    // A readable mark hides everything at or below it. (A mark above 2^62 is
    // refused as damage, like any seq that high: everything is replayed.)
    if ((flags & 8) && ack_mark <= (std::uint64_t{1} << 62) && !all.empty()) FUZZ_CHECK(all.front().seq > ack_mark);

    std::size_t seen = 0;
    prev = 0;
    const std::size_t passed = sp->for_each([&](const batchq::spool_record& r) {
      check_record(r, prev);
      return ++seen < 3;  // stop early: the early-exit path
    });
    FUZZ_CHECK(passed == seen && passed <= 3);

    const std::vector<batchq::spool_segment_info> segs = sp->inspect();
    for (const auto& s : segs) {
      FUZZ_CHECK(s.acked <= s.records);
      FUZZ_CHECK(s.dropped_kind <= s.records);
      FUZZ_CHECK(s.payload_bytes <= s.file_bytes);
    }
    const batchq::spool_stats st = sp->stats();
    FUZZ_CHECK(st.acked_seq <= st.last_seq || st.last_seq == 0 || (flags & 8));

    if (!o.read_only && (flags & 16)) {
      batchq::record_meta m;
      m.kind = batchq::record_kind::dropped;
      m.reason = 3;
      m.last_error = "fuzz";
      int e1 = 0, e2 = 0;
      const std::uint64_t s1 = sp->append("{\"a\":1}", m, &e1);
      const std::uint64_t s2 = sp->append(std::string(static_cast<std::size_t>(split_at) * 3, 'x'), {}, &e2);
      if (s1 != 0 && s2 != 0) FUZZ_CHECK(s2 > s1);
      if (s1 != 0) sp->ack(s1, s1);
      const std::vector<batchq::spool_entry> again = sp->read_all();
      prev = 0;
      for (const auto& e : again) {
        check_record(e.view(), prev);
        if (s1 != 0) FUZZ_CHECK(e.seq != s1);  // acknowledged: never returned again
      }
      if (s2 != 0) FUZZ_CHECK(!again.empty() && again.back().seq == s2);
    }
    sp->close();
    FUZZ_CHECK(sp->read_all().empty());
  }
  empty_dir(dir);
  return 0;
}
