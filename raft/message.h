// Messages exchanged between raft peers, and the membership-change payload carried by
// EntryType::kConfChange entries. Plain values: the host chooses the wire encoding for messages;
// ConfChange has a fixed encoding (below) because it lives inside replicated log entries.
//
// ConfChange encoding (inside Entry::data of a kConfChange entry), little-endian:
//   byte 0      : format version, 1
//   byte 1      : ConfChangeType
//   bytes 2..9  : node id (uint64)
//   bytes 10..  : context (opaque to raft; the host stores e.g. the member's peer URLs here)
// An entry that does not decode is a broken invariant: only the leader writes these entries.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "raft/types.h"

namespace kvd::raft {

enum class MessageType : uint8_t {
  // Local inputs: never sent over the network.
  kHup,            // start an election (pre-vote first when enabled)
  kBeat,           // leader: broadcast heartbeats now
  kCheckQuorum,    // leader: step down unless a quorum was active in the last election timeout
  kUnreachable,    // host: the transport could not reach `from`
  kSnapStatus,     // host: sending a snapshot to `from` finished (reject = it failed)
  // Peer messages.
  kProp,           // follower -> leader: forwarded proposal (entries)
  kApp,            // AppendEntries (paper Figure 2)
  kAppResp,
  kVote,           // RequestVote
  kVoteResp,
  kPreVote,        // pre-vote round (thesis section 9.6): does not change anyone's term
  kPreVoteResp,
  kSnap,           // InstallSnapshot: carries metadata; the host streams the state machine bytes
  kHeartbeat,
  kHeartbeatResp,
  kTransferLeader, // ask the leader to hand leadership to `from`
  kTimeoutNow,     // leader -> transfer target: campaign at once (thesis section 3.10)
  kReadIndex,      // follower -> leader: forwarded read-index request (context in entries[0])
  kReadIndexResp,
};

const char* to_string(MessageType t);

struct Message {
  MessageType type = MessageType::kHup;
  NodeId to = kNoNode;
  NodeId from = kNoNode;
  uint64_t term = 0;      // sender's term; 0 for local messages and forwarded proposals
  uint64_t log_term = 0;  // kApp: term of `index`; kVote: candidate's last log term;
                          // rejected kAppResp: term of reject_hint in the follower's log
  uint64_t index = 0;     // kApp: index preceding `entries`; kAppResp: last index matched;
                          // kVote: candidate's last index; kReadIndexResp: the read index
  std::vector<Entry> entries;
  uint64_t commit = 0;    // leader's commit index (kApp, kHeartbeat)
  std::optional<Snapshot> snapshot;  // kSnap only
  bool reject = false;
  uint64_t reject_hint = 0;  // rejected kAppResp: follower's guess of the last matching index
  std::string context;       // kHeartbeat/kHeartbeatResp: read-index round; kVote: transfer flag

  bool is_local() const;
  bool is_response() const;
};

// The context of a (pre-)vote request sent because of leadership transfer: voters then ignore
// their leader lease (thesis section 3.10).
inline constexpr std::string_view kCampaignTransfer = "CampaignTransfer";

enum class ConfChangeType : uint8_t {
  kAddNode = 0,     // add a voter
  kRemoveNode = 1,  // remove a voter
  kUpdateNode = 2,  // no membership change; context carries new member data for the host
};

struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddNode;
  NodeId node_id = kNoNode;
  std::string context;

  bool operator==(const ConfChange&) const = default;
};

// The data of a kConfChange entry (common/codec.h): u8 version (1), u8 type (ConfChangeType),
// u64 node id, then the context bytes to the end. decode_conf_change refuses another version,
// an unknown type or fewer than 10 bytes.
std::string encode_conf_change(const ConfChange& cc);
std::optional<ConfChange> decode_conf_change(std::string_view data);

// Applies one change to a membership; returns the new membership (voters kept sorted).
ConfState apply_conf_change(const ConfState& cs, const ConfChange& cc);

// One-line human-readable renderings, used by traces and scripted tests.
std::string describe(const Message& m);
std::string describe(const Entry& e);

}  // namespace kvd::raft
