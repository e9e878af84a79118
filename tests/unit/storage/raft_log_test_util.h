// storage::RaftLog against real RocksDB databases in temporary directories: reads and writes,
// reopen, snapshots, refusal of foreign, corrupt and unknown-version databases, torn WAL tails,
// images in their own SST files, and durability of acknowledged appends (a writer process killed
// with SIGKILL).
// Shared by raft_log_test.cc and raft_log_open_test.cc: helpers that write and damage files, a
// raw RocksDB handle, and the fixture.
#pragma once

#include "storage/raft_log.h"
#include "tests/unit/storage/power_cut_fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/write_batch.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kvd::storage {

namespace fs = std::filesystem;
using raft::Entry;
using raft::EntryType;
using raft::HardState;
using raft::Snapshot;
using raft::SnapshotMetadata;
using raft::StorageError;

inline Entry make_entry(uint64_t index, uint64_t term, std::string data = "") {
  if (data.empty()) data = "cmd-" + std::to_string(index) + "-t" + std::to_string(term);
  return Entry{term, index, EntryType::kNormal, std::move(data)};
}

inline std::vector<Entry> make_entries(uint64_t lo, uint64_t hi, uint64_t term) {
  std::vector<Entry> out;
  for (uint64_t i = lo; i < hi; ++i) out.push_back(make_entry(i, term));
  return out;
}

// Entry i's data in the SIGKILL durability test.
inline std::string sigkill_writer_data(uint64_t i) {
  return std::string(1000, static_cast<char>('a' + i % 26));
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << data;
}

// Files in dir whose name ends with suffix, sorted.
inline std::vector<fs::path> files_with_suffix(const fs::path& dir,
                                            const std::string& suffix) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The bytes of a write-ahead log file that hold records: up to its last non-zero byte (an open
// WAL file goes on with zeros, storage/prefilled_wal.h).
inline size_t written_bytes(const fs::path& p) {
  const std::string data = read_file(p);
  size_t n = data.size();
  while (n > 0 && data[n - 1] == '\0') --n;
  return n;
}

inline void flip_byte(const fs::path& p, size_t offset) {
  std::string data = read_file(p);
  ASSERT_LT(offset, data.size()) << p;
  data[offset] = static_cast<char>(data[offset] ^ 0x5a);
  write_file(p, data);
}

// Opens dir as a plain RocksDB database with kvd's column families, for tests that need to
// plant records or force SST files. Closes in the destructor.
class RawDb {
 public:
  // images = false: the families of an earlier kvd (no "images").
  explicit RawDb(const std::string& dir, bool images = true) {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
        {"entries", rocksdb::ColumnFamilyOptions()}};
    if (images) cfs.push_back({"images", rocksdb::ColumnFamilyOptions()});
    rocksdb::DB* raw = nullptr;
    status = rocksdb::DB::Open(rocksdb::DBOptions(options), dir, cfs, &handles, &raw);
    db.reset(raw);
  }
  ~RawDb() {
    if (!db) return;
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db->Close().PermitUncheckedError();
  }
  void flush() {
    ASSERT_TRUE(db->Flush(rocksdb::FlushOptions(), handles).ok());
  }
  static std::string key(uint64_t index) {
    std::string k(8, '\0');
    for (int i = 0; i < 8; ++i) k[i] = static_cast<char>((index >> (8 * (7 - i))) & 0xff);
    return k;
  }

  rocksdb::Status status;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
};

class RaftLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "kvd-raftlog-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    dir_ = (root_ / "db").string();
  }

  void TearDown() override {
    if (log_) check_invariants(*log_);
    log_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void open_log() {
    log_.reset();
    auto r = RaftLog::open(dir_);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    log_ = std::move(r.value());
  }

  // The error open() gives for dir_; fails the test if it succeeds.
  std::string open_error() {
    log_.reset();
    auto r = RaftLog::open(dir_);
    EXPECT_FALSE(r.is_ok()) << "open succeeded on " << dir_;
    if (!r.is_ok()) fprintf(stderr, "OPENERR: %s\n", r.status().message().c_str());
    return r.is_ok() ? std::string() : r.status().message();
  }

  // A database with entries 1..n (term 1) whose data sits in SST files, closed.
  void make_flushed_db(uint64_t n) {
    open_log();
    ASSERT_TRUE(log_->append(make_entries(1, n + 1, 1), HardState{1, 1, n}).is_ok());
    log_.reset();
    RawDb raw(dir_);
    ASSERT_TRUE(raw.status.ok()) << raw.status.ToString();
    raw.flush();
  }

  // The LogStorage contract, checked after every test on whatever log is open.
  static void check_invariants(const RaftLog& log) {
    Snapshot snap;
    ASSERT_EQ(log.snapshot(&snap), StorageError::kOk);
    const uint64_t first = log.first_index();
    const uint64_t last = log.last_index();
    EXPECT_EQ(first, snap.metadata.index + 1);
    EXPECT_GE(last + 1, first);
    uint64_t t = 0;
    ASSERT_EQ(log.term(first - 1, &t), StorageError::kOk);
    EXPECT_EQ(t, snap.metadata.term);
    if (first >= 2) {
      EXPECT_EQ(log.term(first - 2, &t), StorageError::kCompacted);
    }
    EXPECT_EQ(log.term(last + 1, &t), StorageError::kUnavailable);
    if (last < first) return;
    std::vector<Entry> all;
    ASSERT_EQ(log.entries(first, last + 1, UINT64_MAX, &all), StorageError::kOk);
    ASSERT_EQ(all.size(), last - first + 1);
    uint64_t prev_term = snap.metadata.term;
    for (uint64_t i = first; i <= last; ++i) {
      const Entry& e = all[i - first];
      EXPECT_EQ(e.index, i);
      ASSERT_EQ(log.term(i, &t), StorageError::kOk);
      EXPECT_EQ(t, e.term) << "term(" << i << ") disagrees with entries()";
      EXPECT_GE(e.term, prev_term) << "terms decrease at " << i;
      prev_term = e.term;
    }
  }

  fs::path root_;
  std::string dir_;
  std::unique_ptr<RaftLog> log_;
};

// A RaftLogTest whose logs run on a PowerCutFs over root_ (power cuts, injected I/O errors).
class RaftLogFsTest : public RaftLogTest {
 protected:
  void SetUp() override {
    // The file system under test only simulates durability, so the real one may as well be quick:
    // tmpfs where there is one (these tests fsync thousands of times).
    if (fs::is_directory("/dev/shm")) ::setenv("TMPDIR", "/dev/shm", 1);
    RaftLogTest::SetUp();
    ::unsetenv("TMPDIR");
    pfs_ = std::make_shared<PowerCutFs>(root_.string());
    options_.env = std::make_shared<FaultEnv>(pfs_);
  }
  void TearDown() override {
    RaftLogTest::TearDown();  // closes the log before the file system goes
    options_.env.reset();
    pfs_.reset();
  }
  void open_log_on_fs() {
    log_.reset();
    auto r = RaftLog::open(dir_, options_);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    log_ = std::move(r.value());
  }

  std::shared_ptr<PowerCutFs> pfs_;
  RaftLog::OpenOptions options_;
};

}  // namespace kvd::storage
