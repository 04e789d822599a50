// tests/fuzz/make_record_seeds.cpp - writes the seed corpus of fuzz_record:
// records, ACK files and segment names made by the library's own codec,
// wrapped in fuzz_record's input layout (see fuzz_record.cpp).
//
//   make_record_seeds <output dir>
//
// The seeds in tests/fuzz/corpus/record/ were made with it; rerun it when the
// record format changes.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "crc32c.hpp"        // lib/
#include "spool_record.hpp"  // lib/

namespace {

using namespace batchq;
using namespace batchq::detail;

std::string le64s(std::uint64_t v) {
  unsigned char b[8];
  put64(b, v);
  return std::string(reinterpret_cast<const char*>(b), 8);
}
std::string le16s(std::uint16_t v) {
  unsigned char b[2];
  put16(b, v);
  return std::string(reinterpret_cast<const char*>(b), 2);
}

bool write(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::ofstream f(dir + "/" + name, std::ios::binary);
  f << bytes;
  return static_cast<bool>(f);
}

record_meta meta(record_kind kind, std::uint8_t reason, std::uint16_t attempts, std::string_view error) {
  record_meta m;
  m.kind = kind;
  m.reason = reason;
  m.attempts = attempts;
  m.time_ms = 1700000000123;
  m.last_error = error;
  return m;
}

// Operation 0: prev, end, then the bytes.
std::string decode_seed(std::uint64_t prev, std::uint64_t end, const std::string& bytes) {
  return std::string(1, '\0') + le64s(prev) + le64s(end) + bytes;
}

// Operation 1: the fields, then last_error + payload.
std::string encode_seed(const record_meta& m, std::uint64_t seq, std::string_view payload, std::uint16_t pos,
                        unsigned char mask) {
  std::string s(1, '\1');
  s += static_cast<char>(m.kind);
  s += static_cast<char>(m.reason);
  s += le16s(m.attempts);
  s += le64s(static_cast<std::uint64_t>(m.time_ms));
  s += le64s(seq - 1);  // fuzz_record maps x to x % 2^62 + 1
  s += le16s(static_cast<std::uint16_t>(m.last_error.size()));
  s += le16s(pos);
  s += static_cast<char>(mask);
  s.append(m.last_error.data(), m.last_error.size());
  s.append(payload.data(), payload.size());
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_record_seeds <output dir>\n");
    return 2;
  }
  const std::string dir = argv[1];
  const std::string json = "{\"request\":{\"uri\":\"/\"},\"response\":{\"status\":200}}";
  const std::string r1 = encode_record(1, meta(record_kind::entry, 0, 0, ""), json);
  const std::string r2 = encode_record(5, meta(record_kind::dropped, 2, 3, "HTTP 503"), json);
  const std::string r3 =
      encode_record(6, meta(record_kind::dropped, 1, 1, "Couldn't connect to server"), std::string("\xff\x00\x01", 3));
  const std::string empty = encode_record(9, meta(record_kind::entry, 0, 0, ""), "");
  // flags != 0: written by no encoder, read back all the same.
  std::string flagged = encode_record(7, meta(record_kind::entry, 0, 0, "x"), "y");
  {
    auto* p = reinterpret_cast<unsigned char*>(&flagged[0]);
    put16(p + 34, 1);
    std::uint32_t crc = crc32c(p + 20, flagged.size() - 20);
    crc = crc32c(p + 8, 12, crc);
    put32(p + 4, crc);
  }
  bool ok = true;
  ok &= write(dir, "decode-entry", decode_seed(0, 0, r1));
  ok &= write(dir, "decode-dropped-bounded", decode_seed(4, 10, r2));
  ok &= write(dir, "decode-two", decode_seed(4, 0, r2 + r3));
  ok &= write(dir, "decode-torn", decode_seed(4, 0, r2.substr(0, r2.size() - 5)));
  ok &= write(dir, "decode-empty-payload", decode_seed(8, 0, empty));
  ok &= write(dir, "decode-flags", decode_seed(6, 0, flagged));
  ok &= write(dir, "decode-stale-seq", decode_seed(5, 0, r2));
  std::string fix = decode_seed(0, 0, r1);  // bit 2: fuzz_record recomputes the CRC first
  fix[0] = '\4';
  ok &= write(dir, "decode-fixcrc-entry", fix);
  ok &= write(dir, "encode-entry", encode_seed(meta(record_kind::entry, 0, 0, ""), 1, json, 0, 1));
  ok &= write(dir, "encode-dropped", encode_seed(meta(record_kind::dropped, 2, 3, "HTTP 503"), 42, json, 40, 0x80));
  ok &= write(dir, "encode-length-field", encode_seed(meta(record_kind::entry, 0, 0, ""), 3, json, 9, 0xff));
  ok &= write(
      dir, "encode-binary",
      encode_seed(meta(record_kind::dropped, 5, 9, "e"), std::uint64_t{1} << 62, std::string("\0\xff\xfe", 3), 35, 2));
  unsigned char ack[ack_file_bytes];
  encode_ack(0, ack);
  ok &= write(dir, "ack-0", std::string(1, '\2') + std::string(reinterpret_cast<const char*>(ack), sizeof ack));
  encode_ack(123456, ack);
  ok &= write(dir, "ack-123456", std::string(1, '\2') + std::string(reinterpret_cast<const char*>(ack), sizeof ack));
  encode_ack(max_seq, ack);
  ok &= write(dir, "ack-max", std::string(1, '\2') + std::string(reinterpret_cast<const char*>(ack), sizeof ack));
  ok &= write(dir, "name-1", std::string(1, '\3') + segment_name(1));
  ok &= write(dir, "name-max", std::string(1, '\3') + segment_name(max_seq));
  ok &= write(dir, "name-bad", std::string(1, '\3') + "spool-0000000000000000000x.seg");
  if (!ok) {
    std::fprintf(stderr, "make_record_seeds: cannot write into %s\n", dir.c_str());
    return 1;
  }
  return 0;
}
