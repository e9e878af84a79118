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

// Damages the records of a WAL file (not the zeros an open one goes on with).
void damage(const fs::path& file, Damage d) {
  const auto size = written_bytes(file);
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
  // The crash came while entry 10 was being written: its WAL record is torn (its last bytes
  // never reached the disk, which still holds the zeros the file was prepared with) and append()
  // had not returned, so the mark (written after the WAL write) still says 9.
  write_file(crash_dir_ + ".mark", mark_after_9);
  const fs::path wal = newest_wal(crash_dir_);
  std::string data = read_file(wal);
  const size_t written = written_bytes(wal);
  ASSERT_GT(written, 50u);
  std::fill(data.begin() + static_cast<std::ptrdiff_t>(written - 50),
            data.begin() + static_cast<std::ptrdiff_t>(written), '\0');
  write_file(wal, data);
  log_.reset();

  testing::internal::CaptureStdout();
  auto r = RaftLog::open(crash_dir_);
  const std::string out = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_NE(out.find("warn"), std::string::npos) << "no warning about the dropped tail: " << out;
  EXPECT_EQ(r.value()->last_index(), 9u);
  EXPECT_EQ(r.value()->initial_state().first, (HardState{1, 1, 9}));
}

// A crash with unsynced writes in flight may leave a hole: the pages of one write still hold the
// zeros the WAL file was prepared with while a later write reached the disk. RocksDB's reader
// skips zeros to the end of their 32 KiB block, so a later record that starts a block would be
// replayed after the hole; the write numbers (storage/prefilled_wal.h) stop the replay there, and
// the log recovers to the write before the hole, not to a log with a gap.
TEST_F(RaftLogMarkTest, open_writeAfterAHoleInTheWalIsDropped) {
  constexpr size_t kBlock = 32768;  // RocksDB's log block (db/log_format.h)
  open_log();
  append_committed(5);
  const fs::path wal = newest_wal(dir_);
  uint64_t next = 6;
  auto append = [&](size_t payload) {
    ASSERT_TRUE(log_->append({make_entry(next, 1, std::string(payload, 'x'))},
                             HardState{1, 1, next})
                    .is_ok());
    ++next;
  };
  // A record's bytes beyond its entry's data, measured (the same for data of 128 bytes to
  // 16 KiB: the lengths in it are varints); then fillers until the rest of the current block
  // holds one more record of 100 to 1000 bytes of data.
  size_t at = written_bytes(wal);
  append(200);
  const size_t overhead = written_bytes(wal) - at - 200;
  for (int i = 0; i < 1000; ++i) {
    const size_t rest = kBlock - written_bytes(wal) % kBlock;
    if (rest >= overhead + 200 && rest < overhead + 1000) break;
    append(200);
  }

  // The write to be lost ends 3 bytes short of the block's end (RocksDB pads that with zeros),
  // so the next write's record starts the next block.
  const std::string mark_before_hole = read_file(dir_ + ".mark");
  const uint64_t last_before_hole = next - 1;
  const size_t hole_start = written_bytes(wal);
  const size_t block_end = (hole_start / kBlock + 1) * kBlock;
  append(block_end - hole_start - overhead - 3);
  ASSERT_EQ(written_bytes(wal), block_end - 3);
  append(200);
  ASSERT_GT(written_bytes(wal), block_end);
  crash_copy();
  log_.reset();

  // The disk took the later write, not the one before it; neither had been acknowledged.
  const fs::path crashed_wal = fs::path(crash_dir_) / wal.filename();
  std::string data = read_file(crashed_wal);
  std::fill(data.begin() + static_cast<std::ptrdiff_t>(hole_start),
            data.begin() + static_cast<std::ptrdiff_t>(block_end), '\0');
  write_file(crashed_wal, data);
  write_file(crash_dir_ + ".mark", mark_before_hole);

  testing::internal::CaptureStdout();
  auto r = RaftLog::open(crash_dir_);
  const std::string out = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_NE(out.find("write-ahead log replay stops at " + crashed_wal.string()),
            std::string::npos)
      << out;
  EXPECT_EQ(r.value()->last_index(), last_before_hole);
  EXPECT_EQ(r.value()->initial_state().first, (HardState{1, 1, last_before_hole}));
  // The log goes on from there.
  EXPECT_TRUE(r.value()
                  ->append({make_entry(last_before_hole + 1, 1, "after")},
                           HardState{1, 1, last_before_hole + 1})
                  .is_ok());
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
