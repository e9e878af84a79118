#include "server/node_log.h"

#include <utility>

#include <spdlog/spdlog.h>

namespace kvd::server {

WalWriter::WalWriter(storage::RaftLog* log, AppendDone on_appended, SnapshotDone on_snapshot)
    : log_(log), on_appended_(std::move(on_appended)), on_snapshot_(std::move(on_snapshot)) {
  thread_ = std::thread([this] { run(); });
}

WalWriter::~WalWriter() { stop(); }

bool WalWriter::append(std::vector<raft::Entry> entries, raft::HardState hs) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || failed_) return false;
    queue_.push_back(Op{std::move(entries), hs, std::nullopt});
  }
  cv_.notify_one();
  return true;
}

bool WalWriter::save_snapshot(raft::Snapshot snap) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || failed_) return false;
    queue_.push_back(Op{{}, {}, std::move(snap)});
  }
  cv_.notify_one();
  return true;
}

void WalWriter::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void WalWriter::run() {
  for (;;) {
    std::deque<Op> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is written
      batch.swap(queue_);
    }
    // Everything queued while the previous fsync ran goes out in one append.
    std::vector<raft::Entry> pending;
    raft::HardState hs;
    for (Op& op : batch) {
      if (!op.snapshot) {
        for (raft::Entry& e : op.entries) pending.push_back(std::move(e));
        hs = op.hs;
        continue;
      }
      flush_append(&pending, hs);
      {
        std::lock_guard lock(mu_);
        if (failed_) break;
      }
      uint64_t index = op.snapshot->metadata.index;
      Status st = log_->save_snapshot(*op.snapshot);
      on_snapshot_(index, std::move(st));
    }
    flush_append(&pending, hs);
  }
}

void WalWriter::flush_append(std::vector<raft::Entry>* entries, const raft::HardState& hs) {
  if (entries->empty()) return;
  {
    std::lock_guard lock(mu_);
    if (failed_) {
      entries->clear();
      return;
    }
  }
  uint64_t last = entries->back().index;
  append_calls_.fetch_add(1);
  Status st = log_->append(*entries, hs);
  entries->clear();
  if (!st.is_ok()) {
    std::lock_guard lock(mu_);
    failed_ = true;
  }
  on_appended_(last, std::move(st));
}

LogDriver::LogDriver(storage::RaftLog* log, State state, Poster post, CommittedFn on_committed,
                     FailedFn on_failed)
    : self_(state.self),
      term_(state.term),
      post_(std::move(post)),
      on_committed_(std::move(on_committed)),
      on_failed_(std::move(on_failed)),
      last_index_(state.last_index),
      committed_(state.last_index),
      wal_(
          log,
          [this](uint64_t last_index, Status st) {
            post_([this, last_index, st = std::move(st)] { handle_appended(last_index, st); });
          },
          [](uint64_t index, Status st) {
            // The log still holds every entry the snapshot would have covered, so recovery
            // stays correct; only compaction is lost.
            if (st.is_ok()) {
              spdlog::info("saved snapshot at index {}", index);
            } else {
              spdlog::error("saving snapshot at index {} failed: {}", index, st.message());
            }
          }) {}

LogDriver::~LogDriver() { wal_.stop(); }

uint64_t LogDriver::propose(std::string data) {
  if (failed_) return 0;
  raft::Entry e{term_, last_index_ + 1, raft::EntryType::kNormal, std::move(data)};
  // One member: the entry commits as soon as it is durable, so the commit index written with it
  // is its own index.
  raft::HardState hs{term_, self_, e.index};
  if (!wal_.append({e}, hs)) return 0;
  ++last_index_;
  unstable_.push_back(std::move(e));
  return last_index_;
}

void LogDriver::save_snapshot(raft::Snapshot snap) {
  if (!wal_.save_snapshot(std::move(snap))) {
    spdlog::warn("snapshot not saved: the log no longer accepts writes");
  }
}

void LogDriver::stop() { wal_.stop(); }

void LogDriver::handle_appended(uint64_t last_index, const Status& status) {
  if (failed_) return;
  if (!status.is_ok()) {
    failed_ = true;
    unstable_.clear();
    on_failed_(status);
    return;
  }
  if (last_index <= committed_) return;
  committed_ = last_index;
  std::vector<raft::Entry> committed;
  while (!unstable_.empty() && unstable_.front().index <= committed_) {
    committed.push_back(std::move(unstable_.front()));
    unstable_.pop_front();
  }
  on_committed_(std::move(committed));
}

}  // namespace kvd::server
