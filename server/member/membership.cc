// Membership, as etcd 3.4's: configuration changes are raft kConfChange entries whose context is
// {"id":"<hex>","peerURLs":[..]} (etcd carries the member in its ConfChange context); applying
// one records the member in the store as etcd does (internal members/<id>/raftAttributes; a
// removal as removed_members/<id>), so the store image in a snapshot carries the member list.
// A member publishes its name and client URLs as members/<id>/attributes after each start.
#include "server/member/core.h"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/ids.h"

namespace kvd::server {

std::string raft_attributes_key(uint64_t id) {
  return "members/" + hex_id(id) + "/raftAttributes";
}

std::string attributes_key(uint64_t id) { return "members/" + hex_id(id) + "/attributes"; }

std::string member_context(uint64_t id, const std::vector<std::string>& urls) {
  nlohmann::json j = {{"id", hex_id(id)}, {"peerURLs", urls}};
  return j.dump();
}

std::string member_raft_attributes(const std::vector<std::string>& peer_urls) {
  nlohmann::json j = {{"peerURLs", peer_urls}};
  return j.dump();
}

std::string member_attributes(const std::string& name, const std::vector<std::string>& urls) {
  nlohmann::json j = {{"name", name}, {"clientURLs", urls}};
  return j.dump();
}

std::string url_list(const std::vector<std::string>& urls) {
  std::string out = "[";
  for (size_t i = 0; i < urls.size(); ++i) out += (i ? " " : "") + urls[i];
  return out + "]";
}

std::vector<std::string> context_peer_urls(const std::string& context) {
  std::vector<std::string> out;
  auto j = nlohmann::json::parse(context, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return out;
  auto it = j.find("peerURLs");
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& u : *it) {
    if (u.is_string()) out.push_back(u.get<std::string>());
  }
  return out;
}

// After each start a member publishes its name and client URLs (etcd's publish); the leader sets
// the cluster version once it has applied everything before its term.
void Core::maybe_publish() {
  if (!raw || write_error || removed || leader_id == raft::kNoNode) return;
  std::weak_ptr<Core> weak = weak_from_this();
  if (!attributes_published && attributes_in_flight == 0) {
    const std::string attrs = member_attributes(config.name, config.advertise_client_urls);
    attributes_in_flight = propose_internal(
        v2::encode(internal_command(attributes_key(member_id), attrs)), [weak](bool ok) {
          if (auto self = weak.lock()) {
            self->attributes_in_flight = 0;
            if (ok) {
              self->attributes_published = true;
              SPDLOG_INFO("published the attributes of member {} to the cluster",
                           hex_id(self->member_id));
            }
          }
        });
  }
  if (role == raft::Role::kLeader && version_in_flight == 0 && applied_term == term &&
      !store.internal().count(std::string(kVersionKey))) {
    version_in_flight = propose_internal(
        v2::encode(internal_command(std::string(kVersionKey), std::string(kClusterVersion))),
        [weak](bool) {
          if (auto self = weak.lock()) self->version_in_flight = 0;
        });
  }
}

// --strict-reconfig-check, as etcd 3.4's mayAddMember and mayRemoveMember. A member is started
// once it published its name. Adding needs a quorum of the grown cluster started (a one-member
// cluster may always grow) and every peer connected for health_interval (etcd's
// isConnectedFullySince HealthInterval). Removing needs a quorum of the remaining members
// started and, unless the member to remove is down (not connected), enough connected members
// left for a quorum. Logs why it refuses.
bool Core::strict_reconfig_allows(raft::ConfChangeType type, uint64_t id,
                                  const std::vector<MemberInfo>& all) const {
  const auto now = SteadyClock::now();
  auto connected_now = [&](uint64_t peer) {
    return peer == member_id || (link.connected && link.connected(peer));
  };
  auto connected_long_enough = [&](uint64_t peer) {
    if (peer == member_id) return true;
    if (!link.active_since) return connected_now(peer);
    auto since = link.active_since(peer);
    return since && *since <= now - config.health_interval;
  };
  if (type == raft::ConfChangeType::kAddNode) {
    size_t members = 1;  // the new one
    size_t started = 0;
    bool all_connected = true;
    for (const auto& m : all) {
      ++members;
      if (!m.name.empty()) ++started;
      if (!connected_long_enough(m.id)) all_connected = false;
    }
    if (!(started == 1 && members == 2) && started < members / 2 + 1) {
      SPDLOG_WARN("rejecting member add: not enough started members ({} of {})", started,
                   members - 1);
      return false;
    }
    if (!all_connected) {
      SPDLOG_WARN("rejecting member add: unhealthy cluster (not every member has been "
                   "connected for {} ms)",
                   config.health_interval.count());
      return false;
    }
    return true;
  }
  if (type == raft::ConfChangeType::kRemoveNode) {
    size_t members = 0;
    size_t started = 0;
    for (const auto& m : all) {
      if (m.id == id) continue;
      ++members;
      if (!m.name.empty()) ++started;
    }
    if (started < members / 2 + 1) {
      SPDLOG_WARN("rejecting member remove: not enough started members ({} of {} would remain)",
                   started, members);
      return false;
    }
    // A member that is down is not part of the active quorum: removing it is safe.
    if (id != member_id && !connected_now(id)) return true;
    size_t active = 0;
    for (const auto& m : all) {
      if (connected_now(m.id)) ++active;
    }
    if (active < 2 + (all.size() - 1) / 2) {
      SPDLOG_WARN("rejecting member remove: not enough connected members ({} of {})", active,
                   all.size());
      return false;
    }
  }
  return true;
}

void Core::do_conf_change(raft::ConfChangeType type, uint64_t id, std::vector<std::string> urls,
                          Node::MemberCallback cb) {
  if (stopped.load() || !raw || write_error) {
    return cb(MemberChange{MemberChange::Outcome::kFailed, write_error.value_or(kStoppedCause), {}});
  }
  const auto all = members();
  const auto gone = removed_ids();
  const bool is_removed = std::find(gone.begin(), gone.end(), id) != gone.end();
  const MemberInfo* target = nullptr;
  for (const auto& m : all) {
    if (m.id == id) target = &m;
  }
  std::sort(urls.begin(), urls.end());
  // etcd runs --strict-reconfig-check (mayAddMember / mayRemoveMember) before the change is
  // validated against the member list, so an unhealthy cluster answers 500 even for a change
  // that would then be refused with 404, 409 or 410.
  if (config.strict_reconfig_check && !strict_reconfig_allows(type, id, all)) {
    return cb(MemberChange{MemberChange::Outcome::kFailed, "unhealthy cluster", {}});
  }
  if (type != raft::ConfChangeType::kAddNode && !target) {
    if (is_removed) {
      return cb(MemberChange{MemberChange::Outcome::kRemovedMember,
                             "Member permanently removed: " + hex_id(id), {}});
    }
    return cb(MemberChange{MemberChange::Outcome::kUnknownMember, "No such member: " + hex_id(id),
                           {}});
  }
  for (const auto& m : all) {
    if (target && m.id == target->id) continue;
    for (const auto& u : m.peer_urls) {
      if (std::find(urls.begin(), urls.end(), u) != urls.end()) {
        return cb(MemberChange{MemberChange::Outcome::kPeerUrlInUse,
                               "membership: peerURL exists", {}});
      }
    }
  }
  if (conf_waiter) {
    return cb(MemberChange{MemberChange::Outcome::kFailed, "another membership change is running",
                           {}});
  }
  if (type == raft::ConfChangeType::kAddNode) {
    // etcd: a member added at run time hashes its peer URLs, the token and the time.
    id = compute_member_id(urls, cluster_token +
                                     std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                        Clock::now().time_since_epoch())
                                                        .count()));
  }
  raft::ConfChange cc{type, id,
                      type == raft::ConfChangeType::kRemoveNode ? "" : member_context(id, urls)};
  if (raft::Error err = raw->propose_conf_change(cc); err != raft::Error::kOk) {
    SPDLOG_WARN("membership change of member {} refused: {}", hex_id(id), raft::to_string(err));
    return cb(MemberChange{MemberChange::Outcome::kFailed, raft::to_string(err), {}});
  }
  const auto& voters = raw->status().conf_state.voters;
  if (type == raft::ConfChangeType::kAddNode && voters.size() == 2 &&
      std::find(voters.begin(), voters.end(), member_id) != voters.end()) {
    // The second member of a one-member cluster: answered now (its addition waits for its
    // vote) and listed until applied, so that it can be started and join. etcd answers once
    // the addition is applied, which its raft does with the old configuration's single vote.
    MemberInfo m;
    m.id = id;
    m.peer_urls = urls;
    pending_member = m;
    members_dirty = true;
    schedule_pump();
    SPDLOG_INFO("adding member {} with peer URLs {} to a one-member cluster: it commits once "
                 "that member has started and joined", hex_id(id), url_list(urls));
    MemberChange mc;
    mc.outcome = MemberChange::Outcome::kDone;
    mc.member = std::move(m);
    return cb(std::move(mc));
  }
  ConfWaiter w;
  w.type = type;
  w.node_id = id;
  w.member.id = id;
  w.member.peer_urls = urls;
  w.cb = std::move(cb);
  w.deadline = SteadyClock::now() + request_timeout;
  conf_waiter = std::move(w);
  schedule_pump();
}

std::vector<uint64_t> Core::removed_ids() const {
  std::vector<uint64_t> out;
  for (const auto& [key, value] : store.internal()) {
    if (key.rfind(kRemovedPrefix, 0) != 0) continue;
    if (auto id = parse_hex_id(std::string_view(key).substr(kRemovedPrefix.size()))) {
      out.push_back(*id);
    }
  }
  return out;
}

std::vector<MemberInfo> Core::members() const {
  std::map<uint64_t, MemberInfo> by_id;
  for (const auto& [key, value] : store.internal()) {
    if (key.rfind("members/", 0) != 0) continue;
    std::string_view rest = std::string_view(key).substr(8);
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) continue;
    auto id = parse_hex_id(rest.substr(0, slash));
    if (!id) continue;
    std::string_view field = rest.substr(slash + 1);
    auto j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) continue;
    auto strings = [&](const char* name) {
      std::vector<std::string> out;
      auto it = j.find(name);
      if (it != j.end() && it->is_array()) {
        for (const auto& s : *it) {
          if (s.is_string()) out.push_back(s.get<std::string>());
        }
      }
      return out;
    };
    MemberInfo& m = by_id[*id];
    m.id = *id;
    if (field == "raftAttributes") {
      m.peer_urls = strings("peerURLs");
    } else if (field == "attributes") {
      auto n = j.find("name");
      if (n != j.end() && n->is_string()) m.name = n->get<std::string>();
      m.client_urls = strings("clientURLs");
    }
  }
  if (pending_member && !by_id.count(pending_member->id)) by_id[pending_member->id] = *pending_member;
  for (uint64_t id : removed_ids()) by_id.erase(id);
  std::vector<MemberInfo> out;
  for (auto& [id, m] : by_id) {
    if (!m.peer_urls.empty()) out.push_back(std::move(m));
  }
  return out;
}

void Core::link_peer(uint64_t id, const std::vector<std::string>& urls) {
  if (id == member_id || urls.empty()) return;
  auto it = linked_peers.find(id);
  if (it == linked_peers.end()) {
    linked_peers[id] = urls;
    if (link.add_peer) link.add_peer(id, urls);
  } else if (it->second != urls) {
    it->second = urls;
    if (link.update_peer) link.update_peer(id, urls);
  }
}

// Tells the link about every member the store knows (after a conf change or a snapshot).
void Core::sync_peers() {
  for (const auto& m : members()) link_peer(m.id, m.peer_urls);
  // Every removed id, linked or not: the link refuses their connections as removed members.
  for (uint64_t id : removed_ids()) {
    linked_peers.erase(id);
    if (link.remove_peer && id != member_id) link.remove_peer(id);
  }
}

void Core::refresh_members_cache() {
  members_dirty = false;
  auto all = members();
  std::lock_guard lock(cache_mu);
  members_cache = std::move(all);
}

}  // namespace kvd::server
