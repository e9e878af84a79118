// The member list as a member's peer port serves it (GET /members, etcd's
// membership.RaftCluster JSON): a JSON array of {"id":<decimal>,"peerURLs":[..],"name":"..",
// "clientURLs":[..]} objects, one line, newline-terminated. Rendered by the member's peer port,
// read by a member joining an existing cluster and by the proxy learning the client URLs. Also
// the file in which a proxy keeps the peer URLs it learned.
//
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvd {

struct MemberInfo {
  uint64_t id = 0;
  std::string name;  // "" until the member has started and published its attributes
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
};

// The GET /members body, in the order given.
std::string render_members_json(const std::vector<MemberInfo>& members);

// Parses a GET /members body. nullopt unless it is an array of objects whose "peerURLs" and
// "clientURLs" are arrays of strings (or null or absent: no URLs). A missing or non-numeric
// "id" reads as 0, a missing "name" as "".
std::optional<std::vector<MemberInfo>> parse_members_json(std::string_view body);

// The learned-cluster file, <data-dir>/proxy/cluster, in etcd's format:
//   {"PeerURLs":["http://127.0.0.1:2380","http://127.0.0.1:2480"]}
// (no trailing newline). Written to "<file>.bak", fsynced, then renamed over the file, so a
// crash leaves either the old or the new list; a stray .bak is overwritten next time.
std::string format_cluster_file(const std::vector<std::string>& peer_urls);
// nullopt if `content` is not a JSON object with a "PeerURLs" array of strings.
std::optional<std::vector<std::string>> parse_cluster_file(std::string_view content);

}  // namespace kvd
