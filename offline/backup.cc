// Offline and online backups (the format and the crash rules are in backup.h).
#include "offline/backup.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "api_v2/store.h"
#include "common/codec.h"
#include "common/data_dir.h"
#include "common/private_dir.h"
#include "common/go.h"
#include "common/ids.h"
#include "raft/types.h"
#include "storage/raft_log.h"

namespace kvd::offline {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kStreamFormat = "kvd-backup";
constexpr int kStreamVersion = 1;
constexpr uint64_t kCopyBatchBytes = 64 << 20;
constexpr std::string_view kPartialDir = "member.partial";

uint64_t random_id() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (static_cast<uint64_t>(rd()) << 32) | rd();
  return id;
}

Status sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::error(dir.string() + ": cannot open to sync it");
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok ? Status::ok() : Status::error(dir.string() + ": fsync failed");
}

// A backup under construction: <backup dir>/member.partial/kvd, renamed to member/ by finish().
class BackupWriter {
 public:
  static Result<BackupWriter> create(const std::string& backup_dir) {
    std::error_code ec;
    const fs::path dir(backup_dir);
    if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
      return Status::error(backup_dir + ": not empty; a backup is written into an absent or empty "
                                        "directory");
    }
    // 0700, as a member's data dir (common/private_dir.h): a backup holds every value.
    const std::string db_dir = (dir / kPartialDir / data_dir::kRaftLogDir).string();
    if (Status st = make_private_dirs(db_dir); !st.is_ok()) {
      return Status::error(backup_dir + ": cannot create it: " + st.message());
    }
    auto log = storage::RaftLog::open(db_dir);
    if (!log.is_ok()) return log.status();
    return BackupWriter(dir, std::move(log.value()));
  }

  storage::RaftLog& log() { return *log_; }

  // The identity and the provenance record, then the rename that makes it a data dir. An empty
  // token is not written (the member then takes --initial-cluster-token's).
  Status finish(uint64_t member_id, uint64_t cluster_id, const std::string& cluster_token,
                const std::string& provenance) {
    std::vector<std::pair<const char*, std::string>> meta = {
        {data_dir::kMetaBackupOf, provenance},
        {data_dir::kMetaMemberId, hex_id(member_id)},
        {data_dir::kMetaClusterId, hex_id(cluster_id)}};
    if (!cluster_token.empty()) meta.emplace_back(data_dir::kMetaClusterToken, cluster_token);
    for (const auto& [key, value] : meta) {
      if (Status st = log_->put_meta(key, value); !st.is_ok()) return st;
    }
    log_.reset();
    std::error_code ec;
    fs::rename(dir_ / kPartialDir, dir_ / data_dir::kMemberDir, ec);
    if (ec) return Status::error((dir_ / kPartialDir).string() + ": cannot rename it: " + ec.message());
    return sync_dir(dir_);
  }

 private:
  BackupWriter(fs::path dir, std::unique_ptr<storage::RaftLog> log)
      : dir_(std::move(dir)), log_(std::move(log)) {}
  fs::path dir_;
  std::unique_ptr<storage::RaftLog> log_;
};

std::optional<uint64_t> meta_id(const storage::RaftLog& log, const char* key) {
  auto v = log.get_meta(key);
  return v ? parse_hex_id(*v) : std::nullopt;
}

}  // namespace

Result<BackupInfo> write_data_dir(const BackupContent& b, const std::string& dir,
                                  uint64_t member_id, uint64_t cluster_id,
                                  const std::string& provenance) {
  BackupInfo info;
  info.source_member_id = b.member_id;
  info.source_cluster_id = b.cluster_id;
  info.member_id = member_id;
  info.cluster_id = cluster_id;
  info.raft_index = b.hard_state.commit;
  info.snapshot_index = b.snapshot.metadata.index;
  info.entries = b.entries.size();
  info.image_bytes = b.snapshot.data.size();
  auto writer = BackupWriter::create(dir);
  if (!writer.is_ok()) return writer.status();
  storage::RaftLog& dst = writer.value().log();
  if (!b.snapshot.empty()) {
    if (Status st = dst.save_snapshot(b.snapshot); !st.is_ok()) return st;
  }
  for (size_t i = 0; i < b.entries.size();) {
    std::vector<raft::Entry> batch;
    uint64_t bytes = 0;
    for (; i < b.entries.size() && bytes < kCopyBatchBytes; ++i) {
      bytes += b.entries[i].data.size() + 32;
      batch.push_back(b.entries[i]);
    }
    if (Status st = dst.append(batch, std::nullopt); !st.is_ok()) return st;
  }
  raft::HardState hs = b.hard_state;
  hs.vote = raft::kNoNode;  // a vote of the source's; the copy votes afresh
  if (Status st = dst.append({}, hs); !st.is_ok()) return st;
  if (Status st = writer.value().finish(member_id, cluster_id, b.cluster_token, provenance);
      !st.is_ok()) {
    return st;
  }
  return info;
}

Result<BackupInfo> write_backup(const BackupContent& b, const std::string& backup_dir) {
  std::string from = "backup of member " + hex_id(b.member_id) + " of cluster " +
                     hex_id(b.cluster_id) +
                     " at raft index " + std::to_string(b.hard_state.commit) + ", taken ";
  go::append_rfc3339_nano(from, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
  return write_data_dir(b, backup_dir, random_id(), random_id(), from);
}

Result<BackupInfo> backup_data_dir(const std::string& data_dir, const std::string& backup_dir) {
  const std::string db = (fs::path(data_dir) / data_dir::kMemberDir / data_dir::kRaftLogDir).string();
  std::error_code ec;
  if (!fs::is_directory(db, ec)) {
    if (fs::is_directory(fs::path(data_dir) / data_dir::kMemberDir / data_dir::kEtcdWalDir, ec)) {
      return Status::error(data_dir + ": an etcd data dir, not kvd's (for etcd's data, use kvctl "
                                      "migrate)");
    }
    return Status::error(data_dir + ": not a kvd member's data dir (" + db + " is missing)");
  }
  storage::RaftLog::OpenOptions ro;
  ro.read_only = true;
  auto opened = storage::RaftLog::open(db, ro);
  if (!opened.is_ok()) {
    return Status::error(opened.status().message() +
                         (opened.status().message().find("in use") != std::string::npos
                              ? "; stop the member, or back it up while it runs with kvctl "
                                "--endpoints URL backup --backup-dir DIR"
                              : ""));
  }
  const storage::RaftLog& src = *opened.value();
  BackupContent b;
  auto mid = meta_id(src, data_dir::kMetaMemberId);
  auto cid = meta_id(src, data_dir::kMetaClusterId);
  if (!mid || !cid) return Status::error(db + ": no member or cluster id in its metadata");
  b.member_id = *mid;
  b.cluster_id = *cid;
  b.cluster_token = src.get_meta(data_dir::kMetaClusterToken).value_or("");
  if (src.snapshot(&b.snapshot) != raft::StorageError::kOk) {
    return Status::error(db + ": cannot read its snapshot");
  }
  b.hard_state = src.initial_state().first;
  b.hard_state.commit = std::max(b.hard_state.commit, b.snapshot.metadata.index);
  // Every entry up to the last one: those after the commit index are dropped when the backup is
  // started with --force-new-cluster, as the source itself would drop them.
  const uint64_t last = src.last_index();
  for (uint64_t next = std::max(src.first_index(), b.snapshot.metadata.index + 1); next <= last;) {
    std::vector<raft::Entry> batch;
    if (src.entries(next, last + 1, kCopyBatchBytes, &batch) != raft::StorageError::kOk ||
        batch.empty()) {
      return Status::error(db + ": cannot read log entry " + std::to_string(next));
    }
    next += batch.size();
    for (auto& e : batch) b.entries.push_back(std::move(e));
  }
  return write_backup(b, backup_dir);
}

std::string encode_stream(const BackupContent& b) {
  std::string entries;
  for (const raft::Entry& e : b.entries) {
    codec::put_u64(entries, e.index);
    codec::put_u64(entries, e.term);
    codec::put_u8(entries, static_cast<uint8_t>(e.type));
    codec::put_bytes(entries, e.data);
  }
  nlohmann::ordered_json voters = nlohmann::ordered_json::array();
  for (uint64_t v : b.snapshot.metadata.conf_state.voters) voters.push_back(hex_id(v));
  nlohmann::ordered_json j = {{"format", kStreamFormat},
                              {"version", kStreamVersion},
                              {"memberId", hex_id(b.member_id)},
                              {"clusterId", hex_id(b.cluster_id)},
                              {"clusterToken", b.cluster_token},
                              {"raftIndex", b.hard_state.commit},
                              {"raftTerm", b.hard_state.term},
                              {"snapshotIndex", b.snapshot.metadata.index},
                              {"snapshotTerm", b.snapshot.metadata.term},
                              {"voters", voters},
                              {"imageBytes", b.snapshot.data.size()},
                              {"entries", b.entries.size()},
                              {"entryBytes", entries.size()}};
  std::string out = j.dump();
  out.reserve(out.size() + 1 + b.snapshot.data.size() + entries.size());
  out += '\n';
  out += b.snapshot.data;
  out += entries;
  return out;
}

Result<BackupContent> decode_stream(std::string_view stream) {
  const size_t nl = stream.find('\n');
  if (nl == std::string_view::npos) return Status::error("not a kvd backup stream: no header line");
  auto j = nlohmann::json::parse(stream.substr(0, nl), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != kStreamFormat) {
    return Status::error("not a kvd backup stream: its first line is not a kvd-backup header");
  }
  if (j.value("version", 0) != kStreamVersion) {
    return Status::error("unsupported kvd backup stream version " + j["version"].dump() +
                         " (this kvctl reads version " + std::to_string(kStreamVersion) + ")");
  }
  BackupContent b;
  uint64_t image_bytes = 0, entry_count = 0, entry_bytes = 0;
  try {
    auto id = [&](const nlohmann::json& v) {
      auto parsed = parse_hex_id(v.get<std::string>());
      if (!parsed) throw std::invalid_argument("bad id " + v.dump());
      return *parsed;
    };
    b.member_id = id(j.at("memberId"));
    b.cluster_id = id(j.at("clusterId"));
    b.cluster_token = j.at("clusterToken").get<std::string>();
    b.hard_state.commit = j.at("raftIndex").get<uint64_t>();
    b.hard_state.term = j.at("raftTerm").get<uint64_t>();
    b.snapshot.metadata.index = j.at("snapshotIndex").get<uint64_t>();
    b.snapshot.metadata.term = j.at("snapshotTerm").get<uint64_t>();
    for (const auto& v : j.at("voters")) b.snapshot.metadata.conf_state.voters.push_back(id(v));
    image_bytes = j.at("imageBytes").get<uint64_t>();
    entry_count = j.at("entries").get<uint64_t>();
    entry_bytes = j.at("entryBytes").get<uint64_t>();
  } catch (const std::exception& e) {
    return Status::error(std::string("malformed kvd backup header: ") + e.what());
  }
  const uint64_t got = stream.size() - nl - 1;
  if (got != image_bytes + entry_bytes) {
    return Status::error("the backup stream holds " + std::to_string(got) +
                         " bytes after its header, which announced " +
                         std::to_string(image_bytes + entry_bytes) +
                         (got < image_bytes + entry_bytes ? " (the transfer was cut short)" : ""));
  }
  const uint64_t s = b.snapshot.metadata.index;
  if (b.hard_state.commit < s || b.hard_state.commit - s != entry_count ||
      (s == 0) != (image_bytes == 0) || (s != 0 && b.snapshot.metadata.conf_state.voters.empty())) {
    return Status::error("malformed kvd backup header: its indexes, image and entry counts "
                         "disagree");
  }
  const std::string_view image = stream.substr(nl + 1, image_bytes);
  if (s != 0) {
    v2::Store check;
    if (!check.recover(image)) {
      return Status::error("the backup stream's store image is malformed (damaged in transfer?)");
    }
    b.snapshot.data.assign(image);
  }
  codec::Reader r(stream.substr(nl + 1 + image_bytes));
  uint64_t prev_term = b.snapshot.metadata.term;
  for (uint64_t i = 0; i < entry_count; ++i) {
    raft::Entry e;
    uint8_t type = 0;
    if (!r.u64(&e.index) || !r.u64(&e.term) || !r.u8(&type) || !r.bytes(&e.data) ||
        e.index != s + 1 + i || e.term < prev_term ||
        (type != static_cast<uint8_t>(raft::EntryType::kNormal) &&
         type != static_cast<uint8_t>(raft::EntryType::kConfChange))) {
      return Status::error("the backup stream's log entry " + std::to_string(s + 1 + i) +
                           " is malformed (damaged in transfer?)");
    }
    e.type = static_cast<raft::EntryType>(type);
    prev_term = e.term;
    b.entries.push_back(std::move(e));
  }
  if (!r.done()) return Status::error("the backup stream has bytes after its last log entry");
  return b;
}

}  // namespace kvd::offline
