// Issue 12, items 3, 4 and 6: damaged spool data is counted, reported (file,
// offset) and kept in <spool>/quarantine/, never deleted; a record larger
// than a segment is written (a segment of its own); reading is streamed and
// linear, whatever a crafted file holds. Real files, real processes (the
// memory bound is measured in a child).
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>

#include "../../lib/spool_reader.hpp"  // scan_segment_file: reads a quarantined file
#include "replay.hpp"                    // tools/batchq-replay: replay_list, replay_quarantine
#include "spool/spool_test_util.hpp"
#include "support/catch.hpp"

using namespace batchq;
using namespace batchq::test;

namespace {

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

std::size_t count_lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

std::size_t record_size(const std::string& payload) { return spool_record_header_bytes + payload.size(); }

void fill(spool& s, std::uint64_t first, std::uint64_t last) {
  for (std::uint64_t i = first; i <= last; ++i) REQUIRE(s.append(payload_for(i)) == i);
}

/// What on_damage reported.
struct damage_log {
  std::mutex mu;
  std::vector<spool_damage> seen;
  void hook(spool_options& o) {
    o.on_damage = [this](const spool_damage& d) {
      std::lock_guard<std::mutex> g(mu);
      seen.push_back(d);
    };
  }
};

std::vector<std::string> quarantined(const std::string& dir) {
  std::vector<std::string> v;
  const std::string q = dir + "/quarantine";
  if (!fs::exists(q)) return v;
  for (const auto& e : fs::directory_iterator(q)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

void put32(std::string& f, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) f[at + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
}

// small_options for `d`, with records 1..n written (and the spool closed).
spool_options written(const temp_dir& d, std::uint64_t n) {
  spool_options o = small_options(d.path());
  auto s = must_open(o);
  fill(*s, 1, n);
  return o;
}

}  // namespace

TEST_CASE("damage: a flipped byte in a sealed segment is counted, logged with file and offset, quarantined",
          "[spool]") {
  temp_dir d;
  spool_options o = written(d, 150);
  const auto files = segment_files(d.path());
  REQUIRE(files.size() >= 3);
  std::string f = read_file(d.file(files[0]));
  const std::size_t off2 = record_size(payload_for(1));
  f[off2 + 40] = static_cast<char>(f[off2 + 40] ^ 1);  // record 2's payload
  write_file(d.file(files[0]), f);

  damage_log log;
  log.hook(o);
  auto s = must_open(o);
  const auto got = s->read_all();
  CHECK(got.size() == 149);
  const spool_stats st = s->stats();
  CHECK(st.corrupt_records == 1);
  CHECK(st.skipped_bytes == record_size(payload_for(2)));
  CHECK(st.quarantined == 1);
  REQUIRE(log.seen.size() == 1);
  const spool_damage& dm = log.seen[0];
  CHECK(dm.file == d.file(files[0]));
  CHECK(dm.offset == off2);
  CHECK(dm.bytes == record_size(payload_for(2)));
  CHECK(contains(dm.message, d.file(files[0])));
  CHECK(contains(dm.message, "at offset " + std::to_string(off2)));
  CHECK(dm.quarantine == d.file("quarantine/" + files[0] + ".damaged"));
  // The whole segment, as it was, is kept.
  REQUIRE(quarantined(d.path()) == std::vector<std::string>{files[0] + ".damaged"});
  CHECK(read_file(dm.quarantine) == f);
  // Everything acknowledged: the segments go, the quarantine stays.
  s->ack_upto(150);
  s.reset();
  CHECK(segment_files(d.path()).empty());
  CHECK(read_file(d.file("quarantine/" + files[0] + ".damaged")) == f);
  // The replay tool reads back what is still valid in it.
  std::ostringstream out, err;
  CHECK(replay_quarantine(d.path(), {}, out, err) == 0);
  const detail::segment_file_scan sc = detail::scan_segment_file(dm.quarantine);
  CHECK(sc.damaged_regions == 1);
  CHECK(sc.first_damage == off2);
  CHECK(count_lines(out.str()) == sc.records);
  CHECK(contains(err.str(), "damaged_regions=1"));
  CHECK(contains(err.str(), "first_damage_offset=" + std::to_string(off2)));
  std::ostringstream listed, lerr;
  CHECK(replay_list(d.path(), listed, lerr) == 0);
  CHECK(contains(listed.str(), "quarantine/" + files[0] + ".damaged"));
}

TEST_CASE("damage: a length field claiming 4 GB is damage; the records after it are read", "[spool]") {
  temp_dir d;
  spool_options o = written(d, 9);
  const std::string seg = d.file(segment_files(d.path()).back());
  std::string f = read_file(seg);
  const std::size_t off3 = record_size(payload_for(1)) + record_size(payload_for(2));
  put32(f, off3 + 8, 0xFFFFFFF0u);
  write_file(seg, f);

  damage_log log;
  log.hook(o);
  auto s = must_open(o);  // the newest segment is checked at open
  CHECK(seqs_of(s->read_all()) == std::vector<std::uint64_t>{1, 2, 4, 5, 6, 7, 8, 9});
  CHECK(s->stats().corrupt_records == 1);
  CHECK(s->stats().skipped_bytes == record_size(payload_for(3)));
  REQUIRE(log.seen.size() == 1);
  CHECK(log.seen[0].offset == off3);
  CHECK(!log.seen[0].tail);
  CHECK(read_file(log.seen[0].quarantine) == f);
}

TEST_CASE("damage: two segment files swapped: both are damage, kept, and their records read back from quarantine",
          "[spool]") {
  temp_dir d;
  spool_options o = written(d, 150);
  const auto files = segment_files(d.path());
  REQUIRE(files.size() >= 3);
  const std::string a = read_file(d.file(files[0])), b = read_file(d.file(files[1]));
  write_file(d.file(files[0]), b);
  write_file(d.file(files[1]), a);

  damage_log log;
  log.hook(o);
  auto s = must_open(o);
  const auto got = s->read_all();
  const spool_stats st = s->stats();
  CHECK(st.corrupt_records == 2);
  CHECK(st.skipped_bytes + st.truncated_bytes == a.size() + b.size());
  CHECK(st.quarantined == 2);
  CHECK(log.seen.size() == 2);
  CHECK(quarantined(d.path()) == std::vector<std::string>{files[0] + ".damaged", files[1] + ".damaged"});
  // None of their records is delivered from the wrong place...
  for (const auto& e : got) CHECK(e.payload == payload_for(e.seq));
  // ...and all of them read back from the quarantine.
  std::ostringstream out, err;
  REQUIRE(replay_quarantine(d.path(), {}, out, err) == 0);
  std::uint64_t n = 0;
  for (const auto& name : quarantined(d.path()))
    n += detail::scan_segment_file(d.file("quarantine/" + name), [](const spool_record& r) {
           CHECK(r.payload == payload_for(r.seq));
         }).records;
  CHECK(n + got.size() == 150);
  CHECK(count_lines(out.str()) == n);
}

TEST_CASE("damage: a truncated tail is counted and kept; the newest segment is cut, the kept copy is whole",
          "[spool]") {
  temp_dir d;
  spool_options o = written(d, 150);
  const auto files = segment_files(d.path());
  REQUIRE(files.size() >= 3);

  SECTION("newest segment (the crash signature): cut at the last good record") {
    const std::string seg = d.file(files.back());
    const std::string before = read_file(seg);
    fs::resize_file(seg, before.size() - 3);
    damage_log log;
    log.hook(o);
    auto s = must_open(o);
    CHECK(s->stats().torn_records == 1);
    REQUIRE(log.seen.size() == 1);
    CHECK(log.seen[0].tail);
    CHECK(log.seen[0].torn);
    CHECK(contains(log.seen[0].message, "cut short"));
    CHECK(read_file(log.seen[0].quarantine) == before.substr(0, before.size() - 3));
    CHECK(fs::file_size(seg) == before.size() - record_size(payload_for(150)));
    CHECK(s->read_all().size() == 149);
  }
  SECTION("sealed segment: found when read") {
    const std::string seg = d.file(files[0]);
    const std::string before = read_file(seg);
    fs::resize_file(seg, before.size() - 3);
    damage_log log;
    log.hook(o);
    auto s = must_open(o);
    CHECK(log.seen.empty());
    CHECK(s->read_all().size() == 149);
    CHECK(s->stats().torn_records == 1);
    REQUIRE(log.seen.size() == 1);
    const std::uint64_t last_in_first = std::stoull(files[1].substr(6, 20)) - 1;
    CHECK(log.seen[0].tail);
    CHECK(log.seen[0].torn);
    CHECK(log.seen[0].offset == before.size() - record_size(payload_for(last_in_first)));
    CHECK(read_file(log.seen[0].quarantine) == before.substr(0, before.size() - 3));
  }
}

TEST_CASE("a record larger than a segment gets a segment of its own", "[spool]") {
  temp_dir d;
  spool_options o = small_options(d.path());  // 4 KiB segments
  const std::string big(20000, 'z');
  {
    auto s = must_open(o);
    REQUIRE(s->append("small-1") == 1);
    int err = -1;
    REQUIRE(s->append(big, {}, &err) == 2);
    CHECK(err == 0);
    REQUIRE(s->append("small-3") == 3);
    CHECK(s->stats().rejected_too_large == 0);
  }
  CHECK(segment_files(d.path()).size() == 3);
  auto s = must_open(o);
  const auto got = s->read_all();
  REQUIRE(got.size() == 3);
  CHECK(got[1].payload == big);
  CHECK(s->stats().corrupt_records == 0);
  // With a cap, a record above half of it is refused (E2BIG) rather than evicting everything.
  s.reset();
  o.max_bytes = 16384;
  s = must_open(o);
  int err = 0;
  CHECK(s->append(std::string(9000, 'y'), {}, &err) == 0);
  CHECK(err == E2BIG);
  CHECK(s->stats().rejected_too_large == 1);
}

namespace {

/// A crafted segment of the worst shape for a resyncing reader: a fake record
/// header every 36 bytes, each with the right magic, a seq in range and a
/// length reaching (almost) to the end of the file, and a wrong checksum.
std::string crafted_segment(std::size_t size) {
  std::string f(size, 'x');
  for (std::size_t off = 0; off + spool_record_header_bytes <= size; off += spool_record_header_bytes) {
    put32(f, off, spool_record_magic);
    put32(f, off + 4, 0x12345678u);
    put32(f, off + 8, static_cast<std::uint32_t>(size - off - (off % 72 == 0 ? 0 : 1)));
    for (int i = 0; i < 8; ++i) f[off + 12 + static_cast<std::size_t>(i)] = static_cast<char>(i == 0 ? 5 : 0);
    f[off + 30] = 0;
    f[off + 31] = 0;
  }
  return f;
}

}  // namespace

TEST_CASE("reading a crafted segment is linear: the work is a bounded multiple of its size", "[spool]") {
  temp_dir d;
  double ratio[2] = {0, 0};
  const std::size_t sizes[2] = {std::size_t{1} << 20, std::size_t{4} << 20};
  for (int i = 0; i < 2; ++i) {
    const std::string path = d.file("crafted-" + std::to_string(i));
    write_file(path, crafted_segment(sizes[i]));
    const detail::segment_file_scan sc = detail::scan_segment_file(path);
    CHECK(sc.error == 0);
    CHECK(sc.records == 0);
    CHECK(sc.damaged_regions == 1);
    CHECK(sc.damaged_bytes == sizes[i]);
    ratio[i] = static_cast<double>(sc.work) / static_cast<double>(sizes[i]);
    std::printf("crafted segment of %zu bytes: %llu bytes examined (%.1f x its size)\n", sizes[i],
                static_cast<unsigned long long>(sc.work), ratio[i]);
    INFO("size " << sizes[i] << " work " << sc.work);
    // The old reader checksummed every candidate: ~size^2 / 72 bytes (1.4e10 for 1 MiB).
    CHECK(sc.work <= 24 * sizes[i] + (std::size_t{8} << 20));
  }
  // Four times the file, about four times the work (not sixteen).
  CHECK(ratio[1] <= ratio[0] * 1.5 + 1);

  // The same through a spool: the newest segment is read at open.
  const std::string sd = d.file("spool");
  fs::create_directory(sd);
  fs::permissions(sd, fs::perms::owner_all);
  write_file(sd + "/spool-00000000000000000001.seg", crafted_segment(sizes[1]));
  spool_options o = small_options(sd);
  damage_log log;
  log.hook(o);
  auto s = must_open(o);
  CHECK(s->stats().scan_work <= 24 * sizes[1] + (std::size_t{8} << 20));
  CHECK(s->stats().corrupt_records == 1);
  CHECK(log.seen.size() == 1);
  CHECK(quarantined(sd).size() == 1);
  CHECK(s->read_all().empty());
}

TEST_CASE("a 1 GiB sparse segment is read with bounded memory", "[spool]") {
  temp_dir d;
  const std::string sd = d.path();
  const std::string seg = d.file("spool-00000000000000000001.seg");
  {
    // A valid-looking header claiming 512 MiB at the start, then holes.
    std::string head(64, '\0');
    put32(head, 0, spool_record_magic);
    put32(head, 8, 512u << 20);
    head[12] = 1;
    write_file(seg, head);
    fs::resize_file(seg, std::uintmax_t{1} << 30);
  }
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    spool_options o = small_options(sd);
    std::uint64_t out[4] = {0, 0, 0, 0};
    {
      spool_error e;
      auto s = spool::open(o, &e);
      if (s) {
        out[1] = s->stats().corrupt_records;
        out[2] = s->stats().truncated_bytes;
        out[3] = s->read_all().size();
      }
    }
    ::getrusage(RUSAGE_SELF, &after);
    out[0] = static_cast<std::uint64_t>(after.ru_maxrss - before.ru_maxrss);  // KiB
    ssize_t w = ::write(fds[1], out, sizeof out);
    ::_exit(w == static_cast<ssize_t>(sizeof out) ? 0 : 1);
  }
  ::close(fds[1]);
  std::uint64_t got[4] = {};
  std::size_t have = 0;
  while (have < sizeof got) {
    const ssize_t r = ::read(fds[0], reinterpret_cast<char*>(got) + have, sizeof got - have);
    if (r <= 0) break;
    have += static_cast<std::size_t>(r);
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(have == sizeof got);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  INFO("peak RSS growth " << got[0] << " KiB");
  std::printf("1 GiB sparse segment opened and read: peak RSS growth %llu KiB\n",
              static_cast<unsigned long long>(got[0]));
  CHECK(got[0] < 64 * 1024);  // the old reader held the whole file: 1 GiB
  CHECK(got[1] == 1);
  CHECK(got[2] == std::uint64_t{1} << 30);
  CHECK(got[3] == 0);
  // Kept in quarantine (a link: no copy of the holes), cut from the spool.
  CHECK(fs::file_size(d.file("quarantine/spool-00000000000000000001.seg.damaged")) == std::uintmax_t{1} << 30);
  CHECK(!fs::exists(seg));
}
