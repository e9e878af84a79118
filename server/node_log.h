// The durable half of the Node: the WAL thread that writes raft entries with group commit, and
// LogDriver, the single-member stand-in for the raft core that turns "durable" into "committed".
//
// LogDriver is the seam the raft core (raft/, a Ready/advance RawNode) will replace: the Node
// hands it opaque entry data with propose() and receives committed entries, in log order, through
// the callback it was built with. Nothing else in the Node knows that one member means
// durable == committed.
//
// Threads: WalWriter's public methods may be called from any thread; its callbacks run on its
// own thread. LogDriver lives on the raft strand (REQUIRES: every call on that strand); it
// receives the WAL thread's results through the poster it was given, which must run them on the
// strand.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "raft/types.h"
#include "storage/raft_log.h"
#include "storage/status.h"

namespace kvd::server {

// Owns one thread that performs RaftLog writes in submission order. Appends submitted while an
// append (and its fsync) is running accumulate and go out together in the next append: group
// commit. Snapshots are ordered with the appends around them.
class WalWriter {
 public:
  // on_appended(last_index, status) runs on the WAL thread after each append call, covering
  // every entry submitted up to last_index. on_snapshot(index, status) after each snapshot.
  using AppendDone = std::function<void(uint64_t last_index, Status)>;
  using SnapshotDone = std::function<void(uint64_t index, Status)>;

  WalWriter(storage::RaftLog* log, AppendDone on_appended, SnapshotDone on_snapshot);
  ~WalWriter();  // stop()s
  WalWriter(const WalWriter&) = delete;
  WalWriter& operator=(const WalWriter&) = delete;

  // Queues entries (contiguous with everything queued before) and the hard state to write with
  // them. Returns false once stop() was called or a write failed; nothing was queued.
  bool append(std::vector<raft::Entry> entries, raft::HardState hs);
  // Queues a snapshot save (which also compacts the log below it). Same return as append().
  bool save_snapshot(raft::Snapshot snap);

  // Writes what is queued, then joins the thread. Idempotent.
  void stop();

  // Number of RaftLog::append calls made so far (each is one fsync).
  uint64_t append_calls() const { return append_calls_.load(); }

 private:
  struct Op {
    std::vector<raft::Entry> entries;  // an append when snapshot is empty
    raft::HardState hs;
    std::optional<raft::Snapshot> snapshot;
  };
  void run();
  // REQUIRES: on the WAL thread.
  void flush_append(std::vector<raft::Entry>* entries, const raft::HardState& hs);

  storage::RaftLog* const log_;
  const AppendDone on_appended_;
  const SnapshotDone on_snapshot_;
  std::atomic<uint64_t> append_calls_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;  // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  bool failed_ = false;    // guarded by mu_; set after a failed append: nothing more is written
  std::thread thread_;
};

// Single-member consensus: an entry is committed as soon as it is durable. Keeps proposed entries
// in memory until they commit so apply never reads them back from disk.
class LogDriver {
 public:
  // Runs on the strand with newly committed entries, in index order.
  using CommittedFn = std::function<void(std::vector<raft::Entry>)>;
  // Runs on the strand once when the log could not be written; no entry commits after it.
  using FailedFn = std::function<void(const Status&)>;
  // Runs fn on the strand.
  using Poster = std::function<void(std::function<void()> fn)>;

  struct State {
    raft::NodeId self = 0;
    uint64_t term = 0;        // current term; new entries get it
    uint64_t last_index = 0;  // last durable index (== committed)
  };

  LogDriver(storage::RaftLog* log, State state, Poster post, CommittedFn on_committed,
            FailedFn on_failed);
  ~LogDriver();

  // Appends data as a new entry of the current term. Returns its index, or 0 when the log no
  // longer accepts writes (stopped or failed).
  uint64_t propose(std::string data);
  // Saves a snapshot after every entry already proposed; compacts the log below it.
  void save_snapshot(raft::Snapshot snap);
  // Writes what is queued and stops the WAL thread; results still arrive through the poster.
  void stop();

  uint64_t term() const { return term_; }
  // Invariant: committed_index() <= last_index()
  uint64_t committed_index() const { return committed_; }
  uint64_t last_index() const { return last_index_; }
  bool failed() const { return failed_; }
  uint64_t append_calls() const { return wal_.append_calls(); }

 private:
  // REQUIRES: on the strand.
  void handle_appended(uint64_t last_index, const Status& status);

  const raft::NodeId self_;
  const uint64_t term_;
  const Poster post_;
  const CommittedFn on_committed_;
  const FailedFn on_failed_;
  uint64_t last_index_;  // last proposed index
  uint64_t committed_;   // last durable index
  bool failed_ = false;
  std::deque<raft::Entry> unstable_;  // proposed, not yet durable; indexes committed_+1..
  WalWriter wal_;                     // last member: its thread stops before the fields above die
};

}  // namespace kvd::server
