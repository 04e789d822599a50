// tests/fuzz/fuzz_record.cpp - libFuzzer target: the spool's record codec
// (lib/spool_record.hpp) driven directly, no files.
//
// Input layout: byte 0 picks the operation (low 2 bits), the rest is its input:
//   0 decode   bytes 1..8 prev seq, 9..16 end seq (little-endian, any value),
//              then the bytes decoded as a record. With bit 2 of byte 0 set,
//              the bytes first get the CRC their length field calls for, so
//              that the fuzzer gets past the checksum to the header's rules.
//              check_header and decode_record must agree; a record decoded ok
//              must lie inside the bytes, respect prev/end, and encode back to
//              the same bytes (flags 0); incomplete must mean a sound
//              beginning cut short.
//   1 encode   byte 1 kind, 2 reason, 3..4 attempts, 5..12 time_ms, 13..20
//              seq, 21..22 error length, 23..24 a position, 25 an xor mask,
//              then last_error + payload. The encoded record must decode to
//              the same fields; every cut of it is incomplete; a seq not above
//              prev, or not below end, is bad; changing any byte outside the
//              length field makes it bad; bytes after it change nothing.
//   2 ack      the bytes as an ACK file: decode_ack ok means encode_ack of the
//              mark gives the same bytes; and the first 8 bytes as a mark:
//              encode then decode gives it back iff it is <= 2^62.
//   3 name     the bytes (up to the first NUL) as a file name: a segment name
//              parsed ok prints back the same; the first 8 bytes as a seq:
//              its name parses back iff it is 1 .. 2^62.
// Must never crash, read out of bounds, or fail a check (abort).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "crc32c.hpp"  // lib/
#include "fuzz_check.hpp"
#include "spool_record.hpp"  // lib/

namespace {

using namespace batchq;
using namespace batchq::detail;

std::uint64_t le64(const std::uint8_t* p) {
  return get64(p);
}

// The buffer handed to the codec is a fresh heap copy of exactly the bytes
// it may read, so that ASan catches a read past them.
std::vector<unsigned char> copy_of(const std::uint8_t* p, std::size_t n) {
  return {p, p + n};
}

void decode_op(const std::uint8_t* data, std::size_t size, bool fix_crc) {
  if (size < 16) return;
  const std::uint64_t prev = le64(data);
  const std::uint64_t end = le64(data + 8);
  std::vector<unsigned char> buf = copy_of(data + 16, size - 16);
  const std::size_t n = buf.size();
  if (n == 0) return;  // a reader never asks about an offset at the end of the file
  if (fix_crc && n >= record_header_bytes) {
    const std::uint32_t claimed = get32(buf.data() + 8);
    if (claimed >= 20 && claimed <= n) {
      std::uint32_t crc = crc32c(buf.data() + 20, claimed - 20);
      crc = crc32c(buf.data() + 8, 12, crc);
      put32(buf.data() + 4, crc);
    }
  }
  const unsigned char* p = buf.data();

  std::uint32_t hlen = 0;
  const parse_status hs = check_header(p, n, prev, end, &hlen);
  spool_record rec;
  std::uint32_t len = 0;
  const parse_status ds = decode_record(p, n, prev, end, &rec, &len);
  // decode_record is check_header plus the checksum.
  if (hs == parse_status::incomplete) FUZZ_CHECK(ds == parse_status::incomplete);
  if (hs == parse_status::bad) FUZZ_CHECK(ds == parse_status::bad);
  if (ds != parse_status::bad) FUZZ_CHECK(ds == hs);
  if (hs == parse_status::incomplete) {
    // A sound beginning: the magic so far, and a length past the bytes.
    unsigned char magic[4];
    put32(magic, spool_record_magic);
    FUZZ_CHECK(std::memcmp(p, magic, n < 4 ? n : 4) == 0);
    FUZZ_CHECK(n < 12 || get32(p + 8) > n);
  }
  if (ds != parse_status::ok) return;
  FUZZ_CHECK(len == hlen);
  FUZZ_CHECK(len >= record_header_bytes && len <= n && len <= record_max_bytes);
  FUZZ_CHECK(rec.seq > prev && rec.seq <= max_seq && (end == 0 || rec.seq < end));
  const auto* base = reinterpret_cast<const char*>(p);
  FUZZ_CHECK(rec.last_error.data() == base + record_header_bytes);
  FUZZ_CHECK(rec.payload.data() == rec.last_error.data() + rec.last_error.size());
  FUZZ_CHECK(record_header_bytes + rec.last_error.size() + rec.payload.size() == len);
  if (get16(p + 34) == 0) {  // the encoder writes flags 0: anything else only reads back
    record_meta m;
    m.kind = rec.kind;
    m.reason = rec.reason;
    m.attempts = rec.attempts;
    m.time_ms = rec.time_ms;
    m.last_error = rec.last_error;
    const std::string again = encode_record(rec.seq, m, rec.payload);
    FUZZ_CHECK(again.size() == len && std::memcmp(again.data(), p, len) == 0);
  }
}

void encode_op(const std::uint8_t* data, std::size_t size) {
  if (size < 25) return;
  record_meta m;
  m.kind = static_cast<record_kind>(data[0]);
  m.reason = data[1];
  m.attempts = get16(data + 2);
  m.time_ms = static_cast<std::int64_t>(le64(data + 4));
  const std::uint64_t seq = le64(data + 12) % max_seq + 1;  // 1 .. 2^62
  const std::size_t rest = size - 25;
  const std::size_t elen = rest == 0 ? 0 : get16(data + 20) % (rest + 1);
  const std::size_t pos_in = get16(data + 22);
  const unsigned char mask = data[24] == 0 ? 1 : data[24];
  const std::string_view text(reinterpret_cast<const char*>(data + 25), rest);
  m.last_error = text.substr(0, elen);
  const std::string_view payload = text.substr(elen);

  const std::string rec_bytes = encode_record(seq, m, payload);
  FUZZ_CHECK(rec_bytes.size() == record_length(elen, payload.size()));
  std::vector<unsigned char> buf(rec_bytes.begin(), rec_bytes.end());
  spool_record r;
  std::uint32_t len = 0;
  FUZZ_CHECK(decode_record(buf.data(), buf.size(), seq - 1, 0, &r, &len) == parse_status::ok);
  FUZZ_CHECK(len == buf.size());
  FUZZ_CHECK(r.seq == seq && r.kind == m.kind && r.reason == m.reason && r.attempts == m.attempts &&
             r.time_ms == m.time_ms && r.last_error == m.last_error && r.payload == payload);
  // The two-step encoder gives the same bytes.
  record_encoder e = encode_begin(m, payload);
  encode_finish(&e, seq);
  FUZZ_CHECK(e.length == buf.size() && std::memcmp(e.header, buf.data(), record_header_bytes) == 0);
  // Order and bounds of seqs.
  FUZZ_CHECK(decode_record(buf.data(), buf.size(), seq, 0, &r, &len) == parse_status::bad);
  FUZZ_CHECK(decode_record(buf.data(), buf.size(), seq - 1, seq, &r, &len) == parse_status::bad);
  FUZZ_CHECK(decode_record(buf.data(), buf.size(), seq - 1, seq + 1, &r, &len) == parse_status::ok);
  // Every cut is incomplete (a torn append), never ok or bad.
  for (std::size_t cut = 1; cut < buf.size(); cut += 1 + cut / 8) {
    std::vector<unsigned char> part(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(cut));
    FUZZ_CHECK(decode_record(part.data(), part.size(), seq - 1, 0, &r, &len) == parse_status::incomplete);
  }
  // Bytes after the record are not its business.
  std::vector<unsigned char> longer = buf;
  longer.insert(longer.end(), reinterpret_cast<const unsigned char*>(text.data()),
                reinterpret_cast<const unsigned char*>(text.data()) + text.size());
  FUZZ_CHECK(decode_record(longer.data(), longer.size(), seq - 1, 0, &r, &len) == parse_status::ok);
  FUZZ_CHECK(len == buf.size() && r.payload == payload);
  // Any changed byte outside the length field is caught (magic, CRC, header
  // checks or the checksum: CRC-32C catches every burst of up to 32 bits).
  const std::size_t pos = pos_in % buf.size();
  if (pos < 8 || pos >= 12) {
    buf[pos] ^= mask;
    FUZZ_CHECK(decode_record(buf.data(), buf.size(), seq - 1, 0, &r, &len) == parse_status::bad);
  } else {  // a changed length: whatever it says, no read past the buffer
    buf[pos] ^= mask;
    const parse_status st = decode_record(buf.data(), buf.size(), seq - 1, 0, &r, &len);
    if (st == parse_status::ok) FUZZ_CHECK(len <= buf.size());
  }
}

void ack_op(const std::uint8_t* data, std::size_t size) {
  const std::vector<unsigned char> buf = copy_of(data, size);
  std::uint64_t mark = 0;
  unsigned char again[ack_file_bytes];
  if (decode_ack(buf.data(), buf.size(), &mark)) {
    FUZZ_CHECK(buf.size() == ack_file_bytes && mark <= max_seq);
    encode_ack(mark, again);
    FUZZ_CHECK(std::memcmp(again, buf.data(), ack_file_bytes) == 0);
  }
  if (size >= 8) {
    const std::uint64_t m = le64(data);
    encode_ack(m, again);
    std::uint64_t back = 0;
    const bool ok = decode_ack(again, sizeof again, &back);
    FUZZ_CHECK(ok == (m <= max_seq));
    if (ok) FUZZ_CHECK(back == m);
    FUZZ_CHECK(!decode_ack(again, sizeof again - 1, &back));  // a short file is no mark
  }
}

void name_op(const std::uint8_t* data, std::size_t size) {
  const std::string name(reinterpret_cast<const char*>(data), strnlen(reinterpret_cast<const char*>(data), size));
  std::uint64_t first = 0;
  if (parse_segment_name(name.c_str(), &first)) {
    FUZZ_CHECK(first >= 1 && first <= max_seq);
    FUZZ_CHECK(segment_name(first) == name);
  }
  if (size >= 8) {
    const std::uint64_t v = le64(data);
    std::uint64_t back = 0;
    const bool ok = parse_segment_name(segment_name(v).c_str(), &back);
    FUZZ_CHECK(ok == (v >= 1 && v <= max_seq));
    if (ok) FUZZ_CHECK(back == v);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  switch (data[0] & 3) {
    case 0: decode_op(data + 1, size - 1, (data[0] & 4) != 0); break;
    case 1: encode_op(data + 1, size - 1); break;
    case 2: ack_op(data + 1, size - 1); break;
    default: name_op(data + 1, size - 1); break;
  }
  return 0;
}
