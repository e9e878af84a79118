// Start-up of a member, as etcd's: its ids, the founding entries of a new cluster, joining an
// existing one, and recovering the store and the raft core from the data dir.
//
// Identities: member id = first 8 bytes (big-endian) of SHA-1(sorted peer URLs joined + token
// [+ unix seconds for runtime additions]); cluster id = first 8 bytes of SHA-1 of the ascending
// member ids as 8-byte big-endian values.
//
// First start (--initial-cluster-state new): entries 1..n (term 1, committed) add the founding
// members, sorted by id, identically on every founder (etcd index 1..n). Every start: once a
// leader is known the member publishes kInternal members/<id>/attributes = {"name":..,
// "clientURLs":[..]}; a new leader first commits its no-op and, if unset, kInternal "version" =
// "3.4.0". A fresh single member thus answers its first write with etcd index 4, raft index 5,
// raft term 2; a single member finishes these entries inside open().
//
// The ids and the cluster token are kept in the raft log's metadata (storage::RaftLog::put_meta:
// "member_id", "cluster_id" as hex, "cluster_token"), written before the founding entries; what
// a crash at each step leaves is described in server/member/data_dir.h.
#include "server/member/core.h"

#include <algorithm>
#include <filesystem>

#include <boost/uuid/detail/sha1.hpp>
#include <spdlog/spdlog.h>

#include "common/data_dir.h"
#include "common/ids.h"
#include "common/log_event.h"

namespace kvd::server {

namespace {

constexpr uint64_t kReplayBatchBytes = 64 << 20;
using data_dir::kMetaBackupOf;
using data_dir::kMetaClusterId;
using data_dir::kMetaClusterToken;
using data_dir::kMetaMemberId;

uint64_t sha1_prefix64(const std::string& bytes) {
  boost::uuids::detail::sha1 h;
  h.process_bytes(bytes.data(), bytes.size());
  boost::uuids::detail::sha1::digest_type digest;
  h.get_digest(digest);
  // The digest words are the big-endian 32-bit groups of the hash.
  return (static_cast<uint64_t>(digest[0]) << 32) | static_cast<uint64_t>(digest[1]);
}

}  // namespace

uint64_t compute_member_id(std::vector<std::string> peer_urls, const std::string& token) {
  std::sort(peer_urls.begin(), peer_urls.end());
  std::string b;
  for (const auto& u : peer_urls) b += u;
  b += token;
  return sha1_prefix64(b);
}

uint64_t compute_cluster_id(std::vector<uint64_t> member_ids) {
  std::sort(member_ids.begin(), member_ids.end());
  std::string b;
  for (uint64_t id : member_ids) {
    for (int shift = 56; shift >= 0; shift -= 8) b.push_back(static_cast<char>((id >> shift) & 0xff));
  }
  return sha1_prefix64(b);
}

Status Core::bootstrap_ids(bool* fresh) {
  raft::Snapshot snap;
  bool has_snapshot = log->snapshot(&snap) == raft::StorageError::kOk && !snap.empty();
  *fresh = log->last_index() == 0 && !has_snapshot;
  auto mid = log->get_meta(kMetaMemberId);
  auto cid = log->get_meta(kMetaClusterId);
  cluster_token = log->get_meta(kMetaClusterToken).value_or(config.initial_cluster_token);
  if (mid && cid) {
    auto m = parse_hex_id(*mid);
    auto c = parse_hex_id(*cid);
    if (!m || !c) {
      return Status::error(db_dir + ": malformed member or cluster id in metadata (\"" + *mid +
                           "\", \"" + *cid + "\")");
    }
    member_id = *m;
    cluster_id = *c;
    if (!*fresh) {
      if (auto from = log->get_meta(kMetaBackupOf);
          from && !from->empty() && !config.force_new_cluster) {
        return Status::error(db_dir + " is a copy (" + *from +
                             "), not a member of a running cluster: start it with "
                             "--force-new-cluster to make a new one-member cluster of it");
      }
      // As etcd: an existing member restarts from its data dir; the bootstrap flags no longer
      // matter.
      SPDLOG_INFO("the data dir holds member {} of cluster {}: restarting it, ignoring "
                   "--initial-cluster, --initial-cluster-state and --initial-cluster-token",
                   hex_id(member_id), hex_id(cluster_id));
      return Status::ok();
    }
  }
  if (!*fresh) {
    return Status::error(db_dir + ": the log holds entries but no member/cluster id");
  }
  if (config.initial_cluster_state == "existing") return join_existing();
  if (config.initial_cluster_state != "new") {
    return Status::error("unknown --initial-cluster-state " + config.initial_cluster_state);
  }
  founding = true;
  // Peer URLs per member name, in flag order.
  std::vector<std::pair<std::string, std::vector<std::string>>> by_name;
  auto cluster = config.initial_cluster;
  if (cluster.empty()) {
    for (const auto& u : config.initial_advertise_peer_urls) cluster.emplace_back(config.name, u);
  }
  for (const auto& [name, url] : cluster) {
    auto it = std::find_if(by_name.begin(), by_name.end(),
                           [&](const auto& p) { return p.first == name; });
    if (it == by_name.end()) {
      by_name.push_back({name, {url}});
    } else {
      it->second.push_back(url);
    }
  }
  auto self = std::find_if(by_name.begin(), by_name.end(),
                           [&](const auto& p) { return p.first == config.name; });
  if (self == by_name.end()) {
    return Status::error("couldn't find local name \"" + config.name +
                         "\" in the initial cluster configuration");
  }
  // The founding members, sorted by id: every founder writes the same entries 1..n.
  std::map<uint64_t, std::vector<std::string>> founders;
  for (auto& [name, urls] : by_name) {
    std::sort(urls.begin(), urls.end());
    uint64_t id = compute_member_id(urls, config.initial_cluster_token);
    if (founders.count(id)) {
      return Status::error("--initial-cluster lists the peer URLs of member " + name + " twice");
    }
    founders[id] = urls;
  }
  member_id = compute_member_id(self->second, config.initial_cluster_token);
  std::vector<uint64_t> ids;
  for (const auto& [id, urls] : founders) ids.push_back(id);
  cluster_id = compute_cluster_id(ids);
  cluster_token = config.initial_cluster_token;
  if (Status st = log->put_meta(kMetaMemberId, hex_id(member_id)); !st.is_ok()) return st;
  if (Status st = log->put_meta(kMetaClusterId, hex_id(cluster_id)); !st.is_ok()) return st;
  if (Status st = log->put_meta(kMetaClusterToken, cluster_token); !st.is_ok()) return st;

  // Entries 1..n, term 1, committed: one configuration change adding each founder with its peer
  // URLs as context (etcd's bootstrap ConfChanges). Applying them records the members.
  std::vector<raft::Entry> entries;
  for (const auto& [id, urls] : founders) {
    raft::ConfChange cc{raft::ConfChangeType::kAddNode, id, member_context(id, urls)};
    entries.push_back(raft::Entry{1, entries.size() + 1, raft::EntryType::kConfChange,
                                  raft::encode_conf_change(cc)});
  }
  const uint64_t n = entries.size();
  return log->append(entries, raft::HardState{1, raft::kNoNode, n});
}

// --initial-cluster-state existing with an empty data dir: ask the members listed in
// --initial-cluster for the cluster (as etcd does), take this member's id from the entry `member
// add` created for its peer URLs, and start with an empty log: the leader sends the log or a
// snapshot, which makes this member a voter.
Status Core::join_existing() {
  std::vector<std::string> own = config.initial_advertise_peer_urls;
  std::sort(own.begin(), own.end());
  std::string errors;
  std::optional<RemoteCluster> remote;
  for (const auto& [name, url] : config.initial_cluster) {
    if (std::find(own.begin(), own.end(), url) != own.end()) continue;
    std::string why;
    if (!config.fetch_cluster) {
      why = "no way to reach peers";
    } else {
      remote = config.fetch_cluster(url, std::chrono::seconds(2), &why);
    }
    if (remote) break;
    errors += (errors.empty() ? "" : "; ") + url + ": " + why;
  }
  if (!remote) {
    return Status::error("cannot fetch the cluster's members from --initial-cluster peers (" +
                         errors + ")");
  }
  for (const auto& m : remote->members) {
    if (m.peer_urls == own) member_id = m.id;
  }
  if (member_id == 0) {
    return Status::error("no member of the existing cluster has this member's peer URLs " +
                         url_list(own) +
                         ": add it first (etcdctl member add / POST /v2/members)");
  }
  cluster_id = remote->cluster_id;
  remote_members = remote->members;
  SPDLOG_INFO("joining cluster {} as member {} ({} members)", hex_id(cluster_id),
               hex_id(member_id), remote->members.size());
  if (Status st = log->put_meta(kMetaMemberId, hex_id(member_id)); !st.is_ok()) return st;
  if (Status st = log->put_meta(kMetaClusterId, hex_id(cluster_id)); !st.is_ok()) return st;
  return log->put_meta(kMetaClusterToken, cluster_token);
}

Status Core::recover_and_start() {
  bool fresh = false;
  if (Status st = bootstrap_ids(&fresh); !st.is_ok()) return st;

  raft::Snapshot snap;
  if (log->snapshot(&snap) == raft::StorageError::kOk && !snap.empty()) {
    if (!store.recover(snap.data)) {
      return Status::error(db_dir + ": the snapshot at index " +
                           std::to_string(snap.metadata.index) + " holds a corrupt store image");
    }
    applied = snapshot_index = committed = snap.metadata.index;
    applied_term = snap.metadata.term;
    refresh_auth();
  }
  // The raft core reads every entry at start (membership); an unreadable log is refused here
  // with the database's name rather than by the core's abort.
  const uint64_t last = log->last_index();
  for (uint64_t next = log->first_index(); next <= last;) {
    std::vector<raft::Entry> batch;
    raft::StorageError err = log->entries(next, last + 1, kReplayBatchBytes, &batch);
    if (err != raft::StorageError::kOk || batch.empty()) {
      return Status::error(db_dir + ": cannot read log entry " + std::to_string(next) +
                           " (first index " + std::to_string(log->first_index()) + ")");
    }
    for (const auto& e : batch) {
      if (e.index != next) {
        return Status::error(db_dir + ": log entry " + std::to_string(next) + " is missing");
      }
      if (e.type == raft::EntryType::kConfChange && !raft::decode_conf_change(e.data)) {
        return Status::error(db_dir + ": log entry " + std::to_string(e.index) +
                             " holds an undecodable membership change");
      }
      ++next;
    }
  }
  if (config.force_new_cluster && !fresh) {
    if (Status st = force_standalone(snap); !st.is_ok()) return st;
  }
  const auto [hs, cs] = log->initial_state();
  term = hs.term;
  if (!fresh) {
    // The one line that says where a restarted member starts: what it had committed, what its
    // snapshot holds, and what it replays; note_replayed() says when the replay is done.
    KVD_LOG_EVENT(INFO,
                  "restarting member " + hex_id(member_id) + " in cluster " + hex_id(cluster_id) +
                      " at commit index " + std::to_string(hs.commit),
                  logev::num("term", hs.term), logev::num("last-index", last),
                  logev::num("snapshot-index", snapshot_index),
                  logev::num("snapshot-etcd-index", store.index()),
                  logev::num("replaying", hs.commit > applied ? hs.commit - applied : 0));
    if (hs.commit > applied) {
      replay_until = hs.commit;
      replay_start = SteadyClock::now();
    }
  }

  raft::Config rc;
  rc.id = member_id;
  const auto hb = std::max<int64_t>(config.heartbeat_interval.count(), 1);
  rc.election_ticks = std::max<int>(2, static_cast<int>(config.election_timeout.count() / hb));
  rc.heartbeat_ticks = 1;
  rc.pre_vote = config.pre_vote;
  rc.check_quorum = true;
  rc.applied = applied;
  rc.seed = static_cast<uint64_t>(now_ns());
  raw = std::make_unique<raft::RawNode>(rc, log.get());

  // Request ids are unique across members too (a QGET proposed on one member is applied on all):
  // member id bits on top, then milliseconds, as etcd's idutil does.
  next_request_id = ((member_id & 0xffff) << 48) |
                    ((static_cast<uint64_t>(now_ns() / 1000000) & 0xffffffffffULL) << 8);

  const auto& voters = raw->status().conf_state.voters;
  if (voters.size() == 1 && voters[0] == member_id) return start_single_member();
  return Status::ok();
}

// etcd's restartAsStandaloneNode: the committed log is kept; entries after the commit index are
// replaced by kRemoveNode changes for every other voter (this member's term, committed at once
// by the hard state; preceded by its own kAddNode when restoring a backup), so that the raft
// core starts with this member alone and applies the changes like any membership change
// (durable, in the store's member records).
Status Core::force_standalone(const raft::Snapshot& snap) {
  const auto [hs, cs] = log->initial_state();
  raft::ConfState conf = snap.empty() ? cs : snap.metadata.conf_state;
  const uint64_t commit = std::max(hs.commit, snap.empty() ? 0 : snap.metadata.index);
  const uint64_t last = log->last_index();
  // This member's peer URLs as its cluster knows them: the snapshot's record, then the changes.
  std::vector<std::string> recorded_urls;
  if (auto it = store.internal().find(raft_attributes_key(member_id));
      it != store.internal().end()) {
    recorded_urls = context_peer_urls(it->second);
  }
  for (uint64_t next = std::max(log->first_index(), snap.metadata.index + 1); next <= std::min(last, commit);) {
    std::vector<raft::Entry> batch;
    if (log->entries(next, std::min(last, commit) + 1, kReplayBatchBytes, &batch) !=
            raft::StorageError::kOk || batch.empty()) {
      return Status::error(db_dir + ": cannot read log entry " + std::to_string(next));
    }
    for (const auto& e : batch) {
      if (e.type == raft::EntryType::kConfChange) {
        const raft::ConfChange cc = *raft::decode_conf_change(e.data);
        conf = raft::apply_conf_change(conf, cc);
        if (cc.node_id == member_id && cc.type != raft::ConfChangeType::kRemoveNode) {
          recorded_urls = context_peer_urls(cc.context);
        }
      }
      ++next;
    }
  }
  // A backup (offline/backup.h) carries a new member id that no configuration holds: the member
  // adds itself first, with its advertised peer URLs (etcd adds a placeholder,
  // http://localhost:2380, that the operator must correct with `member update`).
  std::vector<raft::Entry> changes;
  std::string removed;
  uint64_t index = commit;
  const bool is_backup = !log->get_meta(kMetaBackupOf).value_or("").empty();
  if (std::find(conf.voters.begin(), conf.voters.end(), member_id) == conf.voters.end()) {
    if (!is_backup) {
      return Status::error(db_dir + ": this member (" + hex_id(member_id) +
                           ") is not in its cluster's membership; --force-new-cluster cannot "
                           "restart it");
    }
    changes.push_back(raft::Entry{
        hs.term, ++index, raft::EntryType::kConfChange,
        raft::encode_conf_change(raft::ConfChange{
            raft::ConfChangeType::kAddNode, member_id,
            member_context(member_id, config.initial_advertise_peer_urls)})});
  }
  bool added = !changes.empty();
  // Restarted elsewhere (a migrated or restored data dir), it would be unreachable at the URLs
  // its cluster holds for it, and members added later could not reach it: the URLs given are
  // recorded (etcd leaves that to a `member update`).
  std::vector<std::string> urls = config.initial_advertise_peer_urls;
  std::sort(urls.begin(), urls.end());
  std::sort(recorded_urls.begin(), recorded_urls.end());
  if (!added && !urls.empty() && urls != recorded_urls) {
    changes.push_back(raft::Entry{
        hs.term, ++index, raft::EntryType::kConfChange,
        raft::encode_conf_change(raft::ConfChange{raft::ConfChangeType::kUpdateNode, member_id,
                                                  member_context(member_id, urls)})});
    SPDLOG_WARN("member {}: its peer URLs change from {} to {} (--initial-advertise-peer-urls)",
                 hex_id(member_id), url_list(recorded_urls), url_list(urls));
  }
  for (uint64_t id : conf.voters) {
    if (id == member_id) continue;
    changes.push_back(raft::Entry{hs.term, ++index, raft::EntryType::kConfChange,
                                   raft::encode_conf_change(
                                       raft::ConfChange{raft::ConfChangeType::kRemoveNode, id, {}})});
    removed += (removed.empty() ? "" : " ") + hex_id(id);
  }
  SPDLOG_WARN("forcing restart of member {} in cluster {} at commit index {}: it becomes a "
               "one-member cluster with all of its data; {} uncommitted log entries dropped; "
               "members removed: [{}]{}. The removed members must not be started again on their "
               "data dirs; add new members with `member add`",
               hex_id(member_id), hex_id(cluster_id), commit, last > commit ? last - commit : 0,
               removed, added ? "; it was in no configuration (a backup), so it added itself" : "");
  if (!changes.empty()) {
    raft::HardState next_hs = hs;
    next_hs.commit = index;
    if (Status st = log->append(changes, next_hs); !st.is_ok()) return st;
  }
  // Cleared once the new membership is durable: the data dir is this cluster's member now.
  return is_backup ? log->put_meta(kMetaBackupOf, "") : Status::ok();
}

Status Core::start_single_member() {
  // One voter: it wins the election of the next term at once, so open() finishes the start-up
  // entries synchronously (no-op, cluster version, attributes) and returns a member that is
  // leader with etcd's indexes.
  raw->campaign();
  if (Status st = drive_sync(); !st.is_ok()) return st;
  if (role != raft::Role::kLeader) {
    return Status::error(db_dir + ": the single member could not become leader");
  }
  if (!store.internal().count(std::string(kVersionKey))) {
    (void)raw->propose(v2::encode(internal_command(std::string(kVersionKey),
                                                   std::string(kClusterVersion))));
  }
  const std::string attrs = member_attributes(config.name, config.advertise_client_urls);
  if (raw->propose(v2::encode(internal_command(attributes_key(member_id), attrs))) !=
      raft::Error::kOk) {
    return Status::error("the single member refused its own proposal");
  }
  if (Status st = drive_sync(); !st.is_ok()) return st;
  attributes_published = true;
  return Status::ok();
}

// Runs the Ready loop without the WAL thread or peers; for open() only.
Status Core::drive_sync() {
  for (int round = 0; round < 100000 && raw->has_ready(); ++round) {
    raft::Ready rd = raw->ready();
    note_ready(rd);
    if (rd.snapshot) {
      if (Status st = log->save_snapshot(*rd.snapshot); !st.is_ok()) return st;
    }
    if (!rd.entries.empty() || rd.hard_state) {
      if (Status st = log->append(rd.entries, rd.hard_state); !st.is_ok()) return st;
    }
    if (rd.snapshot && !apply_snapshot(*rd.snapshot)) {
      return Status::error(db_dir + ": the snapshot at index " +
                           std::to_string(rd.snapshot->metadata.index) +
                           " holds a corrupt store image");
    }
    for (const auto& e : rd.committed_entries) {
      if (!apply_entry(e)) {
        return Status::error(db_dir + ": log entry " + std::to_string(e.index) +
                             " holds undecodable data");
      }
    }
    raw->advance();
  }
  refresh_members_cache();
  return Status::ok();
}

}  // namespace kvd::server
