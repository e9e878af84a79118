#include "raft/raw_node.h"

#include <algorithm>

namespace kvd::raft {

RawNode::RawNode(const Config& config, const LogStorage* storage)
    : raft_(config, storage), max_committed_bytes_(config.max_committed_size_per_ready) {
  prev_soft_ = raft_.soft_state();
  const auto [hs, cs] = storage->initial_state();
  (void)cs;
  // After a bootstrap the hard state differs from storage's and shows up in the first Ready.
  prev_hard_ = hs;
}

void RawNode::campaign() {
  Message m;
  m.type = MessageType::kHup;
  m.from = raft_.id();
  (void)raft_.step(std::move(m));
}

Error RawNode::step(Message m) {
  if (m.is_local()) return Error::kStepLocalMsg;
  return raft_.step(std::move(m));
}

Error RawNode::propose(std::string data) {
  return step_with_entry(MessageType::kProp, EntryType::kNormal, std::move(data));
}

Error RawNode::propose_conf_change(const ConfChange& cc) {
  return step_with_entry(MessageType::kProp, EntryType::kConfChange, encode_conf_change(cc));
}

Error RawNode::read_index(std::string context) {
  return step_with_entry(MessageType::kReadIndex, EntryType::kNormal, std::move(context));
}

Error RawNode::step_with_entry(MessageType type, EntryType entry_type, std::string data) {
  Message m;
  m.type = type;
  m.from = raft_.id();
  m.entries.push_back(Entry{0, 0, entry_type, std::move(data)});
  return raft_.step(std::move(m));
}

void RawNode::transfer_leadership(NodeId to) {
  Message m;
  m.type = MessageType::kTransferLeader;
  m.from = to;
  (void)raft_.step(std::move(m));
}

void RawNode::report_unreachable(NodeId id) {
  Message m;
  m.type = MessageType::kUnreachable;
  m.from = id;
  (void)raft_.step(std::move(m));
}

void RawNode::report_snapshot(NodeId id, bool ok) {
  Message m;
  m.type = MessageType::kSnapStatus;
  m.from = id;
  m.reject = !ok;
  (void)raft_.step(std::move(m));
}

bool RawNode::has_ready() const {
  if (raft_.soft_state() != prev_soft_) return true;
  const HardState hs = raft_.hard_state();
  if (!hs.empty() && hs != prev_hard_) return true;
  const Log& log = raft_.log();
  if (log.unstable_snapshot()) return true;
  if (!log.unstable_entries().empty()) return true;
  if (log.has_next_committed()) return true;
  if (!raft_.outbox().empty()) return true;
  for (const ReadState& rs : raft_.read_states()) {
    if (rs.index <= log.applied()) return true;
  }
  return false;
}

Ready RawNode::ready() {
  if (in_progress_) fatal("ready() called again before advance()");
  Ready rd;
  const SoftState ss = raft_.soft_state();
  if (ss != prev_soft_) {
    rd.soft_state = ss;
    prev_soft_ = ss;
  }
  const HardState hs = raft_.hard_state();
  if (!hs.empty() && hs != prev_hard_) rd.hard_state = hs;
  Log& log = raft_.mutable_log();
  rd.entries = log.unstable_entries();
  if (log.unstable_snapshot()) rd.snapshot = *log.unstable_snapshot();
  rd.committed_entries = hand_out_committed();
  rd.messages.swap(raft_.outbox());
  // Read states become servable once everything up to their index is applied.
  rd.read_states = take_read_states(rd.snapshot ? rd.snapshot->metadata.index : 0);

  rd.must_sync = !rd.entries.empty() || rd.snapshot.has_value() ||
                 (rd.hard_state && (rd.hard_state->term != prev_hard_.term ||
                                    rd.hard_state->vote != prev_hard_.vote));
  if (rd.hard_state) prev_hard_ = *rd.hard_state;

  ready_last_index_ = rd.entries.empty() ? 0 : rd.entries.back().index;
  ready_last_term_ = rd.entries.empty() ? 0 : rd.entries.back().term;
  ready_snapshot_index_ = rd.snapshot ? rd.snapshot->metadata.index : 0;
  in_progress_ = true;
  return rd;
}

Committed RawNode::take_committed() {
  if (!in_progress_) fatal("take_committed() without a Ready in progress");
  Committed c;
  c.entries = hand_out_committed();
  c.read_states = take_read_states(0);
  return c;
}

std::vector<Entry> RawNode::hand_out_committed() {
  std::vector<Entry> ents = raft_.log().next_committed(max_committed_bytes_);
  if (!ents.empty()) raft_.applied_to(ents.back().index);
  return ents;
}

std::vector<ReadState> RawNode::take_read_states(uint64_t applied_after) {
  applied_after = std::max(applied_after, raft_.log().applied());
  std::vector<ReadState> out;
  std::vector<ReadState> keep;
  for (ReadState& r : raft_.read_states()) {
    (r.index <= applied_after ? out : keep).push_back(std::move(r));
  }
  raft_.read_states().swap(keep);
  return out;
}

void RawNode::advance() {
  if (!in_progress_) fatal("advance() without ready()");
  in_progress_ = false;
  Log& log = raft_.mutable_log();
  if (ready_snapshot_index_ != 0) {
    log.stable_snapshot_to(ready_snapshot_index_);
    if (log.applied() < ready_snapshot_index_) raft_.applied_to(ready_snapshot_index_);
  }
  if (ready_last_index_ != 0) log.stable_to(ready_last_index_, ready_last_term_);
  if (ready_last_index_ != 0 || ready_snapshot_index_ != 0) raft_.on_stable();
}

NodeStatus RawNode::status() const {
  NodeStatus s;
  s.id = raft_.id();
  s.hard_state = raft_.hard_state();
  s.soft_state = raft_.soft_state();
  s.applied = raft_.log().applied();
  s.last_index = raft_.log().last_index();
  s.lead_transferee = raft_.lead_transferee();
  s.conf_state = raft_.conf_state();
  if (raft_.role() == Role::kLeader) s.progress = raft_.progress();
  return s;
}

}  // namespace kvd::raft
