// An in-memory LogStorage, for tests, the simulator and benchmarks. It plays the part of the
// host's durable storage: what the host has "persisted" lives here, and a simulated crash keeps
// exactly this object and drops the core.
//
// Layout: ents_[0] is a dummy entry holding the snapshot's (index, term); real entries follow.
// Invariant: ents_[i].index == ents_[0].index + i.
// Not thread-safe: one owner (the host loop) calls everything.
#pragma once

#include <vector>

#include "raft/log_storage.h"

namespace kvd::raft {

class MemoryStorage : public LogStorage {
 public:
  MemoryStorage();

  // LogStorage
  std::pair<HardState, ConfState> initial_state() const override;
  StorageError entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                       std::vector<Entry>* out) const override;
  StorageError term(uint64_t i, uint64_t* out) const override;
  uint64_t first_index() const override;
  uint64_t last_index() const override;
  StorageError snapshot(Snapshot* out) const override;

  // Host writes.
  void set_hard_state(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }
  // Sets the membership the log starts from when there is no snapshot (tests that build a log
  // by hand instead of bootstrapping one). REQUIRES: no snapshot installed yet.
  void set_conf_state(const ConfState& cs) { snapshot_.metadata.conf_state = cs; }
  // Appends entries; a conflicting suffix (from entries.front().index on) is replaced. Entries
  // already covered by the snapshot are ignored.
  void append(const std::vector<Entry>& entries);
  // Replaces the whole log with a snapshot received from the leader. Returns kCompacted (and does
  // nothing) when the snapshot is older than the one already held.
  StorageError apply_snapshot(const Snapshot& snap);
  // Records a snapshot of the state machine at index i (<= last_index()) without compacting.
  StorageError create_snapshot(uint64_t i, const ConfState& cs, std::string data);
  // Drops entries up to and including compact_index (which must be <= last_index()).
  StorageError compact(uint64_t compact_index);

 private:
  HardState hard_state_;
  Snapshot snapshot_;
  std::vector<Entry> ents_;
};

}  // namespace kvd::raft
