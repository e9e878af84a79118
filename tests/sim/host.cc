#include "tests/sim/host.h"

#include <algorithm>
#include <sstream>

namespace kvd::sim {

using raft::Entry;
using raft::EntryType;

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

namespace {

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

uint64_t hash_entry(uint64_t prev, const Entry& e) {
  uint64_t h = mix(prev, e.term);
  h = mix(h, static_cast<uint64_t>(e.type));
  h = mix(h, std::hash<std::string>{}(e.data));
  return h;
}

// Snapshot image: "<value_index>|<chain>|<value>".
std::string encode_image(uint64_t value_index, uint64_t chain, const std::string& value) {
  return std::to_string(value_index) + "|" + std::to_string(chain) + "|" + value;
}

void decode_image(const std::string& data, uint64_t* value_index, uint64_t* chain, std::string* value) {
  const size_t a = data.find('|');
  const size_t b = data.find('|', a + 1);
  *value_index = std::stoull(data.substr(0, a));
  *chain = std::stoull(data.substr(a + 1, b - a - 1));
  *value = data.substr(b + 1);
}

}  // namespace

void SimNode::start() {
  raft::Snapshot snap;
  (void)storage->snapshot(&snap);
  raft::Config c = config;
  c.applied = snap.metadata.index;
  raw = std::make_unique<raft::RawNode>(c, storage.get());
  applied = snap.metadata.index;
  value_index = 0;
  value.clear();
  if (!snap.empty()) {
    uint64_t chain_value = 0;
    decode_image(snap.data, &value_index, &chain_value, &value);
  }
  last_role = raw->raft().role();
  last_commit_seen = raw->raft().log().committed();
}

void SimNode::crash() {
  raw.reset();
  in_flight.reset();
  in_flight_sent = false;
  reads.clear();
  lead = 0;
  applied = 0;
  value_index = 0;
  value.clear();
}

uint64_t SimNode::chain_at(uint64_t index) const { return chain[index - chain_base]; }

void SimNode::persist_entries(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  storage->append(entries);
  for (const Entry& e : entries) {
    if (e.index <= chain_base) continue;
    chain.resize(e.index - chain_base);
    chain.push_back(hash_entry(chain.back(), e));
  }
}

void SimNode::install_snapshot(const raft::Snapshot& snap) {
  (void)storage->apply_snapshot(snap);
  uint64_t chain_value = 0;
  decode_image(snap.data, &value_index, &chain_value, &value);
  chain_base = snap.metadata.index;
  chain.assign(1, chain_value);
  applied = snap.metadata.index;
}

void SimNode::compact(uint64_t keep) {
  if (!up() || applied <= chain_base) return;
  const raft::ConfState cs = raw->applied_conf_state();
  if (storage->create_snapshot(applied, cs, encode_image(value_index, chain_at(applied), value)) !=
      raft::StorageError::kOk) {
    return;
  }
  if (applied <= keep) return;
  const uint64_t to = applied - keep;
  if (to <= chain_base) return;
  if (storage->compact(to) != raft::StorageError::kOk) return;
  chain.erase(chain.begin(), chain.begin() + static_cast<std::ptrdiff_t>(to - chain_base));
  chain_base = to;
}

void Checker::fail(const std::string& what) {
  if (failure_.empty()) failure_ = what;
}

void Checker::observe_role(SimNode& n) {
  if (!n.up()) return;
  const raft::Raft& r = n.raw->raft();
  const bool leader = r.role() == raft::Role::kLeader;
  if (leader) {
    auto [it, inserted] = leaders_.emplace(r.term(), n.id);
    if (!inserted && it->second != n.id) {
      fail("election safety: nodes " + std::to_string(it->second) + " and " +
           std::to_string(n.id) + " are both leader in term " + std::to_string(r.term()));
    }
    if (n.last_role != raft::Role::kLeader) {
      // Leader Completeness: every entry committed in an earlier term is in the new leader's log.
      const raft::Log& log = r.log();
      for (const auto& [index, c] : committed_) {
        if (c.commit_term >= r.term() || index < log.first_index()) continue;
        if (!log.match_term(index, c.entry.term)) {
          fail("leader completeness: leader " + std::to_string(n.id) + " of term " +
               std::to_string(r.term()) + " lacks committed entry " + raft::describe(c.entry));
          break;
        }
      }
    }
  }
  n.last_role = r.role();
}

void Checker::observe_commit(SimNode& n) {
  if (!n.up()) return;
  const raft::Log& log = n.raw->raft().log();
  const uint64_t commit = log.committed();
  const uint64_t led_term = n.leader_term_seen;
  n.leader_term_seen = n.raw->raft().role() == raft::Role::kLeader ? n.raw->raft().term() : 0;
  if (commit <= n.last_commit_seen) {
    n.last_commit_seen = std::min(n.last_commit_seen, commit);
    return;
  }
  const uint64_t lo = std::max(n.last_commit_seen + 1, log.first_index());
  std::vector<Entry> ents;
  if (lo <= commit) (void)log.slice(lo, commit + 1, UINT64_MAX, &ents);
  for (const Entry& e : ents) {
    auto [it, inserted] = committed_.emplace(e.index, Committed{e, n.raw->raft().term()});
    if (!inserted && !(it->second.entry == e)) {
      fail("committed entry lost: node " + std::to_string(n.id) + " committed " + raft::describe(e) +
           " but " + raft::describe(it->second.entry) + " was committed at that index");
      return;
    }
  }
  n.last_commit_seen = commit;
  // A leader that was already leading this term at the previous observation advanced its commit
  // index by counting replicas (paper Figure 2, leader rule 4).
  const raft::Raft& r = n.raw->raft();
  if (r.role() == raft::Role::kLeader && led_term == r.term()) {
    counted_.emplace(log.term_or_zero(commit), commit);
  }
}

void Checker::on_persist(const SimNode& n, const std::vector<Entry>& entries) {
  // Called before the write reaches n's disk. A committed entry is lost when a node that holds
  // it durably (or has persisted a commit index covering it) replaces it. A node that never
  // received it may write something else at that index: a deposed leader that has not yet
  // noticed (check-quorum takes up to two election timeouts) appends its own proposals there,
  // and a later leader's append will truncate them (paper section 5.3).
  const uint64_t persisted_commit = n.storage->hard_state().commit;
  for (const Entry& e : entries) {
    auto it = committed_.find(e.index);
    if (it == committed_.end() || it->second.entry == e) continue;
    uint64_t held_term = 0;
    const bool held = n.storage->term(e.index, &held_term) == raft::StorageError::kOk &&
                      e.index >= n.storage->first_index() && held_term == it->second.entry.term;
    if (held || e.index <= persisted_commit) {
      fail("committed entry lost: node " + std::to_string(n.id) + " overwrites committed " +
           raft::describe(it->second.entry) + " with " + raft::describe(e));
      return;
    }
  }
}

void Checker::on_apply(const SimNode& n, const Entry& e) {
  const uint64_t commit = n.raw->raft().log().committed();
  if (e.index > commit) {
    fail("apply before commit: node " + std::to_string(n.id) + " applies " + raft::describe(e) +
         " with commit index " + std::to_string(commit));
    return;
  }
  auto [it, inserted] = applied_.emplace(e.index, e);
  if (!inserted && !(it->second == e)) {
    fail("state machine safety: node " + std::to_string(n.id) + " applies " + raft::describe(e) +
         " but another node applied " + raft::describe(it->second));
    return;
  }
  if (e.type == EntryType::kNormal && !e.data.empty()) {
    max_applied_write_ = std::max(max_applied_write_, e.index);
  }
}

void Checker::on_snapshot_installed(const SimNode& n, uint64_t index, uint64_t value_index) {
  // The register in the snapshot must be the last write at or below its index.
  uint64_t expect = 0;
  for (auto it = applied_.upper_bound(index); it != applied_.begin();) {
    --it;
    if (it->second.type == EntryType::kNormal && !it->second.data.empty()) {
      expect = it->first;
      break;
    }
  }
  if (expect != value_index) {
    fail("snapshot: node " + std::to_string(n.id) + " installed a snapshot at " +
         std::to_string(index) + " holding write " + std::to_string(value_index) + ", expected " +
         std::to_string(expect));
  }
}

void Checker::check_log_matching(const std::map<NodeId, SimNode>& nodes) {
  // If two logs hold an entry with the same index and term, they are identical up to it
  // (paper section 5.3). Compared via the hash chains over the persisted logs.
  for (auto a = nodes.begin(); a != nodes.end(); ++a) {
    for (auto b = std::next(a); b != nodes.end(); ++b) {
      const SimNode& x = a->second;
      const SimNode& y = b->second;
      const uint64_t lo = std::max(x.chain_base, y.chain_base);
      const uint64_t hi = std::min(x.storage->last_index(), y.storage->last_index());
      for (uint64_t i = hi; i > lo && i >= 1; --i) {
        uint64_t tx = 0, ty = 0;
        (void)x.storage->term(i, &tx);
        (void)y.storage->term(i, &ty);
        if (tx != ty) continue;
        if (x.chain_at(i) != y.chain_at(i)) {
          fail("log matching: nodes " + std::to_string(x.id) + " and " + std::to_string(y.id) +
               " agree on the term of entry " + std::to_string(i) +
               " but their logs differ at or before it");
        }
        break;
      }
    }
  }
}

void Checker::check_up_to_date_logs_hold_commits(const std::map<NodeId, SimNode>& nodes) {
  if (counted_.empty()) return;
  auto check_log = [&](const SimNode& n, const char* where, uint64_t first, uint64_t last,
                       uint64_t last_term, auto term_at) {
    // The most up-to-date counted entry that this log is at least as up to date as; holding it
    // means holding every earlier one (Log Matching, checked separately).
    auto it = counted_.upper_bound({last_term, last});
    if (it == counted_.begin()) return;
    --it;
    const auto [t, i] = *it;
    if (i + 1 < first) return;  // inside the snapshot
    if (i <= last && term_at(i) == t) return;
    fail("leader completeness at risk: node " + std::to_string(n.id) + "'s " + where + " log (last " +
         std::to_string(last_term) + "/" + std::to_string(last) + ") could win an election but lacks " +
         "entry " + std::to_string(t) + "/" + std::to_string(i) + " that a leader committed");
  };
  for (const auto& [id, n] : nodes) {
    if (failed()) return;
    const raft::MemoryStorage& st = *n.storage;
    uint64_t st_last_term = 0;
    (void)st.term(st.last_index(), &st_last_term);
    check_log(n, "persisted", st.first_index(), st.last_index(), st_last_term, [&](uint64_t i) {
      uint64_t t = 0;
      (void)st.term(i, &t);
      return t;
    });
    if (!n.up()) continue;
    const raft::Log& log = n.raw->raft().log();
    check_log(n, "in-memory", log.first_index(), log.last_index(), log.last_term(),
              [&](uint64_t i) { return log.term_or_zero(i); });
  }
}

void Checker::read_finished(const SimNode& n, uint64_t id, uint64_t read_index) {
  const std::string context = std::to_string(id);
  auto it = reads_.find(id);
  if (it == reads_.end()) return;  // duplicate answer
  const uint64_t newest_at_start = it->second;
  reads_.erase(it);
  if (read_index > n.applied) {
    fail("read " + context + " on node " + std::to_string(n.id) + " served at applied " +
         std::to_string(n.applied) + " below its read index " + std::to_string(read_index));
    return;
  }
  if (n.value_index < newest_at_start) {
    fail("linearizability: read " + context + " on node " + std::to_string(n.id) +
         " returned write " + std::to_string(n.value_index) + " but write " +
         std::to_string(newest_at_start) + " had completed before the read started");
    return;
  }
  ++reads_completed_;
}

std::string describe_ready(const raft::Ready& rd) {
  std::ostringstream os;
  bool first = true;
  auto line = [&]() -> std::ostringstream& {
    if (!first) os << "\n";
    first = false;
    return os;
  };
  if (rd.soft_state) {
    line() << "Lead:" << rd.soft_state->lead << " State:" << raft::to_string(rd.soft_state->role);
  }
  if (rd.hard_state) {
    line() << "HardState Term:" << rd.hard_state->term << " Vote:" << rd.hard_state->vote
           << " Commit:" << rd.hard_state->commit;
  }
  if (!rd.entries.empty()) {
    line() << "Entries:";
    for (const Entry& e : rd.entries) line() << "  " << raft::describe(e);
  }
  if (rd.snapshot) {
    line() << "Snapshot Index:" << rd.snapshot->metadata.index << " Term:" << rd.snapshot->metadata.term;
  }
  if (!rd.committed_entries.empty()) {
    line() << "CommittedEntries:";
    for (const Entry& e : rd.committed_entries) line() << "  " << raft::describe(e);
  }
  if (!rd.messages.empty()) {
    line() << "Messages:";
    for (const raft::Message& m : rd.messages) line() << "  " << raft::describe(m);
  }
  if (!rd.read_states.empty()) {
    line() << "ReadStates:";
    for (const raft::ReadState& r : rd.read_states) line() << "  Index:" << r.index << " Context:" << r.context;
  }
  return os.str();
}

}  // namespace kvd::sim
