#include "crc32c.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define BATCHQ_CRC32C_X86 1
#endif

namespace batchq {
namespace detail {
namespace {

constexpr std::uint32_t kPoly = 0x82F63B78u;  // Castagnoli, reflected

using table_t = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr table_t make_tables() {
  table_t t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][i] = c;
  }
  // t[k][i]: the CRC of byte i followed by k zero bytes, so eight bytes are
  // folded with eight independent lookups instead of eight dependent ones.
  for (std::size_t k = 1; k < 8; ++k)
    for (std::size_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFFu];
  return t;
}

constexpr table_t kTables = make_tables();

#if defined(BATCHQ_CRC32C_X86)
__attribute__((target("sse4.2"))) std::uint32_t crc_sse42(const unsigned char* p, std::size_t n,
                                                           std::uint32_t crc) noexcept {
  std::uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, *p);
  return c32;
}

bool have_sse42() noexcept {
  static const bool yes = __builtin_cpu_supports("sse4.2") != 0;
  return yes;
}
#endif

std::uint32_t crc_table(const unsigned char* p, std::size_t n, std::uint32_t crc) noexcept {
  for (; n >= 8; n -= 8, p += 8) {
    // Byte-wise loads: the algorithm wants little-endian order on any host.
    std::uint32_t lo = crc ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
                              std::uint32_t{p[3]} << 24);
    crc = kTables[7][lo & 0xFFu] ^ kTables[6][(lo >> 8) & 0xFFu] ^ kTables[5][(lo >> 16) & 0xFFu] ^
          kTables[4][lo >> 24] ^ kTables[3][p[4]] ^ kTables[2][p[5]] ^ kTables[1][p[6]] ^ kTables[0][p[7]];
  }
  for (; n > 0; --n, ++p) crc = (crc >> 8) ^ kTables[0][(crc ^ *p) & 0xFFu];
  return crc;
}

}  // namespace

std::uint32_t crc32c_software(const void* data, std::size_t size, std::uint32_t crc) noexcept {
  return ~crc_table(static_cast<const unsigned char*>(data), size, ~crc);
}

bool crc32c_hardware(const void* data, std::size_t size, std::uint32_t crc, std::uint32_t* out) noexcept {
#if defined(BATCHQ_CRC32C_X86)
  if (!have_sse42()) return false;
  *out = ~crc_sse42(static_cast<const unsigned char*>(data), size, ~crc);
  return true;
#else
  (void)data, (void)size, (void)crc, (void)out;
  return false;
#endif
}

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) noexcept {
#if defined(BATCHQ_CRC32C_X86)
  if (have_sse42()) return ~crc_sse42(static_cast<const unsigned char*>(data), size, ~crc);
#endif
  return crc32c_software(data, size, crc);
}

}  // namespace detail
}  // namespace batchq
