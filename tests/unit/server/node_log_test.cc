// WalWriter and LogDriver against a real RocksDB log in a temp dir.
#include "server/node_log.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
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

  fs::path dir_;
  std::unique_ptr<storage::RaftLog> log_;
};

TEST_F(WalWriterTest, append_queuedWhileFsyncRunsGoesOutInOneAppend) {
  std::mutex mu;
  std::vector<uint64_t> appended;  // last index of each append call
  std::promise<void> first_entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  bool first = true;
  WalWriter wal(
      log_.get(),
      [&](uint64_t last, Status st) {
        EXPECT_TRUE(st.is_ok()) << st.message();
        bool was_first;
        {
          std::lock_guard lock(mu);
          appended.push_back(last);
          was_first = first;
          first = false;
        }
        if (was_first) {
          // Hold the WAL thread as a slow fsync would, until everything else is queued.
          first_entered.set_value();
          ASSERT_EQ(released.wait_for(kWait), std::future_status::ready);
        }
      },
      [](uint64_t, Status st) { EXPECT_TRUE(st.is_ok()); });

  auto entered = first_entered.get_future();
  ASSERT_TRUE(wal.append({entry(1)}, raft::HardState{1, 7, 1}));
  ASSERT_EQ(entered.wait_for(kWait), std::future_status::ready);
  for (uint64_t i = 2; i <= 1000; ++i) {
    ASSERT_TRUE(wal.append({entry(i)}, raft::HardState{1, 7, i}));
  }
  release.set_value();
  wal.stop();

  EXPECT_EQ(wal.append_calls(), 2u);
  EXPECT_EQ(appended, (std::vector<uint64_t>{1, 1000}));
  EXPECT_EQ(log_->last_index(), 1000u);
  EXPECT_EQ(log_->initial_state().first, (raft::HardState{1, 7, 1000}));
  EXPECT_FALSE(wal.append({entry(1001)}, raft::HardState{1, 7, 1001}));  // stopped
}

TEST_F(WalWriterTest, saveSnapshot_orderedWithAppends) {
  std::vector<uint64_t> snapshots;
  {
    WalWriter wal(
        log_.get(), [](uint64_t, Status st) { EXPECT_TRUE(st.is_ok()) << st.message(); },
        [&](uint64_t index, Status st) {
          EXPECT_TRUE(st.is_ok()) << st.message();
          snapshots.push_back(index);
        });
    for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(wal.append({entry(i)}, {1, 7, i}));
    raft::Snapshot snap;
    snap.metadata.index = 5;
    snap.metadata.term = 1;
    snap.data = "image";
    ASSERT_TRUE(wal.save_snapshot(snap));
    ASSERT_TRUE(wal.append({entry(11)}, {1, 7, 11}));
  }  // the destructor writes everything queued
  EXPECT_EQ(snapshots, std::vector<uint64_t>{5});
  raft::Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), raft::StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 5u);
  EXPECT_EQ(got.data, "image");
  EXPECT_EQ(log_->first_index(), 6u);
  EXPECT_EQ(log_->last_index(), 11u);
}

TEST_F(WalWriterTest, logDriver_commitsInOrderOnTheStrand) {
  ASSERT_TRUE(log_->append({entry(1), entry(2)}, raft::HardState{1, 7, 2}).is_ok());
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::thread io_thread([&] { io.run(); });
  auto strand = boost::asio::make_strand(io);

  constexpr uint64_t kCount = 200;
  std::vector<raft::Entry> committed;  // touched on the strand only
  std::promise<void> all;
  auto all_f = all.get_future();
  auto driver = std::make_unique<LogDriver>(
      log_.get(), LogDriver::State{7, 3, 2},
      [&](std::function<void()> fn) { boost::asio::post(strand, std::move(fn)); },
      [&](std::vector<raft::Entry> es) {
        for (auto& e : es) committed.push_back(std::move(e));
        if (committed.size() == kCount) all.set_value();
      },
      [](const Status& st) { ADD_FAILURE() << st.message(); });
  boost::asio::post(strand, [&] {
    for (uint64_t i = 0; i < kCount; ++i) {
      EXPECT_EQ(driver->propose("d" + std::to_string(i)), 3 + i);
    }
  });
  ASSERT_EQ(all_f.wait_for(kWait), std::future_status::ready);
  std::promise<uint64_t> committed_index;
  auto ci = committed_index.get_future();
  boost::asio::post(strand, [&] { committed_index.set_value(driver->committed_index()); });
  ASSERT_EQ(ci.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(ci.get(), 2 + kCount);
  driver->stop();
  guard.reset();
  io_thread.join();
  driver.reset();

  for (uint64_t i = 0; i < kCount; ++i) {
    EXPECT_EQ(committed[i].index, 3 + i);
    EXPECT_EQ(committed[i].term, 3u);
    EXPECT_EQ(committed[i].data, "d" + std::to_string(i));
  }
  EXPECT_EQ(log_->last_index(), 2 + kCount);
  EXPECT_EQ(log_->initial_state().first, (raft::HardState{3, 7, 2 + kCount}));
}

}  // namespace
}  // namespace kvd::server
