// Applying committed entries, and everything waiting for them: writes, quorum reads, probes,
// internal proposals (waiters, by request id), their timeouts, and the leader's expiry ticks.
//
// Raft entry data written by the member (the log itself is storage::RaftLog's format):
//   - empty: a leader's no-op, written once per term when the member starts (etcd's election
//     entry); applies nothing.
//   - first byte 0x01: a v2::Command (command.h's encoding, whose version byte is 0x01).
//   - first byte 'Q' (0x51) then 8 bytes little-endian request id: a read barrier, /health's
//     quorum probe (etcd 3.4's QGET entry): applying it proves the log commits and applies.
//     Client quorum GETs no longer take this path (read_index.cc: ReadIndex, no entry); entries
//     of older logs that carry one are applied the same way (their waiter is gone).
//   - raft kConfChange entries: membership changes (membership.cc).
// An entry that matches none of these is corruption of our own log: a clear error naming the
// database at open(), an abort at run time.
#include "server/member/core.h"

#include <algorithm>
#include <limits>

#include <spdlog/spdlog.h>

#include "common/codec.h"
#include "common/ids.h"
#include "common/log_event.h"

namespace kvd::server {

namespace {

std::string encode_read_barrier(uint64_t request_id) {
  std::string out(1, kReadBarrierTag);
  codec::put_u64(out, request_id);
  return out;
}

// The request in "apply request took too long": the operation as a client asked for it.
std::string_view op_name(v2::Op op) {
  switch (op) {
    case v2::Op::kSet: return "set";
    case v2::Op::kCreate: return "create";
    case v2::Op::kUpdate: return "update";
    case v2::Op::kCompareAndSwap: return "compareAndSwap";
    case v2::Op::kDelete: return "delete";
    case v2::Op::kCompareAndDelete: return "compareAndDelete";
    case v2::Op::kCreateInOrder: return "createInOrder";
    case v2::Op::kExpire: return "expire";
    case v2::Op::kInternal: return "internal";
    case v2::Op::kAuth: return "auth";
  }
  return "unknown";
}

}  // namespace

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

v2::Command internal_command(std::string key, std::string value) {
  v2::Command cmd;
  cmd.op = v2::Op::kInternal;
  cmd.now_ns = now_ns();
  cmd.key = std::move(key);
  cmd.value = std::move(value);
  return cmd;
}

v2::Error raft_error(std::string cause) {
  return v2::Error{v2::ErrorCode::kRaftInternal, std::move(cause), 0};
}

bool Core::apply_snapshot(const raft::Snapshot& snap) {
  if (!store.recover(snap.data)) return false;
  refresh_auth();
  applied = snapshot_index = snap.metadata.index;
  applied_term = snap.metadata.term;
  members_dirty = true;
  SPDLOG_INFO("installed the snapshot at index {} (term {}): etcd index {}", snap.metadata.index,
               snap.metadata.term, store.index());
  // A member that was removed while it was away finds itself missing from the snapshot.
  auto gone = removed_ids();
  if (std::find(gone.begin(), gone.end(), member_id) != gone.end()) {
    SPDLOG_CRITICAL("this member ({}) has been permanently removed from the cluster; it stops "
                     "serving. Its data dir must be removed before it can join again",
                     hex_id(member_id));
    removed = true;
  }
  return true;
}

bool Core::apply_conf_change(const raft::Entry& e) {
  auto cc = raft::decode_conf_change(e.data);
  if (!cc) return false;
  const std::string hex = hex_id(cc->node_id);
  std::vector<std::string> urls = context_peer_urls(cc->context);
  std::sort(urls.begin(), urls.end());
  switch (cc->type) {
    case raft::ConfChangeType::kAddNode:
    case raft::ConfChangeType::kUpdateNode: {
      if (pending_member && pending_member->id == cc->node_id) pending_member.reset();
      v2::Command cmd = internal_command(raft_attributes_key(cc->node_id),
                                         member_raft_attributes(urls));
      cmd.now_ns = 0;
      (void)store.apply(cmd);
      // A restart replays the changes it had applied before: the same record, not news.
      const auto level = e.index <= replay_until ? spdlog::level::debug : spdlog::level::info;
      SPDLOG_LOGGER_CALL(spdlog::default_logger_raw(), level, "{} member {} with peer URLs {}",
                         cc->type == raft::ConfChangeType::kAddNode ? "added" : "updated", hex,
                         url_list(urls));
      break;
    }
    case raft::ConfChangeType::kRemoveNode: {
      v2::Command cmd = internal_command(std::string(kRemovedPrefix) + hex, "removed");
      cmd.now_ns = 0;
      (void)store.apply(cmd);
      SPDLOG_LOGGER_CALL(spdlog::default_logger_raw(),
                         e.index <= replay_until ? spdlog::level::debug : spdlog::level::info,
                         "removed member {} from the cluster", hex);
      if (link.remove_peer && linked_peers.erase(cc->node_id)) link.remove_peer(cc->node_id);
      if (cc->node_id == member_id) {
        SPDLOG_CRITICAL("this member ({}) has been permanently removed from the cluster; it "
                         "stops serving. Its data dir must be removed before it can join again",
                         hex);
        removed = true;
      }
      break;
    }
  }
  members_dirty = true;
  if (conf_waiter && conf_waiter->type == cc->type && conf_waiter->node_id == cc->node_id) {
    ConfWaiter w = std::move(*conf_waiter);
    conf_waiter.reset();
    MemberChange mc;
    mc.outcome = MemberChange::Outcome::kDone;
    mc.member = std::move(w.member);
    w.cb(std::move(mc));
  }
  return true;
}

bool Core::apply_entry(const raft::Entry& e) {
  if (e.type == raft::EntryType::kConfChange) {
    if (!apply_conf_change(e)) return false;
    applied = e.index;
    applied_term = e.term;
    return true;
  }
  applied = e.index;
  applied_term = e.term;
  committed = std::max(committed, e.index);
  if (e.data.empty()) return true;
  if (e.data[0] == kReadBarrierTag) {
    if (e.data.size() != 9) return false;
    uint64_t id = 0;
    for (int i = 0; i < 8; ++i) {
      id |= static_cast<uint64_t>(static_cast<uint8_t>(e.data[1 + i])) << (8 * i);
    }
    auto it = waiters.find(id);
    if (it != waiters.end() && it->second.kind == Waiter::Kind::kRead) {
      Waiter w = std::move(it->second);
      waiters.erase(it);
      answer_get(w.req, w.cb);
    } else if (it != waiters.end() && it->second.kind == Waiter::Kind::kInternal) {
      Waiter w = std::move(it->second);
      waiters.erase(it);
      w.done(true);  // a quorum probe
    }
    return true;
  }
  v2::Command cmd;
  if (static_cast<uint8_t>(e.data[0]) != kCommandTag || !v2::decode(e.data, &cmd)) return false;
  if (cmd.op == v2::Op::kAuth) {
    v2::auth::Answer answer = store.apply_auth(cmd);
    refresh_auth();
    auto it = cmd.request_id ? waiters.find(cmd.request_id) : waiters.end();
    if (it != waiters.end() && it->second.kind == Waiter::Kind::kAuth) {
      Waiter w = std::move(it->second);
      waiters.erase(it);
      w.auth_cb(std::move(answer));
    }
    return true;
  }
  const auto t0 = SteadyClock::now();
  auto result = store.apply(cmd);
  if (const auto took = SteadyClock::now() - t0; took > config.warning_apply_duration) {
    warn_slow_apply(cmd, e.index, took);
  }
  if (cmd.op == v2::Op::kInternal) members_dirty = true;
  if (cmd.request_id != 0) {
    auto it = waiters.find(cmd.request_id);
    if (it != waiters.end()) {
      Waiter w = std::move(it->second);
      waiters.erase(it);
      if (w.kind == Waiter::Kind::kInternal) {
        w.done(true);
      } else if (w.kind == Waiter::Kind::kWrite) {
        w.cb(std::move(result), status());
      }
    }
  }
  return true;
}

void Core::warn_slow_apply(const v2::Command& cmd, uint64_t index,
                           std::chrono::nanoseconds took) {
  uint64_t suppressed = 0;
  if (!slow_apply_log.allow(&suppressed)) return;
  KVD_LOG_EVENT(WARN, "apply request took too long", logev::dur("took", took),
                logev::dur("expected-duration", config.warning_apply_duration),
                logev::str("request", std::string(op_name(cmd.op)) + " " + cmd.key),
                logev::num("index", index), logev::count("suppressed", suppressed));
}

void Core::warn_timeouts(uint64_t n) {
  uint64_t suppressed = 0;
  if (!timeout_log.allow(&suppressed, n)) return;
  KVD_LOG_EVENT(WARN, "request timed out", logev::num("requests", n),
                logev::dur("timeout", request_timeout),
                logev::str("leader", leader_id ? hex_id(leader_id) : "none"),
                logev::num("term", term), logev::str("reachable", reachable_voters()),
                logev::count("suppressed", suppressed));
}

void Core::fail_waiter(Waiter& w, const std::string& cause) {
  if (w.kind != Waiter::Kind::kRead) ++proposals_failed;
  switch (w.kind) {
    case Waiter::Kind::kInternal: w.done(false); break;
    case Waiter::Kind::kAuth: w.auth_cb(raft_error(cause)); break;
    case Waiter::Kind::kWrite:
    case Waiter::Kind::kRead: w.cb(raft_error(cause), status()); break;
  }
}

void Core::fail_all_waiters(const std::string& cause) {
  auto all = std::move(waiters);
  waiters.clear();
  stalled.clear();
  reads.clear();
  expire_in_flight = attributes_in_flight = version_in_flight = 0;
  for (auto& [id, w] : all) fail_waiter(w, cause);
  if (conf_waiter) {
    ConfWaiter w = std::move(*conf_waiter);
    conf_waiter.reset();
    w.cb(MemberChange{MemberChange::Outcome::kFailed, cause, {}});
  }
}

// etcd answers a request that did not complete within its request timeout with 300 "request
// timed out" (its outcome is then unknown: the entry may still commit).
void Core::expire_waiters() {
  const auto now = SteadyClock::now();
  std::vector<Waiter> due;
  for (auto it = waiters.begin(); it != waiters.end();) {
    if (it->second.deadline <= now) {
      due.push_back(std::move(it->second));
      it = waiters.erase(it);
    } else {
      ++it;
    }
  }
  uint64_t client_requests = 0;
  for (auto& w : due) {
    client_requests += w.kind != Waiter::Kind::kInternal;  // not quorum probes, publications
    fail_waiter(w, kTimeoutCause);
  }
  if (client_requests > 0) warn_timeouts(client_requests);
  if (!stalled.empty()) {
    std::erase_if(stalled, [&](const auto& p) { return !waiters.count(p.first); });
  }
  if (conf_waiter && conf_waiter->deadline <= now) {
    ConfWaiter w = std::move(*conf_waiter);
    conf_waiter.reset();
    SPDLOG_WARN("membership change of member {} timed out", hex_id(w.node_id));
    w.cb(MemberChange{MemberChange::Outcome::kFailed, kTimeoutCause, {}});
  }
}

void Core::answer_get(const v2::GetRequest& req, const Node::Callback& cb) {
  auto result = store.get(req.key, req.recursive, req.sorted, now_ns());
  std::visit([&](auto&& r) { cb(std::move(r), status()); }, std::move(result));
}

void Core::do_get(v2::GetRequest req, Node::Callback cb) {
  if (!req.quorum) return answer_get(req, cb);
  if (stopped.load() || !raw) return cb(raft_error(kStoppedCause), status());
  if (write_error) return cb(raft_error(*write_error), status());
  Waiter w;
  w.kind = Waiter::Kind::kRead;
  w.cb = std::move(cb);
  w.req = std::move(req);
  w.deadline = SteadyClock::now() + request_timeout;
  queue_read(new_request_id(), std::move(w));  // read_index.cc
}

// Proposes an empty read barrier; w is answered when it is applied (ReadIndex's log variant).
void Core::propose_read_barrier(Waiter w) {
  const uint64_t id = new_request_id();
  propose_waited(id, std::move(w), encode_read_barrier(id));
}

void Core::schedule_expiry() {
  run_after(expiry_timer, kExpiryInterval, [](Core& c) { c.tick_expiry(); });
}

void Core::tick_expiry() {
  if (stopped.load() || !raw) return;
  // etcd's leader proposes a SYNC every 500 ms while any key has a TTL (spec v2-keys-api.md §4:
  // the raft index keeps growing on an idle cluster with TTL keys); the entry removes what is
  // due at its time. Only the leader's clock decides; followers apply what it proposed.
  if (!write_error && role == raft::Role::kLeader && expire_in_flight == 0 &&
      store.next_expiration_ns()) {
    v2::Command cmd;
    cmd.op = v2::Op::kExpire;
    cmd.now_ns = now_ns();
    std::weak_ptr<Core> weak = weak_from_this();
    expire_in_flight = propose_internal(v2::encode(cmd), [weak](bool) {
      if (auto self = weak.lock()) self->expire_in_flight = 0;
    });
  }
  schedule_expiry();
}

}  // namespace kvd::server
