// The layout of a data dir (--data-dir, default "<name>.etcd"), and what a crash can leave in it.
//
//   <data-dir>/
//     member/                         a member's state (server/member/)
//       kvd/                          the RocksDB database of the raft log, its hard state,
//                                     snapshots (store images) and metadata; its format and what a
//                                     crash can leave inside it are at the top of
//                                     storage/raft_log.cc
//       snapshot-<index>.tmp          a store image being written (snapshotter.cc);
//                                     the image is moved into kvd/ as an SST file once complete.
//                                     A leftover one belongs to a snapshot never recorded: removed
//                                     at start.
//       wal/, snap/                   etcd's files: a data dir holding them is refused at start
//                                     (kvd cannot read etcd's format)
//     proxy/                          a proxy's state (server/proxy/), created 0700
//       cluster                       the peer URLs it learned, {"PeerURLs":[...]}; written to
//       cluster.bak                   cluster.bak, fsynced, then renamed over cluster, so a crash
//                                     leaves the old or the new list (a stray .bak is overwritten)
//
// A member's first start (server/member/bootstrap.cc), step by step, and what a crash after
// each step leaves:
//   1. member/ and the RocksDB database are created, with its "format" record (synced). Crash:
//      an empty database; the next start creates it again.
//   2. the metadata records member_id, cluster_id and cluster_token are written (each synced).
//      Crash: metadata but no log entries; the next start sees an empty log ("fresh") and
//      bootstraps again from the flags, rewriting the same ids (they derive from the flags).
//   3. the founding entries 1..n (one configuration change per founding member) and the hard
//      state are appended in one synced write. Crash: the member restarts from its log and
//      ignores the bootstrap flags from now on.
// A member joining an existing cluster (--initial-cluster-state existing) writes only step 2
// (with the id the cluster assigned); its log then comes from the leader.
//
// Pure constants; any thread.
#pragma once

#include <string_view>

namespace kvd::data_dir {

inline constexpr std::string_view kMemberDir = "member";
inline constexpr std::string_view kRaftLogDir = "kvd";
// snapshot-<index>.tmp in the member dir.
inline constexpr std::string_view kSnapshotTmpPrefix = "snapshot-";
inline constexpr std::string_view kSnapshotTmpSuffix = ".tmp";
// etcd's own member subdirectories.
inline constexpr std::string_view kEtcdWalDir = "wal";
inline constexpr std::string_view kEtcdSnapDir = "snap";
inline constexpr std::string_view kProxyDir = "proxy";
inline constexpr std::string_view kProxyClusterFile = "cluster";

// Metadata records of the raft log (storage::RaftLog::put_meta), each a string.
inline constexpr char kMetaMemberId[] = "member_id";          // hex
inline constexpr char kMetaClusterId[] = "cluster_id";        // hex
inline constexpr char kMetaClusterToken[] = "cluster_token";
// Set by a backup (offline/backup.h), holding where it came from as JSON; "" or absent
// otherwise. Such a data dir starts only with --force-new-cluster, which clears it.
inline constexpr char kMetaBackupOf[] = "backup_of";

}  // namespace kvd::data_dir
