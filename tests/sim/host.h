// Simulated hosts for raft::RawNode: each SimNode plays kvd's server loop (persist, send, apply,
// advance) against a MemoryStorage that stands for its disk, and a register state machine (the
// value of the last applied write). The Checker watches every step for violations of Raft's
// safety properties. Used by the randomized simulator (sim_main.cc).
// Single-threaded; everything is deterministic given the inputs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "raft/memory_storage.h"
#include "raft/raw_node.h"
#include "server/member/read_batches.h"

namespace kvd::sim {

using raft::NodeId;

// Small deterministic PRNG (splitmix64), identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  uint64_t uniform(uint64_t n) { return n == 0 ? 0 : next() % n; }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }

 private:
  uint64_t state_;
};

// The state a node's disk and memory hold.
struct SimNode {
  NodeId id = 0;
  raft::Config config;
  // "Disk": survives crashes.
  std::unique_ptr<raft::MemoryStorage> storage = std::make_unique<raft::MemoryStorage>();
  // Hash chain over the persisted log, for the log-matching check: chain[k] covers index
  // chain_base + k and everything before it. Rebuilt from the snapshot on install.
  uint64_t chain_base = 0;
  std::vector<uint64_t> chain{0};
  // Memory: lost on crash.
  std::unique_ptr<raft::RawNode> raw;
  uint64_t applied = 0;
  uint64_t value_index = 0;  // index of the write whose value the register holds
  std::string value;
  // Quorum reads on their way, kept as the member keeps them (server/member/read_batches.h), and
  // the leader this node knows (the member's leader_id: reads are issued only while it is set).
  kvd::server::ReadBatches reads;
  NodeId lead = 0;
  raft::Role last_role = raft::Role::kFollower;
  uint64_t last_commit_seen = 0;
  uint64_t leader_term_seen = 0;  // term it led at the last commit observation, else 0
  // A Ready taken and not yet persisted (the member's Ready whose fsync is running), and whether
  // its messages already went (a leader sends before persisting).
  std::optional<raft::Ready> in_flight;
  bool in_flight_sent = false;

  bool up() const { return raw != nullptr; }
  // (Re)starts the node from its disk: the core restores from storage, the state machine from
  // the snapshot.
  void start();
  void crash();
  uint64_t chain_at(uint64_t index) const;  // REQUIRES: chain_base <= index <= last persisted
  void persist_entries(const std::vector<raft::Entry>& entries);
  void install_snapshot(const raft::Snapshot& snap);
  // Snapshot of the state machine at the applied index, then compaction keeping `keep` entries.
  void compact(uint64_t keep);
};

// Safety properties checked continuously (paper Figure 3 and section 5.4, plus reads).
class Checker {
 public:
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  void fail(const std::string& what);

  // Election Safety: at most one leader per term. Leader Completeness on each new leadership.
  void observe_role(SimNode& n);
  // Commits seen on any node form the one committed log; each must agree with it.
  void observe_commit(SimNode& n);
  // No committed entry is ever overwritten on the disk of a node that holds it. Call before
  // the write reaches n.storage.
  void on_persist(const SimNode& n, const std::vector<raft::Entry>& entries);
  // State Machine Safety: no two nodes apply different entries at an index; never past commit.
  void on_apply(const SimNode& n, const raft::Entry& e);
  void on_snapshot_installed(const SimNode& n, uint64_t index, uint64_t value_index);
  // Log Matching over the persisted logs of all nodes.
  void check_log_matching(const std::map<NodeId, SimNode>& nodes);
  // The invariant behind Leader Completeness (paper section 5.4.3): an entry a leader committed
  // by counting replicas is in every log, in memory or on disk, that is at least as up to date
  // as that entry, since any such log could win an election. Catches a wrongly committed entry
  // as soon as it is counted, before an election has to expose it.
  void check_up_to_date_logs_hold_commits(const std::map<NodeId, SimNode>& nodes);

  // Reads: a read started now must return at least the newest write already applied anywhere.
  void read_started(uint64_t id) { reads_[id] = max_applied_write_; }
  void read_finished(const SimNode& n, uint64_t id, uint64_t read_index);
  bool read_pending(uint64_t id) const { return reads_.count(id) > 0; }
  uint64_t reads_completed() const { return reads_completed_; }
  uint64_t max_committed() const { return committed_.empty() ? 0 : committed_.rbegin()->first; }

 private:
  struct Committed {
    raft::Entry entry;
    uint64_t commit_term;  // term of the node that first saw it committed
  };
  std::string failure_;
  std::map<uint64_t, NodeId> leaders_;  // term -> leader
  std::map<uint64_t, Committed> committed_;
  std::set<std::pair<uint64_t, uint64_t>> counted_;  // (term, index) a leader committed
  std::map<uint64_t, raft::Entry> applied_;
  uint64_t max_applied_write_ = 0;
  std::map<uint64_t, uint64_t> reads_;  // read id -> newest write completed at start
  uint64_t reads_completed_ = 0;
};

std::string describe_ready(const raft::Ready& rd);

}  // namespace kvd::sim
