// The durable half of the member: the WAL thread that writes raft state to the RocksDB log.
//
// The member's raft loop hands each Ready's persistent part (a snapshot from the leader, entries,
// hard state) to persist() and only sends, applies and advances once its callback ran: one Ready
// is in flight at a time, and everything proposed while its fsync runs collects in the raft core
// and goes out in the next Ready with one fsync (group commit). save_snapshot() queues a
// snapshot the same way, ordered with the persist() calls around it. save_snapshot_file() writes
// a large store image on a second thread, so that appends do not wait behind it.
//
// Ownership: the member's Core owns it. Threads: WalWriter's public methods may be called from
// any thread; its callbacks run on its own threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "raft/raw_node.h"
#include "raft/types.h"
#include "storage/raft_log.h"
#include "common/status.h"

namespace kvd::server {

// Owns one thread that performs RaftLog writes in submission order (and one for store images).
class WalWriter {
 public:
  // on_snapshot(index, status) runs on the WAL thread after each save_snapshot().
  using SnapshotDone = std::function<void(uint64_t index, Status)>;

  WalWriter(storage::RaftLog* log, SnapshotDone on_snapshot);
  ~WalWriter();  // stop()s
  WalWriter(const WalWriter&) = delete;
  WalWriter& operator=(const WalWriter&) = delete;

  // Queues a snapshot save (which also compacts the log below it). Returns false once stop()
  // was called or a write failed; nothing was queued.
  bool save_snapshot(raft::Snapshot snap);
  // Queues one Ready's persistence: install its snapshot (replacing the log it disagrees with),
  // then write its entries and hard state in one write, fsynced unless only the commit index
  // moved (Ready::must_sync). done(status) runs on the WAL thread once all of it is written (or
  // failed). The Ready is only read, and stays the caller's: a Ready whose write failed can be
  // persisted again after resume(). Same return as save_snapshot(); when false, done never runs.
  using Done = std::function<void(Status)>;
  bool persist(std::shared_ptr<const raft::Ready> ready, Done done);
  // A write done on the caller's own thread instead, when that is quicker: while the WAL thread
  // has nothing queued or running, a small Ready is written where the raft loop runs, sparing
  // the hand-off's two thread wake-ups and the WAL thread's own write of the commit index (a
  // lone write's latency falls by 15-35% on this project's virtual test machine, bench/README).
  // claim() reserves the writer's next turn and says whether it did: it does only when the WAL
  // thread is idle, no write failed and the last synced write took under kClaimMaxSync (a disk
  // that turned slow is waited on by the WAL thread, not by a loop that serves clients).
  // Everything queued meanwhile waits behind the claim. The claimer then calls write_claimed()
  // exactly once, on any thread, which writes as persist() would and runs done there; or it
  // never does, and stop() abandons the claim (nothing of it is written, done never runs).
  static constexpr std::chrono::milliseconds kClaimMaxSync{2};
  bool claim();
  // REQUIRES: claim() returned true, and write_claimed() was not called since. Returns at once
  // (done not run) when stop() abandoned the claim.
  void write_claimed(const raft::Ready& ready, const Done& done);
  // After a failed write (a full disk, an I/O error) every later write fails too, with that
  // write's error (also those queued before it failed; an unsynced commit index written on its
  // own can be the one that meets the error first), until this succeeds: queued behind what is
  // already queued, it asks the log to accept writes again (RaftLog::resume) and, if it does,
  // clears the failure. done(status) runs on the WAL thread. Returns false once stop() was
  // called; done never runs then.
  bool resume(Done done);
  // Queues the snapshot at meta whose store image is the file at path, made by
  // RaftLog::build_image (on a snapshot's image thread): the image thread moves it into the log
  // (RaftLog::ingest_image; the file is removed either way) while the WAL thread goes on with
  // appends; then the WAL thread records the snapshot (RaftLog::record_snapshot) and
  // done(status) runs there (on the image thread if the image could not be ingested), and the
  // image thread drops the files it replaced (RaftLog::drop_replaced). Same return as
  // save_snapshot(); when false, done never runs and the file is left to the caller. A write
  // that fails before the snapshot is recorded answers done with its error (nothing recorded).
  bool save_snapshot_file(raft::SnapshotMetadata meta, std::string path, Done done);
  // The same for an image still in memory (a small store's, serialized on the member's strand):
  // the image thread first writes it to `path` as an image file (RaftLog::build_image), so that
  // neither building nor ingesting it holds up the appends.
  bool save_snapshot_data(raft::SnapshotMetadata meta, std::string data, std::string path,
                          Done done);

  // Writes what is queued (images included), then joins the threads. Idempotent.
  void stop();

  // Why writes are refused: the error of the write that failed (until resume() succeeds), or,
  // once stop() was called, that the log takes no more writes. Empty while writes are taken.
  std::string refusal() const;
  static constexpr std::string_view kStopped = "the raft log no longer accepts writes";

  // Number of synced RaftLog::append calls made so far (each is one fsync).
  uint64_t append_calls() const { return append_calls_.load(); }
  // How many of the persists were claimed writes (done by the claimer's thread).
  uint64_t claimed_writes() const { return claimed_writes_.load(); }

 private:
  // One queued write: a persist() when ready is set, a resume() when resume_done is set, a
  // recorded image when image is set, else a save_snapshot().
  struct Op {
    std::shared_ptr<const raft::Ready> ready;
    Done done;  // persist()
    Done resume_done;
    std::optional<raft::Snapshot> snapshot;  // save_snapshot()
    std::optional<storage::ImageInfo> image;  // set: record the snapshot at image_meta
    raft::SnapshotMetadata image_meta;
    Done image_done;
  };
  struct ImageOp {
    raft::SnapshotMetadata meta;
    std::string path;
    Done done;
    std::optional<std::string> data;  // to be written to path first (save_snapshot_data)
    bool drop_replaced = false;       // set: only drop the files a recorded snapshot replaced
  };
  // Queues op for the image thread; false (op dropped) once stopping, or, unless op is a drop,
  // after a failed write.
  bool queue_image(ImageOp op);
  void run();
  void run_images();
  // refusal() with mu_ held.
  std::string refusal_locked() const;
  // The failed write's error until resume() clears it (takes mu_).
  std::optional<std::string> failure() const;
  // REQUIRES: on the WAL thread, or in a claimed write.
  void run_persist(const raft::Ready& rd, const Done& done);

  storage::RaftLog* const log_;
  const SnapshotDone on_snapshot_;
  std::atomic<uint64_t> append_calls_{0};
  std::atomic<uint64_t> claimed_writes_{0};
  // How long the last synced append took, in nanoseconds; written by whoever wrote it.
  std::atomic<int64_t> last_sync_ns_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;  // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::optional<std::string> failure_;  // guarded by mu_; the failed write's error until resume()
  bool busy_ = false;      // guarded by mu_; the WAL thread is writing a batch
  bool claimed_ = false;   // guarded by mu_; a claim() not yet written (nor abandoned)
  bool claim_running_ = false;  // guarded by mu_; write_claimed() is writing
  std::deque<ImageOp> image_queue_;  // guarded by mu_
  bool images_stopping_ = false;     // guarded by mu_
  std::condition_variable image_cv_;
  std::thread thread_;
  std::thread image_thread_;
};

}  // namespace kvd::server
