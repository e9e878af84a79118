// The commit mark (raft_log_impl.h, Impl::mark): a database whose write-ahead log lost
// acknowledged writes (a damaged, truncated or removed WAL file) is refused, naming the file,
// without a file being changed; a clean close leaves nothing in the WAL alone, so damage to it
// then loses nothing; a torn mark only weakens the check.
#include "tests/unit/storage/raft_log_test_util.h"

namespace kvd::storage {
namespace {

// The files of dir (name -> size), to show that a refused open changed none of them.
std::map<std::string, uintmax_t> listing(const fs::path& dir) {
  std::map<std::string, uintmax_t> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("LOG", 0) != 0) out[name] = fs::file_size(e.path());  // RocksDB's info log
  }
  return out;
}

enum class Damage { kFlip, kTruncate, kRemove };

void damage(const fs::path& file, Damage d) {
  const auto size = fs::file_size(file);
  ASSERT_GT(size, 0u) << file;
  switch (d) {
    case Damage::kFlip: flip_byte(file, size / 2); break;
    case Damage::kTruncate: fs::resize_file(file, size / 2); break;
    case Damage::kRemove: fs::remove(file); break;
  }
}

class RaftLogMarkTest : public RaftLogTest {
 protected:
  // Appends entries 1..n (term 1, one synced append each, committed as they go).
  void append_committed(uint64_t n) {
    for (uint64_t i = 1; i <= n; ++i) {
      ASSERT_TRUE(
          log_->append({make_entry(i, 1, std::string(200, 'x'))}, HardState{1, 1, i}).is_ok());
    }
  }
  // What SIGKILL leaves of the open log: its files and its commit mark as they are now (the page
  // cache outlives the process), copied to crash_dir_ and crash_dir_.mark.
  void crash_copy() {
    fs::copy(dir_, crash_dir_, fs::copy_options::recursive);
    fs::copy_file(dir_ + ".mark", crash_dir_ + ".mark");
  }
  std::string crash_open_error() {
    auto r = RaftLog::open(crash_dir_);
    EXPECT_FALSE(r.is_ok()) << "open succeeded on " << crash_dir_;
    return r.is_ok() ? std::string() : r.status().message();
  }
  fs::path newest_wal(const fs::path& dir) {
    auto wals = files_with_suffix(dir, ".log");
    EXPECT_FALSE(wals.empty());
    return wals.empty() ? fs::path() : wals.back();  // zero-padded numbers sort as numbers
  }

  void SetUp() override {
    RaftLogTest::SetUp();
    crash_dir_ = (root_ / "crashed").string();
  }

  std::string crash_dir_;
};

TEST_F(RaftLogMarkTest, open_walThatLostAcknowledgedWritesRefusedNamingIt) {
  for (Damage d : {Damage::kFlip, Damage::kTruncate, Damage::kRemove}) {
    SCOPED_TRACE(static_cast<int>(d));
    fs::remove_all(dir_);
    fs::remove(dir_ + ".mark");
    fs::remove_all(crash_dir_);
    fs::remove(crash_dir_ + ".mark");
    open_log();
    append_committed(300);
    crash_copy();
    log_.reset();
    const fs::path wal = newest_wal(crash_dir_);
    damage(wal, d);
    const auto before = listing(crash_dir_);

    std::string err = crash_open_error();
    EXPECT_NE(err.find("lost acknowledged writes"), std::string::npos) << err;
    EXPECT_NE(err.find("term 1 and commit index 300 as durable"), std::string::npos) << err;
    EXPECT_NE(err.find(crash_dir_ + ".mark"), std::string::npos) << err;
    if (d == Damage::kRemove) {
      EXPECT_NE(err.find("no write-ahead log file is left"), std::string::npos) << err;
    } else {
      EXPECT_NE(err.find(wal.string() + ", is damaged or truncated"), std::string::npos) << err;
    }
    // Nothing was changed: the damaged file is still there to be looked at, and the next start
    // refuses the same way.
    EXPECT_EQ(listing(crash_dir_), before);
    EXPECT_EQ(crash_open_error(), err);
  }
}

TEST_F(RaftLogMarkTest, open_cleanCloseLeavesNothingOnlyInTheWal) {
  for (Damage d : {Damage::kFlip, Damage::kTruncate, Damage::kRemove}) {
    SCOPED_TRACE(static_cast<int>(d));
    log_.reset();
    fs::remove_all(dir_);
    fs::remove(dir_ + ".mark");
    open_log();
    append_committed(300);
    log_.reset();
    // The close flushed every memtable: the WAL left holds no write the table files lack.
    for (const fs::path& wal : files_with_suffix(dir_, ".log")) {
      EXPECT_EQ(fs::file_size(wal), 0u) << wal;
      fs::resize_file(wal, 100);  // a damaged (or removed) empty WAL still loses nothing
      if (d == Damage::kFlip) flip_byte(wal, 50);
      if (d == Damage::kTruncate) fs::resize_file(wal, 10);
      if (d == Damage::kRemove) fs::remove(wal);
    }
    open_log();
    EXPECT_EQ(log_->last_index(), 300u);
    EXPECT_EQ(log_->initial_state().first, (HardState{1, 1, 300}));
  }
}

TEST_F(RaftLogMarkTest, open_tornWalTailOfAnUnacknowledgedWriteAccepted) {
  open_log();
  append_committed(9);
  const std::string mark_after_9 = read_file(dir_ + ".mark");
  ASSERT_TRUE(log_->append({make_entry(10, 1, std::string(200, 'x'))}, HardState{1, 1, 10})
                  .is_ok());
  crash_copy();
  // The crash came while entry 10 was being written: its WAL record is torn and append() had
  // not returned, so the mark (written after the WAL write) still says 9.
  write_file(crash_dir_ + ".mark", mark_after_9);
  const fs::path wal = newest_wal(crash_dir_);
  fs::resize_file(wal, fs::file_size(wal) - 50);
  log_.reset();

  testing::internal::CaptureStdout();
  auto r = RaftLog::open(crash_dir_);
  const std::string out = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_NE(out.find("warn"), std::string::npos) << "no warning about the dropped tail: " << out;
  EXPECT_EQ(r.value()->last_index(), 9u);
  EXPECT_EQ(r.value()->initial_state().first, (HardState{1, 1, 9}));
}

TEST_F(RaftLogMarkTest, open_missingDatabaseRefusedWhenMarked) {
  open_log();
  append_committed(5);
  log_.reset();
  fs::remove_all(dir_);
  std::string err = open_error();
  EXPECT_NE(err.find("the database is missing"), std::string::npos) << err;
  EXPECT_NE(err.find("commit index 5"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir_)) << "a refused open created the directory";
}

TEST_F(RaftLogMarkTest, open_unreadableMarkIgnoredWithWarning) {
  for (const std::string& garbage :
       {std::string(), std::string("kvd-commit-mark 1 0000"), std::string(60, '\0'),
        std::string("kvd-commit-mark 1 00000000000000000001 00000000000000009999 00000000\n")}) {
    open_log();
    if (log_->last_index() == 0) append_committed(5);
    log_.reset();
    write_file(dir_ + ".mark", garbage);  // cut short or torn by a power loss; a wrong CRC
    testing::internal::CaptureStdout();
    auto r = RaftLog::open(dir_);
    const std::string out = testing::internal::GetCapturedStdout();
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r.value()->last_index(), 5u);
    EXPECT_NE(out.find("ignoring the unreadable commit mark"), std::string::npos) << out;
  }
}

TEST_F(RaftLogMarkTest, append_marksEverySyncedWriteOnly) {
  open_log();
  append_committed(3);
  EXPECT_NE(read_file(dir_ + ".mark").find(" 00000000000000000001 00000000000000000003 "),
            std::string::npos);
  // A hard state whose commit index alone changed may be written unsynced: not marked, since
  // a crash may lose it.
  ASSERT_TRUE(log_->append({}, HardState{1, 1, 3}, /*sync=*/true).is_ok());
  ASSERT_TRUE(log_->append({make_entry(4, 1)}, HardState{1, 1, 3}).is_ok());
  ASSERT_TRUE(log_->append({}, HardState{1, 1, 4}, /*sync=*/false).is_ok());
  EXPECT_NE(read_file(dir_ + ".mark").find(" 00000000000000000003 "), std::string::npos);
  log_.reset();  // the clean close flushes, so all it holds is durable and marked
  EXPECT_NE(read_file(dir_ + ".mark").find(" 00000000000000000004 "), std::string::npos);
}

}  // namespace
}  // namespace kvd::storage
