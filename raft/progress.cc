#include "raft/progress.h"

#include <algorithm>

namespace kvd::raft {

bool Progress::is_paused() const {
  switch (state) {
    case State::kProbe: return probe_sent;
    case State::kReplicate: return inflights.full();
    case State::kSnapshot: return true;
  }
  return true;
}

void Progress::become_probe() {
  if (state == State::kSnapshot) {
    next_index = std::max(match_index + 1, pending_snapshot + 1);
  } else {
    next_index = match_index + 1;
  }
  state = State::kProbe;
  probe_sent = false;
  pending_snapshot = 0;
  inflights.reset();
}

void Progress::become_replicate() {
  state = State::kReplicate;
  next_index = match_index + 1;
  probe_sent = false;
  pending_snapshot = 0;
  inflights.reset();
}

void Progress::become_snapshot(uint64_t snapshot_index) {
  state = State::kSnapshot;
  pending_snapshot = snapshot_index;
  probe_sent = false;
  inflights.reset();
}

bool Progress::maybe_update(uint64_t n) {
  bool updated = false;
  if (match_index < n) {
    match_index = n;
    updated = true;
    probe_sent = false;
  }
  next_index = std::max(next_index, n + 1);
  return updated;
}

bool Progress::maybe_decrease_to(uint64_t rejected, uint64_t match_hint) {
  if (state == State::kReplicate) {
    // Stale when the rejection is for an index already matched.
    if (rejected <= match_index) return false;
    next_index = match_index + 1;
    return true;
  }
  // Probe: only the answer to the outstanding probe counts.
  if (next_index == 0 || next_index - 1 != rejected) return false;
  next_index = std::max(std::min(rejected, match_hint + 1), match_index + 1);
  probe_sent = false;
  return true;
}

const char* Progress::state_name(State s) {
  switch (s) {
    case State::kProbe: return "Probe";
    case State::kReplicate: return "Replicate";
    case State::kSnapshot: return "Snapshot";
  }
  return "?";
}

}  // namespace kvd::raft
