// The member's bookkeeping of linearizable reads by ReadIndex (Raft thesis section 6.4): the
// reads queued meanwhile share one RawNode::read_index call (one heartbeat round) under a fresh
// context, raft's ReadState for that context gives the batch its read index, and each read is
// served once the member has applied that index. A batch can be lost (a new leader drops what
// the old one held, a heartbeat answer lost on the network): reissue() queues it again, to go
// out under a new context, on a leader change and after kRetry.
//
// Pure bookkeeping, no I/O and no clock of its own (the caller passes the time), so that the
// simulator (tests/sim) runs this same code under its register check. Reads are known by the
// caller's ids. Not thread-safe: the member's strand owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "raft/raw_node.h"

namespace kvd::server {

class ReadBatches {
 public:
  using Clock = std::chrono::steady_clock;
  // A batch without a ReadState after this long is asked again (a lost heartbeat answer).
  static constexpr Clock::duration kRetry = std::chrono::milliseconds(500);

  void queue(uint64_t id) { queued_.push_back(id); }
  bool has_queued() const { return !queued_.empty(); }

  // One read_index call for every queued read, under a context no other batch of any member
  // uses (the node id and a counter). When raft refuses (no leader known yet), the reads stay
  // queued and false is returned.
  bool issue(raft::RawNode& raw, Clock::time_point now);

  // Gives each batch a ReadState names its read index; states for batches asked again under
  // another context are ignored. Clears states.
  void take(std::vector<raft::ReadState>& states);

  // Calls serve(id, read_index) for every read whose read index is at or below applied, lowest
  // index first, and forgets them.
  template <class Serve>
  void serve(uint64_t applied, Serve&& serve) {
    while (!at_index_.empty() && at_index_.begin()->first <= applied) {
      const auto [index, id] = *at_index_.begin();
      at_index_.erase(at_index_.begin());
      serve(id, index);
    }
  }

  // Queues again the reads of every batch still without a ReadState (all), or of those issued
  // kRetry or more before now; wanted(id) says whether a read is still waited for (a read that
  // timed out is dropped). Returns whether any read is queued.
  template <class Wanted>
  bool reissue(bool all, Clock::time_point now, Wanted&& wanted) {
    for (auto it = batches_.begin(); it != batches_.end();) {
      if (!all && now - it->second.issued < kRetry) {
        ++it;
        continue;
      }
      for (uint64_t id : it->second.ids) {
        if (wanted(id)) queued_.push_back(id);
      }
      it = batches_.erase(it);
    }
    return !queued_.empty();
  }

  // Forgets every read (the member fails their waiters).
  void clear();

 private:
  struct Batch {
    std::vector<uint64_t> ids;
    Clock::time_point issued;
  };
  std::vector<uint64_t> queued_;
  std::unordered_map<std::string, Batch> batches_;  // by context
  std::multimap<uint64_t, uint64_t> at_index_;      // read index -> id
  uint64_t next_context_ = 0;
};

}  // namespace kvd::server
