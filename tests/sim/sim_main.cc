// kvd_sim: randomized, deterministic raft cluster simulation. Each seed builds a cluster of 3
// (odd seeds) or 5 (even seeds) nodes and runs it through a chaos phase (message loss,
// duplication, reordering and delay; symmetric and asymmetric partitions; crashes that lose
// whatever was not persisted; restarts; snapshots and compaction; membership changes;
// leadership transfers; writes and ReadIndex reads), checking the safety properties after every
// round, then heals everything and requires a leader and a commit within a bounded number of
// ticks (liveness).
//
//   kvd_sim --seeds 2000              seeds 1..2000 (CI)
//   kvd_sim --seeds 100000            the soak
//   kvd_sim --seed 1234 --trace       replay one seed with a full trace
//
// A failing seed prints the one command that replays it.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "raft/log.h"
#include "tests/sim/host.h"

namespace kvd::sim {
namespace {

using raft::Message;
using raft::MessageType;

struct Options {
  uint64_t first_seed = 1;
  uint64_t seeds = 1;
  bool trace = false;
  int chaos_rounds = 1500;
  int liveness_ticks = 200;
  double time_budget_s = 0;  // 0: none
};

constexpr int kRoundsPerTick = 5;

struct InFlight {
  uint64_t deliver_at;
  uint64_t seq;
  Message m;
};

class Simulation {
 public:
  Simulation(uint64_t seed, const Options& opt) : seed_(seed), opt_(opt), rng_(seed * 7919 + 17) {
    const int n = (seed % 2 == 1) ? 3 : 5;
    founders_ = n;
    std::vector<NodeId> peers;
    for (int i = 1; i <= n; ++i) peers.push_back(static_cast<NodeId>(i));
    for (NodeId id : peers) add_node(id, peers);
    next_id_ = static_cast<NodeId>(n + 1);
    // Flow-control settings small enough that pipelining, batching limits and probing all
    // happen in short runs.
  }

  // Returns an empty string on success, else the violation.
  std::string run() {
    for (round_ = 1; round_ <= static_cast<uint64_t>(opt_.chaos_rounds); ++round_) {
      if (round_ % kRoundsPerTick == 0) tick_all();
      chaos();
      client_ops();
      deliver_due();
      process_all();
      check();
      if (checker_.failed()) return checker_.failure();
    }
    // Liveness: heal, restart everything, stop losing messages.
    lossy_ = false;
    cut_.clear();
    crash_point_.clear();  // a crash scheduled during chaos must not fire after the heal
    trace("heal: all partitions healed, all nodes restarted, no more loss");
    for (auto& [id, n] : nodes_) {
      if (!n.up()) restart(n);
    }
    // Once the proposal commits, a quorum read on every voter of the leader's configuration,
    // each to be served before the run passes.
    std::vector<uint64_t> heal_reads;
    auto reads_served = [&] {
      for (uint64_t r : heal_reads) {
        if (checker_.read_pending(r)) return false;
      }
      return true;
    };
    bool committed_live = false;
    const uint64_t start = round_;
    const uint64_t limit = start + static_cast<uint64_t>(opt_.liveness_ticks) * kRoundsPerTick;
    std::string live_data;
    NodeId live_node = 0;
    uint64_t live_index = 0;
    for (; round_ <= limit; ++round_) {
      if (round_ % kRoundsPerTick == 0) tick_all();
      if (live_data.empty() || (live_node != 0 && !leader_is(live_node))) {
        const NodeId l = stable_leader();
        if (l != 0) {
          live_data = "live" + std::to_string(round_);
          live_node = l;
          if (nodes_[l].raw->propose(live_data) != raft::Error::kOk) {
            live_data.clear();
            live_node = 0;
          } else {
            trace("liveness: propose " + live_data + " on leader " + std::to_string(l));
          }
        }
      }
      deliver_due();
      process_all();
      check();
      if (checker_.failed()) return checker_.failure();
      if (!committed_live && live_node != 0 && find_applied(live_node, live_data, &live_index)) {
        trace("liveness: " + live_data + " committed at index " + std::to_string(live_index) +
              " after " + std::to_string((round_ - start) / kRoundsPerTick) + " ticks");
        committed_live = true;
        for (NodeId v : nodes_[live_node].raw->raft().conf_state().voters) {
          heal_reads.push_back(++reads_);
          checker_.read_started(heal_reads.back());
          nodes_[v].reads.queue(heal_reads.back());
          trace("liveness: read " + std::to_string(heal_reads.back()) + " queued on " + std::to_string(v));
        }
      }
      if (committed_live && reads_served()) {
        trace("liveness: a quorum read on every node served after " +
              std::to_string((round_ - start) / kRoundsPerTick) + " ticks");
        return {};
      }
    }
    if (committed_live) {
      return "liveness: a quorum read queued at the heal was not served within " +
             std::to_string(opt_.liveness_ticks) + " ticks";
    }
    return "liveness: no leader committed a proposal within " + std::to_string(opt_.liveness_ticks) +
           " ticks of healing";
  }

  uint64_t rounds() const { return round_; }
  uint64_t reads() const { return checker_.reads_completed(); }
  uint64_t committed() const { return checker_.max_committed(); }

 private:
  void trace(const std::string& s) {
    if (opt_.trace) std::printf("r%llu %s\n", static_cast<unsigned long long>(round_), s.c_str());
  }

  void add_node(NodeId id, const std::vector<NodeId>& peers) {
    SimNode& n = nodes_[id];
    n.id = id;
    n.config.id = id;
    n.config.peers = peers;
    n.config.election_ticks = 10;
    n.config.heartbeat_ticks = 1;
    n.config.pre_vote = true;
    n.config.check_quorum = true;
    n.config.max_inflight = 4;
    n.config.max_size_per_msg = 16;  // a few entries per append
    n.config.seed = seed_;
    n.start();
  }

  void restart(SimNode& n) {
    n.start();
    trace("restart " + std::to_string(n.id));
  }

  void tick_all() {
    for (auto& [id, n] : nodes_) {
      if (!n.up()) continue;
      n.raw->tick();
      // As the member's tick: batches without an answer for ReadBatches::kRetry go again.
      reissue_reads(n, false);
    }
  }

  // The simulated time the member's read bookkeeping sees: a tick (5 rounds) is kvd's 100 ms
  // heartbeat interval.
  kvd::server::ReadBatches::Clock::time_point now() const {
    return kvd::server::ReadBatches::Clock::time_point(std::chrono::milliseconds(round_ * 20));
  }

  void reissue_reads(SimNode& n, bool all) {
    if (n.reads.reissue(all, now(), [this](uint64_t id) { return checker_.read_pending(id); })) {
      trace("node " + std::to_string(n.id) + ": reads queued again (" + (all ? "leader change" : "retry") + ")");
    }
  }

  // As the member's pump: every queued read in one read_index call, once a leader is known.
  void issue_reads(SimNode& n) {
    if (!n.reads.has_queued() || n.lead == 0) return;
    const bool ok = n.reads.issue(*n.raw, now());
    trace("node " + std::to_string(n.id) + ": read_index for the queued reads: " +
          (ok ? "issued" : "refused"));
  }

  // As the member after each apply: the reads whose read index is applied are answered.
  void serve_reads(SimNode& n) {
    n.reads.serve(n.applied, [&](uint64_t id, uint64_t index) {
      trace("node " + std::to_string(n.id) + ": read " + std::to_string(id) + " served at applied " +
            std::to_string(n.applied) + " (read index " + std::to_string(index) + ")");
      checker_.read_finished(n, id, index);
    });
  }

  NodeId leader_of_highest_term() const {
    NodeId best = 0;
    uint64_t best_term = 0;
    for (const auto& [id, n] : nodes_) {
      if (!n.up() || n.raw->raft().role() != raft::Role::kLeader) continue;
      if (n.raw->raft().term() > best_term) {
        best_term = n.raw->raft().term();
        best = id;
      }
    }
    return best;
  }

  bool leader_is(NodeId id) const {
    auto it = nodes_.find(id);
    return it != nodes_.end() && it->second.up() && it->second.raw->raft().role() == raft::Role::kLeader;
  }

  // A leader whose term no up member of its configuration exceeds. Removed nodes may sit at a
  // higher term forever: leader stickiness makes the members ignore them.
  NodeId stable_leader() const {
    const NodeId l = leader_of_highest_term();
    if (l == 0) return 0;
    const raft::Raft& r = nodes_.at(l).raw->raft();
    for (NodeId v : r.conf_state().voters) {
      auto it = nodes_.find(v);
      if (it != nodes_.end() && it->second.up() && it->second.raw->raft().term() > r.term()) return 0;
    }
    return l;
  }

  bool find_applied(NodeId id, const std::string& data, uint64_t* index) {
    auto it = applied_writes_.find(data);
    if (it == applied_writes_.end()) return false;
    for (const auto& [node, idx] : it->second) {
      if (node == id) {
        *index = idx;
        return true;
      }
    }
    return false;
  }

  std::vector<NodeId> up_nodes() const {
    std::vector<NodeId> out;
    for (const auto& [id, n] : nodes_) {
      if (n.up()) out.push_back(id);
    }
    return out;
  }

  NodeId pick_up() {
    const auto up = up_nodes();
    return up.empty() ? 0 : up[rng_.uniform(up.size())];
  }

  void chaos() {
    // Partitions.
    if (cut_.empty() && rng_.chance(0.004)) {
      const auto ids = all_ids();
      const int kind = static_cast<int>(rng_.uniform(3));
      if (kind == 0) {  // isolate one node, both ways
        const NodeId x = ids[rng_.uniform(ids.size())];
        for (NodeId y : ids) {
          if (y != x) cut_.insert({x, y}), cut_.insert({y, x});
        }
        trace("partition: isolate " + std::to_string(x));
      } else if (kind == 1) {  // random split into two sides, both ways
        std::set<NodeId> side;
        for (NodeId y : ids) {
          if (rng_.chance(0.5)) side.insert(y);
        }
        std::string desc;
        for (NodeId a : ids) {
          for (NodeId b : ids) {
            if (side.count(a) != side.count(b)) cut_.insert({a, b});
          }
          if (side.count(a)) desc += " " + std::to_string(a);
        }
        trace("partition: split {" + desc + " } from the rest");
      } else {  // asymmetric: one node can send but not receive, or the reverse
        const NodeId x = ids[rng_.uniform(ids.size())];
        const bool inbound = rng_.chance(0.5);
        for (NodeId y : ids) {
          if (y == x) continue;
          if (inbound) {
            cut_.insert({y, x});
          } else {
            cut_.insert({x, y});
          }
        }
        trace(std::string("partition: ") + std::to_string(x) + (inbound ? " hears nobody" : " reaches nobody"));
      }
    } else if (!cut_.empty() && rng_.chance(0.01)) {
      cut_.clear();
      trace("partition: healed");
    }
    // Crashes and restarts.
    if (rng_.chance(0.003)) {
      const NodeId x = pick_up();
      if (x != 0) {
        crash_point_[x] = static_cast<int>(rng_.uniform(3));
        trace("crash " + std::to_string(x) + " pending at point " + std::to_string(crash_point_[x]));
      }
    }
    for (auto& [id, n] : nodes_) {
      if (!n.up() && rng_.chance(0.02)) restart(n);
    }
    // Snapshots and compaction.
    if (rng_.chance(0.02)) {
      const NodeId x = pick_up();
      if (x != 0) {
        const uint64_t keep = rng_.uniform(4);
        nodes_[x].compact(keep);
        trace("compact " + std::to_string(x) + " at applied " + std::to_string(nodes_[x].applied) +
              " keeping " + std::to_string(keep));
      }
    }
    // Membership changes, via the leader.
    if (rng_.chance(0.004)) {
      const NodeId l = leader_of_highest_term();
      if (l != 0) {
        const auto voters = nodes_[l].raw->raft().conf_state().voters;
        const bool add = voters.size() < static_cast<size_t>(founders_ + 1) &&
                         (voters.size() <= static_cast<size_t>(founders_ - 1) || rng_.chance(0.5));
        raft::ConfChange cc;
        if (add) {
          cc.type = raft::ConfChangeType::kAddNode;
          cc.node_id = next_id_;
        } else {
          cc.type = raft::ConfChangeType::kRemoveNode;
          cc.node_id = voters[rng_.uniform(voters.size())];
        }
        const raft::Error err = nodes_[l].raw->propose_conf_change(cc);
        trace(std::string("membership: leader ") + std::to_string(l) + (add ? " adds " : " removes ") +
              std::to_string(cc.node_id) + ": " + raft::to_string(err));
        if (err == raft::Error::kOk && add) {
          add_node(next_id_, {});
          ++next_id_;
        }
      }
    }
    // Leadership transfer.
    if (rng_.chance(0.003)) {
      const NodeId l = leader_of_highest_term();
      if (l != 0) {
        const auto voters = nodes_[l].raw->raft().conf_state().voters;
        if (!voters.empty()) {
          const NodeId to = voters[rng_.uniform(voters.size())];
          nodes_[l].raw->transfer_leadership(to);
          trace("transfer leadership " + std::to_string(l) + " -> " + std::to_string(to));
        }
      }
    }
  }

  std::vector<NodeId> all_ids() const {
    std::vector<NodeId> out;
    for (const auto& [id, n] : nodes_) out.push_back(id);
    return out;
  }

  void client_ops() {
    if (rng_.chance(0.08)) {
      const NodeId x = pick_up();
      if (x != 0) {
        const std::string data = "w" + std::to_string(++writes_);
        const raft::Error err = nodes_[x].raw->propose(data);
        trace("propose " + data + " on " + std::to_string(x) + ": " + raft::to_string(err));
      }
    }
    if (rng_.chance(0.04)) {
      const NodeId x = pick_up();
      if (x != 0) {
        const uint64_t id = ++reads_;
        checker_.read_started(id);
        nodes_[x].reads.queue(id);
        trace("read " + std::to_string(id) + " queued on " + std::to_string(x));
      }
    }
  }

  void send(const Message& m) {
    if (lossy_ && rng_.chance(0.05)) {
      trace("drop " + raft::describe(m));
      report_snapshot(m, false);
      return;
    }
    const int copies = (lossy_ && rng_.chance(0.02)) ? 2 : 1;
    for (int i = 0; i < copies; ++i) {
      const uint64_t delay = 1 + rng_.uniform(lossy_ ? 4 : 2);
      net_.push_back(InFlight{round_ + delay, ++seq_, m});
    }
  }

  void report_snapshot(const Message& m, bool ok) {
    if (m.type != MessageType::kSnap) return;
    auto it = nodes_.find(m.from);
    if (it != nodes_.end() && it->second.up()) it->second.raw->report_snapshot(m.to, ok);
  }

  void deliver_due() {
    std::vector<InFlight> due;
    std::vector<InFlight> later;
    for (auto& f : net_) {
      (f.deliver_at <= round_ ? due : later).push_back(std::move(f));
    }
    net_.swap(later);
    std::sort(due.begin(), due.end(), [](const InFlight& a, const InFlight& b) {
      return a.deliver_at != b.deliver_at ? a.deliver_at < b.deliver_at : a.seq < b.seq;
    });
    for (auto& f : due) {
      const Message& m = f.m;
      auto it = nodes_.find(m.to);
      if (it == nodes_.end() || !it->second.up() || cut_.count({m.from, m.to})) {
        trace("lost " + raft::describe(m));
        report_snapshot(m, false);
        continue;
      }
      trace("deliver " + raft::describe(m));
      report_snapshot(m, true);
      (void)it->second.raw->step(m);
    }
  }

  void process_all() {
    for (auto& [id, n] : nodes_) {
      if (checker_.failed()) return;
      if (n.up()) issue_reads(n);
      if (!n.up()) continue;
      if (n.in_flight) {
        // As the member's pump while a Ready's fsync runs: what was committed meanwhile is
        // applied at once; the fsync completes in this round or a later one.
        apply_committed_meanwhile(n);
        if (checker_.failed() || !rng_.chance(0.5)) continue;
        finish_ready(n);
        if (checker_.failed() || !n.up()) continue;
      }
      if (n.raw->has_ready()) process_ready(n);
    }
  }

  void crash(SimNode& n, const char* where) {
    trace("crash " + std::to_string(n.id) + " " + where);
    n.crash();
    crash_point_.erase(n.id);
  }

  // As the member's pump (server/member/raft_loop.cc): take the Ready, apply its committed
  // entries at once (raft hands out only entries persisted before), a leader sends its messages
  // before persisting; then the persist completes now or, half of the time, in a later round
  // (finish_ready), with messages delivered and commits learnt meanwhile.
  void process_ready(SimNode& n) {
    checker_.observe_role(n);
    checker_.observe_commit(n);
    raft::Ready rd = n.raw->ready();
    if (opt_.trace) {
      const std::string d = describe_ready(rd);
      if (!d.empty()) trace("node " + std::to_string(n.id) + " ready:\n" + d);
    }
    // As the member's pump: the read states release reads (served once applied), and a new
    // leader sends every batch still unanswered again.
    const NodeId lead_before = n.lead;
    if (rd.soft_state) n.lead = rd.soft_state->lead;
    n.reads.take(rd.read_states);
    serve_reads(n);
    if (n.lead != lead_before) reissue_reads(n, true);
    const bool leader = n.raw->raft().role() == raft::Role::kLeader;
    if (leader) {
      for (const Message& m : rd.messages) send(m);
    }
    apply(n, rd.committed_entries);
    if (checker_.failed()) return;
    n.in_flight = std::move(rd);
    n.in_flight_sent = leader;
    if (rng_.chance(0.5)) return;
    finish_ready(n);
  }

  void apply(SimNode& n, const std::vector<raft::Entry>& ents) {
    for (const raft::Entry& e : ents) {
      checker_.on_apply(n, e);
      // The member answers a write once applied: it must be on this node's disk by then
      // (and, being committed, on a quorum's).
      uint64_t held_term = 0;
      const bool held = e.index < n.storage->first_index() ||
                        (n.storage->term(e.index, &held_term) == raft::StorageError::kOk &&
                         held_term == e.term);
      if (!held) {
        checker_.fail("apply before persist: node " + std::to_string(n.id) + " applies " +
                      raft::describe(e) + " not yet on its disk");
      }
      if (checker_.failed()) return;
      if (e.index <= n.applied) continue;
      n.applied = e.index;
      if (e.type == raft::EntryType::kNormal && !e.data.empty()) {
        n.value = e.data;
        n.value_index = e.index;
        applied_writes_[e.data].emplace_back(n.id, e.index);
      }
    }
    serve_reads(n);
  }

  void apply_committed_meanwhile(SimNode& n) {
    raft::Committed c = n.raw->take_committed();
    if (c.empty()) return;
    trace("node " + std::to_string(n.id) + " applies meanwhile " + std::to_string(c.entries.size()) +
          " entries, " + std::to_string(c.read_states.size()) + " read states");
    n.reads.take(c.read_states);
    apply(n, c.entries);
  }

  void finish_ready(SimNode& n) {
    raft::Ready rd = std::move(*n.in_flight);
    n.in_flight.reset();
    auto cp = crash_point_.find(n.id);
    const int crash_at = cp == crash_point_.end() ? -1 : cp->second;
    if (crash_at == 0) return crash(n, "before persisting its ready");
    // 1. Persist.
    if (rd.snapshot) n.install_snapshot(*rd.snapshot);
    checker_.on_persist(n, rd.entries);
    n.persist_entries(rd.entries);
    if (rd.hard_state) n.storage->set_hard_state(*rd.hard_state);
    if (crash_at == 1) return crash(n, "after persisting, before sending");
    // 2. Send.
    if (!n.in_flight_sent) {
      for (const Message& m : rd.messages) send(m);
    }
    n.in_flight_sent = false;
    if (crash_at == 2) return crash(n, "after sending, before advancing");
    // 3. The snapshot's image is the state machine now (a Ready with a snapshot hands out no
    // committed entries: they come with later Readies).
    if (rd.snapshot) {
      checker_.on_snapshot_installed(n, rd.snapshot->metadata.index, n.value_index);
    }
    if (checker_.failed()) return;  // report the violation, not whatever advance() trips over
    n.raw->advance();
    checker_.observe_role(n);
    checker_.observe_commit(n);
  }

  void check() {
    for (auto& [id, n] : nodes_) {
      checker_.observe_role(n);
      checker_.observe_commit(n);
    }
    checker_.check_log_matching(nodes_);
    checker_.check_up_to_date_logs_hold_commits(nodes_);
  }

  uint64_t seed_;
  Options opt_;
  Rng rng_;
  int founders_ = 3;
  std::map<NodeId, SimNode> nodes_;
  NodeId next_id_ = 0;
  Checker checker_;
  std::vector<InFlight> net_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::map<NodeId, int> crash_point_;
  std::map<std::string, std::vector<std::pair<NodeId, uint64_t>>> applied_writes_;
  bool lossy_ = true;
  uint64_t round_ = 0;
  uint64_t seq_ = 0;
  uint64_t writes_ = 0;
  uint64_t reads_ = 0;
};

const char* g_argv0 = "kvd_sim";
uint64_t g_current_seed = 0;

void print_replay(uint64_t seed) {
  std::printf("replay: %s --seed %llu --trace\n", g_argv0, static_cast<unsigned long long>(seed));
  std::fflush(stdout);
}

void on_fatal(const char* msg) {
  std::printf("FAIL seed=%llu: raft fatal: %s\n", static_cast<unsigned long long>(g_current_seed), msg);
  print_replay(g_current_seed);
}

int usage() {
  std::fprintf(stderr,
               "usage: kvd_sim [--seeds N] [--first S] [--seed S] [--trace] [--rounds R]\n"
               "               [--liveness-ticks T] [--time-budget SECONDS]\n");
  return 2;
}

int run_main(int argc, char** argv) {
  g_argv0 = argv[0];
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--trace") {
      opt.trace = true;
    } else if (a == "--seeds" && (v = value())) {
      opt.seeds = std::strtoull(v, nullptr, 10);
    } else if (a == "--first" && (v = value())) {
      opt.first_seed = std::strtoull(v, nullptr, 10);
    } else if (a == "--seed" && (v = value())) {
      opt.first_seed = std::strtoull(v, nullptr, 10);
      opt.seeds = 1;
    } else if (a == "--rounds" && (v = value())) {
      opt.chaos_rounds = std::atoi(v);
    } else if (a == "--liveness-ticks" && (v = value())) {
      opt.liveness_ticks = std::atoi(v);
    } else if (a == "--time-budget" && (v = value())) {
      opt.time_budget_s = std::atof(v);
    } else {
      return usage();
    }
  }
  raft::set_fatal_hook(on_fatal);
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t rounds = 0, reads = 0, committed = 0, done = 0;
  for (uint64_t s = opt.first_seed; s < opt.first_seed + opt.seeds; ++s) {
    g_current_seed = s;
    Simulation sim(s, opt);
    const std::string failure = sim.run();
    rounds += sim.rounds();
    reads += sim.reads();
    committed += sim.committed();
    ++done;
    if (!failure.empty()) {
      std::printf("FAIL seed=%llu nodes=%d step=%llu: %s\n", static_cast<unsigned long long>(s),
                  s % 2 == 1 ? 3 : 5, static_cast<unsigned long long>(sim.rounds()), failure.c_str());
      print_replay(s);
      std::printf("%llu passed, 1 failed\n", static_cast<unsigned long long>(done - 1));
      return 1;
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (opt.time_budget_s > 0 && elapsed > opt.time_budget_s) {
      std::printf("FAIL time budget of %.0fs exhausted after %llu of %llu seeds\n", opt.time_budget_s,
                  static_cast<unsigned long long>(done), static_cast<unsigned long long>(opt.seeds));
      return 1;
    }
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("seeds %llu..%llu: %llu rounds, %llu committed entries, %llu linearizable reads, %.1fs\n",
              static_cast<unsigned long long>(opt.first_seed),
              static_cast<unsigned long long>(opt.first_seed + opt.seeds - 1),
              static_cast<unsigned long long>(rounds), static_cast<unsigned long long>(committed),
              static_cast<unsigned long long>(reads), elapsed);
  std::printf("%llu passed, 0 failed\n", static_cast<unsigned long long>(done));
  return 0;
}

}  // namespace
}  // namespace kvd::sim

int main(int argc, char** argv) { return kvd::sim::run_main(argc, argv); }
