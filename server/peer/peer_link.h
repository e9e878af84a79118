// PeerLink: how the member reaches its peers without knowing the transport. The member
// (server/member/) depends on this header only; server/peer_wiring.cc backs it with a
// PeerTransport, and tests with an in-process network.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "raft/message.h"

namespace kvd::server {

// Per-peer figures for /v2/stats/leader.
struct PeerStats {
  uint64_t success = 0;  // messages written to the peer's socket
  uint64_t fail = 0;     // messages dropped (no connection, write error)
  double latency_current_ms = 0;  // last heartbeat round trip (leader only; 0 if unknown)
  double latency_average_ms = 0;
  double latency_minimum_ms = 0;
  double latency_maximum_ms = 0;
  double latency_stddev_ms = 0;
  uint64_t writes = 0;   // socket writes (each carries every message queued when it started)
};

// Every member may be called from the member's raft strand; an unset member is treated as
// "no peers" (a single-member cluster needs none).
struct PeerLink {
  std::function<void(std::vector<raft::Message>)> send;
  // m.type == kSnap; done(ok) must run on the member's strand (see Node::executor()).
  std::function<void(raft::Message m, std::shared_ptr<const std::string> data,
                     std::function<void(bool ok)> done)>
      send_snapshot;
  std::function<void(uint64_t id, std::vector<std::string> peer_urls)> add_peer;
  std::function<void(uint64_t id, std::vector<std::string> peer_urls)> update_peer;
  std::function<void(uint64_t id)> remove_peer;
  std::function<bool(uint64_t id)> connected;
  // When the connection to the peer was established (nullopt: not connected). Optional: without
  // it, `connected` alone decides whether a peer is up for --strict-reconfig-check.
  std::function<std::optional<std::chrono::steady_clock::time_point>(uint64_t id)> active_since;
  std::function<std::map<uint64_t, PeerStats>()> stats;
};

}  // namespace kvd::server
