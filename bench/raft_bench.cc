// raft_bench: throughput of the raft core alone. A 3-node cluster of RawNodes over MemoryStorage
// in one thread: no disk, no network, no clock, so the figures are the cost of the protocol
// logic (Ready/advance, log bookkeeping, message construction, commit counting) and set the
// ceiling the server's I/O then lowers. Run by hand, not by ctest:
//
//   ninja -C build raft_bench && build/bench/raft_bench
//
// Each benchmark iteration proposes `batch` entries of `entry_bytes` on the leader, then runs
// Ready rounds (persist to MemoryStorage, deliver messages, apply) until the cluster is quiet,
// so every proposal is committed and applied on all three nodes. items_per_second is committed
// entries per second.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "raft/memory_storage.h"
#include "raft/raw_node.h"

namespace kvd::raft {
namespace {

class BenchCluster {
 public:
  BenchCluster() {
    for (NodeId id = 1; id <= 3; ++id) {
      Config c;
      c.id = id;
      c.peers = {1, 2, 3};
      c.seed = 1;
      auto& n = nodes_.emplace_back();
      n.storage = std::make_unique<MemoryStorage>();
      n.raw = std::make_unique<RawNode>(c, n.storage.get());
    }
    nodes_[0].raw->campaign();
    pump();
    if (nodes_[0].raw->raft().role() != Role::kLeader) {
      std::fprintf(stderr, "raft_bench: node 1 did not become leader\n");
      std::abort();
    }
  }

  RawNode& leader() { return *nodes_[0].raw; }
  uint64_t applied(size_t i) const { return nodes_[i].applied; }

  // Ready rounds until no node has anything to do.
  void pump() {
    for (;;) {
      bool any = false;
      for (auto& n : nodes_) {
        if (!n.raw->has_ready()) continue;
        any = true;
        Ready rd = n.raw->ready();
        if (rd.snapshot) (void)n.storage->apply_snapshot(*rd.snapshot);
        n.storage->append(rd.entries);
        if (rd.hard_state) n.storage->set_hard_state(*rd.hard_state);
        for (Message& m : rd.messages) queue_.push_back(std::move(m));
        if (!rd.committed_entries.empty()) n.applied = rd.committed_entries.back().index;
        n.raw->advance();
      }
      while (!queue_.empty()) {
        any = true;
        Message m = std::move(queue_.front());
        queue_.pop_front();
        (void)nodes_[m.to - 1].raw->step(std::move(m));
      }
      if (!any) return;
    }
  }

  // Keeps memory bounded: drop applied entries from every log.
  void compact() {
    for (auto& n : nodes_) {
      if (n.applied > n.storage->first_index()) (void)n.storage->compact(n.applied);
    }
  }

 private:
  struct Node {
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<RawNode> raw;
    uint64_t applied = 0;
  };
  std::vector<Node> nodes_;
  std::deque<Message> queue_;
};

void BM_Commit3Nodes(benchmark::State& state) {
  const size_t entry_bytes = static_cast<size_t>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  BenchCluster c;
  const std::string payload(entry_bytes, 'x');
  const uint64_t start = c.applied(0);
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      if (c.leader().propose(payload) != Error::kOk) {
        state.SkipWithError("proposal refused");
        return;
      }
    }
    c.pump();
    if (c.applied(0) % 4096 < static_cast<uint64_t>(batch)) c.compact();
  }
  const uint64_t committed = c.applied(0) - start;
  if (committed != static_cast<uint64_t>(state.iterations()) * static_cast<uint64_t>(batch) ||
      c.applied(1) != c.applied(0) || c.applied(2) != c.applied(0)) {
    state.SkipWithError("not every proposal was committed and applied on all nodes");
    return;
  }
  state.SetItemsProcessed(static_cast<int64_t>(committed));
  state.SetBytesProcessed(static_cast<int64_t>(committed * entry_bytes));
  state.counters["batch"] = batch;
}

BENCHMARK(BM_Commit3Nodes)
    ->ArgNames({"entry_bytes", "batch"})
    ->ArgsProduct({{64, 1024}, {1, 16, 256}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvd::raft

BENCHMARK_MAIN();
