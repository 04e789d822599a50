// lib/crc32c.hpp - CRC-32C (Castagnoli), private to the compiled library.
//
// Conventions are those of RFC 3720 / iSCSI, ext4 and every other CRC32C user:
// reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF, so
// crc32c("123456789") == 0xE3069283. Like zlib's crc32(), a previous result
// is passed back in to continue: crc32c(b, crc32c(a)) == crc32c(a + b).
#ifndef BATCHQ_LIB_CRC32C_HPP
#define BATCHQ_LIB_CRC32C_HPP

#include <cstddef>
#include <cstdint>

#include "batchq/export.hpp"

namespace batchq {
namespace detail {

/// Dispatches once to the SSE4.2 instruction when the CPU has it, else to the
/// table-driven code. Thread-safe, no allocation.
BATCHQ_CXX_API std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;

/// The portable slicing-by-8 implementation. Exported (like the others) only
/// so that the spool tests can compare both paths in a shared build.
BATCHQ_CXX_API std::uint32_t crc32c_software(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;

/// The SSE4.2 path; returns false (and leaves *out alone) when the CPU or the
/// build does not have it.
BATCHQ_CXX_API bool crc32c_hardware(const void* data, std::size_t size, std::uint32_t crc, std::uint32_t* out) noexcept;

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_LIB_CRC32C_HPP
