#include "server/member/wal_writer.h"

#include <chrono>
#include <filesystem>
#include <utility>

#include <spdlog/spdlog.h>

#include "common/log_event.h"
#include "metrics/metrics.h"

namespace kvd::server {

namespace {

// etcd's warnSyncDuration: a synced write of the raft log slower than this is logged.
constexpr std::chrono::seconds kWarnSyncDuration{1};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// etcd's disk metrics, for the raft log's writes: a synced append is etcd's WAL fsync (kvd's
// "fsync" is RocksDB's synced write, the write included); every append and snapshot is a commit
// of the backend.
struct DiskMetrics {
  metrics::Histogram& wal_fsync = metrics::registry()
      .histogram("etcd_disk_wal_fsync_duration_seconds",
                 "The latency distributions of fsync called by WAL.",
                 metrics::exponential_buckets(0.001, 2, 14))
      .only();
  metrics::Histogram& backend_commit = metrics::registry()
      .histogram("etcd_disk_backend_commit_duration_seconds",
                 "The latency distributions of commit called by backend.",
                 metrics::exponential_buckets(0.001, 2, 14))
      .only();
  metrics::Histogram& snapshot = metrics::registry()
      .histogram("etcd_disk_backend_snapshot_duration_seconds",
                 "The latency distribution of backend snapshots.",
                 metrics::exponential_buckets(0.01, 2, 17))
      .only();
  metrics::Gauge& wal_bytes =
      metrics::registry()
          .gauge("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.")
          .only();
};

DiskMetrics& disk_metrics() {
  static DiskMetrics* m = new DiskMetrics();
  return *m;
}

}  // namespace


WalWriter::WalWriter(storage::RaftLog* log, SnapshotDone on_snapshot)
    : log_(log), on_snapshot_(std::move(on_snapshot)) {
  thread_ = std::thread([this] { run(); });
  image_thread_ = std::thread([this] { run_images(); });
}

WalWriter::~WalWriter() { stop(); }

bool WalWriter::persist(std::shared_ptr<const raft::Ready> ready, Done done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || failure_) return false;
    Op op;
    op.ready = std::move(ready);
    op.done = std::move(done);
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
  return true;
}

bool WalWriter::resume(Done done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    Op op;
    op.resume_done = std::move(done);
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
  return true;
}

bool WalWriter::save_snapshot(raft::Snapshot snap) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || failure_) return false;
    Op op;
    op.snapshot = std::move(snap);
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
  return true;
}

bool WalWriter::queue_image(ImageOp op) {
  {
    std::lock_guard lock(mu_);
    // A drop needs only the image thread (stop() ends it before the WAL thread).
    if (images_stopping_ || (!op.drop_replaced && (stopping_ || failure_))) return false;
    image_queue_.push_back(std::move(op));
  }
  image_cv_.notify_one();
  return true;
}

bool WalWriter::save_snapshot_file(raft::SnapshotMetadata meta, std::string path, Done done) {
  return queue_image(ImageOp{std::move(meta), std::move(path), std::move(done), {}});
}

bool WalWriter::save_snapshot_data(raft::SnapshotMetadata meta, std::string data,
                                   std::string path, Done done) {
  return queue_image(
      ImageOp{std::move(meta), std::move(path), std::move(done), std::move(data)});
}

std::string WalWriter::refusal() const {
  std::lock_guard lock(mu_);
  return refusal_locked();
}

std::optional<std::string> WalWriter::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

std::string WalWriter::refusal_locked() const {
  if (failure_) return *failure_;
  return stopping_ ? std::string(kStopped) : std::string();
}

bool WalWriter::claim() {
  if (last_sync_ns_.load() >=
      std::chrono::duration_cast<std::chrono::nanoseconds>(kClaimMaxSync).count()) {
    return false;
  }
  std::lock_guard lock(mu_);
  if (stopping_ || failure_ || busy_ || claimed_ || !queue_.empty()) return false;
  claimed_ = true;
  return true;
}

void WalWriter::write_claimed(const raft::Ready& ready, const Done& done) {
  {
    std::lock_guard lock(mu_);
    if (!claimed_) return;  // abandoned by stop()
    claim_running_ = true;
  }
  claimed_writes_.fetch_add(1);
  run_persist(ready, done);
  bool wake;
  {
    std::lock_guard lock(mu_);
    claimed_ = false;
    claim_running_ = false;
    // The WAL thread takes what queued behind the claim; stop() may wait for this write.
    wake = !queue_.empty() || stopping_;
  }
  if (wake) cv_.notify_all();
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
    std::unique_lock lock(mu_);
    stopping_ = true;
    // A claimed write under way ends first (it runs on another thread); one not begun is
    // abandoned, and what queued behind it is written without it.
    cv_.wait(lock, [this] { return !claim_running_; });
    claimed_ = false;
  }
  cv_.notify_all();
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
    if (op.drop_replaced) {
      log_->drop_replaced();
      continue;
    }
    if (op.data) {
      Status built = log_->build_image(op.meta.index, *op.data, op.path);
      op.data.reset();
      if (!built.is_ok()) {
        std::error_code ec;
        std::filesystem::remove(op.path, ec);
        op.done(built);
        continue;
      }
    }
    Result<storage::ImageInfo> image = log_->ingest_image(op.meta.index, op.path);
    std::error_code ec;
    std::filesystem::remove(op.path, ec);
    if (!image.is_ok()) {
      op.done(image.status());
      continue;
    }
    std::string refused;
    {
      std::lock_guard lock(mu_);
      refused = refusal_locked();
      if (refused.empty()) {
        Op record;
        record.image = image.value();
        record.image_meta = std::move(op.meta);
        record.image_done = std::move(op.done);
        queue_.push_back(std::move(record));
      }
    }
    if (!refused.empty()) {
      // The failed write's error when that is why (the member logs it), not only "stopped".
      op.done(Status::error(std::move(refused)));
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
      cv_.wait(lock, [this] { return stopping_ || (!queue_.empty() && !claimed_); });
      if (queue_.empty()) return;  // stopping, and everything queued is written
      batch.swap(queue_);
      busy_ = true;
    }
    for (Op& op : batch) {
      if (op.image) {
        // After a failed write no snapshot is recorded, as below for save_snapshot(): the
        // image stays unreferenced (dropped once a later snapshot is recorded, or at open).
        std::optional<std::string> failed = failure();
        Status st = failed ? Status::error(std::move(*failed))
                           : log_->record_snapshot(op.image_meta, *op.image);
        // The replaced images and the compacted entries' table files are dropped off this
        // thread: each drop changes RocksDB's manifest (synced), 4-17 ms under load that the
        // appends behind would wait (the entries' files: 8-9 ms measured). Queued before done
        // runs, so that a stop() after done still drops them (the image thread empties its
        // queue first).
        if (st.is_ok()) {
          ImageOp drop;
          drop.drop_replaced = true;
          queue_image(std::move(drop));
        }
        op.image_done(std::move(st));
        continue;
      }
      if (op.done) {
        run_persist(*op.ready, op.done);
        continue;
      }
      if (op.resume_done) {
        Status st = log_->resume();
        if (st.is_ok()) {
          std::lock_guard lock(mu_);
          failure_.reset();
        }
        op.resume_done(std::move(st));
        continue;
      }
      // After a failed write a snapshot is not saved (the member makes a new one later); the
      // persists and resumes behind it still run, so that their callbacks always do.
      if (failure()) continue;
      uint64_t index = op.snapshot->metadata.index;
      const auto t0 = std::chrono::steady_clock::now();
      Status st = log_->save_snapshot(*op.snapshot);
      disk_metrics().snapshot.observe(seconds_since(t0));
      on_snapshot_(index, std::move(st));
    }
    std::lock_guard lock(mu_);
    busy_ = false;
  }
}

void WalWriter::run_persist(const raft::Ready& rd, const Done& done) {
  if (std::optional<std::string> failed = failure()) return done(Status::error(std::move(*failed)));
  Status st = Status::ok();
  DiskMetrics& m = disk_metrics();
  if (rd.snapshot) {
    const auto t0 = std::chrono::steady_clock::now();
    st = log_->save_snapshot(*rd.snapshot);
    m.snapshot.observe(seconds_since(t0));
  }
  if (st.is_ok() && (!rd.entries.empty() || rd.hard_state)) {
    const bool sync = rd.must_sync || !rd.entries.empty() || rd.snapshot.has_value();
    if (sync) append_calls_.fetch_add(1);
    const auto t0 = std::chrono::steady_clock::now();
    st = log_->append(rd.entries, rd.hard_state, sync);
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    const double took = std::chrono::duration<double>(elapsed).count();
    m.backend_commit.observe(took);
    if (sync) {
      m.wal_fsync.observe(took);
      last_sync_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
    }
    if (sync && elapsed > kWarnSyncDuration) {
      // At most one a second, as each takes that long: not rate-limited (etcd's warning too).
      KVD_LOG_EVENT(WARN, "slow fdatasync", logev::dur("took", elapsed),
                    logev::dur("expected-duration", kWarnSyncDuration),
                    logev::num("entries", rd.entries.size()));
    }
    double bytes = 0;
    for (const auto& e : rd.entries) bytes += static_cast<double>(e.data.size());
    m.wal_bytes.add(bytes);
  }
  if (!st.is_ok()) {
    std::lock_guard lock(mu_);
    if (!failure_) failure_ = st.message();
  }
  done(std::move(st));
}

}  // namespace kvd::server
