// tests/fuzz/make_spool_seeds.cpp - writes the seed corpus of fuzz_spool:
// real segment files made by batchq::spool, wrapped in fuzz_spool's input
// layout (flags, first-seq selector, split point, [ACK mark], file bytes).
//
//   make_spool_seeds <output dir>
//
// The seeds in tests/fuzz/corpus/spool/ were made with it; rerun it when the
// record format changes.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "batchq/spool.hpp"

namespace {

std::string make_segment(int records, bool with_errors, int payload_len) {
  char tmpl[] = "/tmp/batchq-seeds-XXXXXX";
  if (!::mkdtemp(tmpl)) std::exit(1);
  const std::string dir = tmpl;
  std::string bytes;
  {
    batchq::spool_options o;
    o.dir = dir;
    o.fsync = batchq::fsync_policy::never;
    o.max_bytes = 0;
    batchq::spool_error err;
    auto sp = batchq::spool::open(o, &err);
    if (!sp) {
      std::fprintf(stderr, "%s\n", err.message.c_str());
      std::exit(1);
    }
    for (int i = 0; i < records; ++i) {
      batchq::record_meta m;
      if (with_errors) {
        m.kind = batchq::record_kind::dropped;
        m.reason = static_cast<std::uint8_t>(i % 6);
        m.attempts = static_cast<std::uint16_t>(i + 1);
        m.time_ms = 1700000000000 + i;
        m.last_error = i % 2 ? "HTTP 503" : "failed request to 127.0.0.1:9: Connection refused";
      }
      std::string payload = "{\"i\":" + std::to_string(i) + ",\"p\":\"" + std::string(static_cast<std::size_t>(payload_len), 'a') + "\"}";
      if (sp->append(payload, m) == 0) std::exit(1);
    }
    sp->close();
    std::ifstream in(dir + "/spool-00000000000000000001.seg", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::system(("rm -rf '" + dir + "'").c_str());
  return bytes;
}

void emit(const std::string& out_dir, const std::string& name, std::uint8_t flags, std::uint8_t seq_sel,
          std::uint8_t split, const std::string& ack, const std::string& file) {
  std::ofstream f(out_dir + "/" + name, std::ios::binary);
  f.put(static_cast<char>(flags));
  f.put(static_cast<char>(seq_sel));
  f.put(static_cast<char>(split));
  f << ack << file;
}

std::string mark(std::uint64_t m) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>(m >> (8 * i));
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output dir>\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  ::mkdir(out.c_str(), 0755);
  const std::string three = make_segment(3, false, 4);
  const std::string dropped = make_segment(4, true, 10);
  const std::string five = make_segment(5, false, 0);
  emit(out, "entries-3", 0x00, 0, 0, "", three);
  emit(out, "dropped-4-fixcrc", 0x02, 0, 0, "", dropped);
  emit(out, "split-5", 0x04, 0, 128, "", five);
  emit(out, "acked-2", 0x08, 0, 0, mark(2), five);
  emit(out, "append-readonly", 0x11, 0, 0, "", three);
  emit(out, "append", 0x10, 0, 40, "", dropped);
  emit(out, "torn-tail", 0x00, 0, 0, "", five.substr(0, five.size() - 7));
  emit(out, "middle-damage", 0x00, 0, 0, "", [&] {
    std::string d = five;
    d[60] = static_cast<char>(d[60] ^ 0x5a);
    return d;
  }());
  emit(out, "small-segment-seq10", 0x22, 6, 0, "", dropped);
  emit(out, "empty", 0x00, 0, 0, "", "");
  return 0;
}
