// The consistent read behind an online backup (Node::backup): the last snapshot and the
// committed entries after it, read from the raft log without the strand. A snapshot saved while
// the entries are read compacts some of them away; the read then starts again from the new
// snapshot (bounded: a snapshot comes at most every snapshot_count entries).
#include "server/member/core.h"

namespace kvd::server {

namespace {
constexpr uint64_t kBatchBytes = 64 << 20;
constexpr int kAttempts = 20;
}  // namespace

Result<Node::Backup> read_backup(const storage::RaftLog& log) {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    Node::Backup b;
    b.hard_state = log.initial_state().first;
    if (log.snapshot(&b.snapshot) != raft::StorageError::kOk) {
      return Status::error("backup: cannot read the snapshot of the raft log");
    }
    const uint64_t from = b.snapshot.metadata.index + 1;
    // A snapshot is taken at an applied, so committed, index: the commit read before it may be
    // older.
    b.hard_state.commit = std::max(b.hard_state.commit, b.snapshot.metadata.index);
    const uint64_t to = b.hard_state.commit;
    bool compacted = false;
    for (uint64_t next = from; next <= to;) {
      std::vector<raft::Entry> batch;
      const raft::StorageError err = next < log.first_index()
                                         ? raft::StorageError::kCompacted
                                         : log.entries(next, to + 1, kBatchBytes, &batch);
      if (err == raft::StorageError::kCompacted) {
        compacted = true;
        break;
      }
      if (err != raft::StorageError::kOk || batch.empty()) {
        return Status::error("backup: cannot read raft log entry " + std::to_string(next));
      }
      next += batch.size();
      for (auto& e : batch) b.entries.push_back(std::move(e));
    }
    if (!compacted) return b;
  }
  return Status::error("backup: the raft log was compacted under the read " +
                       std::to_string(kAttempts) + " times; try again");
}

}  // namespace kvd::server
