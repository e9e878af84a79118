// Member and cluster ids as etcd writes them in headers, JSON and logs: lower-case hex without
// leading zeros ("8e9e05c52164694d"). Pure; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvd {

// "%x" of id.
std::string hex_id(uint64_t id);

// Go's strconv.ParseUint(s, 16, 64): hex digits of either case, leading zeros allowed, no sign,
// no prefix; nullopt when empty, malformed or above 2^64-1.
std::optional<uint64_t> parse_hex_id(std::string_view s);

}  // namespace kvd
