// offline/backup.h against real RocksDB databases in temporary directories: an offline backup
// of a member's raft log (read-only, refused while the database is open elsewhere), the backup
// stream's round trip and its refusals (cut short, damaged, another version), and the backup
// dir's rules (absent or empty; the provenance record and new ids).
#include "offline/backup.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "api_v2/store.h"
#include "common/data_dir.h"
#include "common/ids.h"
#include "storage/raft_log.h"

namespace kvd::offline {
namespace {

namespace fs = std::filesystem;

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kvd-backup-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string db_of(const std::string& data_dir) {
    return (fs::path(data_dir) / data_dir::kMemberDir / data_dir::kRaftLogDir).string();
  }

  // A member's data dir: a snapshot at 10 (a store with one key), entries 11..30 (the last five
  // uncommitted), ids in the metadata.
  std::string make_member(const std::string& name) {
    const std::string data = (dir_ / name).string();
    auto log = storage::RaftLog::open(db_of(data));
    EXPECT_TRUE(log.is_ok());
    auto& l = *log.value();
    raft::Snapshot snap;
    snap.metadata = {10, 2, {{0xa, 0xb, 0xc}}};
    snap.data = image_;
    EXPECT_TRUE(l.save_snapshot(snap).is_ok());
    std::vector<raft::Entry> es;
    for (uint64_t i = 11; i <= 30; ++i) {
      es.push_back({3, i, raft::EntryType::kNormal, "e" + std::to_string(i)});
    }
    EXPECT_TRUE(l.append(es, raft::HardState{3, 0xa, 25}).is_ok());
    EXPECT_TRUE(l.put_meta(data_dir::kMetaMemberId, hex_id(0xa)).is_ok());
    EXPECT_TRUE(l.put_meta(data_dir::kMetaClusterId, hex_id(0x1234)).is_ok());
    EXPECT_TRUE(l.put_meta(data_dir::kMetaClusterToken, "tok").is_ok());
    return data;
  }

  BackupContent content() {
    BackupContent b;
    b.member_id = 0xa;
    b.cluster_id = 0x1234;
    b.cluster_token = "tok";
    b.snapshot.metadata = {10, 2, {{0xa, 0xb}}};
    b.snapshot.data = image_;
    for (uint64_t i = 11; i <= 14; ++i) {
      b.entries.push_back({3, i, raft::EntryType::kNormal, "e" + std::to_string(i)});
    }
    b.hard_state = {4, 0xb, 14};
    return b;
  }

  fs::path dir_;
  std::string image_ = [] {
    v2::Store s;
    v2::Command c;
    c.op = v2::Op::kSet;
    c.key = "/k";
    c.value = "v";
    (void)s.apply(c);
    return s.save();
  }();
};

TEST_F(BackupTest, offline_copies_the_log_with_a_new_identity) {
  const std::string src = make_member("src");
  const std::string dst = (dir_ / "dst").string();
  auto info = backup_data_dir(src, dst);
  ASSERT_TRUE(info.is_ok()) << info.status().message();
  EXPECT_EQ(info.value().raft_index, 25u);
  EXPECT_EQ(info.value().snapshot_index, 10u);
  EXPECT_EQ(info.value().entries, 20u);
  EXPECT_EQ(info.value().source_member_id, 0xau);
  EXPECT_NE(info.value().member_id, 0xau);
  EXPECT_NE(info.value().cluster_id, 0x1234u);
  EXPECT_FALSE(fs::exists(fs::path(dst) / "member.partial"));

  auto log = storage::RaftLog::open(db_of(dst));
  ASSERT_TRUE(log.is_ok()) << log.status().message();
  auto& l = *log.value();
  raft::Snapshot snap;
  ASSERT_EQ(l.snapshot(&snap), raft::StorageError::kOk);
  EXPECT_EQ(snap.metadata, (raft::SnapshotMetadata{10, 2, {{0xa, 0xb, 0xc}}}));
  EXPECT_EQ(snap.data, image_);
  EXPECT_EQ(l.last_index(), 30u);
  std::vector<raft::Entry> es;
  ASSERT_EQ(l.entries(11, 31, 1 << 20, &es), raft::StorageError::kOk);
  ASSERT_EQ(es.size(), 20u);
  EXPECT_EQ(es[4].data, "e15");
  const auto hs = l.initial_state().first;
  EXPECT_EQ(hs.commit, 25u);
  EXPECT_EQ(hs.term, 3u);
  EXPECT_EQ(hs.vote, raft::kNoNode);
  EXPECT_EQ(l.get_meta(data_dir::kMetaMemberId), hex_id(info.value().member_id));
  EXPECT_EQ(l.get_meta(data_dir::kMetaClusterToken), "tok");
  const auto from = l.get_meta(data_dir::kMetaBackupOf);
  ASSERT_TRUE(from.has_value());
  EXPECT_NE(from->find("member a of cluster 1234 at raft index 25"), std::string::npos) << *from;

  // The source is unchanged: it opens and backs up again the same.
  auto again = backup_data_dir(src, (dir_ / "dst2").string());
  ASSERT_TRUE(again.is_ok()) << again.status().message();
  EXPECT_EQ(again.value().raft_index, 25u);
}

TEST_F(BackupTest, offline_refuses_a_database_open_elsewhere) {
  const std::string src = make_member("src");
  auto held = storage::RaftLog::open(db_of(src));
  ASSERT_TRUE(held.is_ok());
  // RocksDB's lock is per process and fcntl locks are not seen by their own process: the
  // holder must be another process.
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto info = backup_data_dir(src, (dir_ / "dst").string());
    ::_exit(!info.is_ok() && info.status().message().find("in use by a running kvd") !=
                                 std::string::npos
                ? 0
                : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(BackupTest, refuses_what_is_not_a_kvd_member_or_a_non_empty_target) {
  auto none = backup_data_dir((dir_ / "nothing").string(), (dir_ / "dst").string());
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("not a kvd member's data dir"), std::string::npos);
  fs::create_directories(dir_ / "etcd" / "member" / "wal");
  auto etcd = backup_data_dir((dir_ / "etcd").string(), (dir_ / "dst").string());
  ASSERT_FALSE(etcd.is_ok());
  EXPECT_NE(etcd.status().message().find("kvctl migrate"), std::string::npos);

  const std::string src = make_member("src");
  fs::create_directories(dir_ / "full");
  std::ofstream(dir_ / "full" / "x") << "x";
  auto full = backup_data_dir(src, (dir_ / "full").string());
  ASSERT_FALSE(full.is_ok());
  EXPECT_NE(full.status().message().find("not empty"), std::string::npos);
}

TEST_F(BackupTest, stream_round_trip_and_write) {
  const BackupContent b = content();
  const std::string s = encode_stream(b);
  auto back = decode_stream(s);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back.value().snapshot.metadata, b.snapshot.metadata);
  EXPECT_EQ(back.value().snapshot.data, b.snapshot.data);
  EXPECT_EQ(back.value().entries.size(), 4u);
  EXPECT_EQ(back.value().entries[3].data, "e14");
  EXPECT_EQ(back.value().hard_state.commit, 14u);
  EXPECT_EQ(back.value().cluster_token, "tok");

  auto info = write_backup(back.value(), (dir_ / "dst").string());
  ASSERT_TRUE(info.is_ok()) << info.status().message();
  auto log = storage::RaftLog::open(db_of((dir_ / "dst").string()));
  ASSERT_TRUE(log.is_ok());
  EXPECT_EQ(log.value()->last_index(), 14u);
  EXPECT_EQ(log.value()->initial_state().first.commit, 14u);
}

TEST_F(BackupTest, stream_without_snapshot) {
  BackupContent b = content();
  b.snapshot = {};
  b.entries.clear();
  for (uint64_t i = 1; i <= 3; ++i) b.entries.push_back({1, i, raft::EntryType::kConfChange, "c"});
  b.hard_state = {1, 0, 3};
  auto back = decode_stream(encode_stream(b));
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_TRUE(back.value().snapshot.empty());
  EXPECT_EQ(back.value().entries[0].type, raft::EntryType::kConfChange);
}

TEST_F(BackupTest, stream_refusals) {
  const std::string s = encode_stream(content());
  // Every cut is refused.
  for (size_t n = 0; n < s.size(); n += 7) {
    auto r = decode_stream(std::string_view(s).substr(0, n));
    EXPECT_FALSE(r.is_ok()) << "cut at " << n;
  }
  auto longer = decode_stream(s + "x");
  EXPECT_FALSE(longer.is_ok());
  // A flipped byte anywhere is refused or decodes to the same content (a byte the image format
  // does not check, such as inside a value, is the transport's to protect).
  std::mt19937 rng(7);
  int refused = 0;
  for (int i = 0; i < 300; ++i) {
    std::string d = s;
    d[rng() % d.size()] ^= static_cast<char>(1 + rng() % 255);
    auto r = decode_stream(d);
    if (!r.is_ok()) ++refused;
  }
  EXPECT_GT(refused, 0);
  std::string v2 = s;
  v2.replace(v2.find("\"version\":1"), 11, "\"version\":2");
  auto other = decode_stream(v2);
  ASSERT_FALSE(other.is_ok());
  EXPECT_NE(other.status().message().find("version 2"), std::string::npos);
  auto junk = decode_stream("<html>404</html>\n");
  ASSERT_FALSE(junk.is_ok());
  EXPECT_NE(junk.status().message().find("not a kvd backup stream"), std::string::npos);
}

}  // namespace
}  // namespace kvd::offline
