// The raft log's WAL files written over zeros (storage/prefilled_wal.h): a synced append writes
// over the prepared file and leaves its size as it is (the point: one device write per fsync);
// a clean close cuts the zeros off; without a spare (it cannot be made) the WAL is an ordinary
// growing file and the log works the same. The crash cases are raft_log_mark_test's (a torn
// record, a hole before a later write) and raft_log_power_test's (power cuts, unsynced pages
// undone at random).
#include "storage/prefilled_wal.h"
#include "tests/unit/storage/raft_log_test_util.h"

#include <chrono>
#include <thread>

namespace kvd::storage {
namespace {

class PrefilledWalTest : public RaftLogTest {
 protected:
  fs::path newest_wal() {
    auto wals = files_with_suffix(dir_, ".log");
    EXPECT_FALSE(wals.empty());
    return wals.empty() ? fs::path() : wals.back();
  }
  void append_committed(uint64_t from, uint64_t to) {
    for (uint64_t i = from; i <= to; ++i) {
      ASSERT_TRUE(
          log_->append({make_entry(i, 1, std::string(300, 'x'))}, HardState{1, 1, i}).is_ok());
    }
  }
};

TEST_F(PrefilledWalTest, append_writesOverThePreparedFileWithoutGrowingIt) {
  open_log();
  const fs::path wal = newest_wal();
  const uintmax_t prepared = fs::file_size(wal);
  EXPECT_EQ(prepared, uintmax_t{16 << 20} / 4 * 5);  // kvd's memtable, and a quarter more
  const size_t created = written_bytes(wal);  // the new database's format record
  EXPECT_LT(created, 100u);
  append_committed(1, 200);
  EXPECT_EQ(fs::file_size(wal), prepared) << "a synced append changed the file's size";
  EXPECT_GT(written_bytes(wal), created + 200u * 300u);

  // The next WAL file's spare is made in the background, the same size.
  const fs::path spare = fs::path(dir_) / PrefilledWalFs::kSpareName;
  for (int i = 0; i < 500 && !(fs::exists(spare) && fs::file_size(spare) == prepared); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(fs::exists(spare));
  EXPECT_EQ(fs::exists(spare) ? fs::file_size(spare) : 0, prepared);
  EXPECT_EQ(written_bytes(spare), 0u);

  // A clean close cuts the zeros off (the memtables are flushed: nothing is left in the WAL).
  log_.reset();
  for (const fs::path& w : files_with_suffix(dir_, ".log")) {
    EXPECT_EQ(fs::file_size(w), written_bytes(w)) << w;
  }
  open_log();
  EXPECT_EQ(log_->last_index(), 200u);
  EXPECT_EQ(log_->initial_state().first, (HardState{1, 1, 200}));
}

TEST_F(PrefilledWalTest, noSpare_walIsAnOrdinaryFileAndTheLogWorks) {
  open_log();
  log_.reset();
  // No spare, and a directory where one would be made: it cannot be, at open or later.
  const fs::path spare = fs::path(dir_) / PrefilledWalFs::kSpareName;
  fs::remove(spare);  // if the background thread finished one before the close
  fs::create_directories(spare.string() + ".tmp");
  testing::internal::CaptureStdout();
  open_log();
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("cannot prepare a write-ahead log file"), std::string::npos) << out;
  const fs::path wal = newest_wal();
  EXPECT_EQ(fs::file_size(wal), written_bytes(wal));
  append_committed(1, 50);
  EXPECT_EQ(fs::file_size(wal), written_bytes(wal));
  EXPECT_GT(fs::file_size(wal), 50u * 300u);
  log_.reset();
  open_log();
  EXPECT_EQ(log_->last_index(), 50u);
}

}  // namespace
}  // namespace kvd::storage
