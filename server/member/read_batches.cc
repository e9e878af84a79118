#include "server/member/read_batches.h"

#include <utility>

namespace kvd::server {

namespace {
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
}  // namespace

bool ReadBatches::issue(raft::RawNode& raw, Clock::time_point now) {
  if (queued_.empty()) return true;
  // Unique across members too: the leader keeps the pending requests of every member, and
  // matches heartbeat answers to them by context.
  std::string context = "R";
  put_u64(context, raw.id());
  put_u64(context, next_context_++);
  if (raw.read_index(context) != raft::Error::kOk) return false;
  batches_.emplace(std::move(context), Batch{std::exchange(queued_, {}), now});
  return true;
}

void ReadBatches::take(std::vector<raft::ReadState>& states) {
  for (auto& rs : states) {
    auto it = batches_.find(rs.context);
    if (it == batches_.end()) continue;  // a batch asked again under another context
    for (uint64_t id : it->second.ids) at_index_.emplace(rs.index, id);
    batches_.erase(it);
  }
  states.clear();
}

void ReadBatches::clear() {
  queued_.clear();
  batches_.clear();
  at_index_.clear();
}

}  // namespace kvd::server
