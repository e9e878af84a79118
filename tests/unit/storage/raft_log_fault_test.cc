// RaftLog when the disk fails under it (PowerCutFs injects the errors the operating system
// gives): EIO from a write or an fsync of the write-ahead log, a full disk, a file system turned
// read-only, EIO on table files (memtable flushes and compactions), each right after the
// database was opened (no memtable holds data) and after some writes. The write that meets the
// error fails and is never reported ok, later writes are refused with that error while the fault
// lasts, reads go on, RocksDB never aborts the process, and once the fault is gone resume()
// succeeds and writes work again; after a power cut and a reopen, every acknowledged append is
// there. (kvd refuses writes below RaftLog::kReservedDiskBytes free; injected errors bypass that
// check, as a disk that fails at once would.)
#include "tests/unit/storage/raft_log_test_util.h"

namespace kvd::storage {
namespace {

struct Fault {
  const char* id;  // for the test's name
  const char* name;
  unsigned ops;
  PowerCutFs::Files files;
  rocksdb::IOStatus error;
  const char* message;  // what the refusal says
};

const Fault kFaults[] = {
    {"walAppendEio", "WAL append EIO", PowerCutFs::kAppend, PowerCutFs::Files::kWal,
     PowerCutFs::eio(), "Input/output error"},
    {"walFsyncEio", "WAL fsync EIO", PowerCutFs::kSync, PowerCutFs::Files::kWal,
     PowerCutFs::eio(), "Input/output error"},
    {"walAppendEnospc", "WAL append ENOSPC", PowerCutFs::kAppend, PowerCutFs::Files::kWal,
     PowerCutFs::enospc(), "No space left on device"},
    {"fullDisk", "full disk (every append ENOSPC)", PowerCutFs::kAppend, PowerCutFs::Files::kAll,
     PowerCutFs::enospc(), "No space left on device"},
    {"readOnly", "read-only file system (every change EROFS)", PowerCutFs::kAnyWrite,
     PowerCutFs::Files::kAll, PowerCutFs::erofs(), "Read-only file system"},
    {"tableEio", "table files EIO (flushes and compactions fail)",
     PowerCutFs::kAppend | PowerCutFs::kSync, PowerCutFs::Files::kTable, PowerCutFs::eio(),
     "Input/output error"},
    {"manifestEio", "MANIFEST EIO (recording a flush fails)",
     PowerCutFs::kAppend | PowerCutFs::kSync | PowerCutFs::kCreate | PowerCutFs::kRename,
     PowerCutFs::Files::kManifest, PowerCutFs::eio(), "Input/output error"},
};

class RaftLogFaultTest : public RaftLogFsTest {
 protected:
  // Appends entries [next_, next_ + n) (term 1, committing them) and returns the result; on
  // success they count as acknowledged.
  Status append(uint64_t n) {
    std::vector<Entry> ents;
    for (uint64_t i = next_; i < next_ + n; ++i) {
      ents.push_back(make_entry(i, 1, std::string(1500, static_cast<char>('a' + i % 26))));
    }
    Status st = log_->append(ents, HardState{1, 1, next_ + n - 1});
    if (st.is_ok()) next_ += n;
    return st;
  }
  // Entries 1 .. next_ - 1 are all there with their data.
  void expect_acknowledged() {
    ASSERT_GE(log_->last_index() + 1, next_);
    std::vector<Entry> got;
    ASSERT_EQ(log_->entries(1, next_, UINT64_MAX, &got), StorageError::kOk);
    ASSERT_EQ(got.size(), next_ - 1);
    for (const Entry& e : got) {
      ASSERT_EQ(e.data, std::string(1500, static_cast<char>('a' + e.index % 26))) << e.index;
    }
  }

  // The whole scenario for one fault; busy: the memtables hold data when it starts.
  void run(const Fault& fault, bool busy) {
    SCOPED_TRACE(std::string(fault.name) + (busy ? ", memtables holding data" : ", just opened"));
    options_.write_buffer_bytes = 64 << 10;  // flushes every ~40 entries
    open_log_on_fs();
    ASSERT_TRUE(log_->put_meta("member_id", "7").is_ok());
    ASSERT_TRUE(append(50).is_ok());
    open_log_on_fs();  // a clean close flushes: the memtables are empty now
    if (busy) {
      ASSERT_TRUE(append(5).is_ok());
    }

    pfs_->fail(fault.ops, fault.files, fault.error);
    // Writes until one fails (at once when the fault is on the WAL; after the next flush when
    // it is on table files).
    Status failed = Status::ok();
    for (int i = 0; i < 200 && failed.is_ok(); ++i) failed = append(3);
    ASSERT_FALSE(failed.is_ok()) << "no write failed";
    EXPECT_NE(failed.message().find(fault.message), std::string::npos) << failed.message();
    EXPECT_GT(pfs_->failures(), 0u);
    // Refused with that error while the fault lasts, also after trying to resume.
    Status again = append(3);
    ASSERT_FALSE(again.is_ok());
    EXPECT_EQ(again.message(), failed.message());
    for (int i = 0; i < 3; ++i) {
      Status resumed = log_->resume();
      Status retried = append(3);
      EXPECT_FALSE(resumed.is_ok() && retried.is_ok())
          << "a write was acknowledged while the disk still fails";
    }
    // Reads go on.
    expect_acknowledged();
    Snapshot snap;
    EXPECT_EQ(log_->snapshot(&snap), StorageError::kOk);
    EXPECT_EQ(log_->get_meta("member_id"), "7");
    check_invariants(*log_);

    // The fault goes: resume() succeeds, the failed write can be retried, and writes go on.
    pfs_->heal();
    Status resumed = log_->resume();
    ASSERT_TRUE(resumed.is_ok()) << resumed.message();
    ASSERT_TRUE(append(3).is_ok());
    for (int i = 0; i < 60; ++i) ASSERT_TRUE(append(2).is_ok());  // past a few flushes
    expect_acknowledged();
    Snapshot s2;
    s2.metadata = {next_ - 10, 1, {{1}}};
    s2.data = "image";
    ASSERT_TRUE(log_->save_snapshot(s2).is_ok());
    check_invariants(*log_);

    // A power cut then keeps every acknowledged write.
    pfs_->cut_now();
    log_.reset();
    pfs_->power_on(1, true);
    open_log_on_fs();
    EXPECT_EQ(log_->first_index(), next_ - 9);
    std::vector<Entry> got;
    ASSERT_EQ(log_->entries(next_ - 9, next_, UINT64_MAX, &got), StorageError::kOk);
    EXPECT_EQ(got.size(), 9u);
    EXPECT_EQ(log_->get_meta("member_id"), "7");
  }

  uint64_t next_ = 1;
};

// resume() opens the database anew while the raft strand reads: readers never see a closed
// database or a log that disagrees with itself, through many failures and resumes.
TEST_F(RaftLogFaultTest, resume_readersConcurrentWithReopening) {
  options_.write_buffer_bytes = 64 << 10;
  open_log_on_fs();
  ASSERT_TRUE(append(20).is_ok());
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, bad{0};
  std::thread reader([&] {
    while (!done) {
      const uint64_t first = log_->first_index(), last = log_->last_index();
      std::vector<Entry> got;
      StorageError e = log_->entries(first, last + 1, UINT64_MAX, &got);
      // A write (or a snapshot) may land between the bounds and the read: then kCompacted or a
      // shorter answer is right; a wrong entry never is.
      if (e == StorageError::kOk) {
        for (const Entry& x : got) {
          bad += x.data != std::string(1500, static_cast<char>('a' + x.index % 26));
        }
      } else {
        bad += e != StorageError::kCompacted && e != StorageError::kUnavailable;
      }
      Snapshot snap;
      bad += log_->snapshot(&snap) != StorageError::kOk;
      uint64_t t = 0;
      bad += log_->term(log_->last_index(), &t) == StorageError::kIo;
      ++reads;
    }
  });
  for (int round = 0; round < 30; ++round) {
    ASSERT_TRUE(append(5).is_ok());
    pfs_->fail(PowerCutFs::kSync, PowerCutFs::Files::kWal, PowerCutFs::eio());
    ASSERT_FALSE(append(5).is_ok());
    pfs_->heal();
    Status resumed = log_->resume();
    ASSERT_TRUE(resumed.is_ok()) << resumed.message();
    if (round % 10 == 9) {
      Snapshot snap;
      snap.metadata = {next_ - 3, 1, {{1}}};
      snap.data = "image";
      ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
    }
  }
  done = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(bad.load(), 0);
}

// Each fault, right after opening (no memtable holds data) and with memtables holding data.
class RaftLogFaultMatrixTest : public RaftLogFaultTest,
                               public ::testing::WithParamInterface<std::tuple<size_t, bool>> {};

TEST_P(RaftLogFaultMatrixTest, fault_failedWriteRefusedReadsGoOnResumeWorksAfterIt) {
  run(kFaults[std::get<0>(GetParam())], std::get<1>(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(
    Faults, RaftLogFaultMatrixTest,
    ::testing::Combine(::testing::Range<size_t>(0, std::size(kFaults)), ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<size_t, bool>>& info) {
      return std::string(kFaults[std::get<0>(info.param)].id) +
             (std::get<1>(info.param) ? "_busy" : "_justOpened");
    });

}  // namespace
}  // namespace kvd::storage
