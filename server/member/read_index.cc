// Quorum reads (`GET ...?quorum=true`) by ReadIndex, Raft thesis section 6.4: no log entry and
// no fsync. The leader notes its commit index, confirms with one heartbeat round that it is
// still the leader, and the read is answered once this member has applied up to that index; a
// follower asks the leader for the index (raft forwards it) and does the same. etcd 3.4 sends
// each v2 quorum GET through the log instead (a QGET entry, fsynced on every member); the answer
// is the same, linearizable.
//
//   1. queue_read:       the read becomes a kRead waiter and its id is queued.
//   2. issue_reads:      at the next pump, one read_index call for every queued read, under a
//                        fresh context (one heartbeat round for the whole batch).
//   3. take_read_states: raft's ReadState for a context gives the batch its read index.
//   4. serve_reads:      after each apply, the reads whose index is applied are answered from
//                        the store.
// A batch can be lost (a new leader drops what the old one held, a heartbeat answer lost on the
// network): reissue_reads sends it again under a new context on a leader change and after
// ReadBatches::kRetry, as etcd's v3 server retries its read index. The bookkeeping is
// ReadBatches (read_batches.h), which the simulator runs too. Timeouts and failures are the
// waiters' (apply.cc), so a read that cannot complete answers as any request that cannot.
//
// Runs on the member's strand.
#include "server/member/core.h"

namespace kvd::server {

void Core::queue_read(uint64_t id, Waiter w) {
  waiters.emplace(id, std::move(w));
  reads.queue(id);
  schedule_pump();
}

void Core::issue_reads() {
  // raft refuses while it knows no leader (a candidate): the reads stay queued until one is
  // known (finish_ready retries), or time out.
  if (!raw || leader_id == raft::kNoNode) return;
  reads.issue(*raw, SteadyClock::now());
}

void Core::take_read_states(std::vector<raft::ReadState>& states) {
  reads.take(states);
  serve_reads();
}

void Core::serve_reads() {
  reads.serve(applied, [this](uint64_t id, uint64_t) {
    auto it = waiters.find(id);
    if (it == waiters.end() || it->second.kind != Waiter::Kind::kRead) return;  // timed out
    Waiter w = std::move(it->second);
    waiters.erase(it);
    answer_get(w.req, w.cb);
  });
}

void Core::reissue_reads(bool all) {
  if (reads.reissue(all, SteadyClock::now(), [this](uint64_t id) { return waiters.count(id) > 0; })) {
    schedule_pump();
  }
}

}  // namespace kvd::server
