// lib/spool_record.hpp - the spool's on-disk codec, private to the compiled
// library: one record (framing, CRC-32C, encode, decode), the ACK file and
// the segment file names. Pure functions over bytes: no I/O, no state, so the
// fuzzer (tests/fuzz/fuzz_record.cpp) drives them directly. The format is
// specified in docs/spool-format.md.
#ifndef BATCHQ_LIB_SPOOL_RECORD_HPP
#define BATCHQ_LIB_SPOOL_RECORD_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "batchq/export.hpp"
#include "batchq/spool.hpp"

namespace batchq {
namespace detail {

inline constexpr std::size_t record_header_bytes = spool_record_header_bytes;  // 36
/// Longest record (header included); a longer length field is damage.
inline constexpr std::uint32_t record_max_bytes = std::uint32_t{1} << 30;
/// Highest seq a file may claim (segment name, record header, ACK mark). Real
/// spools never get near it (2^62 appends); a larger value can only come from
/// a damaged or planted file, and accepting it would wrap the next seq (and
/// the mark) around 2^64: acknowledgements stop working, seqs repeat.
inline constexpr std::uint64_t max_seq = std::uint64_t{1} << 62;
/// Bytes of the ACK file: magic "BQA1", CRC-32C of the mark, the mark.
inline constexpr std::size_t ack_file_bytes = 16;
inline constexpr std::uint32_t ack_magic = 0x31415142u;  // "BQA1"

// Little-endian integers at unaligned addresses.
inline void put16(unsigned char* p, std::uint16_t v) noexcept {
  p[0] = static_cast<unsigned char>(v);
  p[1] = static_cast<unsigned char>(v >> 8);
}
inline void put32(unsigned char* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
inline void put64(unsigned char* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
inline std::uint16_t get16(const unsigned char* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | p[1] << 8);
}
inline std::uint32_t get32(const unsigned char* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
inline std::uint64_t get64(const unsigned char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

/// What the bytes at a record position are.
enum class parse_status {
  ok,          ///< a valid record
  incomplete,  ///< a valid beginning of a record that runs past the bytes available
  bad,         ///< not a record (or one that fails its checks)
};

/// A record being written. Encoding is split in two so that an append can
/// checksum the bytes (payload included) before it takes its lock, when only
/// the seq is still unknown: encode_begin, then encode_finish with the seq.
/// The record on disk is header, then last_error's first error_len bytes,
/// then the payload.
struct record_encoder {
  unsigned char header[spool_record_header_bytes] = {};
  std::size_t error_len = 0;  ///< bytes of last_error written (cut to spool_max_error_bytes)
  std::uint64_t length = 0;   ///< the whole record in bytes
  std::uint32_t crc = 0;      ///< of bytes [20, length) until encode_finish
};

/// The record length for a last_error of error_len bytes (already cut) and a
/// payload of payload_bytes. May exceed record_max_bytes: the caller refuses.
constexpr std::uint64_t record_length(std::size_t error_len, std::size_t payload_bytes) noexcept {
  return record_header_bytes + error_len + static_cast<std::uint64_t>(payload_bytes);
}

/// Fills everything but the seq and the CRC, and checksums bytes [20, length).
/// Only meaningful when length <= record_max_bytes.
BATCHQ_CXX_API record_encoder encode_begin(const record_meta& meta, std::string_view payload) noexcept;

/// Writes the seq and the final CRC (continued over bytes [8, 20)).
BATCHQ_CXX_API void encode_finish(record_encoder* e, std::uint64_t seq) noexcept;

/// One whole record as bytes (encode_begin + encode_finish + the bytes that
/// follow the header). For tests, seeds and tools.
BATCHQ_CXX_API std::string encode_record(std::uint64_t seq, const record_meta& meta, std::string_view payload);

/// Checks what can be checked without the checksum, at a position where
/// `avail` bytes are left in the file; p holds min(avail, 36) of them. A
/// record is accepted only with prev_seq < seq and, when end_seq != 0,
/// seq < end_seq. Returns ok with *length set when the header is sound and
/// the whole record is available; incomplete when the bytes are a sound
/// beginning cut short; bad otherwise.
BATCHQ_CXX_API parse_status check_header(const unsigned char* p, std::uint64_t avail, std::uint64_t prev_seq,
                                         std::uint64_t end_seq, std::uint32_t* length) noexcept;

/// True if the CRC stored in `header` matches; body_crc is the CRC-32C of
/// the record's bytes [20, length).
BATCHQ_CXX_API bool checksum_matches(const unsigned char* header, std::uint32_t body_crc) noexcept;

/// Makes *rec view the record whose `length` bytes are at p (checked before:
/// check_header + checksum_matches). The views point into p.
BATCHQ_CXX_API void view_record(const unsigned char* p, std::uint32_t length, spool_record* rec) noexcept;

/// check_header, checksum and view in one, for a record wholly in memory:
/// `avail` bytes at p. On ok, *rec views p and *length is its size.
BATCHQ_CXX_API parse_status decode_record(const unsigned char* p, std::size_t avail, std::uint64_t prev_seq,
                                          std::uint64_t end_seq, spool_record* rec, std::uint32_t* length) noexcept;

/// The ACK file's 16 bytes for mark m.
BATCHQ_CXX_API void encode_ack(std::uint64_t mark, unsigned char* out) noexcept;
/// Reads an ACK file's bytes: false (and *mark untouched) unless there are
/// exactly 16 with the magic, a matching CRC and a mark <= max_seq.
BATCHQ_CXX_API bool decode_ack(const unsigned char* p, std::size_t n, std::uint64_t* mark) noexcept;

/// "spool-<first_seq, 20 digits>.seg".
BATCHQ_CXX_API std::string segment_name(std::uint64_t first_seq);
/// The first seq named by a segment file name, if it is one (1 .. max_seq).
BATCHQ_CXX_API bool parse_segment_name(const char* name, std::uint64_t* first_seq) noexcept;

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_LIB_SPOOL_RECORD_HPP
