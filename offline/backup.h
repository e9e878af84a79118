// Backups of a member, with etcdctl v2 backup's meaning: a new data dir from which a one-member
// cluster is started with --force-new-cluster (then grown back with `member add`). A backup gets
// a new member id and a new cluster id, so that a copy can never rejoin the cluster it came
// from by accident; it records where it came from in its metadata (data_dir::kMetaBackupOf),
// and kvd refuses to start it without --force-new-cluster. The restored member adds itself with
// its --initial-advertise-peer-urls and removes the source's members (bootstrap.cc,
// force_standalone).
//
// Two ways to take one, both holding the source's raft log from its last snapshot up to one
// commit index (the backup's index), so a restore replays it as any restart does:
//   offline  backup_data_dir(): reads a stopped member's raft log (read-only: the source is not
//            changed) and copies its snapshot, its entries and hard state. Entries after the
//            commit index are copied too and dropped at restore, as the source would drop them.
//   online   a running member reads its log consistently at its commit index, without stopping
//            its raft loop (server/member/backup.cc), and sends it as a backup stream (below)
//            to `kvctl backup --endpoints`, which writes it with write_streamed_backup().
//
// THE BACKUP STREAM (GET /kvd/backup on a member's client URL; body of the answer):
//   one line of JSON, then imageBytes bytes of store image (api_v2/store_image.cc; none when
//   snapshotIndex is 0), then entryBytes bytes holding `entries` log entries
//   snapshotIndex+1 .. raftIndex, each u64 index, u64 term, u8 type (raft::EntryType), u32 data
//   length, data (integers little-endian):
//   {"format":"kvd-backup","version":1,"memberId":"<hex>","clusterId":"<hex>",
//    "clusterToken":"...","raftIndex":C,"raftTerm":T,"snapshotIndex":S,"snapshotTerm":ST,
//    "voters":["<hex>",...],"imageBytes":B,"entries":N,"entryBytes":M}
//   raftIndex is the commit index, raftTerm the member's term (the hard state), voters the
//   snapshot's configuration. Readers refuse another format or version, a stream shorter or
//   longer than announced (a transfer cut short), an image Store::recover() rejects, and entries
//   that do not run from snapshotIndex+1 to raftIndex with non-decreasing terms.
//
// What a crash leaves: the backup's raft log is written under <backup dir>/member.partial and
// renamed to <backup dir>/member once complete and synced, so an interrupted backup is never
// mistaken for one (kvd would start an empty member on it; `kvctl backup` exits non-zero and
// names what failed). The backup dir must be absent or empty.
//
// Thread-safety: plain functions; no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "raft/types.h"

namespace kvd::offline {

struct BackupInfo {
  uint64_t source_member_id = 0, source_cluster_id = 0;
  uint64_t member_id = 0, cluster_id = 0;  // the backup's own, new identity
  uint64_t raft_index = 0;  // what the backup holds: the source's state at this raft index
  uint64_t snapshot_index = 0;
  uint64_t entries = 0;     // log entries after the snapshot
  uint64_t image_bytes = 0;
};

// Offline backup of the member in data_dir (a kvd --data-dir) into backup_dir.
Result<BackupInfo> backup_data_dir(const std::string& data_dir, const std::string& backup_dir);

// What a backup holds, whichever way it was taken.
struct BackupContent {
  uint64_t member_id = 0, cluster_id = 0;
  std::string cluster_token;
  raft::Snapshot snapshot;           // empty before the source's first snapshot
  std::vector<raft::Entry> entries;  // from snapshot index + 1, consecutive
  raft::HardState hard_state;        // commit: the backup's index
};
// The whole stream of content (a server answers with it).
std::string encode_stream(const BackupContent& b);
// A stream back into its content, checked as described above.
Result<BackupContent> decode_stream(std::string_view stream);
// Writes content (a decoded stream) into backup_dir, with a new member id and cluster id.
Result<BackupInfo> write_backup(const BackupContent& b, const std::string& backup_dir);
// The same with the identity given, and `provenance` (what the copy is of, for kvd's refusal
// to start it without --force-new-cluster) as the data_dir::kMetaBackupOf record.
Result<BackupInfo> write_data_dir(const BackupContent& b, const std::string& dir,
                                  uint64_t member_id, uint64_t cluster_id,
                                  const std::string& provenance);

}  // namespace kvd::offline
