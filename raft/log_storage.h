// The read side of the persisted raft log, as the core sees it. The host writes (entries, hard
// state, snapshots) through its own storage and the core reads back through this interface.
// Implementations: MemoryStorage (raft/memory_storage.h, tests and simulation) and
// storage::RaftLog (RocksDB).
//
// Index ranges are half-open [lo, hi). first_index() is the first entry still present in the log
// (snapshot index + 1); last_index() is the last entry (== snapshot index when the log is empty).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "raft/types.h"

namespace kvd::raft {

enum class StorageError : uint8_t {
  kOk = 0,
  kCompacted,    // requested index is below first_index(): the entry lives only in a snapshot
  kUnavailable,  // requested index is above last_index()
  kIo,           // the backing store failed; the host decides what to do (usually abort)
};

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // The hard state and membership recovered at start-up.
  virtual std::pair<HardState, ConfState> initial_state() const = 0;

  // Entries in [lo, hi), at least one entry if any is available, then as many as fit in
  // max_bytes (sum of data sizes). REQUIRES: first_index() <= lo < hi <= last_index() + 1.
  virtual StorageError entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                               std::vector<Entry>* out) const = 0;

  // Term of entry i, for i in [first_index() - 1, last_index()] (first_index() - 1 is the
  // snapshot's own index and term).
  virtual StorageError term(uint64_t i, uint64_t* out) const = 0;

  virtual uint64_t first_index() const = 0;
  virtual uint64_t last_index() const = 0;

  // The most recent snapshot (metadata and data).
  virtual StorageError snapshot(Snapshot* out) const = 0;
};

}  // namespace kvd::raft
