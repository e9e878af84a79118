// Test support for the raft core: storages with hand-built logs, direct access to one Raft's
// outbox, and Cluster, a fake network of RawNodes whose hosts follow the Ready contract
// (raw_node.h) exactly: persist to a MemoryStorage, send, apply, advance. Messages are queued and
// delivered in order; links can be cut one way or both, and message types dropped, in the manner
// of etcd-io/raft's raft_test.go network (cut/isolate/ignore).
//
// Single-threaded, deterministic: everything runs inside the calling test.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "raft/memory_storage.h"
#include "raft/raft.h"
#include "raft/raw_node.h"

namespace kvd::raft::testing {

inline Config make_config(NodeId id, bool pre_vote = false, bool check_quorum = false) {
  Config c;
  c.id = id;
  c.election_ticks = 10;
  c.heartbeat_ticks = 1;
  c.pre_vote = pre_vote;
  c.check_quorum = check_quorum;
  c.seed = 42;
  return c;
}

// Entries of the given terms at indexes 1, 2, ...; data "e<index>".
inline std::vector<Entry> entries_with_terms(const std::vector<uint64_t>& terms, uint64_t first = 1) {
  std::vector<Entry> out;
  for (size_t i = 0; i < terms.size(); ++i) {
    const uint64_t index = first + i;
    out.push_back(Entry{terms[i], index, EntryType::kNormal, "e" + std::to_string(index)});
  }
  return out;
}

// A storage holding voters as its base membership, a log of the given terms, and hard state
// {term: max(term, last log term), vote, commit}.
inline std::unique_ptr<MemoryStorage> storage_with(const std::vector<NodeId>& voters,
                                                   const std::vector<uint64_t>& terms,
                                                   uint64_t term = 0, NodeId vote = kNoNode,
                                                   uint64_t commit = 0) {
  auto s = std::make_unique<MemoryStorage>();
  s->set_conf_state(ConfState{voters});
  s->append(entries_with_terms(terms));
  for (uint64_t t : terms) term = std::max(term, t);
  s->set_hard_state(HardState{term, vote, commit});
  return s;
}

inline std::vector<Message> take_messages(Raft& r) {
  std::vector<Message> out;
  out.swap(r.outbox());
  return out;
}

inline std::vector<Message> of_type(const std::vector<Message>& ms, MessageType t) {
  std::vector<Message> out;
  for (const Message& m : ms) {
    if (m.type == t) out.push_back(m);
  }
  return out;
}

inline Message msg(MessageType type, NodeId from, NodeId to, uint64_t term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

// AppendEntries from `from` in `term`: prev (index, log_term), entries, leader commit.
inline Message append_msg(NodeId from, NodeId to, uint64_t term, uint64_t prev_index,
                          uint64_t prev_term, std::vector<Entry> ents, uint64_t commit) {
  Message m = msg(MessageType::kApp, from, to, term);
  m.index = prev_index;
  m.log_term = prev_term;
  m.entries = std::move(ents);
  m.commit = commit;
  return m;
}

inline std::vector<uint64_t> log_terms(const Raft& r) {
  std::vector<uint64_t> out;
  const Log& log = r.log();
  for (uint64_t i = log.first_index(); i <= log.last_index(); ++i) out.push_back(log.term_or_zero(i));
  return out;
}

// One member of a Cluster: its "disk" and its host-side state machine record.
struct Peer {
  NodeId id = kNoNode;
  Config config;
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<RawNode> node;
  std::vector<Entry> applied;  // every committed entry the host applied, in order
  std::vector<ReadState> reads;
  std::vector<Ready> readies;  // kept when Cluster::record_readies is set

  const Raft& raft() const { return node->raft(); }
  uint64_t last_applied_index() const { return applied.empty() ? 0 : applied.back().index; }
};

class Cluster {
 public:
  // A brand-new cluster bootstrapped from config.peers = ids.
  explicit Cluster(const std::vector<NodeId>& ids, bool pre_vote = false, bool check_quorum = false) {
    for (NodeId id : ids) {
      Config c = make_config(id, pre_vote, check_quorum);
      c.peers = ids;
      add(c, std::make_unique<MemoryStorage>());
    }
  }
  Cluster() = default;

  Peer& add(const Config& c, std::unique_ptr<MemoryStorage> storage) {
    auto p = std::make_unique<Peer>();
    p->id = c.id;
    p->config = c;
    p->storage = std::move(storage);
    p->node = std::make_unique<RawNode>(c, p->storage.get());
    Peer& ref = *p;
    peers_[c.id] = std::move(p);
    return ref;
  }

  Peer& peer(NodeId id) { return *peers_.at(id); }
  RawNode& node(NodeId id) { return *peers_.at(id)->node; }
  const Raft& raft(NodeId id) { return peers_.at(id)->node->raft(); }
  std::vector<NodeId> ids() const {
    std::vector<NodeId> out;
    for (const auto& [id, p] : peers_) out.push_back(id);
    return out;
  }

  // Simulates a crash and restart: memory is lost, the storage is kept.
  void restart(NodeId id) {
    Peer& p = peer(id);
    p.node.reset();
    Config c = p.config;
    Snapshot snap;
    (void)p.storage->snapshot(&snap);
    c.applied = snap.metadata.index;
    p.node = std::make_unique<RawNode>(c, p.storage.get());
    p.applied.clear();
  }

  // Links: a message from a to b is dropped while (a, b) is cut.
  void cut(NodeId a, NodeId b) {
    cut_.insert({a, b});
    cut_.insert({b, a});
  }
  void cut_one_way(NodeId from, NodeId to) { cut_.insert({from, to}); }
  void isolate(NodeId id) {
    for (const auto& [other, p] : peers_) {
      if (other != id) cut(id, other);
    }
  }
  void heal() { cut_.clear(); }
  void drop(MessageType t) { dropped_types_.insert(t); }
  void undrop(MessageType t) { dropped_types_.erase(t); }

  // Handles one Ready of `id` per the contract; returns false if there was none.
  bool process(NodeId id) {
    Peer& p = peer(id);
    if (!p.node->has_ready()) return false;
    Ready rd = p.node->ready();
    if (rd.snapshot) {
      EXPECT_EQ(p.storage->apply_snapshot(*rd.snapshot), StorageError::kOk);
    }
    p.storage->append(rd.entries);
    if (rd.hard_state) p.storage->set_hard_state(*rd.hard_state);
    for (const Message& m : rd.messages) queue_.push_back(m);
    if (rd.snapshot) p.applied.push_back(Entry{rd.snapshot->metadata.term, rd.snapshot->metadata.index,
                                               EntryType::kNormal, "<snapshot>"});
    for (const Entry& e : rd.committed_entries) {
      EXPECT_GT(e.index, p.last_applied_index()) << "node " << id << " re-applies an entry";
      EXPECT_LE(e.index, p.storage->hard_state().commit) << "applied before commit was persisted";
      p.applied.push_back(e);
    }
    for (const ReadState& r : rd.read_states) p.reads.push_back(r);
    if (record_readies) p.readies.push_back(rd);
    p.node->advance();
    return true;
  }

  // Delivers queued messages (dropping cut links and dropped types); returns how many arrived.
  size_t deliver() {
    std::deque<Message> batch;
    batch.swap(queue_);
    size_t n = 0;
    for (Message& m : batch) {
      if (cut_.count({m.from, m.to}) || dropped_types_.count(m.type)) continue;
      auto it = peers_.find(m.to);
      if (it == peers_.end()) continue;
      if (m.type == MessageType::kSnap) {
        // The host streams the image; here it always arrives and the sender is told so.
        auto from = peers_.find(m.from);
        if (from != peers_.end()) from->second->node->report_snapshot(m.to, true);
      }
      ++delivered[m.type];
      if (m.type == MessageType::kAppResp && m.reject) ++rejected_appends;
      (void)it->second->node->step(std::move(m));
      ++n;
    }
    return n;
  }

  // Processes and delivers until nothing moves (bounded).
  void stabilize(int max_rounds = 1000) {
    for (int round = 0; round < max_rounds; ++round) {
      bool any = false;
      for (const auto& [id, p] : peers_) any |= process(id);
      any |= deliver() > 0;
      if (!any && queue_.empty()) return;
    }
    ADD_FAILURE() << "cluster did not stabilize within " << max_rounds << " rounds";
  }

  void tick(NodeId id, int n = 1) {
    for (int i = 0; i < n; ++i) peer(id).node->tick();
  }
  void tick_all(int n = 1) {
    for (int i = 0; i < n; ++i) {
      for (const auto& [id, p] : peers_) p->node->tick();
    }
  }

  // Makes `id` campaign and runs the election to completion.
  void elect(NodeId id) {
    node(id).campaign();
    stabilize();
  }

  NodeId leader() const {
    NodeId l = kNoNode;
    for (const auto& [id, p] : peers_) {
      if (p->node->raft().role() == Role::kLeader) {
        if (l == kNoNode || p->node->raft().term() > peers_.at(l)->node->raft().term()) l = id;
      }
    }
    return l;
  }

  // Invariants any test must leave intact: one leader per term, and the applied prefixes of all
  // nodes agree (State Machine Safety).
  void check_invariants() {
    std::map<uint64_t, NodeId> leaders;
    for (const auto& [id, p] : peers_) {
      const Raft& r = p->node->raft();
      if (r.role() != Role::kLeader) continue;
      auto [it, inserted] = leaders.emplace(r.term(), id);
      EXPECT_TRUE(inserted) << "nodes " << it->second << " and " << id << " lead term " << r.term();
    }
    std::map<uint64_t, Entry> applied;
    for (const auto& [id, p] : peers_) {
      for (const Entry& e : p->applied) {
        if (e.data == "<snapshot>") continue;
        auto [it, inserted] = applied.emplace(e.index, e);
        EXPECT_EQ(it->second, e) << "node " << id << " applied a different entry at " << e.index;
      }
    }
  }

  std::deque<Message>& queue() { return queue_; }
  bool record_readies = false;
  std::map<MessageType, int> delivered;  // messages that arrived, by type
  int rejected_appends = 0;

 private:
  std::map<NodeId, std::unique_ptr<Peer>> peers_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::set<MessageType> dropped_types_;
  std::deque<Message> queue_;
};

// Fixture whose teardown checks the cluster invariants, turning every scenario into an
// invariant test too.
class ClusterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (cluster_) cluster_->check_invariants();
  }
  Cluster& make_cluster(const std::vector<NodeId>& ids, bool pre_vote = false,
                        bool check_quorum = false) {
    cluster_ = std::make_unique<Cluster>(ids, pre_vote, check_quorum);
    return *cluster_;
  }
  std::unique_ptr<Cluster> cluster_;
};

}  // namespace kvd::raft::testing
