#include "common/ids.h"

namespace kvd {

std::string hex_id(uint64_t id) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char buf[16];
  size_t n = 0;
  do {
    buf[15 - n++] = kDigits[id & 0xf];
    id >>= 4;
  } while (id != 0);
  return std::string(buf + 16 - n, n);
}

std::optional<uint64_t> parse_hex_id(std::string_view s) {
  if (s.empty()) return std::nullopt;
  // More than 16 digits can still be a valid number with leading zeros.
  size_t nz = s.find_first_not_of('0');
  if (nz != std::string_view::npos && s.size() - nz > 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return std::nullopt;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

}  // namespace kvd
