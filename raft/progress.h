// The leader's view of one follower's log (paper Figure 2: nextIndex, matchIndex), plus the flow
// control that keeps replication pipelined but bounded. Owned by Raft, leader only.
//
// States:
//   kProbe     : nextIndex is a guess; at most one append is outstanding (probe_sent) until the
//                follower answers or a heartbeat response shows it is alive.
//   kReplicate : the follower is known to match; appends are pipelined, optimistically advancing
//                next, with at most max_inflight unacknowledged messages.
//   kSnapshot  : the follower needs a snapshot; nothing is sent until the host reports the
//                snapshot was delivered (or failed), or the follower acknowledges it.
#pragma once

#include <cstdint>
#include <cstddef>
#include <deque>

namespace kvd::raft {

// Last indexes of the appends in flight to one follower, oldest first.
class Inflights {
 public:
  explicit Inflights(std::size_t capacity = 256) : capacity_(capacity) {}
  bool full() const { return q_.size() >= capacity_; }
  std::size_t count() const { return q_.size(); }
  void add(uint64_t last_index) { q_.push_back(last_index); }
  // The follower acknowledged everything up to index.
  void free_le(uint64_t index) {
    while (!q_.empty() && q_.front() <= index) q_.pop_front();
  }
  void free_first_one() {
    if (!q_.empty()) q_.pop_front();
  }
  void reset() { q_.clear(); }

 private:
  std::size_t capacity_;
  std::deque<uint64_t> q_;
};

struct Progress {
  enum class State : uint8_t { kProbe, kReplicate, kSnapshot };

  // Invariant: match_index < next_index
  uint64_t match_index = 0;
  uint64_t next_index = 1;
  State state = State::kProbe;
  bool probe_sent = false;
  uint64_t pending_snapshot = 0;  // kSnapshot: index of the snapshot sent
  bool recent_active = false;     // heard from since the last check-quorum round
  Inflights inflights;

  explicit Progress(std::size_t max_inflight = 256) : inflights(max_inflight) {}

  bool is_paused() const;
  void become_probe();
  void become_replicate();
  void become_snapshot(uint64_t snapshot_index);
  // The follower acknowledged n; returns whether match advanced.
  bool maybe_update(uint64_t n);
  // Appends up to n were sent (replicate state pipelines past them).
  void optimistic_update(uint64_t n) { next_index = n + 1; }
  // The follower rejected an append at `rejected`, hinting its log may match up to match_hint.
  // Returns false when the rejection is stale.
  bool maybe_decrease_to(uint64_t rejected, uint64_t match_hint);

  static const char* state_name(State s);
};

}  // namespace kvd::raft
