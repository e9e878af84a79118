// RaftLog::open on damaged, foreign and interrupted databases, and durability across SIGKILL.
#include "tests/unit/storage/raft_log_test_util.h"

namespace kvd::storage {
namespace {

// The writer of append_acknowledgedEntriesSurviveSigkillAcrossWalSwitches, in a process of its
// own: it appends batches to the log in dir, reporting each acknowledged index on fd, until
// killed. Never returns.
[[noreturn]] void run_sigkill_writer(const std::string& dir, int fd) {
  constexpr uint64_t kBatch = 100;
  auto r = RaftLog::open(dir);
  if (!r.is_ok()) ::_exit(2);
  auto& log = *r.value();
  for (uint64_t next = 1;; next += kBatch) {
    std::vector<Entry> batch;
    for (uint64_t i = next; i < next + kBatch; ++i) {
      batch.push_back(Entry{1, i, EntryType::kNormal, sigkill_writer_data(i)});
    }
    if (!log.append(batch, HardState{1, 1, next + kBatch - 1}).is_ok()) ::_exit(3);
    const uint64_t acked = next + kBatch - 1;
    if (::write(fd, &acked, sizeof acked) != sizeof acked) ::_exit(4);
    if (acked % 10000 == 0) {  // compaction frees old WAL files for reuse
      Snapshot snap;
      snap.metadata = {acked - 5000, 1, {{1}}};
      snap.data = "image";
      if (!log.save_snapshot(snap).is_ok()) ::_exit(5);
    }
  }
}

// A writer killed with SIGKILL at an arbitrary point, after enough appends (and snapshots) that
// RocksDB switched WAL files and flushed memtables many times: every append it had acknowledged
// is there after reopening.
TEST_F(RaftLogTest, append_acknowledgedEntriesSurviveSigkillAcrossWalSwitches) {
  // The writer is this test binary started again with KVD_TEST_WRITER_DIR/_FD set, running only
  // this test: a fresh process. (A plain fork would copy a process whose RocksDB background
  // threads, started by earlier tests in the same run, do not exist in the copy: its first
  // memtable flush would never run and its writes would stall.)
  if (const char* writer_dir = std::getenv("KVD_TEST_WRITER_DIR")) {
    fs::remove_all(root_);  // this run's own fixture directory is unused
    run_sigkill_writer(writer_dir, std::atoi(std::getenv("KVD_TEST_WRITER_FD")));
  }
  constexpr uint64_t kKillAfter = 60000;  // ~60 MB of entries, past the 32 MiB WAL bound
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::setenv("KVD_TEST_WRITER_DIR", dir_.c_str(), 1);
    ::setenv("KVD_TEST_WRITER_FD", std::to_string(fds[1]).c_str(), 1);
    const std::string filter =
        "--gtest_filter=RaftLogTest.append_acknowledgedEntriesSurviveSigkillAcrossWalSwitches";
    const int devnull = ::open("/dev/null", O_WRONLY);  // gtest's report of the writer run
    if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
    ::execl("/proc/self/exe", "storage_tests", filter.c_str(), static_cast<char*>(nullptr));
    ::_exit(6);
  }
  ::close(fds[1]);
  uint64_t acked = 0, v = 0;
  while (acked < kKillAfter && ::read(fds[0], &v, sizeof v) == sizeof v) acked = v;
  ASSERT_GE(acked, kKillAfter) << "the writer stopped early";
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  while (::read(fds[0], &v, sizeof v) == sizeof v) acked = v;  // acknowledged before the kill
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited with " << WEXITSTATUS(status);

  open_log();
  ASSERT_GE(log_->last_index(), acked);
  const uint64_t first = log_->first_index();
  ASSERT_LE(first, acked - 5000);
  std::vector<Entry> got;
  ASSERT_EQ(log_->entries(first, acked + 1, UINT64_MAX, &got), StorageError::kOk);
  ASSERT_EQ(got.size(), acked + 1 - first);
  for (const Entry& e : got) {
    ASSERT_EQ(e.data, sigkill_writer_data(e.index)) << "entry " << e.index;
  }
  // The writer went through several WAL files, and only the last ones are kept.
  size_t wal_files = 0;
  for (const auto& f : fs::directory_iterator(dir_)) wal_files += f.path().extension() == ".log";
  EXPECT_LE(wal_files, 4u);
}

TEST_F(RaftLogTest, open_garbageFilesRefused) {
  fs::create_directories(dir_);
  write_file(fs::path(dir_) / "notes.txt", "hello");
  write_file(fs::path(dir_) / "data.bin", std::string(100, '\x01'));
  std::string err = open_error();
  EXPECT_NE(err.find(dir_), std::string::npos) << err;
  EXPECT_NE(err.find("not a kvd database"), std::string::npos) << err;
  EXPECT_NE(err.find("notes.txt"), std::string::npos) << err;
  EXPECT_EQ(read_file(fs::path(dir_) / "notes.txt"), "hello");  // left untouched
}

TEST_F(RaftLogTest, open_etcdDataDirRefused) {
  fs::create_directories(fs::path(dir_) / "member" / "wal");
  fs::create_directories(fs::path(dir_) / "member" / "snap");
  write_file(fs::path(dir_) / "member" / "wal" / "0000000000000000-0000000000000000.wal",
             std::string(64, '\0'));
  std::string err = open_error();
  EXPECT_NE(err.find("not a kvd database"), std::string::npos) << err;
  EXPECT_NE(err.find("member"), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_regularFileRefused) {
  write_file(dir_, "x");
  std::string err = open_error();
  EXPECT_NE(err.find("not a directory"), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_otherRocksDbRefused) {
  {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir_, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "k", "v").ok());
  }
  std::string err = open_error();
  EXPECT_NE(err.find("column families"), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_missingFormatRecordRefused) {
  {
    RawDb raw(dir_);
    ASSERT_TRUE(raw.status.ok());
    ASSERT_TRUE(raw.db->Put(rocksdb::WriteOptions(), raw.handles[0], "other", "x").ok());
  }
  std::string err = open_error();
  EXPECT_NE(err.find("no \"format\" record"), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_interruptedCreationInitialized) {
  { RawDb raw(dir_); ASSERT_TRUE(raw.status.ok()); }  // the families exist, no record yet
  open_log();
  EXPECT_EQ(log_->last_index(), 0u);
  ASSERT_TRUE(log_->append(make_entries(1, 3, 1), std::nullopt).is_ok());
  open_log();
  EXPECT_EQ(log_->last_index(), 2u);
}

TEST_F(RaftLogTest, open_unknownFormatVersionRefused) {
  open_log();
  log_.reset();
  {
    RawDb raw(dir_);
    ASSERT_TRUE(raw.status.ok());
    std::string v = "kvd-raft-log";
    v += std::string("\x02\x00\x00\x00", 4);
    ASSERT_TRUE(raw.db->Put(rocksdb::WriteOptions(), raw.handles[0], "format", v).ok());
  }
  std::string err = open_error();
  EXPECT_NE(err.find("unknown raft log format version 2"), std::string::npos) << err;
  EXPECT_NE(err.find(dir_), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_malformedHardStateRefused) {
  open_log();
  log_.reset();
  {
    RawDb raw(dir_);
    ASSERT_TRUE(raw.status.ok());
    ASSERT_TRUE(raw.db->Put(rocksdb::WriteOptions(), raw.handles[0], "hard_state", "short").ok());
  }
  std::string err = open_error();
  EXPECT_NE(err.find("malformed \"hard_state\""), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_malformedEntryRefused) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 4, 1), std::nullopt).is_ok());
  log_.reset();
  {
    RawDb raw(dir_);
    ASSERT_TRUE(raw.status.ok());
    ASSERT_TRUE(raw.db->Put(rocksdb::WriteOptions(), raw.handles[1], RawDb::key(2), "abc").ok());
  }
  std::string err = open_error();
  EXPECT_NE(err.find("malformed raft log entry 2"), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_gapInLogRefused) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 6, 1), std::nullopt).is_ok());
  log_.reset();
  {
    RawDb raw(dir_);
    ASSERT_TRUE(raw.status.ok());
    ASSERT_TRUE(raw.db->Delete(rocksdb::WriteOptions(), raw.handles[1], RawDb::key(3)).ok());
  }
  std::string err = open_error();
  EXPECT_NE(err.find("gap in the raft log: entry 2 is followed by entry 4"), std::string::npos)
      << err;
  EXPECT_NE(err.find(dir_), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_corruptSstRefusedNamingFile) {
  make_flushed_db(200);
  auto ssts = files_with_suffix(dir_, ".sst");
  ASSERT_FALSE(ssts.empty());
  // The largest file holds the entries; its first data block starts at offset 0.
  fs::path target = *std::max_element(ssts.begin(), ssts.end(), [](const auto& a, const auto& b) {
    return fs::file_size(a) < fs::file_size(b);
  });
  flip_byte(target, 100);
  std::string err = open_error();
  EXPECT_NE(err.find("Corruption"), std::string::npos) << err;
  EXPECT_NE(err.find(target.filename().string()), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_corruptManifestRefused) {
  make_flushed_db(20);
  auto manifests = files_with_suffix(dir_, "");
  fs::path manifest;
  for (const auto& p : manifests) {
    if (p.filename().string().rfind("MANIFEST-", 0) == 0) manifest = p;
  }
  ASSERT_FALSE(manifest.empty());
  flip_byte(manifest, fs::file_size(manifest) / 2);
  std::string err = open_error();
  EXPECT_NE(err.find(dir_), std::string::npos) << err;
  EXPECT_NE(err.find("MANIFEST"), std::string::npos) << err;
}

TEST_F(RaftLogTest, open_corruptCurrentRefused) {
  make_flushed_db(20);
  const fs::path current = fs::path(dir_) / "CURRENT";
  flip_byte(current, 2);
  std::string err = open_error();
  EXPECT_NE(err.find(current.string()), std::string::npos) << err;
}

}  // namespace
}  // namespace kvd::storage
