#include <cstdint>

#include "text/text.hpp"

namespace batchq::text {

void base64_append(std::string& out, std::string_view in) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  out.reserve(out.size() + (in.size() + 2) / 3 * 4);
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t n = in.size();
  for (; n >= 3; n -= 3, p += 3) {
    const std::uint32_t v = std::uint32_t{p[0]} << 16 | std::uint32_t{p[1]} << 8 | p[2];
    for (int s = 18; s >= 0; s -= 6) out.push_back(alphabet[(v >> s) & 63u]);
  }
  if (n > 0) {
    const std::uint32_t v = std::uint32_t{p[0]} << 16 | (n == 2 ? std::uint32_t{p[1]} << 8 : 0u);
    out.push_back(alphabet[(v >> 18) & 63u]);
    out.push_back(alphabet[(v >> 12) & 63u]);
    out.push_back(n == 2 ? alphabet[(v >> 6) & 63u] : '=');
    out.push_back('=');
  }
}

std::string base64(std::string_view in) {
  std::string out;
  base64_append(out, in);
  return out;
}

}  // namespace batchq::text
