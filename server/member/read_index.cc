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
// kReadRetry, as etcd's v3 server retries its read index. Timeouts and failures are the waiters'
// (apply.cc), so a read that cannot complete answers as any request that cannot.
//
// Runs on the member's strand.
#include <spdlog/spdlog.h>

#include "server/member/core.h"

namespace kvd::server {

namespace {
// A batch without a ReadState after this long is asked again (a lost heartbeat answer).
constexpr auto kReadRetry = std::chrono::milliseconds(500);
}  // namespace

void Core::queue_read(uint64_t id, Waiter w) {
  waiters.emplace(id, std::move(w));
  reads_queued.push_back(id);
  schedule_pump();
}

void Core::issue_reads() {
  if (reads_queued.empty() || !raw || leader_id == raft::kNoNode) return;
  std::string context = "R";
  for (int i = 0; i < 8; ++i) context.push_back(static_cast<char>(next_read_context >> (8 * i)));
  ++next_read_context;
  // raft refuses while it knows no leader (a candidate): the reads stay queued until one is
  // known (finish_ready retries), or time out.
  if (raw->read_index(context) != raft::Error::kOk) return;
  read_batches.emplace(std::move(context),
                       ReadBatch{std::exchange(reads_queued, {}), SteadyClock::now()});
}

void Core::take_read_states(std::vector<raft::ReadState>& states) {
  for (auto& rs : states) {
    auto it = read_batches.find(rs.context);
    if (it == read_batches.end()) continue;  // a batch asked again under another context
    for (uint64_t id : it->second.ids) reads_at_index.emplace(rs.index, id);
    read_batches.erase(it);
  }
  states.clear();
  serve_reads();
}

void Core::serve_reads() {
  while (!reads_at_index.empty() && reads_at_index.begin()->first <= applied) {
    const uint64_t id = reads_at_index.begin()->second;
    reads_at_index.erase(reads_at_index.begin());
    auto it = waiters.find(id);
    if (it == waiters.end() || it->second.kind != Waiter::Kind::kRead) continue;  // timed out
    Waiter w = std::move(it->second);
    waiters.erase(it);
    answer_get(w.req, w.cb);
  }
}

void Core::reissue_reads(bool all) {
  if (read_batches.empty()) return;
  const auto now = SteadyClock::now();
  for (auto it = read_batches.begin(); it != read_batches.end();) {
    if (!all && now - it->second.issued < kReadRetry) {
      ++it;
      continue;
    }
    for (uint64_t id : it->second.ids)
      if (waiters.count(id)) reads_queued.push_back(id);
    it = read_batches.erase(it);
  }
  if (!reads_queued.empty()) schedule_pump();
}

}  // namespace kvd::server
