// One test per rule of the Raft paper's Figure 2 ("In Search of an Understandable Consensus
// Algorithm", Ongaro & Ousterhout 2014), and the scenarios of its Figures 7 and 8. Each test
// names what it proves and cites its section.
#include <gtest/gtest.h>

#include <set>

#include "tests/unit/raft/raft_test_util.h"

namespace kvd::raft {
namespace {

using testing::append_msg;
using testing::Cluster;
using testing::ClusterTest;
using testing::entries_with_terms;
using testing::log_terms;
using testing::make_config;
using testing::msg;
using testing::of_type;
using testing::storage_with;
using testing::take_messages;

// Tests that build a Cluster (cluster_) get its invariants checked at teardown.
class RaftPaperTest : public ClusterTest {};

// Drives r (a follower or candidate) to leadership with votes from every other voter.
void make_leader(Raft& r) {
  Message hup;
  hup.type = MessageType::kHup;
  (void)r.step(hup);
  ASSERT_EQ(r.role(), Role::kCandidate);
  for (NodeId v : r.conf_state().voters) {
    if (v == r.id() || r.role() == Role::kLeader) continue;
    (void)r.step(msg(MessageType::kVoteResp, v, r.id(), r.term()));
  }
  ASSERT_EQ(r.role(), Role::kLeader);
}

// Node ids 1..n.
std::vector<NodeId> ids_up_to(size_t n) {
  std::vector<NodeId> ids;
  for (NodeId id = 1; id <= n; ++id) ids.push_back(id);
  return ids;
}

// Makes r leader: a lone voter by its own election, others by make_leader.
void lead(Raft& r) {
  if (r.conf_state().voters.size() == 1) {
    Message hup;
    hup.type = MessageType::kHup;
    (void)r.step(hup);
  } else {
    make_leader(r);
  }
  ASSERT_EQ(r.role(), Role::kLeader);
}

// What the host does with a Ready's entries (RawNode: persist, then advance): writes r's
// unstable entries to s and tells r, which then counts its own copy (Raft::on_stable).
void persist(Raft& r, MemoryStorage& s) {
  const std::vector<Entry> ents = r.log().unstable_entries();
  if (ents.empty()) return;
  s.append(ents);
  r.mutable_log().stable_to(ents.back().index, ents.back().term);
  r.on_stable();
}

Message app_resp(NodeId from, NodeId to, uint64_t term, uint64_t index) {
  Message m = msg(MessageType::kAppResp, from, to, term);
  m.index = index;
  return m;
}

Message vote_req(NodeId from, NodeId to, uint64_t term, uint64_t last_index, uint64_t last_term) {
  Message m = msg(MessageType::kVote, from, to, term);
  m.index = last_index;
  m.log_term = last_term;
  return m;
}

bool granted(const std::vector<Message>& out, NodeId to) {
  for (const Message& m : of_type(out, MessageType::kVoteResp)) {
    if (m.to == to && !m.reject) return true;
  }
  return false;
}

// ---- Figure 2, "Rules for Servers", all servers --------------------------------------------

// Section 5.1: "If RPC request or response contains term T > currentTerm: set currentTerm = T,
// convert to follower" -- from every role.
TEST_F(RaftPaperTest, higherTermInAnyMessageMakesEveryRoleFollowerOfThatTerm) {
  for (Role start : {Role::kFollower, Role::kCandidate, Role::kLeader}) {
    auto s = storage_with({1, 2, 3}, {});
    Raft r(make_config(1), s.get());
    if (start == Role::kCandidate) {
      Message hup;
      hup.type = MessageType::kHup;
      (void)r.step(hup);
    } else if (start == Role::kLeader) {
      make_leader(r);
    }
    ASSERT_EQ(r.role(), start);
    const uint64_t higher = r.term() + 5;
    (void)r.step(append_msg(2, 1, higher, 0, 0, {}, 0));
    EXPECT_EQ(r.role(), Role::kFollower) << to_string(start);
    EXPECT_EQ(r.term(), higher) << to_string(start);
    EXPECT_EQ(r.lead(), 2u) << to_string(start);
    EXPECT_EQ(r.vote(), kNoNode) << "a new term starts with no vote";
  }
}

// Section 5.1: a request with a stale term is rejected; here the stale leader's entries must not
// reach the log.
TEST_F(RaftPaperTest, staleTermAppendIsIgnoredAndLeavesLogUnchanged) {
  auto s = storage_with({1, 2, 3}, {1, 2}, 3);
  Raft r(make_config(1), s.get());
  (void)r.step(append_msg(2, 1, 2, 2, 2, entries_with_terms({2}, 3), 2));
  EXPECT_EQ(log_terms(r), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(r.term(), 3u);
  EXPECT_EQ(r.log().committed(), 0u);
  EXPECT_TRUE(of_type(take_messages(r), MessageType::kAppResp).empty());
}

// Section 5.1 with check-quorum: the stale leader is told the newer term so it steps down (it
// could otherwise never learn it when pre-vote keeps the others from campaigning).
TEST_F(RaftPaperTest, staleLeaderIsToldTheNewerTerm_checkQuorum) {
  auto s = storage_with({1, 2, 3}, {1}, 3);
  Raft r(make_config(1, false, true), s.get());
  (void)r.step(append_msg(2, 1, 2, 1, 1, {}, 1));
  const auto resps = of_type(take_messages(r), MessageType::kAppResp);
  ASSERT_EQ(resps.size(), 1u);
  EXPECT_EQ(resps[0].to, 2u);
  EXPECT_EQ(resps[0].term, 3u);
}

// Figure 2: "If commitIndex > lastApplied: increment lastApplied, apply log[lastApplied]" -- the
// host receives every committed entry exactly once, in index order, and none beyond commit.
TEST_F(RaftPaperTest, committedEntriesAreAppliedOnceInLogOrder) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(c.node(1).propose("v" + std::to_string(i)), Error::kOk);
    c.stabilize();
  }
  for (NodeId id : c.ids()) {
    const auto& applied = c.peer(id).applied;
    ASSERT_FALSE(applied.empty());
    for (size_t i = 0; i < applied.size(); ++i) EXPECT_EQ(applied[i].index, i + 1) << "node " << id;
    EXPECT_EQ(applied.back().data, "v4");
    EXPECT_EQ(applied.back().index, c.raft(id).log().committed());
  }
}

// ---- Followers --------------------------------------------------------------------------

// Section 5.2: a follower that hears nothing for an election timeout becomes candidate: new
// term, votes for itself, asks every other server for its vote with its last log position.
TEST_F(RaftPaperTest, followerWithoutLeaderStartsElectionAfterTimeout) {
  auto s = storage_with({1, 2, 3}, {1, 1}, 1);
  Raft r(make_config(1), s.get());
  for (int i = 0; i < 2 * 10 && r.role() == Role::kFollower; ++i) r.tick();
  EXPECT_EQ(r.role(), Role::kCandidate);
  EXPECT_EQ(r.term(), 2u);
  EXPECT_EQ(r.vote(), 1u);
  const auto votes = of_type(take_messages(r), MessageType::kVote);
  ASSERT_EQ(votes.size(), 2u);
  std::set<NodeId> to;
  for (const Message& m : votes) {
    to.insert(m.to);
    EXPECT_EQ(m.term, 2u);
    EXPECT_EQ(m.index, 2u);
    EXPECT_EQ(m.log_term, 1u);
  }
  EXPECT_EQ(to, (std::set<NodeId>{2, 3}));
}

// Section 5.2: election timeouts are chosen randomly from a fixed interval ([T, 2T) here) so
// that split votes are rare; different nodes draw different values.
TEST_F(RaftPaperTest, electionTimeoutIsRandomizedBetweenOneAndTwoTimeouts) {
  std::set<int> seen;
  for (NodeId id = 1; id <= 50; ++id) {
    auto s = storage_with({id}, {});
    Raft r(make_config(id), s.get());
    EXPECT_GE(r.randomized_election_ticks(), 10);
    EXPECT_LT(r.randomized_election_ticks(), 20);
    seen.insert(r.randomized_election_ticks());
  }
  EXPECT_GE(seen.size(), 5u);
}

// Section 5.2: followers stay followers as long as they receive valid RPCs from a leader.
TEST_F(RaftPaperTest, leaderHeartbeatsKeepFollowerFromCampaigning) {
  auto s = storage_with({1, 2, 3}, {1}, 1);
  Raft r(make_config(1), s.get());
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 9; ++i) r.tick();  // below the smallest randomized timeout
    Message hb = msg(MessageType::kHeartbeat, 2, 1, 1);
    (void)r.step(hb);
  }
  EXPECT_EQ(r.role(), Role::kFollower);
  EXPECT_EQ(r.term(), 1u);
  EXPECT_EQ(r.lead(), 2u);
}

// ---- Candidates ---------------------------------------------------------------------------

// Section 5.2: a candidate wins with votes from a majority, loses with a majority of refusals,
// and otherwise keeps waiting.
TEST_F(RaftPaperTest, candidateWinsOnlyWithMajorityOfVotes) {
  struct Case {
    size_t size;
    std::vector<bool> answers;  // from nodes 2, 3, ...
    Role want;
  };
  const std::vector<Case> cases = {
      {1, {}, Role::kLeader},
      {3, {true}, Role::kLeader},
      {3, {false}, Role::kCandidate},
      {3, {false, false}, Role::kFollower},
      {5, {true}, Role::kCandidate},
      {5, {true, true}, Role::kLeader},
      {5, {false, false}, Role::kCandidate},
      {5, {false, false, false}, Role::kFollower},
      {5, {true, false, false, true}, Role::kLeader},
  };
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& tc = cases[ci];
    std::vector<NodeId> voters;
    for (NodeId id = 1; id <= tc.size; ++id) voters.push_back(id);
    auto s = storage_with(voters, {});
    Raft r(make_config(1), s.get());
    Message hup;
    hup.type = MessageType::kHup;
    (void)r.step(hup);
    for (size_t i = 0; i < tc.answers.size(); ++i) {
      Message resp = msg(MessageType::kVoteResp, static_cast<NodeId>(i + 2), 1, r.term());
      resp.reject = !tc.answers[i];
      (void)r.step(resp);
    }
    EXPECT_EQ(r.role(), tc.want) << "case " << ci;
  }
}

// Section 5.2: a candidate that hears from a leader of its own term accepts it and steps down.
TEST_F(RaftPaperTest, candidateReturnsToFollowerOnAppendFromLeaderOfSameTerm) {
  auto s = storage_with({1, 2, 3}, {});
  Raft r(make_config(1), s.get());
  Message hup;
  hup.type = MessageType::kHup;
  (void)r.step(hup);
  ASSERT_EQ(r.role(), Role::kCandidate);
  (void)r.step(append_msg(2, 1, r.term(), 0, 0, {}, 0));
  EXPECT_EQ(r.role(), Role::kFollower);
  EXPECT_EQ(r.lead(), 2u);
  EXPECT_EQ(r.term(), 1u);
}

// Section 5.2: "If election timeout elapses: start new election" (split vote).
TEST_F(RaftPaperTest, candidateStartsNewElectionInNextTermAfterSplitVote) {
  auto s = storage_with({1, 2, 3}, {});
  Raft r(make_config(1), s.get());
  Message hup;
  hup.type = MessageType::kHup;
  (void)r.step(hup);
  ASSERT_EQ(r.term(), 1u);
  (void)take_messages(r);
  for (int i = 0; i < 20 && r.term() == 1; ++i) r.tick();
  EXPECT_EQ(r.role(), Role::kCandidate);
  EXPECT_EQ(r.term(), 2u);
  EXPECT_EQ(of_type(take_messages(r), MessageType::kVote).size(), 2u);
}

// ---- Leaders --------------------------------------------------------------------------------

// Section 5.2 and 8: upon election a leader appends an empty entry of its term and sends
// AppendEntries to every server; when idle it repeats heartbeats every heartbeat interval.
TEST_F(RaftPaperTest, newLeaderAppendsEmptyEntryAndSendsAppendToEveryFollower) {
  auto s = storage_with({1, 2, 3}, {1}, 1);
  Raft r(make_config(1), s.get());
  make_leader(r);
  EXPECT_EQ(r.log().last_index(), 2u);
  EXPECT_EQ(r.log().term_or_zero(2), r.term());
  const auto apps = of_type(take_messages(r), MessageType::kApp);
  std::set<NodeId> to;
  for (const Message& m : apps) {
    to.insert(m.to);
    EXPECT_EQ(m.index, 1u);
    ASSERT_EQ(m.entries.size(), 1u);
    EXPECT_TRUE(m.entries[0].data.empty());
  }
  EXPECT_EQ(to, (std::set<NodeId>{2, 3}));
}

TEST_F(RaftPaperTest, idleLeaderSendsHeartbeatEveryHeartbeatInterval) {
  auto s = storage_with({1, 2, 3}, {});
  Raft r(make_config(1), s.get());
  make_leader(r);
  (void)take_messages(r);
  for (int i = 0; i < 3; ++i) {
    r.tick();  // heartbeat_ticks == 1
    const auto hbs = of_type(take_messages(r), MessageType::kHeartbeat);
    EXPECT_EQ(hbs.size(), 2u) << "tick " << i;
    for (const Message& m : hbs) EXPECT_EQ(m.term, r.term());
  }
}

// Section 5.3: a client command is appended to the leader's log in its term, then sent to
// followers in AppendEntries carrying the preceding entry's index and term.
TEST_F(RaftPaperTest, leaderAppendsProposalToItsLogAndReplicatesIt) {
  auto s = storage_with({1, 2, 3}, {});
  Raft r(make_config(1), s.get());
  make_leader(r);
  (void)r.step(app_resp(2, 1, r.term(), 1));
  (void)take_messages(r);
  Message prop = msg(MessageType::kProp, 1, 0, 0);
  prop.entries.push_back(Entry{0, 0, EntryType::kNormal, "x"});
  ASSERT_EQ(r.step(prop), Error::kOk);
  EXPECT_EQ(r.log().last_index(), 2u);
  EXPECT_EQ(r.log().term_or_zero(2), r.term());
  const auto apps = of_type(take_messages(r), MessageType::kApp);
  bool sent = false;
  for (const Message& m : apps) {
    if (m.to != 2) continue;
    sent = true;
    EXPECT_EQ(m.index, 1u);
    EXPECT_EQ(m.log_term, r.term());
    ASSERT_EQ(m.entries.size(), 1u);
    EXPECT_EQ(m.entries[0].data, "x");
  }
  EXPECT_TRUE(sent) << "the replicating follower gets the entry at once";
}

// Section 5.3: an entry is committed once a majority stores it; the commit index then advances.
TEST_F(RaftPaperTest, leaderCommitsEntryOnceReplicatedOnMajority) {
  struct Case {
    size_t size;
    size_t acks;  // followers acknowledging the new entry
    bool committed;
  };
  for (const Case tc : {Case{1, 0, true}, Case{3, 0, false}, Case{3, 1, true}, Case{5, 1, false},
                        Case{5, 2, true}, Case{5, 4, true}}) {
    auto s = storage_with(ids_up_to(tc.size), {});
    Raft r(make_config(1), s.get());
    lead(r);
    persist(r, *s);
    const uint64_t last = r.log().last_index();
    for (size_t i = 0; i < tc.acks; ++i) (void)r.step(app_resp(static_cast<NodeId>(i + 2), 1, r.term(), last));
    EXPECT_EQ(r.log().committed() == last, tc.committed) << tc.size << " nodes, " << tc.acks << " acks";
  }
}

// Thesis section 10.2.1: the leader writes its log in parallel with the followers, and its own
// copy counts towards a majority only once written. Counted before, a leader that crashed
// before its write would have committed an entry that only a minority holds (the simulator
// found that schedule once the leader's appends left before its fsync, as the member sends them).
TEST_F(RaftPaperTest, leaderCountsItsOwnEntryOnlyOncePersisted) {
  for (const size_t size : {1, 3, 5}) {
    auto s = storage_with(ids_up_to(size), {});
    Raft r(make_config(1), s.get());
    lead(r);
    const uint64_t last = r.log().last_index();
    // Every follower acknowledges: a majority without the leader (none for a lone leader).
    for (NodeId f = 2; f <= size; ++f) (void)r.step(app_resp(f, 1, r.term(), last));
    if (size == 1) {
      EXPECT_LT(r.log().committed(), last) << "a lone leader commits only what it has written";
    } else {
      EXPECT_EQ(r.log().committed(), last) << size << " nodes: the followers alone are a majority";
    }
    persist(r, *s);
    EXPECT_EQ(r.log().committed(), last) << size << " nodes, after the leader's write";
  }
  // Three members, one follower's acknowledgement: a majority only with the leader's write.
  auto s = storage_with({1, 2, 3}, {});
  Raft r(make_config(1), s.get());
  make_leader(r);
  const uint64_t last = r.log().last_index();
  (void)r.step(app_resp(2, 1, r.term(), last));
  EXPECT_LT(r.log().committed(), last) << "one follower and an unwritten leader copy: a minority";
  (void)take_messages(r);
  persist(r, *s);
  EXPECT_EQ(r.log().committed(), last);
  // ... and the follower that answered hears of the new commit index at once, not at the next
  // heartbeat (3 is still being probed: its one unanswered append holds further ones back).
  std::set<NodeId> told;
  for (const Message& m : take_messages(r)) {
    if (m.type == MessageType::kApp && m.commit == last) told.insert(m.to);
  }
  EXPECT_EQ(told, (std::set<NodeId>{2}));
}

// Section 5.3: after a rejection the leader retries with an earlier nextIndex until the logs
// match, then the follower's log becomes identical to the leader's.
TEST_F(RaftPaperTest, leaderBacksOffNextIndexUntilFollowerLogMatches) {
  cluster_ = std::make_unique<Cluster>();
  Cluster& c = *cluster_;
  c.add(make_config(1), storage_with({1, 2, 3}, {1, 1, 2, 2, 3}, 3));
  c.add(make_config(2), storage_with({1, 2, 3}, {1, 1, 2, 2}, 3));
  c.add(make_config(3), storage_with({1, 2, 3}, {1, 1, 1, 1, 1, 1, 1}, 3));
  c.elect(1);
  ASSERT_EQ(c.leader(), 1u);
  for (NodeId id : {2, 3}) EXPECT_EQ(log_terms(c.raft(id)), log_terms(c.raft(1))) << "node " << id;
  EXPECT_EQ(c.raft(3).log().committed(), 6u);
}

// ---- Figure 2, RequestVote receiver ------------------------------------------------------

// Rule 1: "Reply false if term < currentTerm".
TEST_F(RaftPaperTest, voteIsNotGrantedForStaleTerm) {
  auto s = storage_with({1, 2, 3}, {}, 5);
  Raft r(make_config(1), s.get());
  (void)r.step(vote_req(2, 1, 4, 10, 4));
  EXPECT_FALSE(granted(take_messages(r), 2));
  EXPECT_EQ(r.vote(), kNoNode);
}

// Rule 2 (votedFor): at most one vote per term, repeated to the same candidate on retry.
TEST_F(RaftPaperTest, atMostOneVoteIsGrantedPerTerm) {
  auto s = storage_with({1, 2, 3}, {});
  Raft r(make_config(1), s.get());
  (void)r.step(vote_req(2, 1, 1, 0, 0));
  EXPECT_TRUE(granted(take_messages(r), 2));
  EXPECT_EQ(r.vote(), 2u);
  (void)r.step(vote_req(3, 1, 1, 0, 0));
  EXPECT_FALSE(granted(take_messages(r), 3)) << "second candidate in the same term";
  (void)r.step(vote_req(2, 1, 1, 0, 0));
  EXPECT_TRUE(granted(take_messages(r), 2)) << "a duplicate request gets the same answer";
  (void)r.step(vote_req(3, 1, 2, 0, 0));
  EXPECT_TRUE(granted(take_messages(r), 3)) << "a new term frees the vote";
}

// Rule 2 (up to date), section 5.4.1: compare last terms, then lengths.
TEST_F(RaftPaperTest, voteIsGrantedOnlyToCandidateWithUpToDateLog) {
  struct Case {
    uint64_t last_term, last_index;
    bool grant;
  };
  // The voter's log: terms [1, 2] (last term 2, last index 2).
  for (const Case tc : {Case{1, 5, false}, Case{2, 1, false}, Case{2, 2, true}, Case{2, 3, true},
                        Case{3, 1, true}}) {
    auto s = storage_with({1, 2, 3}, {1, 2}, 2);
    Raft r(make_config(1), s.get());
    (void)r.step(vote_req(2, 1, 3, tc.last_index, tc.last_term));
    EXPECT_EQ(granted(take_messages(r), 2), tc.grant)
        << "candidate last term " << tc.last_term << " index " << tc.last_index;
  }
}

// Figure 2: votedFor is persistent state, "updated on stable storage before responding": the
// vote appears in the same Ready as the response, which must be synced first.
TEST_F(RaftPaperTest, grantedVoteIsInTheReadyHardStateWithItsResponse) {
  auto s = storage_with({1, 2, 3}, {});
  RawNode n(make_config(1), s.get());
  ASSERT_EQ(n.step(vote_req(2, 1, 1, 0, 0)), Error::kOk);
  ASSERT_TRUE(n.has_ready());
  Ready rd = n.ready();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->vote, 2u);
  EXPECT_EQ(rd.hard_state->term, 1u);
  EXPECT_TRUE(rd.must_sync);
  EXPECT_TRUE(granted(rd.messages, 2));
  n.advance();
}

// raw_node.h step 3: committed entries are handed out only once persisted here, so the host
// may apply them as soon as it takes the Ready; while a Ready is in progress, take_committed()
// hands out what followers' acknowledgements committed meanwhile, never that Ready's entries.
TEST_F(RaftPaperTest, committedEntriesAreHandedOutOnlyOncePersistedAndMeanwhileWhileInProgress) {
  auto s = storage_with({1, 2, 3}, {});
  RawNode n(make_config(1), s.get());
  n.campaign();
  for (NodeId v : {2, 3}) ASSERT_EQ(n.step(msg(MessageType::kVoteResp, v, 1, 1)), Error::kOk);
  ASSERT_EQ(n.raft().role(), Role::kLeader);
  auto persist_ready = [&](const Ready& rd) {
    s->append(rd.entries);
    if (rd.hard_state) s->set_hard_state(*rd.hard_state);
  };
  // The new leader's empty entry: persisted and acknowledged, then handed out.
  Ready rd = n.ready();
  ASSERT_EQ(rd.entries.size(), 1u);
  const uint64_t first = rd.entries[0].index;
  EXPECT_TRUE(rd.committed_entries.empty());
  persist_ready(rd);
  n.advance();
  ASSERT_EQ(n.step(app_resp(2, 1, 1, first)), Error::kOk);
  rd = n.ready();
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  EXPECT_EQ(rd.committed_entries[0].index, first);
  persist_ready(rd);
  n.advance();

  // e1 persisted; e2 in the Ready in progress.
  ASSERT_EQ(n.propose("e1"), Error::kOk);
  rd = n.ready();
  persist_ready(rd);
  n.advance();
  const uint64_t e1 = first + 1;
  ASSERT_EQ(n.propose("e2"), Error::kOk);
  Ready in_progress = n.ready();
  ASSERT_EQ(in_progress.entries.size(), 1u);
  const uint64_t e2 = in_progress.entries[0].index;
  EXPECT_TRUE(n.take_committed().empty()) << "nothing committed yet";
  // A follower acknowledges both: e1 is committed (written here and there), e2 is not yet
  // (one follower and a leader copy not yet written are no majority of three).
  ASSERT_EQ(n.step(app_resp(2, 1, 1, e2)), Error::kOk);
  EXPECT_EQ(n.raft().log().committed(), e1);
  Committed meanwhile = n.take_committed();
  ASSERT_EQ(meanwhile.entries.size(), 1u);
  EXPECT_EQ(meanwhile.entries[0].index, e1);
  EXPECT_EQ(meanwhile.entries[0].data, "e1");
  EXPECT_TRUE(n.take_committed().empty()) << "handed out once";
  // The Ready in progress is written: e2 counts, is committed and comes with the next Ready.
  persist_ready(in_progress);
  n.advance();
  EXPECT_EQ(n.raft().log().committed(), e2);
  rd = n.ready();
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  EXPECT_EQ(rd.committed_entries[0].index, e2);
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->commit, e2) << "the commit index reaches the disk with a Ready";
  n.advance();
}

// ---- Figure 2, AppendEntries receiver ------------------------------------------------------

// Rule 2: "Reply false if log doesn't contain an entry at prevLogIndex whose term matches
// prevLogTerm"; the log is left as it was.
TEST_F(RaftPaperTest, appendIsRejectedWhenLogLacksPreviousEntry) {
  for (const auto& [prev_index, prev_term] : std::vector<std::pair<uint64_t, uint64_t>>{{3, 3}, {2, 3}, {5, 2}}) {
    auto s = storage_with({1, 2, 3}, {1, 2}, 3);
    Raft r(make_config(1), s.get());
    (void)r.step(append_msg(2, 1, 3, prev_index, prev_term, entries_with_terms({3}, prev_index + 1), 0));
    const auto resps = of_type(take_messages(r), MessageType::kAppResp);
    ASSERT_EQ(resps.size(), 1u);
    EXPECT_TRUE(resps[0].reject) << "prev " << prev_index << "/" << prev_term;
    EXPECT_EQ(log_terms(r), (std::vector<uint64_t>{1, 2}));
  }
}

// Rules 3 and 4: a conflicting entry and all that follow it are deleted; new entries appended.
TEST_F(RaftPaperTest, conflictingSuffixIsReplacedByLeaderEntries) {
  auto s = storage_with({1, 2, 3}, {1, 2, 2, 2}, 3);
  Raft r(make_config(1), s.get());
  (void)r.step(append_msg(2, 1, 4, 1, 1, entries_with_terms({4, 4}, 2), 0));
  EXPECT_EQ(log_terms(r), (std::vector<uint64_t>{1, 4, 4}));
  const auto resps = of_type(take_messages(r), MessageType::kAppResp);
  ASSERT_EQ(resps.size(), 1u);
  EXPECT_FALSE(resps[0].reject);
  EXPECT_EQ(resps[0].index, 3u);
}

// Rule 3 says "if an existing entry conflicts": a delayed append whose entries all match must
// not truncate the newer entries that follow them.
TEST_F(RaftPaperTest, delayedAppendOfMatchingEntriesDoesNotTruncateLog) {
  auto s = storage_with({1, 2, 3}, {1, 2, 3}, 3);
  Raft r(make_config(1), s.get());
  (void)r.step(append_msg(2, 1, 3, 0, 0, entries_with_terms({1, 2}), 0));
  EXPECT_EQ(log_terms(r), (std::vector<uint64_t>{1, 2, 3}));
}

// Rule 5: "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of last new
// entry)".
TEST_F(RaftPaperTest, followerCommitIsMinOfLeaderCommitAndLastNewEntry) {
  struct Case {
    uint64_t prev_index, leader_commit;
    size_t n_entries;
    uint64_t want;
  };
  for (const Case tc : {Case{1, 3, 1, 2}, Case{1, 1, 1, 1}, Case{3, 5, 2, 5}, Case{2, 3, 0, 2}}) {
    auto s = storage_with({1, 2, 3}, {1, 1, 1}, 1);
    Raft r(make_config(1), s.get());
    std::vector<uint64_t> terms(tc.n_entries, 1);
    (void)r.step(append_msg(2, 1, 1, tc.prev_index, 1, entries_with_terms(terms, tc.prev_index + 1),
                            tc.leader_commit));
    EXPECT_EQ(r.log().committed(), tc.want) << "prev " << tc.prev_index << " commit " << tc.leader_commit;
  }
}

// ---- Figure 7 -----------------------------------------------------------------------------

// The leader of term 8 and followers (a)-(f) of Figure 7.
std::unique_ptr<Cluster> figure7_cluster() {
  const std::vector<NodeId> ids = {1, 2, 3, 4, 5, 6, 7};
  const std::vector<std::vector<uint64_t>> logs = {
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6},        // leader
      {1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a) missing one entry
      {1, 1, 1, 4},                          // (b) missing many
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c) an extra uncommitted entry
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d) extra entries of a later term
      {1, 1, 1, 4, 4, 4, 4},                 // (e) missing, and extra term-4 entries
      {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f) leader of terms 2 and 3 that crashed early
  };
  auto c = std::make_unique<Cluster>();
  for (size_t i = 0; i < ids.size(); ++i) c->add(make_config(ids[i]), storage_with(ids, logs[i], 7));
  return c;
}

// Section 5.4.1 on Figure 7's logs: the leader's log (last term 6, index 10) wins the votes of
// (a), (b), (e), (f), and is refused by (c) (longer) and (d) (later term) -- still a majority.
TEST_F(RaftPaperTest, electionRestrictionDecidesVotesOnFigure7Logs_figure7) {
  auto c = figure7_cluster();
  c->node(1).campaign();
  (void)c->process(1);
  ASSERT_EQ(c->deliver(), 6u);
  std::map<NodeId, bool> answers;
  for (NodeId id = 2; id <= 7; ++id) {
    ASSERT_TRUE(c->process(id));
  }
  for (const Message& m : c->queue()) {
    if (m.type == MessageType::kVoteResp) answers[m.from] = !m.reject;
  }
  const std::map<NodeId, bool> want = {{2, true}, {3, true}, {4, false}, {5, false}, {6, true}, {7, true}};
  EXPECT_EQ(answers, want);
  c->stabilize();
  EXPECT_EQ(c->leader(), 1u);
  EXPECT_EQ(c->raft(1).term(), 8u);
}

// Section 5.3 on Figure 7: whatever a follower's log holds -- missing entries, extra uncommitted
// entries, entries of terms the leader never saw -- the leader's consistency check makes it
// identical to the leader's.
TEST_F(RaftPaperTest, leaderMakesEveryFollowerLogMatchItsOwn_figure7) {
  auto c = figure7_cluster();
  c->elect(1);
  ASSERT_EQ(c->leader(), 1u);
  const std::vector<uint64_t> want = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8};
  EXPECT_EQ(log_terms(c->raft(1)), want);
  for (NodeId id = 2; id <= 7; ++id) {
    EXPECT_EQ(log_terms(c->raft(id)), want) << "follower " << id;
    EXPECT_EQ(c->raft(id).log().committed(), 11u) << "follower " << id;
  }
  c->check_invariants();
}

// ---- Figure 8 -----------------------------------------------------------------------------

// Figure 8 (c): S1, leader of term 4, has replicated the term-2 entry at index 2 to a majority
// (S1, S2, S3). Counting replicas must not commit it (section 5.4.2): S5 could still be elected
// and overwrite it, as in (d).
TEST_F(RaftPaperTest, leaderCommitsOnlyCurrentTermEntriesByCounting_figure8) {
  auto s = storage_with({1, 2, 3, 4, 5}, {1, 2}, 3, kNoNode, 1);
  Raft r(make_config(1), s.get());
  make_leader(r);
  ASSERT_EQ(r.term(), 4u);
  ASSERT_EQ(log_terms(r), (std::vector<uint64_t>{1, 2, 4}));
  (void)r.step(app_resp(2, 1, 4, 2));
  (void)r.step(app_resp(3, 1, 4, 2));
  EXPECT_EQ(r.log().committed(), 1u) << "index 2 (term 2) is on a majority but must not commit";
}

// Figure 8 (e): once an entry of the leader's own term is on a majority, it commits, and with it
// every earlier entry (the term-2 entry at index 2) by the Log Matching Property.
TEST_F(RaftPaperTest, previousTermEntryCommitsWithCurrentTermEntry_figure8) {
  auto s = storage_with({1, 2, 3, 4, 5}, {1, 2}, 3, kNoNode, 1);
  Raft r(make_config(1), s.get());
  make_leader(r);
  persist(r, *s);
  (void)r.step(app_resp(2, 1, 4, 3));
  EXPECT_EQ(r.log().committed(), 1u) << "two of five is not a majority";
  (void)r.step(app_resp(3, 1, 4, 3));
  EXPECT_EQ(r.log().committed(), 3u);
}

// Figure 8 (d): the term-2 entry that was on a majority but never committed is overwritten when
// S5 (last entry term 3) is elected with the votes of S2, S3 and S4.
TEST_F(RaftPaperTest, uncommittedPreviousTermEntryIsOverwrittenByLaterLeader_figure8) {
  const std::vector<NodeId> ids = {1, 2, 3, 4, 5};
  Cluster c;
  c.add(make_config(1), storage_with(ids, {1, 2, 4}, 4, 1, 1));
  c.add(make_config(2), storage_with(ids, {1, 2}, 4, 1, 1));
  c.add(make_config(3), storage_with(ids, {1, 2}, 4, 1, 1));
  c.add(make_config(4), storage_with(ids, {1}, 4, 1, 1));
  c.add(make_config(5), storage_with(ids, {1, 3}, 4, 5, 1));
  c.isolate(1);
  c.elect(5);
  ASSERT_EQ(c.leader(), 5u);
  EXPECT_EQ(c.raft(5).term(), 5u);
  for (NodeId id : {2, 3, 4}) {
    EXPECT_EQ(log_terms(c.raft(id)), (std::vector<uint64_t>{1, 3, 5})) << "node " << id;
  }
  c.heal();
  c.tick(5);  // heartbeat: S1 learns term 5 and is caught up
  c.stabilize();
  EXPECT_EQ(log_terms(c.raft(1)), (std::vector<uint64_t>{1, 3, 5}));
  c.check_invariants();
}

// Figure 8 (e), the other branch: with S1's term-4 entry on a majority, S5 can no longer win
// (section 5.4.1), so the entry at index 2 is safe.
TEST_F(RaftPaperTest, currentTermEntryOnMajorityPreventsStaleCandidate_figure8) {
  const std::vector<NodeId> ids = {1, 2, 3, 4, 5};
  Cluster c;
  c.add(make_config(1), storage_with(ids, {1, 2, 4}, 4, 1, 1));
  c.add(make_config(2), storage_with(ids, {1, 2, 4}, 4, 1, 1));
  c.add(make_config(3), storage_with(ids, {1, 2, 4}, 4, 1, 1));
  c.add(make_config(4), storage_with(ids, {1}, 4, 1, 1));
  c.add(make_config(5), storage_with(ids, {1, 3}, 4, 5, 1));
  c.isolate(1);
  c.elect(5);
  EXPECT_NE(c.raft(5).role(), Role::kLeader);
  for (NodeId id : {2, 3}) EXPECT_EQ(log_terms(c.raft(id)), (std::vector<uint64_t>{1, 2, 4}));
}

}  // namespace
}  // namespace kvd::raft
