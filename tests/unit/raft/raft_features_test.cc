// Tests for what kvd's raft adds to the paper's Figure 2: pre-vote and check-quorum (thesis
// sections 9.6 and 6.2), leader stickiness (4.2.3), fast log back-off, the in-flight bound,
// snapshots for lagging followers, ReadIndex (6.4), leadership transfer (3.10), single-server
// membership changes (4.1, 4.2.2), and proposal forwarding.
#include <gtest/gtest.h>

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

void make_leader(Raft& r) {
  Message hup;
  hup.type = MessageType::kHup;
  (void)r.step(hup);
  for (NodeId v : r.conf_state().voters) {
    if (v == r.id() || r.role() == Role::kLeader) continue;
    const MessageType t = r.role() == Role::kPreCandidate ? MessageType::kPreVoteResp : MessageType::kVoteResp;
    (void)r.step(msg(t, v, r.id(), t == MessageType::kPreVoteResp ? r.term() + 1 : r.term()));
  }
  ASSERT_EQ(r.role(), Role::kLeader);
}

Message app_resp(NodeId from, NodeId to, uint64_t term, uint64_t index) {
  Message m = msg(MessageType::kAppResp, from, to, term);
  m.index = index;
  return m;
}

Message prop(const std::string& data) {
  Message m = msg(MessageType::kProp, 0, 0, 0);
  m.entries.push_back(Entry{0, 0, EntryType::kNormal, data});
  return m;
}

// Ticks and stabilizes every node until some node leads (bounded); returns it or 0.
NodeId await_leader(Cluster& c, const std::vector<NodeId>& among, int max_ticks = 100) {
  for (int i = 0; i < max_ticks; ++i) {
    const NodeId l = c.leader();
    for (NodeId a : among) {
      if (a == l) return l;
    }
    c.tick_all();
    c.stabilize();
  }
  return kNoNode;
}

class RaftPreVoteTest : public ClusterTest {};
class RaftCheckQuorumTest : public ClusterTest {};
class RaftReplicationTest : public ClusterTest {};
class RaftReadIndexTest : public ClusterTest {};
class RaftTransferTest : public ClusterTest {};
class RaftMembershipTest : public ClusterTest {};
class RaftProposalTest : public ClusterTest {};

// ---- Pre-vote (thesis section 9.6) --------------------------------------------------------

TEST_F(RaftPreVoteTest, preCandidateAsksForNextTermWithoutChangingItsOwn) {
  auto s = storage_with({1, 2, 3}, {1, 1}, 1);
  Raft r(make_config(1, true), s.get());
  Message hup;
  hup.type = MessageType::kHup;
  (void)r.step(hup);
  EXPECT_EQ(r.role(), Role::kPreCandidate);
  EXPECT_EQ(r.term(), 1u);
  EXPECT_EQ(r.vote(), kNoNode);
  const auto pre = of_type(take_messages(r), MessageType::kPreVote);
  ASSERT_EQ(pre.size(), 2u);
  for (const Message& m : pre) {
    EXPECT_EQ(m.term, 2u);
    EXPECT_EQ(m.index, 2u);
    EXPECT_EQ(m.log_term, 1u);
  }
}

TEST_F(RaftPreVoteTest, preVoteMajorityLeadsToRealElectionInNextTerm) {
  Cluster& c = make_cluster({1, 2, 3}, true);
  c.elect(1);
  EXPECT_EQ(c.leader(), 1u);
  EXPECT_EQ(c.raft(1).term(), 2u);  // bootstrap term 1, then one real election
  EXPECT_GT(c.delivered[MessageType::kPreVote], 0);
}

TEST_F(RaftPreVoteTest, preVoteIsRefusedToCandidateWithStaleLogAndBindsNoVote) {
  auto s = storage_with({1, 2, 3}, {1, 2}, 2);
  Raft r(make_config(1, true), s.get());
  Message pv = msg(MessageType::kPreVote, 2, 1, 3);
  pv.index = 5;
  pv.log_term = 1;
  (void)r.step(pv);
  auto out = of_type(take_messages(r), MessageType::kPreVoteResp);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].reject);
  EXPECT_EQ(r.term(), 2u) << "a pre-vote never changes the voter's term";
  pv.index = 2;
  pv.log_term = 2;
  (void)r.step(pv);
  out = of_type(take_messages(r), MessageType::kPreVoteResp);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);
  EXPECT_EQ(r.vote(), kNoNode) << "a pre-vote grant is not a vote";
  EXPECT_EQ(r.term(), 2u);
}

// The problem pre-vote solves: a node cut off from the cluster keeps timing out. Without
// pre-vote its term climbs and, on rejoining, it deposes the healthy leader; with pre-vote its
// term stays put and the leader keeps its term.
TEST_F(RaftPreVoteTest, rejoiningPartitionedNodeDoesNotDisruptLeader_preVote) {
  for (bool pre_vote : {false, true}) {
    Cluster c({1, 2, 3}, pre_vote);
    c.elect(1);
    const uint64_t term = c.raft(1).term();
    c.isolate(3);
    ASSERT_EQ(c.node(1).propose("while 3 is away"), Error::kOk);
    c.stabilize();
    for (int i = 0; i < 100; ++i) {
      c.tick(3);
      c.stabilize();
    }
    c.heal();
    c.tick(1);  // heartbeats reach 3 again
    c.stabilize();
    for (int i = 0; i < 4 * 10; ++i) {  // a few election timeouts of normal operation
      c.tick_all();
      c.stabilize();
    }
    ASSERT_NE(await_leader(c, {1, 2, 3}), kNoNode);
    if (pre_vote) {
      EXPECT_EQ(c.raft(3).role(), Role::kFollower);
      EXPECT_EQ(c.leader(), 1u);
      EXPECT_EQ(c.raft(1).term(), term) << "leader undisturbed";
    } else {
      EXPECT_GT(c.raft(1).term(), term + 5) << "without pre-vote the rejoining node forces new terms";
    }
    c.check_invariants();
  }
}

// ---- Check-quorum and leader stickiness (thesis sections 6.2, 4.2.3) ------------------------

TEST_F(RaftCheckQuorumTest, isolatedLeaderStepsDownWithinTwoElectionTimeouts_checkQuorum) {
  Cluster& c = make_cluster({1, 2, 3}, false, true);
  c.elect(1);
  c.isolate(1);
  for (int i = 0; i < 2 * 10 && c.raft(1).role() == Role::kLeader; ++i) {
    c.tick(1);
    c.stabilize();
  }
  EXPECT_EQ(c.raft(1).role(), Role::kFollower);
  EXPECT_EQ(c.raft(1).lead(), kNoNode);
}

TEST_F(RaftCheckQuorumTest, leaderHearingFromQuorumStaysLeader_checkQuorum) {
  Cluster& c = make_cluster({1, 2, 3}, false, true);
  c.elect(1);
  c.isolate(3);  // one follower lost: still a quorum
  const uint64_t term = c.raft(1).term();
  for (int i = 0; i < 5 * 10; ++i) {
    c.tick(1);
    c.tick(2);
    c.stabilize();
  }
  EXPECT_EQ(c.leader(), 1u);
  EXPECT_EQ(c.raft(1).term(), term);
}

TEST_F(RaftCheckQuorumTest, followerIgnoresVoteRequestsWhileLeaderIsLive_leaderStickiness) {
  auto s = storage_with({1, 2, 3}, {1}, 1);
  Raft r(make_config(1, false, true), s.get());
  (void)r.step(msg(MessageType::kHeartbeat, 2, 1, 1));
  ASSERT_EQ(r.lead(), 2u);
  (void)take_messages(r);
  Message vote = msg(MessageType::kVote, 3, 1, 5);
  vote.index = 1;
  vote.log_term = 1;
  (void)r.step(vote);
  EXPECT_TRUE(take_messages(r).empty());
  EXPECT_EQ(r.term(), 1u) << "a disruptive candidate's term is not adopted";
  EXPECT_EQ(r.lead(), 2u);
}

TEST_F(RaftCheckQuorumTest, transferCampaignOverridesLeaderLease_leaderStickiness) {
  auto s = storage_with({1, 2, 3}, {1}, 1);
  Raft r(make_config(1, false, true), s.get());
  (void)r.step(msg(MessageType::kHeartbeat, 2, 1, 1));
  (void)take_messages(r);
  Message vote = msg(MessageType::kVote, 3, 1, 2);
  vote.index = 1;
  vote.log_term = 1;
  vote.context = std::string(kCampaignTransfer);
  (void)r.step(vote);
  const auto resps = of_type(take_messages(r), MessageType::kVoteResp);
  ASSERT_EQ(resps.size(), 1u);
  EXPECT_FALSE(resps[0].reject);
  EXPECT_EQ(r.term(), 2u);
  EXPECT_EQ(r.vote(), 3u);
}

// ---- Replication: fast back-off, in-flight bound, snapshots --------------------------------

TEST_F(RaftReplicationTest, rejectionHintPointsBelowFollowersConflictingTerm) {
  // Follower log terms [1, 2, 2, 2, 2]; the leader probes at index 5 with term 3.
  auto s = storage_with({1, 2, 3}, {1, 2, 2, 2, 2}, 3);
  Raft r(make_config(1), s.get());
  (void)r.step(append_msg(2, 1, 3, 5, 3, entries_with_terms({3}, 6), 0));
  const auto resps = of_type(take_messages(r), MessageType::kAppResp);
  ASSERT_EQ(resps.size(), 1u);
  EXPECT_TRUE(resps[0].reject);
  EXPECT_EQ(resps[0].reject_hint, 5u);
  EXPECT_EQ(resps[0].log_term, 2u) << "the follower names the term at its hint";
}

// A follower holding 50 entries of a term the leader never had is repaired with one rejection
// (the leader skips the whole conflicting term), not one per entry.
TEST_F(RaftReplicationTest, divergentTermIsSkippedInOneRoundTrip_fastBackoff) {
  const std::vector<NodeId> ids = {1, 2, 3};
  std::vector<uint64_t> leader_log(51, 3), follower_log(51, 2);
  leader_log[0] = follower_log[0] = 1;
  cluster_ = std::make_unique<Cluster>();
  Cluster& c = *cluster_;
  c.add(make_config(1), storage_with(ids, leader_log, 3, kNoNode, 1));
  c.add(make_config(2), storage_with(ids, leader_log, 3, kNoNode, 1));
  c.add(make_config(3), storage_with(ids, follower_log, 3, kNoNode, 1));
  c.elect(1);
  ASSERT_EQ(c.leader(), 1u);
  EXPECT_EQ(log_terms(c.raft(3)), log_terms(c.raft(1)));
  EXPECT_EQ(c.rejected_appends, 1);
}

TEST_F(RaftReplicationTest, pipelinedAppendsStopAtMaxInflight) {
  auto s = storage_with({1, 2, 3}, {});
  Config cfg = make_config(1);
  cfg.max_inflight = 2;
  Raft r(cfg, s.get());
  make_leader(r);
  (void)r.step(app_resp(2, 1, r.term(), 1));  // node 2 matches: pipelining starts
  ASSERT_EQ(r.progress().at(2).state, Progress::State::kReplicate);
  (void)take_messages(r);
  std::vector<Message> to2;
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(r.step(prop("p" + std::to_string(i))), Error::kOk);
    for (const Message& m : of_type(take_messages(r), MessageType::kApp)) {
      if (m.to == 2 && !m.entries.empty()) to2.push_back(m);
    }
  }
  ASSERT_EQ(to2.size(), 2u) << "two appends in flight, the rest wait";
  EXPECT_TRUE(r.progress().at(2).inflights.full());
  // Acknowledging the first frees a slot: everything still unsent goes in one append.
  (void)r.step(app_resp(2, 1, r.term(), to2[0].entries.back().index));
  const auto more = of_type(take_messages(r), MessageType::kApp);
  size_t sent = 0;
  for (const Message& m : more) sent += (m.to == 2 && !m.entries.empty());
  EXPECT_EQ(sent, 1u);
  EXPECT_LE(r.progress().at(2).inflights.count(), 2u);
  EXPECT_EQ(r.log().last_index(), 6u);
}

TEST_F(RaftReplicationTest, heartbeatResponseFreesOneInflightSlotWhenFull) {
  auto s = storage_with({1, 2, 3}, {});
  Config cfg = make_config(1);
  cfg.max_inflight = 1;
  Raft r(cfg, s.get());
  make_leader(r);
  (void)r.step(app_resp(2, 1, r.term(), 1));
  (void)r.step(prop("a"));
  (void)r.step(prop("b"));
  ASSERT_TRUE(r.progress().at(2).inflights.full());
  (void)take_messages(r);
  (void)r.step(msg(MessageType::kHeartbeatResp, 2, 1, r.term()));
  size_t sent = 0;
  for (const Message& m : of_type(take_messages(r), MessageType::kApp)) sent += m.to == 2;
  EXPECT_EQ(sent, 1u) << "a live follower whose acks were lost is not stalled forever";
}

TEST_F(RaftReplicationTest, laggingFollowerIsSentSnapshotWhenEntriesAreCompacted) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(c.node(1).propose("v" + std::to_string(i)), Error::kOk);
  c.stabilize();
  const uint64_t applied = c.peer(1).last_applied_index();
  ASSERT_GT(applied, c.raft(3).log().last_index());
  MemoryStorage& st = *c.peer(1).storage;
  ASSERT_EQ(st.create_snapshot(applied, c.node(1).applied_conf_state(), "image"), StorageError::kOk);
  ASSERT_EQ(st.compact(applied), StorageError::kOk);
  c.heal();
  c.tick(1);
  c.stabilize();
  EXPECT_EQ(c.delivered[MessageType::kSnap], 1);
  Snapshot snap;
  ASSERT_EQ(c.peer(3).storage->snapshot(&snap), StorageError::kOk);
  EXPECT_EQ(snap.metadata.index, applied);
  EXPECT_EQ(snap.data, "image");
  EXPECT_EQ(c.raft(3).log().last_index(), c.raft(1).log().last_index());
  EXPECT_EQ(c.raft(3).log().committed(), c.raft(1).log().committed());
  EXPECT_EQ(c.raft(1).progress().at(3).state, Progress::State::kReplicate);
  // And it keeps replicating normally afterwards.
  ASSERT_EQ(c.node(1).propose("after"), Error::kOk);
  c.stabilize();
  EXPECT_EQ(c.peer(3).applied.back().data, "after");
}

TEST_F(RaftReplicationTest, failedSnapshotReturnsFollowerToProbe) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  c.isolate(3);
  ASSERT_EQ(c.node(1).propose("x"), Error::kOk);
  c.stabilize();
  const uint64_t applied = c.peer(1).last_applied_index();
  MemoryStorage& st = *c.peer(1).storage;
  ASSERT_EQ(st.create_snapshot(applied, c.node(1).applied_conf_state(), "image"), StorageError::kOk);
  ASSERT_EQ(st.compact(applied), StorageError::kOk);
  c.heal();
  c.drop(MessageType::kSnap);
  c.tick(1);
  c.stabilize();
  ASSERT_EQ(c.raft(1).progress().at(3).state, Progress::State::kSnapshot);
  c.node(1).report_snapshot(3, false);
  EXPECT_EQ(c.raft(1).progress().at(3).state, Progress::State::kProbe);
  c.undrop(MessageType::kSnap);
  c.tick(1);
  c.stabilize();
  EXPECT_EQ(c.raft(3).log().last_index(), c.raft(1).log().last_index());
}

// ---- ReadIndex (thesis section 6.4) ---------------------------------------------------------

TEST_F(RaftReadIndexTest, leaderAnswersReadOnlyAfterHeartbeatQuorum) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  ASSERT_EQ(c.node(1).propose("x"), Error::kOk);
  c.stabilize();
  const uint64_t commit = c.raft(1).log().committed();
  ASSERT_EQ(c.node(1).read_index("ctx"), Error::kOk);
  (void)c.process(1);
  EXPECT_TRUE(c.peer(1).reads.empty()) << "not before a quorum confirmed the leadership";
  c.stabilize();
  ASSERT_EQ(c.peer(1).reads.size(), 1u);
  EXPECT_EQ(c.peer(1).reads[0], (ReadState{commit, "ctx"}));
}

TEST_F(RaftReadIndexTest, isolatedLeaderNeverAnswersRead) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  c.isolate(1);
  ASSERT_EQ(c.node(1).read_index("stale?"), Error::kOk);
  for (int i = 0; i < 5; ++i) {
    c.tick(1);
    c.stabilize();
  }
  EXPECT_TRUE(c.peer(1).reads.empty());
}

TEST_F(RaftReadIndexTest, followerReadIsForwardedToLeaderAndAnswered) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  ASSERT_EQ(c.node(2).propose("x"), Error::kOk);
  c.stabilize();
  ASSERT_EQ(c.node(2).read_index("f"), Error::kOk);
  c.stabilize();
  ASSERT_EQ(c.peer(2).reads.size(), 1u);
  EXPECT_EQ(c.peer(2).reads[0].context, "f");
  EXPECT_EQ(c.peer(2).reads[0].index, c.raft(1).log().committed());
  EXPECT_GE(c.peer(2).last_applied_index(), c.peer(2).reads[0].index) << "served only once applied";
  EXPECT_TRUE(c.peer(1).reads.empty());
}

// A new leader does not know the commit index until an entry of its own term commits; a read
// arriving before then waits for it (thesis section 6.4, step 1).
TEST_F(RaftReadIndexTest, newLeaderReadWaitsForCommitInItsOwnTerm) {
  Cluster& c = make_cluster({1, 2, 3});
  c.drop(MessageType::kApp);
  c.elect(1);
  ASSERT_EQ(c.leader(), 1u);
  const uint64_t noop = c.raft(1).log().last_index();
  ASSERT_LT(c.raft(1).log().committed(), noop);
  ASSERT_EQ(c.node(1).read_index("early"), Error::kOk);
  c.stabilize();
  EXPECT_TRUE(c.peer(1).reads.empty());
  c.undrop(MessageType::kApp);
  c.tick(1);
  c.stabilize();
  ASSERT_EQ(c.peer(1).reads.size(), 1u);
  EXPECT_EQ(c.peer(1).reads[0].index, noop);
  EXPECT_EQ(c.raft(1).log().term_or_zero(c.peer(1).reads[0].index), c.raft(1).term());
}

TEST_F(RaftReadIndexTest, readWithoutLeaderFailsFast) {
  Cluster& c = make_cluster({1, 2, 3});
  EXPECT_EQ(c.node(2).read_index("r"), Error::kNoLeader);
}

// ---- Leadership transfer (thesis section 3.10) ----------------------------------------------

TEST_F(RaftTransferTest, transferToUpToDateFollowerMakesItLeaderInNextTerm) {
  Cluster& c = make_cluster({1, 2, 3}, true, true);
  c.elect(1);
  const uint64_t term = c.raft(1).term();
  c.node(1).transfer_leadership(2);
  c.stabilize();
  EXPECT_EQ(c.leader(), 2u);
  EXPECT_EQ(c.raft(2).term(), term + 1);
  EXPECT_EQ(c.delivered[MessageType::kTimeoutNow], 1);
}

TEST_F(RaftTransferTest, followerRequestIsForwardedAndLaggingTargetIsCaughtUpFirst) {
  Cluster& c = make_cluster({1, 2, 3}, true, true);
  c.elect(1);
  c.isolate(3);
  ASSERT_EQ(c.node(1).propose("x"), Error::kOk);
  c.stabilize();
  c.heal();
  c.node(3).transfer_leadership(3);  // asked on the target itself: forwarded to the leader
  c.stabilize();
  EXPECT_EQ(c.leader(), 3u);
  EXPECT_EQ(log_terms(c.raft(3)).size(), c.raft(3).log().last_index());
  EXPECT_EQ(c.raft(3).log().term_or_zero(5), c.raft(1).log().term_or_zero(5));
}

TEST_F(RaftTransferTest, proposalsAreRefusedWhileTransferIsPendingAndAcceptedAfterItLapses) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  c.isolate(3);
  ASSERT_EQ(c.node(1).propose("x"), Error::kOk);
  c.stabilize();
  c.node(1).transfer_leadership(3);  // cannot finish: 3 is unreachable
  c.stabilize();
  EXPECT_EQ(c.raft(1).lead_transferee(), 3u);
  EXPECT_EQ(c.node(1).propose("refused"), Error::kLeaderTransferring);
  for (int i = 0; i < 10; ++i) {
    c.tick(1);
    c.stabilize();
  }
  EXPECT_EQ(c.raft(1).lead_transferee(), kNoNode) << "abandoned after an election timeout";
  EXPECT_EQ(c.node(1).propose("accepted"), Error::kOk);
}

// ---- Membership (thesis sections 4.1, 4.2.2) ------------------------------------------------

TEST_F(RaftMembershipTest, secondChangeIsRefusedUntilFirstIsApplied) {
  Cluster& c = make_cluster({1, 2, 3});
  c.add(make_config(4), std::make_unique<MemoryStorage>());
  c.elect(1);
  ASSERT_EQ(c.node(1).propose_conf_change(ConfChange{ConfChangeType::kAddNode, 4, "peer4"}), Error::kOk);
  EXPECT_EQ(c.node(1).propose_conf_change(ConfChange{ConfChangeType::kRemoveNode, 3, {}}),
            Error::kConfChangePending);
  c.stabilize();
  for (NodeId id : {1, 2, 3, 4}) {
    EXPECT_EQ(c.raft(id).conf_state().voters, (std::vector<NodeId>{1, 2, 3, 4})) << "node " << id;
  }
  EXPECT_EQ(log_terms(c.raft(4)), log_terms(c.raft(1))) << "the new member caught up";
  EXPECT_EQ(c.node(1).propose_conf_change(ConfChange{ConfChangeType::kRemoveNode, 3, {}}), Error::kOk);
}

TEST_F(RaftMembershipTest, addedMemberCountsTowardQuorum) {
  Cluster& c = make_cluster({1, 2, 3});
  c.add(make_config(4), std::make_unique<MemoryStorage>());
  c.elect(1);
  ASSERT_EQ(c.node(1).propose_conf_change(ConfChange{ConfChangeType::kAddNode, 4, {}}), Error::kOk);
  c.stabilize();
  c.isolate(2);
  c.isolate(3);
  ASSERT_EQ(c.node(1).propose("needs 3 of 4"), Error::kOk);
  c.stabilize();
  EXPECT_NE(c.peer(1).applied.back().data, "needs 3 of 4") << "1 and 4 are not a majority of 4";
  c.heal();
  c.isolate(2);
  c.tick(1);
  c.stabilize();
  EXPECT_EQ(c.peer(1).applied.back().data, "needs 3 of 4");
  EXPECT_EQ(c.peer(4).applied.back().data, "needs 3 of 4");
}

TEST_F(RaftMembershipTest, newLeaderRefusesChangeBeforeCommittingEntryOfItsTerm) {
  Cluster& c = make_cluster({1, 2, 3});
  c.drop(MessageType::kApp);
  c.elect(1);
  ASSERT_EQ(c.leader(), 1u);
  EXPECT_EQ(c.node(1).propose_conf_change(ConfChange{ConfChangeType::kRemoveNode, 3, {}}),
            Error::kConfChangeTooEarly);
}

TEST_F(RaftMembershipTest, leaderRemovingItselfStepsDownOnceRemovalCommits) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  ASSERT_EQ(c.node(1).propose_conf_change(ConfChange{ConfChangeType::kRemoveNode, 1, {}}), Error::kOk);
  EXPECT_EQ(c.node(1).propose("x"), Error::kNotMember);
  c.stabilize();
  EXPECT_EQ(c.raft(1).role(), Role::kFollower);
  EXPECT_FALSE(c.raft(1).promotable());
  for (NodeId id : {2, 3}) EXPECT_EQ(c.raft(id).conf_state().voters, (std::vector<NodeId>{2, 3}));
  const NodeId next = await_leader(c, {2, 3});
  ASSERT_NE(next, kNoNode) << "the remaining members elect a leader";
  ASSERT_EQ(c.node(next).propose("after"), Error::kOk);
  c.stabilize();
  EXPECT_EQ(c.peer(next).applied.back().data, "after");
}

// ---- Proposals --------------------------------------------------------------------------------

TEST_F(RaftProposalTest, followerForwardsProposalToLeader) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  ASSERT_EQ(c.node(3).propose("from 3"), Error::kOk);
  c.stabilize();
  EXPECT_EQ(c.delivered[MessageType::kProp], 1);
  for (NodeId id : {1, 2, 3}) EXPECT_EQ(c.peer(id).applied.back().data, "from 3") << "node " << id;
}

TEST_F(RaftProposalTest, proposalFailsFastWithoutLeader) {
  Cluster& c = make_cluster({1, 2, 3});
  EXPECT_EQ(c.node(2).propose("x"), Error::kNoLeader) << "follower that knows no leader";
  c.drop(MessageType::kVoteResp);
  c.node(1).campaign();
  c.stabilize();
  ASSERT_EQ(c.raft(1).role(), Role::kCandidate);
  EXPECT_EQ(c.node(1).propose("x"), Error::kNoLeader) << "candidate";
  EXPECT_EQ(c.node(1).read_index("r"), Error::kNoLeader);
}

// Restart: the hard state and log come back from storage, and committed entries after the
// snapshot are handed to the host again (its state machine was lost with its memory).
TEST_F(RaftProposalTest, restartedNodeRecoversStateAndReappliesCommittedEntries) {
  Cluster& c = make_cluster({1, 2, 3});
  c.elect(1);
  ASSERT_EQ(c.node(1).propose("kept"), Error::kOk);
  c.stabilize();
  const HardState before = c.raft(2).hard_state();
  const uint64_t last = c.raft(2).log().last_index();
  c.restart(2);
  EXPECT_EQ(c.raft(2).term(), before.term);
  EXPECT_EQ(c.raft(2).vote(), before.vote);
  EXPECT_EQ(c.raft(2).log().last_index(), last);
  c.stabilize();
  ASSERT_FALSE(c.peer(2).applied.empty());
  EXPECT_EQ(c.peer(2).applied.front().index, 1u);
  EXPECT_EQ(c.peer(2).applied.back().data, "kept");
}

}  // namespace
}  // namespace kvd::raft
