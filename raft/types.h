// Raft data types shared by the core (raft/), its host (server/) and durable storage (storage/).
// Plain values: no I/O, no clocks. Field names follow the Raft paper (Ongaro & Ousterhout, 2014).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvd::raft {

using NodeId = uint64_t;  // 0 means "none"
inline constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  kNormal = 0,      // data is an opaque command for the state machine (may be empty: leader no-op)
  kConfChange = 1,  // data is an encoded ConfChange
};

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  bool operator==(const Entry&) const = default;
};

// State that must be on stable storage before a node answers any RPC (paper Figure 2).
struct HardState {
  uint64_t term = 0;
  NodeId vote = kNoNode;
  uint64_t commit = 0;

  bool operator==(const HardState&) const = default;
  bool empty() const { return term == 0 && vote == kNoNode && commit == 0; }
};

// Cluster membership as of some log position.
struct ConfState {
  std::vector<NodeId> voters;

  bool operator==(const ConfState&) const = default;
};

struct SnapshotMetadata {
  uint64_t index = 0;  // last log index covered by the snapshot
  uint64_t term = 0;   // term of that entry
  ConfState conf_state;

  bool operator==(const SnapshotMetadata&) const = default;
};

struct Snapshot {
  SnapshotMetadata metadata;
  std::string data;  // state machine image; opaque to raft

  bool empty() const { return metadata.index == 0; }
};

}  // namespace kvd::raft
