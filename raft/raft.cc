#include "raft/raft.h"

#include <algorithm>

namespace kvd::raft {

const char* to_string(Role r) {
  switch (r) {
    case Role::kFollower: return "Follower";
    case Role::kPreCandidate: return "PreCandidate";
    case Role::kCandidate: return "Candidate";
    case Role::kLeader: return "Leader";
  }
  return "?";
}

const char* to_string(Error e) {
  switch (e) {
    case Error::kOk: return "ok";
    case Error::kNoLeader: return "no leader";
    case Error::kLeaderTransferring: return "leadership transfer in progress";
    case Error::kConfChangePending: return "a membership change is still pending";
    case Error::kConfChangeTooEarly: return "leader has not committed an entry of its term";
    case Error::kNotMember: return "not a member of the cluster";
    case Error::kStepLocalMsg: return "local message received from the network";
    case Error::kUnknownPeer: return "message from an unknown peer";
  }
  return "?";
}

namespace {

// splitmix64: small, fast, and identical on every platform (std distributions are not).
uint64_t next_random(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

Raft::Raft(const Config& config, const LogStorage* storage)
    : id_(config.id), log_(storage), config_(config), rng_state_(config.seed * 1000003 + config.id) {
  if (id_ == kNoNode) fatal("config: id must not be 0");
  if (config.heartbeat_ticks <= 0 || config.election_ticks <= config.heartbeat_ticks) {
    fatal("config: need 0 < heartbeat_ticks < election_ticks");
  }
  if (config_.max_inflight == 0) config_.max_inflight = 1;

  const auto [hs, cs] = storage->initial_state();
  Snapshot snap;
  if (storage->snapshot(&snap) != StorageError::kOk) fatal("storage: cannot read snapshot");
  const bool empty = storage->last_index() == 0 && hs.empty();

  if (!snap.empty()) {
    conf_history_.emplace_back(snap.metadata.index, snap.metadata.conf_state);
  } else {
    conf_history_.emplace_back(0, cs);
  }
  // Rebuild membership from the configuration entries in the persisted log.
  if (!empty) {
    const uint64_t last = storage->last_index();
    for (uint64_t lo = storage->first_index(); lo <= last;) {
      std::vector<Entry> chunk;
      if (storage->entries(lo, last + 1, 16 << 20, &chunk) != StorageError::kOk || chunk.empty()) {
        fatal("storage: cannot read entries from %llu", (unsigned long long)lo);
      }
      for (const Entry& e : chunk) {
        if (e.type != EntryType::kConfChange) continue;
        const auto cc = decode_conf_change(e.data);
        if (!cc) fatal("undecodable membership change at index %llu", (unsigned long long)e.index);
        conf_history_.emplace_back(e.index, apply_conf_change(conf_history_.back().second, *cc));
      }
      lo += chunk.size();
    }
  }

  become_follower(hs.term, kNoNode);
  vote_ = hs.vote;
  if (!empty) {
    log_.set_committed_applied(hs.commit, config.applied);
  } else if (!config.peers.empty()) {
    // Bootstrap a new cluster: the founding membership as committed entries 1..n of term 1.
    std::vector<NodeId> peers = config.peers;
    std::sort(peers.begin(), peers.end());
    peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
    std::vector<Entry> ents;
    for (size_t i = 0; i < peers.size(); ++i) {
      ents.push_back(Entry{1, i + 1, EntryType::kConfChange,
                           encode_conf_change(ConfChange{ConfChangeType::kAddNode, peers[i], {}})});
    }
    become_follower(1, kNoNode);
    append_to_log(ents);
    log_.commit_to(ents.size());
  }
}

bool Raft::is_voter(NodeId id) const {
  const auto& v = conf_state().voters;
  return std::find(v.begin(), v.end(), id) != v.end();
}

bool Raft::promotable() const { return is_voter(id_); }

ConfState Raft::applied_conf_state() const {
  const uint64_t applied = log_.applied();
  for (auto it = conf_history_.rbegin(); it != conf_history_.rend(); ++it) {
    if (it->first <= applied) return it->second;
  }
  return conf_history_.front().second;
}

void Raft::applied_to(uint64_t index) {
  log_.applied_to(index);
  // Forget configurations no snapshot can ask for any more (keep the one in effect at applied).
  size_t keep = 0;
  while (keep + 1 < conf_history_.size() && conf_history_[keep + 1].first <= index) ++keep;
  if (keep > 0) conf_history_.erase(conf_history_.begin(), conf_history_.begin() + static_cast<std::ptrdiff_t>(keep));
}

// ---------------------------------------------------------------------------------------------
// Roles

void Raft::reset_randomized_election_timeout() {
  randomized_election_ticks_ =
      config_.election_ticks + static_cast<int>(next_random(&rng_state_) % config_.election_ticks);
}

void Raft::reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_randomized_election_timeout();
  abort_leader_transfer();
  votes_.clear();
  prs_.clear();
  read_requests_.clear();
  pending_read_index_.clear();
}

void Raft::become_follower(uint64_t term, NodeId lead) {
  reset(term);
  lead_ = lead;
  role_ = Role::kFollower;
}

void Raft::become_pre_candidate() {
  if (role_ == Role::kLeader) fatal("invalid transition leader -> pre-candidate");
  // Pre-vote changes neither term nor vote (thesis section 9.6).
  votes_.clear();
  lead_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void Raft::become_candidate() {
  if (role_ == Role::kLeader) fatal("invalid transition leader -> candidate");
  reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::become_leader() {
  if (role_ == Role::kFollower) fatal("invalid transition follower -> leader");
  reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  apply_membership();
  for (auto& [id, pr] : prs_) pr.recent_active = (id == id_);
  // A new leader appends an empty entry at once: committing it commits everything before it
  // (paper section 5.4.2 and section 8; thesis section 6.4 for reads).
  append_entries_as_leader({Entry{}});
}

void Raft::apply_membership() {
  if (role_ != Role::kLeader) return;
  const auto& voters = conf_state().voters;
  for (auto it = prs_.begin(); it != prs_.end();) {
    if (std::find(voters.begin(), voters.end(), it->first) == voters.end()) {
      it = prs_.erase(it);
    } else {
      ++it;
    }
  }
  for (NodeId v : voters) {
    if (prs_.count(v)) continue;
    Progress pr(config_.max_inflight);
    pr.next_index = log_.last_index() + 1;
    if (v == id_) pr.match_index = log_.stable_index();  // on_stable() moves it on
    pr.recent_active = true;  // a new member gets one check-quorum round to catch up
    prs_.emplace(v, std::move(pr));
  }
  if (lead_transferee_ != kNoNode && !prs_.count(lead_transferee_)) abort_leader_transfer();
}

// ---------------------------------------------------------------------------------------------
// Time

void Raft::tick() {
  if (role_ == Role::kLeader) {
    tick_heartbeat();
  } else {
    tick_election();
  }
}

void Raft::tick_election() {
  ++election_elapsed_;
  if (promotable() && past_election_timeout()) {
    election_elapsed_ = 0;
    Message m;
    m.type = MessageType::kHup;
    m.from = id_;
    step(std::move(m));
  }
}

void Raft::tick_heartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      Message m;
      m.type = MessageType::kCheckQuorum;
      m.from = id_;
      step(std::move(m));
    }
    // A transfer that did not finish within an election timeout is abandoned (thesis 3.10).
    if (role_ == Role::kLeader) abort_leader_transfer();
  }
  if (role_ != Role::kLeader) return;
  if (heartbeat_elapsed_ >= config_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    Message m;
    m.type = MessageType::kBeat;
    m.from = id_;
    step(std::move(m));
  }
}

// ---------------------------------------------------------------------------------------------
// Elections

void Raft::hup(bool transfer) {
  if (role_ == Role::kLeader || !promotable()) return;
  campaign(config_.pre_vote && !transfer, transfer);
}

void Raft::campaign(bool pre_vote, bool transfer) {
  uint64_t vote_term;
  MessageType type;
  if (pre_vote) {
    become_pre_candidate();
    type = MessageType::kPreVote;
    vote_term = term_ + 1;  // the term it would campaign in; its own term is unchanged
  } else {
    become_candidate();
    type = MessageType::kVote;
    vote_term = term_;
  }
  if (poll(id_, true) == VoteResult::kWon) {
    // Single voter: won already.
    if (pre_vote) {
      campaign(false, transfer);
    } else {
      become_leader();
    }
    return;
  }
  for (NodeId v : conf_state().voters) {
    if (v == id_) continue;
    Message m;
    m.type = type;
    m.to = v;
    m.term = vote_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    if (transfer) m.context = std::string(kCampaignTransfer);
    send(std::move(m));
  }
}

Raft::VoteResult Raft::poll(NodeId from, bool granted) {
  votes_.emplace(from, granted);  // the first answer from each voter counts
  size_t yes = 0, no = 0;
  for (NodeId v : conf_state().voters) {
    const auto it = votes_.find(v);
    if (it == votes_.end()) continue;
    (it->second ? yes : no)++;
  }
  if (yes >= quorum()) return VoteResult::kWon;
  if (no > conf_state().voters.size() - quorum()) return VoteResult::kLost;
  return VoteResult::kPending;
}

void Raft::handle_vote_request(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  // Figure 2, RequestVote receiver: grant at most one vote per term (votedFor), but repeat a
  // vote already given to the same candidate; a pre-vote for a future term binds nothing.
  const bool can_vote = vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) ||
                        (pre && m.term > term_);
  // ... and only to a candidate whose log is at least as up to date (paper section 5.4.1).
  if (can_vote && log_.is_up_to_date(m.index, m.log_term)) {
    Message resp;
    resp.type = pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
    resp.to = m.from;
    resp.term = m.term;  // a pre-vote grant carries the future term the candidate asked about
    send(std::move(resp));
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;  // persisted (Ready.hard_state) before the response is sent
    }
  } else {
    Message resp;
    resp.type = pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
    resp.to = m.from;
    resp.term = term_;
    resp.reject = true;
    send(std::move(resp));
  }
}

// ---------------------------------------------------------------------------------------------
// step

Error Raft::step(Message m) {
  if (m.term == 0) {
    // Local message, or a forwarded proposal/read (sent without a term).
  } else if (m.term > term_) {
    if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
      const bool force = m.context == kCampaignTransfer;
      // Leader stickiness (thesis section 4.2.3): while a follower hears from a live leader it
      // ignores vote requests, so a removed or partitioned server cannot depose it.
      const bool in_lease = config_.check_quorum && lead_ != kNoNode &&
                            election_elapsed_ < config_.election_ticks;
      if (!force && in_lease) return Error::kOk;
    }
    if (m.type == MessageType::kPreVote) {
      // Never change term for a pre-vote.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // A granted pre-vote carries the future term; ours stays until the real election.
    } else if (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnap) {
      // Figure 2, all servers: a higher term makes us a follower (of that leader).
      become_follower(m.term, m.from);
    } else {
      become_follower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if ((config_.check_quorum || config_.pre_vote) &&
        (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat)) {
      // A stale leader (e.g. one that was partitioned) learns our term and steps down. Without
      // this, a node with a higher term that cannot win pre-vote would never reach it.
      Message resp;
      resp.type = MessageType::kAppResp;
      resp.to = m.from;
      send(std::move(resp));
    } else if (m.type == MessageType::kPreVote) {
      Message resp;
      resp.type = MessageType::kPreVoteResp;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      send(std::move(resp));
    }
    // Figure 2: any other message from an older term is ignored.
    return Error::kOk;
  }

  switch (m.type) {
    case MessageType::kHup:
      hup(false);
      return Error::kOk;
    case MessageType::kVote:
    case MessageType::kPreVote:
      handle_vote_request(m);
      return Error::kOk;
    default:
      break;
  }
  switch (role_) {
    case Role::kLeader: return step_leader(m);
    case Role::kPreCandidate:
    case Role::kCandidate: return step_candidate(m);
    case Role::kFollower: return step_follower(m);
  }
  return Error::kOk;
}

Error Raft::step_leader(Message& m) {
  switch (m.type) {
    case MessageType::kBeat:
      broadcast_heartbeat({});
      return Error::kOk;
    case MessageType::kCheckQuorum:
      if (!quorum_active()) become_follower(term_, kNoNode);
      return Error::kOk;
    case MessageType::kProp:
      return handle_propose(m);
    case MessageType::kReadIndex:
      handle_read_index(m);
      return Error::kOk;
    default:
      break;
  }
  auto it = prs_.find(m.from);
  if (it == prs_.end()) return Error::kUnknownPeer;
  Progress& pr = it->second;
  switch (m.type) {
    case MessageType::kAppResp:
      handle_append_response(m, pr);
      break;
    case MessageType::kHeartbeatResp:
      handle_heartbeat_response(m, pr);
      break;
    case MessageType::kSnapStatus:
      if (pr.state != Progress::State::kSnapshot) break;
      if (m.reject) pr.pending_snapshot = 0;
      pr.become_probe();
      // Wait for the follower's next heartbeat response before probing again.
      pr.probe_sent = true;
      break;
    case MessageType::kUnreachable:
      if (pr.state == Progress::State::kReplicate) pr.become_probe();
      break;
    case MessageType::kTransferLeader: {
      const NodeId target = m.from;
      if (target == id_ || target == lead_transferee_) break;
      abort_leader_transfer();
      // Thesis section 3.10: stop accepting proposals, bring the target up to date, then tell
      // it to campaign at once. Abandoned after an election timeout (tick_heartbeat).
      lead_transferee_ = target;
      election_elapsed_ = 0;
      if (pr.match_index == log_.last_index()) {
        send_timeout_now(target);
      } else {
        maybe_send_append(target, true);
      }
      break;
    }
    default:
      break;
  }
  return Error::kOk;
}

Error Raft::handle_propose(Message& m) {
  if (m.entries.empty()) fatal("empty proposal");
  if (!is_voter(id_)) return Error::kNotMember;  // removed itself; stepping down on commit
  if (lead_transferee_ != kNoNode) return Error::kLeaderTransferring;
  for (const Entry& e : m.entries) {
    if (e.type != EntryType::kConfChange) continue;
    // One membership change at a time (thesis section 4.1): the previous one must be applied.
    if (conf_history_.size() > 1 && conf_history_.back().first > log_.applied()) {
      return Error::kConfChangePending;
    }
    // A new leader must commit an entry of its own term before changing membership, or a
    // change from an older term could be lost while this one commits (the single-server
    // membership bug, raft-dev 2015; thesis section 4.1 as corrected).
    if (!committed_entry_in_current_term()) return Error::kConfChangeTooEarly;
  }
  size_t conf_changes = 0;
  for (const Entry& e : m.entries) conf_changes += e.type == EntryType::kConfChange;
  if (conf_changes > 1) return Error::kConfChangePending;
  append_entries_as_leader(std::move(m.entries));
  broadcast_append();
  return Error::kOk;
}

void Raft::handle_append_response(const Message& m, Progress& pr) {
  pr.recent_active = true;
  if (m.reject) {
    // Fast back-off (thesis section 5.3 "optimization"): the follower hints the last index at
    // or below ours whose term is <= our term there; skip the whole conflicting term at once.
    uint64_t next_probe = m.reject_hint;
    if (m.log_term > 0) next_probe = log_.find_conflict_by_term(m.reject_hint, m.log_term).first;
    if (pr.maybe_decrease_to(m.index, next_probe)) {
      if (pr.state == Progress::State::kReplicate) pr.become_probe();
      maybe_send_append(m.from, true);
    }
    return;
  }
  const bool was_paused = pr.is_paused();
  if (!pr.maybe_update(m.index)) {
    if (was_paused && !pr.is_paused()) maybe_send_append(m.from, false);
    return;
  }
  switch (pr.state) {
    case Progress::State::kProbe:
      pr.become_replicate();
      break;
    case Progress::State::kSnapshot:
      if (pr.match_index + 1 >= log_.first_index()) {
        pr.become_probe();
        pr.become_replicate();
      }
      break;
    case Progress::State::kReplicate:
      pr.inflights.free_le(m.index);
      break;
  }
  const NodeId from = m.from;
  if (maybe_commit()) {
    on_commit_advanced();
    if (role_ != Role::kLeader) return;
    broadcast_append();
  } else if (was_paused) {
    maybe_send_append(from, true);
  }
  // Keep the pipeline full.
  auto it = prs_.find(from);
  if (it == prs_.end()) return;
  for (int i = 0; i < 1024 && maybe_send_append(from, false); ++i) {
  }
  if (from == lead_transferee_ && it->second.match_index == log_.last_index()) {
    send_timeout_now(from);
  }
}

void Raft::handle_heartbeat_response(const Message& m, Progress& pr) {
  pr.recent_active = true;
  pr.probe_sent = false;
  if (pr.state == Progress::State::kReplicate && pr.inflights.full()) pr.inflights.free_first_one();
  if (pr.match_index < log_.last_index()) maybe_send_append(m.from, true);
  if (m.context.empty()) return;
  // ReadIndex (thesis section 6.4): a heartbeat round acknowledged by a quorum proves this node
  // was still leader when the read arrived.
  for (auto& req : read_requests_) {
    if (req.context != m.context) continue;
    if (std::find(req.acks.begin(), req.acks.end(), m.from) == req.acks.end()) {
      req.acks.push_back(m.from);
    }
    size_t voters_acked = 0;
    for (NodeId a : req.acks) voters_acked += is_voter(a);
    if (voters_acked >= quorum()) release_read_requests(m.context);
    return;
  }
}

void Raft::release_read_requests(const std::string& context) {
  // Requests are confirmed in order: a quorum for a later one confirms every earlier one too.
  while (!read_requests_.empty()) {
    ReadRequest req = std::move(read_requests_.front());
    read_requests_.pop_front();
    answer_read(req);
    if (req.context == context) return;
  }
}

void Raft::answer_read(const ReadRequest& req) {
  if (req.from == id_ || req.from == kNoNode) {
    read_states_.push_back(ReadState{req.index, req.context});
    return;
  }
  Message resp;
  resp.type = MessageType::kReadIndexResp;
  resp.to = req.from;
  resp.index = req.index;
  resp.entries.push_back(Entry{0, 0, EntryType::kNormal, req.context});
  send(std::move(resp));
}

void Raft::handle_read_index(const Message& m) {
  if (m.entries.empty()) return;
  if (!committed_entry_in_current_term()) {
    // The commit index is only known to be current once an entry of this term is committed
    // (thesis section 6.4 step 1); hold the request until then.
    pending_read_index_.push_back(m);
    return;
  }
  ReadRequest req{log_.committed(), m.from == kNoNode ? id_ : m.from, m.entries[0].data, {}};
  if (is_voter(id_)) req.acks.push_back(id_);
  size_t voters_acked = req.acks.size();
  read_requests_.push_back(std::move(req));
  if (voters_acked >= quorum()) {
    release_read_requests(m.entries[0].data);
    return;
  }
  broadcast_heartbeat(m.entries[0].data);
}

Error Raft::step_candidate(Message& m) {
  switch (m.type) {
    case MessageType::kProp:
    case MessageType::kReadIndex:
      return Error::kNoLeader;
    case MessageType::kApp:
      become_follower(m.term, m.from);
      handle_append_entries(m);
      break;
    case MessageType::kHeartbeat:
      become_follower(m.term, m.from);
      handle_heartbeat(m);
      break;
    case MessageType::kSnap:
      become_follower(m.term, m.from);
      handle_snapshot(m);
      break;
    case MessageType::kVoteResp:
    case MessageType::kPreVoteResp: {
      const bool pre = role_ == Role::kPreCandidate;
      if ((m.type == MessageType::kPreVoteResp) != pre) break;  // from an earlier round
      switch (poll(m.from, !m.reject)) {
        case VoteResult::kWon:
          if (pre) {
            campaign(false, false);
          } else {
            become_leader();
            broadcast_append();
          }
          break;
        case VoteResult::kLost:
          become_follower(term_, kNoNode);
          break;
        case VoteResult::kPending:
          break;
      }
      break;
    }
    default:
      break;
  }
  return Error::kOk;
}

Error Raft::step_follower(Message& m) {
  switch (m.type) {
    case MessageType::kProp:
      if (lead_ == kNoNode) return Error::kNoLeader;
      m.to = lead_;
      send(std::move(m));
      return Error::kOk;
    case MessageType::kApp:
      election_elapsed_ = 0;
      lead_ = m.from;
      handle_append_entries(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      handle_heartbeat(m);
      break;
    case MessageType::kSnap:
      election_elapsed_ = 0;
      lead_ = m.from;
      handle_snapshot(m);
      break;
    case MessageType::kTransferLeader:
      if (lead_ == kNoNode) return Error::kNoLeader;
      m.to = lead_;
      send(std::move(m));
      break;
    case MessageType::kTimeoutNow:
      // The leader chose us (thesis section 3.10): campaign now, skipping pre-vote, and let
      // voters ignore their lease.
      hup(true);
      break;
    case MessageType::kReadIndex:
      if (lead_ == kNoNode) return Error::kNoLeader;
      m.to = lead_;
      send(std::move(m));
      break;
    case MessageType::kReadIndexResp:
      if (m.entries.size() != 1) break;
      read_states_.push_back(ReadState{m.index, m.entries[0].data});
      break;
    default:
      break;
  }
  return Error::kOk;
}

// ---------------------------------------------------------------------------------------------
// Follower side of replication

void Raft::handle_append_entries(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  if (m.index < log_.committed()) {
    // Already committed here: tell the leader where we are.
    resp.index = log_.committed();
    send(std::move(resp));
    return;
  }
  // Figure 2, AppendEntries receiver rule 2: reject unless the log has prevLogIndex with
  // prevLogTerm (this is what makes Log Matching hold by induction, paper section 5.3).
  if (!log_.match_term(m.index, m.log_term)) {
    const uint64_t hint_index = std::min(m.index, log_.last_index());
    const auto [idx, t] = log_.find_conflict_by_term(hint_index, m.log_term);
    resp.index = m.index;
    resp.reject = true;
    resp.reject_hint = idx;
    resp.log_term = t;
    send(std::move(resp));
    return;
  }
  // Rules 3 and 4: delete a conflicting suffix and append what is new; never truncate entries
  // that match (a delayed append must not undo a newer one).
  const uint64_t last_new = m.index + m.entries.size();
  const uint64_t conflict = log_.find_conflict(m.entries);
  if (conflict != 0) {
    if (conflict <= log_.committed()) {
      fatal("entry %llu conflicts with a committed entry (committed %llu)",
            (unsigned long long)conflict, (unsigned long long)log_.committed());
    }
    std::vector<Entry> tail(m.entries.begin() + static_cast<std::ptrdiff_t>(conflict - (m.index + 1)),
                            m.entries.end());
    append_to_log(tail);
  }
  // Rule 5: commit = min(leaderCommit, index of last new entry).
  log_.commit_to(std::min(m.commit, last_new));
  resp.index = last_new;
  send(std::move(resp));
}

void Raft::handle_heartbeat(const Message& m) {
  // The leader sends min(commit, our match index), so this never exceeds our log.
  log_.commit_to(m.commit);
  Message resp;
  resp.type = MessageType::kHeartbeatResp;
  resp.to = m.from;
  resp.context = m.context;
  send(std::move(resp));
}

void Raft::handle_snapshot(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  if (m.snapshot && restore(*m.snapshot)) {
    resp.index = log_.last_index();
  } else {
    resp.index = log_.committed();
  }
  send(std::move(resp));
}

bool Raft::restore(const Snapshot& snap) {
  const uint64_t index = snap.metadata.index;
  if (index <= log_.committed()) return false;
  if (log_.match_term(index, snap.metadata.term)) {
    // Our log already has the snapshot's last entry: just learn that it is committed.
    log_.commit_to(index);
    return false;
  }
  log_.restore(snap);
  conf_history_.clear();
  conf_history_.emplace_back(index, snap.metadata.conf_state);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Leader side of replication

void Raft::append_entries_as_leader(std::vector<Entry> entries) {
  uint64_t index = log_.last_index();
  for (Entry& e : entries) {
    e.term = term_;
    e.index = ++index;
  }
  append_to_log(entries);
  // Its own copy counts once persisted (on_stable), which a crash cannot undo: counted now, a
  // leader that crashes before its fsync would have "committed" an entry that only a minority
  // holds. Nothing is lost by waiting: the host applies only persisted entries anyway.
}

void Raft::on_stable() {
  if (role_ != Role::kLeader) return;
  auto it = prs_.find(id_);
  if (it == prs_.end()) return;
  it->second.maybe_update(log_.stable_index());
  if (!maybe_commit()) return;
  on_commit_advanced();
  // The followers learn the new commit index at once, as when an acknowledgement commits (a
  // write proposed through a follower is answered there only then).
  if (role_ == Role::kLeader) broadcast_append();
}

void Raft::append_to_log(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const uint64_t first = entries.front().index;
  log_.append(entries);
  bool changed = false;
  while (conf_history_.size() > 1 && conf_history_.back().first >= first) {
    conf_history_.pop_back();  // undone by truncation
    changed = true;
  }
  for (const Entry& e : entries) {
    if (e.type != EntryType::kConfChange) continue;
    const auto cc = decode_conf_change(e.data);
    if (!cc) fatal("undecodable membership change at index %llu", (unsigned long long)e.index);
    conf_history_.emplace_back(e.index, apply_conf_change(conf_state(), *cc));
    changed = true;
  }
  if (changed) apply_membership();
}

bool Raft::maybe_commit() {
  // Figure 2, leader rule 4: the largest N replicated on a majority, if log[N].term == term.
  std::vector<uint64_t> matched;
  for (NodeId v : conf_state().voters) {
    auto it = prs_.find(v);
    matched.push_back(it == prs_.end() ? 0 : it->second.match_index);
  }
  if (matched.empty()) return false;
  std::sort(matched.begin(), matched.end(), std::greater<>());
  const uint64_t n = matched[quorum() - 1];
  return log_.maybe_commit(n, term_);
}

bool Raft::committed_entry_in_current_term() const {
  return log_.term_or_zero(log_.committed()) == term_;
}

void Raft::on_commit_advanced() {
  if (role_ != Role::kLeader) return;
  if (committed_entry_in_current_term() && !pending_read_index_.empty()) {
    std::vector<Message> pending;
    pending.swap(pending_read_index_);
    for (const Message& m : pending) handle_read_index(m);
  }
  // A leader that removed itself steps down once that change is committed (thesis 4.2.2),
  // after telling the others the new commit index.
  if (!is_voter(id_) && log_.committed() >= conf_history_.back().first) {
    broadcast_append();
    become_follower(term_, kNoNode);
  }
}

bool Raft::quorum_active() {
  size_t active = 0;
  for (auto& [id, pr] : prs_) {
    if (id == id_ || pr.recent_active) ++active;
    if (id != id_) pr.recent_active = false;
  }
  return active >= quorum();
}

void Raft::send(Message m) {
  // Forwarded messages keep their origin (a transfer request names its target in `from`).
  if (m.from == kNoNode) m.from = id_;
  const bool keeps_term = m.type == MessageType::kVote || m.type == MessageType::kPreVote ||
                          m.type == MessageType::kVoteResp || m.type == MessageType::kPreVoteResp;
  if (keeps_term) {
    if (m.term == 0) fatal("vote message without a term");
  } else if (m.type != MessageType::kProp && m.type != MessageType::kReadIndex &&
             m.type != MessageType::kTransferLeader) {
    m.term = term_;
  }
  msgs_.push_back(std::move(m));
}

bool Raft::maybe_send_append(NodeId to, bool send_if_empty) {
  auto it = prs_.find(to);
  if (it == prs_.end() || to == id_) return false;
  Progress& pr = it->second;
  if (pr.is_paused()) return false;
  Message m;
  m.to = to;
  uint64_t prev_term = 0;
  const StorageError terr = log_.term(pr.next_index - 1, &prev_term);
  std::vector<Entry> ents;
  StorageError eerr = StorageError::kOk;
  if (terr == StorageError::kOk) {
    eerr = log_.slice(pr.next_index, log_.last_index() + 1, config_.max_size_per_msg, &ents);
  }
  if (terr != StorageError::kOk || eerr != StorageError::kOk) {
    // The entries it needs are compacted: send the snapshot (metadata; the host streams data).
    if (!pr.recent_active) return false;
    Snapshot snap;
    if (log_.snapshot(&snap) != StorageError::kOk || snap.empty()) return false;
    m.type = MessageType::kSnap;
    pr.become_snapshot(snap.metadata.index);
    m.snapshot = std::move(snap);
    send(std::move(m));
    return true;
  }
  if (ents.empty() && !send_if_empty) return false;
  m.type = MessageType::kApp;
  m.index = pr.next_index - 1;
  m.log_term = prev_term;
  m.commit = log_.committed();
  if (!ents.empty()) {
    const uint64_t last = ents.back().index;
    if (pr.state == Progress::State::kReplicate) {
      pr.optimistic_update(last);
      pr.inflights.add(last);
    }
  }
  if (pr.state == Progress::State::kProbe) pr.probe_sent = true;
  m.entries = std::move(ents);
  send(std::move(m));
  return true;
}

void Raft::send_heartbeat(NodeId to, const std::string& context) {
  auto it = prs_.find(to);
  if (it == prs_.end()) return;
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  // Only up to what the follower is known to hold, so it never commits past its log.
  m.commit = std::min(it->second.match_index, log_.committed());
  m.context = context;
  send(std::move(m));
}

void Raft::broadcast_append() {
  for (auto& [id, pr] : prs_) {
    if (id != id_) maybe_send_append(id, true);
  }
}

void Raft::broadcast_heartbeat(const std::string& context) {
  std::string ctx = context;
  if (ctx.empty() && !read_requests_.empty()) ctx = read_requests_.back().context;
  for (auto& [id, pr] : prs_) {
    if (id != id_) send_heartbeat(id, ctx);
  }
}

void Raft::send_timeout_now(NodeId to) {
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  send(std::move(m));
}

}  // namespace kvd::raft
