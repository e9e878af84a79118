// RawNode: the host's handle on one raft member. It is a deterministic state machine; the host
// owns all I/O and time (the design of etcd-io/raft's Ready/Advance, in our own terms).
//
// Owned by the host and called from one thread/strand only (kvd: the raft strand). Nothing here
// blocks, sleeps, reads a clock or touches a file.
//
// ---- Inputs -------------------------------------------------------------------------------
//   tick()                     one unit of logical time (the host calls it on a timer, e.g. 100ms)
//   step(message)              a message received from a peer
//   propose(data)              a new command; forwarded to the leader when this node follows
//   propose_conf_change(cc)    a membership change (add/remove/update one voter)
//   read_index(context)        a linearizable read, identified by a unique context string
//   transfer_leadership(to)    ask the leader to hand leadership to `to`
//   report_unreachable / report_snapshot   transport feedback
// Restoring after a crash is constructing a RawNode over the same storage: the hard state, log
// and snapshot are read back through LogStorage (Config::applied says how far the state machine
// got; by default the snapshot index, and committed entries after it are delivered again).
//
// ---- Output: the Ready contract ---------------------------------------------------------
// When has_ready(), the host takes one Ready with ready() and handles it IN THIS ORDER:
//   1. Persist, durably and atomically enough that a crash leaves either all or a prefix:
//        - snapshot (if set): install it in storage (replacing the log), then
//        - entries: append, replacing any conflicting suffix from entries.front().index on
//          (storage::RaftLog::append does exactly this), together with
//        - hard_state (if set).
//      must_sync says whether an fsync is needed (a vote, term or new entries); a change of
//      commit index alone may be written lazily.
//   2. Send messages. Only after step 1: a vote or an append acknowledgement promises what was
//      just persisted (paper Figure 2: "updated on stable storage before responding").
//      Messages may be lost, duplicated or reordered; raft tolerates it. A kSnap message carries
//      the snapshot metadata; the host may stream the state-machine image (Snapshot::data)
//      separately and must call report_snapshot() on the sender when that finishes or fails.
//   3. Apply: if snapshot is set, load its image into the state machine; then apply
//      committed_entries in order. Entries of type kConfChange are already in effect inside
//      raft (a configuration takes effect when appended); the host applies them to its own
//      membership records (peer addresses). committed_entries are always entries the host
//      persisted in an earlier Ready (never this Ready's own), so the host may apply them as
//      soon as it takes the Ready, before or while step 1 runs.
//   4. Serve read_states: each says "answer the read `context` from the state machine as of at
//      least `index`"; raft hands out a read state only once committed_entries up to its index
//      are in this or an earlier Ready, so after step 3 it can be answered at once.
//   5. Call advance(). ready() may not be called again before advance().
// While a Ready is in progress (between ready() and advance(), e.g. while its fsync runs),
// take_committed() hands out what became applicable since: entries committed meanwhile (by the
// acknowledgements of followers, or a leader's commit index) that the host had already
// persisted, and the read states they release. The host applies and serves them at once, in
// order with everything handed out before; their commit index reaches the disk with a later
// Ready's hard_state, lazily as any commit index (a restart learns it again).
// soft_state (leader and role, when they changed) is informational and needs no persistence.
//
// Compaction: after applying up to index i the host may take a snapshot of its state machine,
// record it with applied_conf_state() as membership, and drop log entries up to i. A follower
// that needs compacted entries is then sent the snapshot.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "raft/log_storage.h"
#include "raft/message.h"
#include "raft/raft.h"
#include "raft/types.h"

namespace kvd::raft {

struct Ready {
  std::optional<SoftState> soft_state;   // changed since the previous Ready
  std::optional<HardState> hard_state;   // changed since the previous Ready: persist
  std::vector<Entry> entries;            // persist (step 1)
  std::optional<Snapshot> snapshot;      // persist and install (steps 1 and 3)
  std::vector<Entry> committed_entries;  // apply after persisting (step 3)
  std::vector<Message> messages;         // send after persisting (step 2)
  std::vector<ReadState> read_states;    // serve after applying (step 4)
  bool must_sync = false;

  bool empty() const {
    return !soft_state && !hard_state && entries.empty() && !snapshot && committed_entries.empty() &&
           messages.empty() && read_states.empty();
  }
};

// What became applicable while a Ready is in progress (RawNode::take_committed).
struct Committed {
  std::vector<Entry> entries;          // apply in order, at once (all persisted before)
  std::vector<ReadState> read_states;  // serve after applying

  bool empty() const { return entries.empty() && read_states.empty(); }
};

// A snapshot of the node's state for monitoring, tests and the simulator.
struct NodeStatus {
  NodeId id = kNoNode;
  HardState hard_state;
  SoftState soft_state;
  uint64_t applied = 0;
  uint64_t last_index = 0;
  NodeId lead_transferee = kNoNode;
  ConfState conf_state;
  std::map<NodeId, Progress> progress;  // leader only
};

class RawNode {
 public:
  // Restores from storage (or bootstraps a new cluster from config.peers when storage is empty).
  // The storage must outlive the RawNode; the host writes to it only while handling a Ready.
  RawNode(const Config& config, const LogStorage* storage);

  void tick() { raft_.tick(); }
  // Starts an election now (tests, or a host that wants a faster first election).
  void campaign();
  // A message from a peer. Local-only message types are refused.
  [[nodiscard]] Error step(Message m);
  [[nodiscard]] Error propose(std::string data);
  [[nodiscard]] Error propose_conf_change(const ConfChange& cc);
  // A linearizable read: a ReadState with this context appears in a later Ready, unless
  // leadership changes first (then nothing comes back and the host retries after a timeout).
  [[nodiscard]] Error read_index(std::string context);
  void transfer_leadership(NodeId to);
  void report_unreachable(NodeId id);
  void report_snapshot(NodeId id, bool ok);

  bool has_ready() const;
  Ready ready();
  void advance();
  // REQUIRES: a Ready is in progress. See the contract above.
  Committed take_committed();

  NodeStatus status() const;
  // Membership as of the applied index: what a snapshot taken now must record.
  ConfState applied_conf_state() const { return raft_.applied_conf_state(); }
  NodeId id() const { return raft_.id(); }
  // For tests and the simulator: the core itself.
  const Raft& raft() const { return raft_; }

 private:
  // Steps a message of `type` from this node carrying one entry (a proposal or a read index).
  Error step_with_entry(MessageType type, EntryType entry_type, std::string data);
  // Hands out the next committed entries (raft's applied index moves to the last of them:
  // handed out is as good as applied, the host applies them before anything else runs) and the
  // read states servable once they are applied (up to `applied_after` if greater, a snapshot).
  std::vector<Entry> hand_out_committed();
  std::vector<ReadState> take_read_states(uint64_t applied_after);

  Raft raft_;
  SoftState prev_soft_;
  HardState prev_hard_;
  bool in_progress_ = false;
  // What the Ready in progress handed out, for advance().
  uint64_t ready_last_index_ = 0;
  uint64_t ready_last_term_ = 0;
  uint64_t ready_snapshot_index_ = 0;
  uint64_t max_committed_bytes_;
};

}  // namespace kvd::raft
