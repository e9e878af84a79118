// A replicated v2 store mutation: what a client write (or the leader's expiry tick) becomes before
// it is proposed. It is serialized into a raft entry, so every member applies the same bytes.
// All times are Unix nanoseconds chosen by the proposing member; apply never reads a clock.
//
// Wire format (encode/decode): version byte 1, then fields in declaration order; integers as
// little-endian fixed 8 bytes, strings as 4-byte little-endian length + bytes, optionals as a
// presence byte then the value. decode() rejects unknown versions, unknown ops and trailing or
// missing bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvd::v2 {

enum class Op : uint8_t {
  kSet = 1,               // PUT without conditions
  kCreate = 2,            // PUT prevExist=false
  kUpdate = 3,            // PUT prevExist=true without prevValue/prevIndex
  kCompareAndSwap = 4,    // PUT with prevValue and/or prevIndex
  kDelete = 5,            // DELETE without conditions
  kCompareAndDelete = 6,  // DELETE with prevValue and/or prevIndex
  kCreateInOrder = 7,     // POST: creates <key>/<%020d new index>
  kExpire = 8,            // leader's SYNC: remove every node whose deadline <= now_ns
  kInternal = 9,          // cluster-internal record (member, attributes, cluster version): bumps the
                          // etcd index, invisible to the keys API and its watchers
  kAuth = 10,             // a v2 auth change: value is auth::encode_request's; decided at apply
                          // (auth.h), its records internal like kInternal's
};

struct Command {
  Op op = Op::kSet;
  uint64_t request_id = 0;  // unique per proposal on the proposing member; 0 for expiry
  int64_t now_ns = 0;       // proposer's wall clock when the command was made
  std::string key;          // cleaned absolute key ("/a/b"); for kInternal an internal name
  std::string value;
  bool dir = false;
  bool recursive = false;   // delete: subtree
  bool refresh = false;     // PUT refresh=true: keep the value, reset the TTL, notify no watcher
  std::optional<int64_t> expire_at_ns;  // absolute deadline; nullopt = permanent
  std::optional<std::string> prev_value;
  uint64_t prev_index = 0;  // 0 = not given

  bool operator==(const Command&) const = default;
};

std::string encode(const Command& cmd);
// Returns false (and leaves *out unspecified) on malformed input.
[[nodiscard]] bool decode(std::string_view bytes, Command* out);

}  // namespace kvd::v2
