#include "server/member/wal_writer.h"

#include <filesystem>
#include <utility>

#include <spdlog/spdlog.h>

namespace kvd::server {

WalWriter::WalWriter(storage::RaftLog* log, SnapshotDone on_snapshot)
    : log_(log), on_snapshot_(std::move(on_snapshot)) {
  thread_ = std::thread([this] { run(); });
  image_thread_ = std::thread([this] { run_images(); });
}

WalWriter::~WalWriter() { stop(); }

bool WalWriter::persist(std::optional<raft::Snapshot> snapshot, std::vector<raft::Entry> entries,
                        std::optional<raft::HardState> hs, bool sync, Done done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || failed_) return false;
    Op op;
    op.entries = std::move(entries);
    op.snapshot = std::move(snapshot);
    op.done = std::move(done);
    op.ready_hs = hs;
    op.sync = sync || !op.entries.empty() || op.snapshot.has_value();
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
  return true;
}

bool WalWriter::save_snapshot(raft::Snapshot snap) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || failed_) return false;
    Op op;
    op.snapshot = std::move(snap);
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
  return true;
}

bool WalWriter::save_snapshot_file(raft::SnapshotMetadata meta, std::string path, Done done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || images_stopping_ || failed_) return false;
    image_queue_.push_back(ImageOp{std::move(meta), std::move(path), std::move(done)});
  }
  image_cv_.notify_one();
  return true;
}

void WalWriter::stop() {
  // The image thread first: what it writes still goes through the WAL thread.
  {
    std::lock_guard lock(mu_);
    images_stopping_ = true;
  }
  image_cv_.notify_one();
  if (image_thread_.joinable()) image_thread_.join();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void WalWriter::run_images() {
  for (;;) {
    ImageOp op;
    {
      std::unique_lock lock(mu_);
      image_cv_.wait(lock, [this] { return images_stopping_ || !image_queue_.empty(); });
      if (image_queue_.empty()) return;  // stopping, and every image queued is written
      op = std::move(image_queue_.front());
      image_queue_.pop_front();
    }
    Result<storage::ImageInfo> image = log_->ingest_image(op.meta.index, op.path);
    std::error_code ec;
    std::filesystem::remove(op.path, ec);
    if (!image.is_ok()) {
      op.done(image.status());
      continue;
    }
    bool queued = false;
    {
      std::lock_guard lock(mu_);
      if (!stopping_ && !failed_) {
        Op record;
        record.image = image.value();
        record.image_meta = std::move(op.meta);
        record.image_done = std::move(op.done);
        queue_.push_back(std::move(record));
        queued = true;
      }
    }
    if (!queued) {
      op.done(Status::error("the raft log no longer accepts writes"));
      continue;
    }
    cv_.notify_one();
  }
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
    for (Op& op : batch) {
      if (op.image) {
        Status st = log_->save_snapshot(op.image_meta, *op.image);
        op.image_done(std::move(st));
        continue;
      }
      if (op.done) {
        run_persist(op);
        continue;
      }
      {
        std::lock_guard lock(mu_);
        if (failed_) break;
      }
      uint64_t index = op.snapshot->metadata.index;
      Status st = log_->save_snapshot(*op.snapshot);
      on_snapshot_(index, std::move(st));
    }
  }
}

void WalWriter::run_persist(Op& op) {
  {
    std::lock_guard lock(mu_);
    if (failed_) return op.done(Status::error("an earlier write to the raft log failed"));
  }
  Status st = Status::ok();
  if (op.snapshot) st = log_->save_snapshot(*op.snapshot);
  if (st.is_ok() && (!op.entries.empty() || op.ready_hs)) {
    if (op.sync) append_calls_.fetch_add(1);
    st = log_->append(op.entries, op.ready_hs, op.sync);
  }
  if (!st.is_ok()) {
    std::lock_guard lock(mu_);
    failed_ = true;
  }
  op.done(std::move(st));
}

}  // namespace kvd::server
