// The record codec: docs/spool-format.md is the specification.
#include "spool_record.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "crc32c.hpp"

namespace batchq {
namespace detail {
namespace {

constexpr std::size_t kHdr = record_header_bytes;

bool has_magic(const unsigned char* p, std::size_t n) noexcept {
  unsigned char magic[4];
  put32(magic, spool_record_magic);
  return std::memcmp(p, magic, n) == 0;
}

}  // namespace

record_encoder encode_begin(const record_meta& m, std::string_view payload) noexcept {
  record_encoder e;
  e.error_len = std::min(m.last_error.size(), spool_max_error_bytes);
  e.length = record_length(e.error_len, payload.size());
  unsigned char* h = e.header;
  put32(h, spool_record_magic);
  put32(h + 8, static_cast<std::uint32_t>(e.length));
  put64(h + 20, static_cast<std::uint64_t>(m.time_ms));
  put16(h + 28, m.attempts);
  put16(h + 30, static_cast<std::uint16_t>(e.error_len));
  h[32] = static_cast<unsigned char>(m.kind);
  h[33] = m.reason;
  put16(h + 34, 0);
  std::uint32_t crc = crc32c(h + 20, kHdr - 20);
  crc = crc32c(m.last_error.data(), e.error_len, crc);
  e.crc = crc32c(payload.data(), payload.size(), crc);
  return e;
}

void encode_finish(record_encoder* e, std::uint64_t seq) noexcept {
  put64(e->header + 12, seq);
  e->crc = crc32c(e->header + 8, 12, e->crc);
  put32(e->header + 4, e->crc);
}

std::string encode_record(std::uint64_t seq, const record_meta& meta, std::string_view payload) {
  record_encoder e = encode_begin(meta, payload);
  encode_finish(&e, seq);
  std::string out;
  out.reserve(static_cast<std::size_t>(e.length));
  out.append(reinterpret_cast<const char*>(e.header), kHdr);
  out.append(meta.last_error.data(), e.error_len);
  out.append(payload.data(), payload.size());
  return out;
}

parse_status check_header(const unsigned char* p, std::uint64_t avail, std::uint64_t prev_seq, std::uint64_t end_seq,
                          std::uint32_t* length) noexcept {
  const std::size_t head = static_cast<std::size_t>(std::min<std::uint64_t>(avail, kHdr));
  if (head < 4) return has_magic(p, head) ? parse_status::incomplete : parse_status::bad;
  if (!has_magic(p, 4)) return parse_status::bad;
  if (head < 12) return parse_status::incomplete;
  const std::uint32_t len = get32(p + 8);
  if (len < kHdr || len > record_max_bytes) return parse_status::bad;
  if (len > avail) return parse_status::incomplete;
  // Here head == kHdr: len >= kHdr and len <= avail.
  const std::uint64_t seq = get64(p + 12);
  const std::uint16_t elen = get16(p + 30);
  if (seq == 0 || seq > max_seq || seq <= prev_seq || (end_seq != 0 && seq >= end_seq) || kHdr + elen > len)
    return parse_status::bad;
  *length = len;
  return parse_status::ok;
}

bool checksum_matches(const unsigned char* header, std::uint32_t body_crc) noexcept {
  return crc32c(header + 8, 12, body_crc) == get32(header + 4);
}

void view_record(const unsigned char* p, std::uint32_t length, spool_record* rec) noexcept {
  const std::uint16_t elen = get16(p + 30);
  rec->seq = get64(p + 12);
  rec->time_ms = static_cast<std::int64_t>(get64(p + 20));
  rec->attempts = get16(p + 28);
  rec->kind = static_cast<record_kind>(p[32]);
  rec->reason = p[33];
  const char* text = reinterpret_cast<const char*>(p);
  rec->last_error = std::string_view(text + kHdr, elen);
  rec->payload = std::string_view(text + kHdr + elen, length - kHdr - elen);
}

parse_status decode_record(const unsigned char* p, std::size_t avail, std::uint64_t prev_seq, std::uint64_t end_seq,
                           spool_record* rec, std::uint32_t* length) noexcept {
  std::uint32_t len = 0;
  const parse_status st = check_header(p, avail, prev_seq, end_seq, &len);
  if (st != parse_status::ok) return st;
  if (!checksum_matches(p, crc32c(p + 20, len - 20))) return parse_status::bad;
  view_record(p, len, rec);
  *length = len;
  return parse_status::ok;
}

void encode_ack(std::uint64_t mark, unsigned char* out) noexcept {
  put32(out, ack_magic);
  put64(out + 8, mark);
  put32(out + 4, crc32c(out + 8, 8));
}

bool decode_ack(const unsigned char* p, std::size_t n, std::uint64_t* mark) noexcept {
  if (n != ack_file_bytes || get32(p) != ack_magic || get32(p + 4) != crc32c(p + 8, 8) || get64(p + 8) > max_seq)
    return false;
  *mark = get64(p + 8);
  return true;
}

std::string segment_name(std::uint64_t first_seq) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "spool-%020llu.seg", static_cast<unsigned long long>(first_seq));
  return buf;
}

bool parse_segment_name(const char* name, std::uint64_t* first_seq) noexcept {
  if (std::strlen(name) != 30 || std::strncmp(name, "spool-", 6) != 0 || std::strcmp(name + 26, ".seg") != 0)
    return false;
  std::uint64_t v = 0;
  for (int i = 6; i < 26; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    const auto d = static_cast<std::uint64_t>(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (v == 0 || v > max_seq) return false;
  *first_seq = v;
  return true;
}

}  // namespace detail
}  // namespace batchq
