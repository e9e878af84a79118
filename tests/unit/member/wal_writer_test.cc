// WalWriter against a real RocksDB log in a temp dir.
#include "server/member/wal_writer.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

namespace kvd::server {
namespace {

namespace fs = std::filesystem;
constexpr auto kWait = std::chrono::seconds(20);

raft::Entry entry(uint64_t index, std::string data = "x") {
  return raft::Entry{1, index, raft::EntryType::kNormal, std::move(data)};
}

// A Ready with a persistent part as the raft loop hands it to the WAL writer.
std::shared_ptr<const raft::Ready> ready(std::optional<raft::Snapshot> snap,
                                         std::vector<raft::Entry> entries, raft::HardState hs,
                                         bool must_sync) {
  auto rd = std::make_shared<raft::Ready>();
  rd->snapshot = std::move(snap);
  rd->entries = std::move(entries);
  rd->hard_state = hs;
  rd->must_sync = must_sync;
  return rd;
}

class WalWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "kvd-wal-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto r = storage::RaftLog::open((dir_ / "db").string());
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    log_ = std::move(r.value());
  }
  void TearDown() override {
    log_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Queues entries and a hard state as the raft loop does (one Ready), checking the outcome.
  static bool persist(WalWriter& wal, std::vector<raft::Entry> entries, raft::HardState hs) {
    return wal.persist(ready(std::nullopt, std::move(entries), hs, /*must_sync=*/true),
                       [](Status st) { EXPECT_TRUE(st.is_ok()) << st.message(); });
  }

  fs::path dir_;
  std::unique_ptr<storage::RaftLog> log_;
};

// save_snapshot() (the member's inline snapshots) is written in order with the persists around it.
TEST_F(WalWriterTest, saveSnapshot_orderedWithAppends) {
  std::vector<uint64_t> snapshots;
  {
    WalWriter wal(log_.get(), [&](uint64_t index, Status st) {
      EXPECT_TRUE(st.is_ok()) << st.message();
      snapshots.push_back(index);
    });
    for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(persist(wal, {entry(i)}, {1, 7, i}));
    raft::Snapshot snap;
    snap.metadata.index = 5;
    snap.metadata.term = 1;
    snap.data = "image";
    ASSERT_TRUE(wal.save_snapshot(snap));
    ASSERT_TRUE(persist(wal, {entry(11)}, {1, 7, 11}));
  }  // the destructor writes everything queued
  EXPECT_EQ(snapshots, std::vector<uint64_t>{5});
  raft::Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), raft::StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 5u);
  EXPECT_EQ(got.data, "image");
  EXPECT_EQ(log_->first_index(), 6u);
  EXPECT_EQ(log_->last_index(), 11u);
}

TEST_F(WalWriterTest, saveSnapshotFile_imageThreadWritesItWhileAppendsGoOn) {
  const fs::path image = dir_ / "snapshot-5.tmp";
  const std::string data(3 << 20, 'i');  // three image chunks
  ASSERT_TRUE(log_->build_image(5, data, image.string()).is_ok());
  std::promise<Status> saved;
  auto saved_f = saved.get_future();
  {
    WalWriter wal(log_.get(), [](uint64_t, Status) { ADD_FAILURE() << "not a save_snapshot()"; });
    for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(persist(wal, {entry(i)}, {1, 7, i}));
    ASSERT_TRUE(wal.save_snapshot_file(raft::SnapshotMetadata{5, 1, {{1}}}, image.string(),
                                       [&](Status st) { saved.set_value(std::move(st)); }));
    for (uint64_t i = 11; i <= 20; ++i) ASSERT_TRUE(persist(wal, {entry(i)}, {1, 7, i}));
    ASSERT_EQ(saved_f.wait_for(kWait), std::future_status::ready);
  }
  Status st = saved_f.get();
  EXPECT_TRUE(st.is_ok()) << st.message();
  EXPECT_FALSE(fs::exists(image));
  raft::Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), raft::StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 5u);
  EXPECT_TRUE(got.data == data) << got.data.size() << " bytes";
  EXPECT_EQ(log_->first_index(), 6u);
  EXPECT_EQ(log_->last_index(), 20u);
}

// The bytes of the table files under dir (the images' and the log's).
uint64_t table_bytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().extension() == ".sst") n += e.file_size();
  }
  return n;
}

TEST_F(WalWriterTest, saveSnapshotFile_imageThreadDropsTheImageALaterSnapshotReplaced) {
  const std::string data5(3 << 20, '5'), data9(3 << 20, '9');
  const fs::path image5 = dir_ / "snapshot-5.tmp", image9 = dir_ / "snapshot-9.tmp";
  ASSERT_TRUE(log_->build_image(5, data5, image5.string()).is_ok());
  ASSERT_TRUE(log_->build_image(9, data9, image9.string()).is_ok());
  {
    WalWriter wal(log_.get(), [](uint64_t, Status) { ADD_FAILURE() << "not a save_snapshot()"; });
    for (uint64_t i = 1; i <= 12; ++i) ASSERT_TRUE(persist(wal, {entry(i)}, {1, 7, i}));
    for (auto [index, path] : {std::pair{5, image5}, std::pair{9, image9}}) {
      std::promise<Status> saved;
      auto saved_f = saved.get_future();
      ASSERT_TRUE(wal.save_snapshot_file(
          raft::SnapshotMetadata{static_cast<uint64_t>(index), 1, {{1}}}, path.string(),
          [&](Status st) { saved.set_value(std::move(st)); }));
      ASSERT_EQ(saved_f.wait_for(kWait), std::future_status::ready);
      Status st = saved_f.get();
      ASSERT_TRUE(st.is_ok()) << st.message();
    }
  }  // stop(): the image thread's queue, with the drop, is emptied first
  raft::Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), raft::StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 9u);
  EXPECT_TRUE(got.data == data9);
  // One image of 3 MiB left, not two (the entries' files are a few KiB).
  EXPECT_LT(table_bytes(dir_), (4u << 20)) << table_bytes(dir_) << " bytes of table files";
  EXPECT_GT(table_bytes(dir_), (3u << 20) - 4096);
}

TEST_F(WalWriterTest, saveSnapshotFile_missingFileReportsTheError) {
  std::promise<Status> saved;
  auto saved_f = saved.get_future();
  WalWriter wal(log_.get(), [](uint64_t, Status) {});
  ASSERT_TRUE(wal.save_snapshot_file(raft::SnapshotMetadata{5, 1, {{1}}},
                                     (dir_ / "gone.tmp").string(),
                                     [&](Status st) { saved.set_value(std::move(st)); }));
  ASSERT_EQ(saved_f.wait_for(kWait), std::future_status::ready);
  Status st = saved_f.get();
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("gone.tmp"), std::string::npos) << st.message();
  EXPECT_EQ(log_->first_index(), 1u);
}

// A write that fails while an image is on its way (being ingested, or ingested and waiting to
// be recorded) answers the image's done with that write's error, and records nothing; once the
// log takes writes again, the next image is saved.
TEST_F(WalWriterTest, saveSnapshotFile_aFailedWriteBeforeTheRecordIsTheImagesAnswer) {
  const std::string data(3 << 20, 'i');
  const fs::path image = dir_ / "snapshot-5.tmp";
  ASSERT_TRUE(log_->build_image(5, data, image.string()).is_ok());
  std::vector<raft::Entry> written;
  for (uint64_t i = 1; i <= 10; ++i) written.push_back(entry(i));
  ASSERT_TRUE(log_->append(written, raft::HardState{1, 7, 10}).is_ok());
  WalWriter wal(log_.get(), [](uint64_t, Status) { ADD_FAILURE() << "not a save_snapshot()"; });
  // The claim holds the WAL thread, so the image cannot be recorded before the write below.
  ASSERT_TRUE(wal.claim());
  std::promise<Status> saved;
  auto saved_f = saved.get_future();
  ASSERT_TRUE(wal.save_snapshot_file(raft::SnapshotMetadata{5, 1, {{1}}}, image.string(),
                                     [&](Status st) { saved.set_value(std::move(st)); }));
  Status failed = Status::ok();
  // Entry 20 after 10 would leave a gap: the log refuses it.
  wal.write_claimed(*ready(std::nullopt, {entry(20)}, {1, 7, 10}, true),
                    [&](Status st) { failed = std::move(st); });
  ASSERT_FALSE(failed.is_ok());
  ASSERT_EQ(saved_f.wait_for(kWait), std::future_status::ready);
  Status st = saved_f.get();
  EXPECT_FALSE(st.is_ok());
  EXPECT_EQ(st.message(), failed.message());
  EXPECT_FALSE(fs::exists(image));
  EXPECT_EQ(log_->first_index(), 1u);
  raft::Snapshot none;
  ASSERT_EQ(log_->snapshot(&none), raft::StorageError::kOk);
  EXPECT_EQ(none.metadata.index, 0u);

  std::promise<Status> resumed;
  auto resumed_f = resumed.get_future();
  ASSERT_TRUE(wal.resume([&](Status s) { resumed.set_value(std::move(s)); }));
  ASSERT_EQ(resumed_f.wait_for(kWait), std::future_status::ready);
  ASSERT_TRUE(resumed_f.get().is_ok());
  const std::string data8(3 << 20, '8');
  const fs::path image8 = dir_ / "snapshot-8.tmp";
  ASSERT_TRUE(log_->build_image(8, data8, image8.string()).is_ok());
  std::promise<Status> saved8;
  auto saved8_f = saved8.get_future();
  ASSERT_TRUE(wal.save_snapshot_file(raft::SnapshotMetadata{8, 1, {{1}}}, image8.string(),
                                     [&](Status s) { saved8.set_value(std::move(s)); }));
  ASSERT_EQ(saved8_f.wait_for(kWait), std::future_status::ready);
  Status st8 = saved8_f.get();
  ASSERT_TRUE(st8.is_ok()) << st8.message();
  wal.stop();
  raft::Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), raft::StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 8u);
  EXPECT_TRUE(got.data == data8);
  EXPECT_EQ(log_->first_index(), 9u);
  EXPECT_EQ(log_->last_index(), 10u);
  // The image of 5 (never recorded) was dropped with the snapshot of 8: one image left.
  EXPECT_LT(table_bytes(dir_), (4u << 20)) << table_bytes(dir_) << " bytes of table files";
}

TEST_F(WalWriterTest, persist_installsSnapshotThenWritesEntriesAndHardState) {
  ASSERT_TRUE(log_->append({entry(1), entry(2), entry(3)}, raft::HardState{1, 7, 2}).is_ok());
  std::promise<Status> done;
  auto done_f = done.get_future();
  {
    WalWriter wal(log_.get(), [](uint64_t, Status) {});
    // A leader's snapshot at index 10 (term 2) disagrees with the local log: it replaces it, and
    // the entries after it are written in the same job.
    raft::Snapshot snap;
    snap.metadata.index = 10;
    snap.metadata.term = 2;
    snap.metadata.conf_state.voters = {7, 8, 9};
    snap.data = "image";
    std::vector<raft::Entry> tail = {raft::Entry{2, 11, raft::EntryType::kNormal, "a"},
                                     raft::Entry{2, 12, raft::EntryType::kNormal, "b"}};
    ASSERT_TRUE(wal.persist(ready(snap, tail, raft::HardState{2, 8, 11}, true),
                            [&](Status st) { done.set_value(std::move(st)); }));
    ASSERT_EQ(done_f.wait_for(kWait), std::future_status::ready);
    Status st = done_f.get();
    EXPECT_TRUE(st.is_ok()) << st.message();
    EXPECT_EQ(wal.append_calls(), 1u);
  }
  raft::Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), raft::StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 10u);
  EXPECT_EQ(got.metadata.conf_state.voters, (std::vector<raft::NodeId>{7, 8, 9}));
  EXPECT_EQ(log_->first_index(), 11u);
  EXPECT_EQ(log_->last_index(), 12u);
  EXPECT_EQ(log_->initial_state().first, (raft::HardState{2, 8, 11}));
  std::vector<raft::Entry> es;
  ASSERT_EQ(log_->entries(11, 13, 1 << 20, &es), raft::StorageError::kOk);
  ASSERT_EQ(es.size(), 2u);
  EXPECT_EQ(es[1].data, "b");
}

TEST_F(WalWriterTest, persist_hardStateOnlyIsWritten) {
  ASSERT_TRUE(log_->append({entry(1)}, raft::HardState{1, 7, 0}).is_ok());
  std::promise<Status> done;
  auto done_f = done.get_future();
  WalWriter wal(log_.get(), [](uint64_t, Status) {});
  ASSERT_TRUE(wal.persist(ready(std::nullopt, {}, raft::HardState{1, 7, 1}, true),
                          [&](Status st) { done.set_value(std::move(st)); }));
  ASSERT_EQ(done_f.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(done_f.get().is_ok());
  EXPECT_EQ(log_->initial_state().first, (raft::HardState{1, 7, 1}));
  wal.stop();
  EXPECT_FALSE(
      wal.persist(ready(std::nullopt, {}, raft::HardState{1, 7, 1}, true), [](Status) {}));
}

TEST_F(WalWriterTest, persist_commitOnlyHardStateSkipsFsync) {
  ASSERT_TRUE(log_->append({entry(1)}, raft::HardState{1, 7, 0}).is_ok());
  WalWriter wal(log_.get(), [](uint64_t, Status) {});
  // A Ready that only moves the commit index is written without an fsync (must_sync false) ...
  std::promise<Status> unsynced;
  auto unsynced_f = unsynced.get_future();
  ASSERT_TRUE(wal.persist(ready(std::nullopt, {}, raft::HardState{1, 7, 1}, false),
                          [&](Status st) { unsynced.set_value(std::move(st)); }));
  ASSERT_EQ(unsynced_f.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(unsynced_f.get().is_ok());
  EXPECT_EQ(wal.append_calls(), 0u);
  EXPECT_EQ(log_->initial_state().first, (raft::HardState{1, 7, 1}));
  // ... but entries are always fsynced, whatever the caller says.
  std::promise<Status> synced;
  auto synced_f = synced.get_future();
  ASSERT_TRUE(wal.persist(ready(std::nullopt, {entry(2)}, raft::HardState{1, 7, 1}, false),
                          [&](Status st) { synced.set_value(std::move(st)); }));
  ASSERT_EQ(synced_f.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(synced_f.get().is_ok());
  EXPECT_EQ(wal.append_calls(), 1u);
  EXPECT_EQ(log_->last_index(), 2u);
}

// A claimed write runs on the claimer's thread, and what is queued meanwhile is written after it,
// in order, by the WAL thread.
TEST_F(WalWriterTest, claim_writesOnTheCallersThreadAndQueuedWritesFollow) {
  WalWriter wal(log_.get(), [](uint64_t, Status) {});
  ASSERT_TRUE(wal.claim());  // a new writer's thread is idle
  EXPECT_FALSE(wal.claim()) << "one claim at a time";
  std::mutex mu;
  std::vector<uint64_t> order;
  std::promise<Status> second;
  auto second_f = second.get_future();
  ASSERT_TRUE(wal.persist(ready(std::nullopt, {entry(2)}, {1, 7, 1}, true), [&](Status st) {
    {
      std::lock_guard lock(mu);
      order.push_back(2);
    }
    second.set_value(std::move(st));
  }));
  const auto caller = std::this_thread::get_id();
  bool ran = false;
  wal.write_claimed(*ready(std::nullopt, {entry(1)}, {1, 7, 0}, true), [&](Status st) {
    EXPECT_TRUE(st.is_ok()) << st.message();
    EXPECT_EQ(std::this_thread::get_id(), caller);
    // The claim is held until this returns: the write queued behind it must not run meanwhile
    // (the WAL thread was notified when it was queued, long before this bound ends).
    EXPECT_EQ(second_f.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
        << "a write queued behind the claim ran before it";
    ran = true;
    std::lock_guard lock(mu);
    order.push_back(1);
  });
  EXPECT_TRUE(ran) << "done runs before write_claimed returns";
  ASSERT_EQ(second_f.wait_for(kWait), std::future_status::ready);
  Status st = second_f.get();
  EXPECT_TRUE(st.is_ok()) << st.message();  // entry 2 after entry 1: no gap
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(order, (std::vector<uint64_t>{1, 2}));
  }
  EXPECT_EQ(wal.claimed_writes(), 1u);
  EXPECT_EQ(wal.append_calls(), 2u);
  EXPECT_EQ(log_->last_index(), 2u);
  EXPECT_EQ(log_->initial_state().first, (raft::HardState{1, 7, 1}));
}

// After a failed write nothing is claimed (the WAL thread's resume() goes first), and stop()
// refuses claims too.
TEST_F(WalWriterTest, claim_refusedAfterAFailedWriteAndAfterStop) {
  WalWriter wal(log_.get(), [](uint64_t, Status) {});
  ASSERT_TRUE(wal.claim());
  Status failed = Status::ok();
  // Entry 5 in an empty log would leave a gap: the log refuses it.
  wal.write_claimed(*ready(std::nullopt, {entry(5)}, {1, 7, 0}, true),
                    [&](Status st) { failed = std::move(st); });
  EXPECT_FALSE(failed.is_ok());
  EXPECT_FALSE(wal.claim());
  std::promise<Status> resumed;
  auto resumed_f = resumed.get_future();
  ASSERT_TRUE(wal.resume([&](Status st) { resumed.set_value(std::move(st)); }));
  ASSERT_EQ(resumed_f.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(resumed_f.get().is_ok());
  wal.stop();
  EXPECT_FALSE(wal.claim());
}

// Once a write failed, the writes queued behind it and those offered after it are refused with
// that write's error, not a generic one (the member answers clients with it); resume() clears it.
TEST_F(WalWriterTest, failure_laterWritesAreRefusedWithTheFirstError) {
  WalWriter wal(log_.get(), [](uint64_t, Status) {});
  EXPECT_EQ(wal.refusal(), "");
  ASSERT_TRUE(wal.claim());
  std::promise<Status> queued;
  auto queued_f = queued.get_future();
  // Queued behind the claim, so before the failure.
  ASSERT_TRUE(wal.persist(ready(std::nullopt, {}, {1, 7, 0}, true),
                          [&](Status st) { queued.set_value(std::move(st)); }));
  Status failed = Status::ok();
  // Entry 5 in an empty log would leave a gap: the log refuses it.
  wal.write_claimed(*ready(std::nullopt, {entry(5)}, {1, 7, 0}, true),
                    [&](Status st) { failed = std::move(st); });
  ASSERT_FALSE(failed.is_ok());
  ASSERT_FALSE(failed.message().empty());
  ASSERT_EQ(queued_f.wait_for(kWait), std::future_status::ready);
  Status behind = queued_f.get();
  EXPECT_FALSE(behind.is_ok());
  EXPECT_EQ(behind.message(), failed.message());
  EXPECT_FALSE(wal.persist(ready(std::nullopt, {}, {1, 7, 0}, true), [](Status) {}));
  EXPECT_EQ(wal.refusal(), failed.message());

  std::promise<Status> resumed;
  auto resumed_f = resumed.get_future();
  ASSERT_TRUE(wal.resume([&](Status st) { resumed.set_value(std::move(st)); }));
  ASSERT_EQ(resumed_f.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(resumed_f.get().is_ok());
  EXPECT_EQ(wal.refusal(), "");
  wal.stop();
  EXPECT_EQ(wal.refusal(), "the raft log no longer accepts writes");
}

// stop() does not wait for a claim that was never written: it abandons it, and a write_claimed()
// after that writes nothing and runs nothing.
TEST_F(WalWriterTest, stop_abandonsAClaimNotWritten) {
  WalWriter wal(log_.get(), [](uint64_t, Status) {});
  ASSERT_TRUE(wal.claim());
  std::promise<Status> queued;
  auto queued_f = queued.get_future();
  // Queued behind the claim (a hard state alone, which needs no entry before it).
  ASSERT_TRUE(wal.persist(ready(std::nullopt, {}, {1, 7, 0}, true),
                          [&](Status st) { queued.set_value(std::move(st)); }));
  wal.stop();  // returns: the claim does not hold the WAL thread back any more
  ASSERT_EQ(queued_f.wait_for(std::chrono::seconds(0)), std::future_status::ready)
      << "stop() writes what is queued";
  EXPECT_TRUE(queued_f.get().is_ok());
  bool ran = false;
  wal.write_claimed(*ready(std::nullopt, {entry(1)}, {1, 7, 0}, true),
                    [&](Status) { ran = true; });
  EXPECT_FALSE(ran);
  EXPECT_EQ(wal.claimed_writes(), 0u);
  EXPECT_EQ(log_->last_index(), 0u);
}

}  // namespace
}  // namespace kvd::server
