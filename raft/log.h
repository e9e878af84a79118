// The core's view of the raft log: the persisted part, read through LogStorage, followed by an
// unstable tail (entries, or a snapshot received from the leader) that the host has not yet
// persisted. Owned by Raft; single-threaded like it.
//
//   storage: [first_index() ... storage.last_index()]   (may have a stale suffix, see below)
//   unstable:                [offset_ ... last_index()]  (and/or a pending snapshot)
//
// Entries at index >= offset_ are read from the unstable tail, below it from storage. When a
// leader's append truncates the log below what storage holds, offset_ moves back and the stale
// storage suffix is shadowed until the host persists the replacement (storage appends replace a
// conflicting suffix).
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "raft/log_storage.h"
#include "raft/types.h"

namespace kvd::raft {

class Log {
 public:
  explicit Log(const LogStorage* storage);

  uint64_t first_index() const;
  uint64_t last_index() const;
  uint64_t last_term() const;
  // Term of entry i, or 0 when i is compacted or beyond the end.
  uint64_t term_or_zero(uint64_t i) const;
  StorageError term(uint64_t i, uint64_t* out) const;
  bool match_term(uint64_t i, uint64_t t) const;
  // Election restriction (paper section 5.4.1): is (last_term, last_index) at least as
  // up to date as this log?
  bool is_up_to_date(uint64_t last_index, uint64_t last_term) const;

  // Index of the first entry of ents that conflicts with the log (different term, or beyond the
  // end), or 0 if all of ents are already present.
  uint64_t find_conflict(const std::vector<Entry>& ents) const;
  // Largest index <= index whose term is <= term, and that term (0 if it is compacted). Used
  // for fast back-off on rejected appends.
  std::pair<uint64_t, uint64_t> find_conflict_by_term(uint64_t index, uint64_t term) const;

  // Appends ents (contiguous), replacing any suffix from ents.front().index on.
  // REQUIRES: ents.front().index > committed() (committed entries are never overwritten).
  void append(const std::vector<Entry>& ents);
  // Entries in [lo, hi), at most max_bytes of data but at least one.
  StorageError slice(uint64_t lo, uint64_t hi, uint64_t max_bytes, std::vector<Entry>* out) const;

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  void commit_to(uint64_t index);
  // Commits max_index if its term is `term` (only entries of the leader's own term are committed
  // by counting replicas; paper section 5.4.2, Figure 8). Returns whether commit advanced.
  bool maybe_commit(uint64_t max_index, uint64_t term);
  void applied_to(uint64_t index);
  // Committed entries not yet applied and already on stable storage (below the unstable tail),
  // at most max_bytes (but at least one). A follower may learn a commit index that covers
  // entries it has not persisted yet (they came in the same append): those wait here until the
  // host has persisted them (stable_to), so that an entry handed out for applying is on this
  // node's disk as well as on a quorum's.
  bool has_next_committed() const;
  std::vector<Entry> next_committed(uint64_t max_bytes) const;
  // The last index the host has persisted and raft knows of (0 while a snapshot is pending).
  uint64_t stable_index() const;

  const std::vector<Entry>& unstable_entries() const { return unstable_; }
  const std::optional<Snapshot>& unstable_snapshot() const { return unstable_snapshot_; }
  // The host persisted entries up to (index, term) / the pending snapshot at index.
  void stable_to(uint64_t index, uint64_t term);
  void stable_snapshot_to(uint64_t index);

  // Replaces the log with a snapshot from the leader (kept unstable until the host persists it).
  void restore(const Snapshot& snap);
  // The most recent snapshot: the pending one if any, otherwise storage's.
  StorageError snapshot(Snapshot* out) const;

  // Bootstrap and restart only: set commit/applied without the usual checks' preconditions.
  void set_committed_applied(uint64_t committed, uint64_t applied);

 private:
  const LogStorage* storage_;
  std::optional<Snapshot> unstable_snapshot_;
  std::vector<Entry> unstable_;
  uint64_t offset_;  // index of unstable_[0] (or where it would be)
  // Invariant: applied_ <= committed_ <= last_index()
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;
};

// A broken in-memory invariant: print and abort (STYLE.md "Errors").
[[noreturn]] void fatal(const char* fmt, ...);
// Called with the message before fatal() aborts (the simulator prints its replay command).
void set_fatal_hook(void (*hook)(const char* message));

}  // namespace kvd::raft
