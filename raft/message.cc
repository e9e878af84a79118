#include "raft/message.h"

#include <algorithm>
#include <cstring>

#include "common/codec.h"

namespace kvd::raft {

const char* to_string(MessageType t) {
  switch (t) {
    case MessageType::kHup: return "Hup";
    case MessageType::kBeat: return "Beat";
    case MessageType::kCheckQuorum: return "CheckQuorum";
    case MessageType::kUnreachable: return "Unreachable";
    case MessageType::kSnapStatus: return "SnapStatus";
    case MessageType::kProp: return "Prop";
    case MessageType::kApp: return "App";
    case MessageType::kAppResp: return "AppResp";
    case MessageType::kVote: return "Vote";
    case MessageType::kVoteResp: return "VoteResp";
    case MessageType::kPreVote: return "PreVote";
    case MessageType::kPreVoteResp: return "PreVoteResp";
    case MessageType::kSnap: return "Snap";
    case MessageType::kHeartbeat: return "Heartbeat";
    case MessageType::kHeartbeatResp: return "HeartbeatResp";
    case MessageType::kTransferLeader: return "TransferLeader";
    case MessageType::kTimeoutNow: return "TimeoutNow";
    case MessageType::kReadIndex: return "ReadIndex";
    case MessageType::kReadIndexResp: return "ReadIndexResp";
  }
  return "?";
}

bool Message::is_local() const {
  switch (type) {
    case MessageType::kHup:
    case MessageType::kBeat:
    case MessageType::kCheckQuorum:
    case MessageType::kUnreachable:
    case MessageType::kSnapStatus:
      return true;
    default:
      return false;
  }
}

bool Message::is_response() const {
  switch (type) {
    case MessageType::kAppResp:
    case MessageType::kVoteResp:
    case MessageType::kPreVoteResp:
    case MessageType::kHeartbeatResp:
    case MessageType::kReadIndexResp:
      return true;
    default:
      return false;
  }
}

std::string encode_conf_change(const ConfChange& cc) {
  std::string out;
  out.reserve(10 + cc.context.size());
  codec::put_u8(out, 1);
  codec::put_u8(out, static_cast<uint8_t>(cc.type));
  codec::put_u64(out, cc.node_id);
  out += cc.context;
  return out;
}

std::optional<ConfChange> decode_conf_change(std::string_view data) {
  codec::Reader r(data);
  uint8_t version = 0, type = 0;
  ConfChange cc;
  if (!r.u8(&version) || version != 1 || !r.u8(&type) || !r.u64(&cc.node_id)) return std::nullopt;
  if (type > static_cast<uint8_t>(ConfChangeType::kUpdateNode)) return std::nullopt;
  cc.type = static_cast<ConfChangeType>(type);
  cc.context = std::string(r.rest());
  return cc;
}

ConfState apply_conf_change(const ConfState& cs, const ConfChange& cc) {
  ConfState out = cs;
  auto& v = out.voters;
  const auto it = std::find(v.begin(), v.end(), cc.node_id);
  switch (cc.type) {
    case ConfChangeType::kAddNode:
      if (it == v.end()) v.push_back(cc.node_id);
      break;
    case ConfChangeType::kRemoveNode:
      if (it != v.end()) v.erase(it);
      break;
    case ConfChangeType::kUpdateNode:
      break;
  }
  std::sort(v.begin(), v.end());
  return out;
}

std::string describe(const Entry& e) {
  std::string s = std::to_string(e.term) + "/" + std::to_string(e.index);
  if (e.type == EntryType::kConfChange) {
    const auto cc = decode_conf_change(e.data);
    if (!cc) return s + " ConfChange(?)";
    static const char* kNames[] = {"add", "remove", "update"};
    return s + " ConfChange(" + kNames[static_cast<int>(cc->type)] + " " +
           std::to_string(cc->node_id) + ")";
  }
  if (e.data.empty()) return s + " EntryNormal \"\"";
  return s + " EntryNormal \"" + e.data + "\"";
}

std::string describe(const Message& m) {
  std::string s = std::to_string(m.from) + "->" + std::to_string(m.to) + " " + to_string(m.type) +
                  " Term:" + std::to_string(m.term) + " Log:" + std::to_string(m.log_term) + "/" +
                  std::to_string(m.index);
  if (m.reject) s += " Rejected (Hint: " + std::to_string(m.reject_hint) + ")";
  if (m.commit != 0) s += " Commit:" + std::to_string(m.commit);
  if (!m.entries.empty()) {
    s += " Entries:[";
    for (size_t i = 0; i < m.entries.size(); ++i) {
      if (i) s += ", ";
      s += describe(m.entries[i]);
    }
    s += "]";
  }
  if (m.snapshot) {
    s += " Snapshot: Index:" + std::to_string(m.snapshot->metadata.index) +
         " Term:" + std::to_string(m.snapshot->metadata.term) + " Voters:[";
    for (size_t i = 0; i < m.snapshot->metadata.conf_state.voters.size(); ++i) {
      if (i) s += " ";
      s += std::to_string(m.snapshot->metadata.conf_state.voters[i]);
    }
    s += "]";
  }
  if (!m.context.empty()) s += " Context:" + m.context;
  return s;
}

}  // namespace kvd::raft
