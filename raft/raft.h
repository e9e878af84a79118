// The Raft protocol as a deterministic state machine (Ongaro & Ousterhout, "In Search of an
// Understandable Consensus Algorithm", 2014; Ongaro, "Consensus: Bridging Theory and Practice",
// 2014, cited as "thesis"). No I/O, clocks, threads or logging: time is tick(), the network is
// step() in and the outbox out, randomness comes from Config::seed. Hosts use RawNode
// (raft/raw_node.h), which wraps this class with the Ready/advance protocol.
//
// Single-threaded: whoever owns the RawNode (the server's raft strand, a test) calls everything.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "raft/log.h"
#include "raft/log_storage.h"
#include "raft/message.h"
#include "raft/progress.h"
#include "raft/types.h"

namespace kvd::raft {

struct Config {
  NodeId id = kNoNode;
  // Voters of a brand-new cluster. Used only when storage is empty: the node then bootstraps its
  // log with one committed kAddNode entry per peer (term 1, indexes 1..n), identically on every
  // founding member. A node joining an existing cluster starts with empty storage and no peers:
  // it learns the membership from the leader's log or snapshot.
  std::vector<NodeId> peers;
  int election_ticks = 10;   // election timeout is randomized in [election_ticks, 2*election_ticks)
  int heartbeat_ticks = 1;   // REQUIRES: heartbeat_ticks < election_ticks
  bool pre_vote = true;      // thesis section 9.6
  bool check_quorum = true;  // thesis section 6.2: leader steps down without a live quorum,
                             // and followers ignore vote requests while they have a leader
  size_t max_inflight = 256;          // appends in flight per follower (replicate state)
  uint64_t max_size_per_msg = 1 << 20;  // bytes of entry data per append (at least one entry)
  uint64_t max_committed_size_per_ready = 64ull << 20;
  uint64_t applied = 0;  // restart: the host's applied index (defaults to the snapshot index)
  uint64_t seed = 0;     // seeds election-timeout randomization (mixed with id)
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* to_string(Role r);

// Why a request was refused. The host maps these to client errors (etcd answers a proposal that
// cannot be made with "etcdserver: ..."; kvd's server decides the exact text).
enum class Error : uint8_t {
  kOk = 0,
  kNoLeader,            // no known leader to forward to (proposal or read dropped)
  kLeaderTransferring,  // the leader is handing leadership over; try again shortly
  kConfChangePending,   // a membership change is still unapplied (one at a time)
  kConfChangeTooEarly,  // a new leader has not yet committed an entry of its term
  kNotMember,           // this node is not (or no longer) a voter
  kStepLocalMsg,        // a local-only message type came from the network
  kUnknownPeer,         // response from a node that is not in the configuration
};
const char* to_string(Error e);

struct SoftState {
  NodeId lead = kNoNode;
  Role role = Role::kFollower;
  bool operator==(const SoftState&) const = default;
};

// A linearizable read point: once the host has applied up to `index`, it may answer the read
// identified by `context` from its state machine.
struct ReadState {
  uint64_t index = 0;
  std::string context;
  bool operator==(const ReadState&) const = default;
};

class Raft {
 public:
  Raft(const Config& config, const LogStorage* storage);

  void tick();
  // Handles one message (peer or local). Returns a refusal for proposals/reads made here.
  Error step(Message m);

  NodeId id() const { return id_; }
  uint64_t term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId lead() const { return lead_; }
  Role role() const { return role_; }
  NodeId lead_transferee() const { return lead_transferee_; }
  HardState hard_state() const { return HardState{term_, vote_, log_.committed()}; }
  SoftState soft_state() const { return SoftState{lead_, role_}; }
  const ConfState& conf_state() const { return conf_history_.back().second; }
  // Membership as of the applied index (what a snapshot taken at applied() must record).
  ConfState applied_conf_state() const;
  const std::map<NodeId, Progress>& progress() const { return prs_; }
  const Log& log() const { return log_; }
  Log& mutable_log() { return log_; }
  bool promotable() const;
  int randomized_election_ticks() const { return randomized_election_ticks_; }

  std::vector<Message>& outbox() { return msgs_; }
  const std::vector<Message>& outbox() const { return msgs_; }
  std::vector<ReadState>& read_states() { return read_states_; }
  const std::vector<ReadState>& read_states() const { return read_states_; }
  // The host applies up to index: RawNode hands the entries out (handed out is as good as
  // applied: the host applies them before raft runs again).
  void applied_to(uint64_t index);
  // The host persisted the log up to log().stable_index(): a leader counts its own entries
  // towards commitment only from then on (Raft thesis section 10.2.1: it writes in parallel
  // with the followers, and an entry is committed once durable on a majority, itself included).
  void on_stable();

 private:
  struct ReadRequest {
    uint64_t index;
    NodeId from;  // id_ for a local read
    std::string context;
    std::vector<NodeId> acks;
  };

  // Roles (paper Figure 4; pre-candidate: thesis section 9.6).
  void become_follower(uint64_t term, NodeId lead);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void reset(uint64_t term);
  void reset_randomized_election_timeout();

  void tick_election();
  void tick_heartbeat();
  bool past_election_timeout() const { return election_elapsed_ >= randomized_election_ticks_; }

  void hup(bool transfer);
  void campaign(bool pre_vote, bool transfer);
  enum class VoteResult { kPending, kWon, kLost };
  VoteResult poll(NodeId from, bool granted);

  Error step_leader(Message& m);
  Error step_candidate(Message& m);
  Error step_follower(Message& m);
  void handle_vote_request(const Message& m);
  void handle_append_entries(const Message& m);
  void handle_heartbeat(const Message& m);
  void handle_snapshot(const Message& m);
  void handle_append_response(const Message& m, Progress& pr);
  void handle_heartbeat_response(const Message& m, Progress& pr);
  Error handle_propose(Message& m);
  void handle_read_index(const Message& m);
  void release_read_requests(const std::string& context);
  void answer_read(const ReadRequest& req);
  bool restore(const Snapshot& snap);

  void send(Message m);
  bool maybe_send_append(NodeId to, bool send_if_empty);
  void send_heartbeat(NodeId to, const std::string& context);
  void broadcast_append();
  void broadcast_heartbeat(const std::string& context);
  void send_timeout_now(NodeId to);
  void abort_leader_transfer() { lead_transferee_ = kNoNode; }

  // Appends entries stamped with this term (leader) and counts its own copy.
  void append_entries_as_leader(std::vector<Entry> entries);
  // Appends to the log (any role) and applies membership changes found in them: a configuration
  // takes effect as soon as it is in the log (thesis section 4.1), and a truncated one is undone.
  void append_to_log(const std::vector<Entry>& entries);
  void rebuild_conf_from(uint64_t first_changed);
  void apply_membership();
  bool maybe_commit();
  void on_commit_advanced();
  bool committed_entry_in_current_term() const;
  bool quorum_active();
  size_t quorum() const { return conf_state().voters.size() / 2 + 1; }
  bool is_voter(NodeId id) const;

  // Persistent state (paper Figure 2): term_, vote_, and the log.
  NodeId id_;
  uint64_t term_ = 0;
  NodeId vote_ = kNoNode;
  Log log_;

  // Volatile state.
  Role role_ = Role::kFollower;
  NodeId lead_ = kNoNode;
  Config config_;
  // Membership history: (index of the entry that set it, configuration); front() is the
  // configuration at the log's base (snapshot or bootstrap). Invariant: indexes increase, and
  // back() is the configuration in effect.
  std::vector<std::pair<uint64_t, ConfState>> conf_history_;
  std::map<NodeId, Progress> prs_;  // leader: every voter, including itself if still a voter
  std::map<NodeId, bool> votes_;    // candidate: votes received this election
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_ticks_ = 0;
  uint64_t rng_state_;
  NodeId lead_transferee_ = kNoNode;
  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  std::deque<ReadRequest> read_requests_;     // leader: awaiting a heartbeat quorum
  std::vector<Message> pending_read_index_;   // leader: awaiting a commit in its own term
};

}  // namespace kvd::raft
