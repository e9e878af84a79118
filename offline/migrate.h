// Migration of an etcd 3.4 member's data dir into a kvd data dir (kvctl migrate), offline.
//
// What it reads (etcd_data/etcd_member.h): the v2 store image of the newest usable snap file and
// the WAL entries after it. What it writes: a kvd member's data dir whose raft log is one
// snapshot at etcd's commit index, holding the v2 store as etcd would have it after applying
// every committed entry; the member keeps etcd's member id and cluster id, and the data dir
// starts only with --force-new-cluster (data_dir::kMetaBackupOf), which removes the other
// members of the old cluster. Uncommitted entries are dropped, as etcd's --force-new-cluster
// drops them.
//
// How the store is rebuilt: etcd keeps one tree with its own records beside the keys, "/0"
// (members, removed members, cluster version), "/1" (the keys: /1/a is the key /a) and "/2" (v2
// auth). The snapshot's tree goes into a kvd Store as it is, paths and all (Store::seed), and the
// WAL's v2 requests are applied to it as etcd's applier does (PUT by its conditions, POST,
// DELETE, QGET, SYNC; a membership change as etcd's membership store writes it: a member added
// creates /0/members/<id>/raftAttributes, a removal deletes /0/members/<id> and creates
// /0/removed_members/<id>), so that the etcd index, every createdIndex and modifiedIndex, TTL
// deadlines, hidden "_" keys and in-order keys come out as etcd's. Then the /1 subtree becomes
// kvd's key space and the /0 and /2 records kvd's internal records (members/<id>/...,
// removed_members/<id>, version, auth/...); the event history keeps its last 1,000 events (keys
// under /1 as client events, the others as internal slots), so a watcher holding an index
// carries on as with etcd after a restart.
//
// Not migrated: v3 data (kvd serves the v2 API; the entries are counted and reported; a source
// whose v2 key space is empty while it holds v3 requests is refused as v3-only), etcd's v3
// backend (member/snap/db). A learner in the configuration is refused (kvd has none).
//
// Thread-safety: plain functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kvd::offline {

struct MigrateReport {
  std::string snap_file;  // "" when etcd had no snap file yet
  uint64_t member_id = 0, cluster_id = 0;
  uint64_t raft_index = 0, raft_term = 0;  // the snapshot written: etcd's commit index
  uint64_t etcd_index = 0;                 // the v2 store's index there (X-Etcd-Index)
  uint64_t nodes = 0;                      // nodes of the key space, hidden ones included
  uint64_t applied = 0;                    // WAL entries applied after the snap file
  uint64_t v3_skipped = 0;                 // v3 requests among them, not migrated
  uint64_t uncommitted = 0;                // entries after the commit index, dropped
  std::vector<uint64_t> members;           // the configuration's voters
  std::vector<std::string> warnings;       // from reading etcd's files, and from converting
};

// Reads the etcd member in etcd_data_dir and writes the kvd data dir data_dir (absent or
// empty). The error names the file or the node at fault.
Result<MigrateReport> migrate_etcd(const std::string& etcd_data_dir, const std::string& data_dir);

}  // namespace kvd::offline
