// Store snapshots: every snapshot_count applied entries the Store image (with the member
// records) is saved and the log below it compacted. A large image is made in steps between
// other work on the strand and written by a thread (see start_image), a small one inline.
#include "server/member/core.h"

#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/data_dir.h"

namespace fs = std::filesystem;

namespace kvd::server {

// The outcome of saving a snapshot. A failure loses only compaction: the log still holds every
// entry the snapshot would have covered, so recovery stays correct.
void log_snapshot_saved(uint64_t index, Status st) {
  if (st.is_ok()) {
    SPDLOG_INFO("saved snapshot at index {}", index);
  } else {
    SPDLOG_ERROR("saving snapshot at index {} failed: {}", index, st.message());
  }
}

// A store that has taken this many entries is made into an image in steps even before the size
// of its first image is known: serializing 100k keys at once on the strand stalled every write
// for about 150 ms.
constexpr uint64_t kSteppedSnapshotMinEntries = 50000;

// Every member of a cluster reaches the same index at about the same time, so with etcd's rule
// alone all of them serialize their stores and write their images at once, and the leader waits
// for followers that are all busy. Staggered, a leader still hears from a quorum that is not
// snapshotting (a hand probe of three members under 64 writing connections: p99 35-47 ms with
// the members in step, 23-24 ms staggered).
bool snapshot_due(uint64_t applied, uint64_t snapshot_index, uint64_t count, uint64_t phase) {
  if (applied <= snapshot_index) return false;
  const uint64_t since = applied - snapshot_index;
  if (since > count) return true;
  if (count < 2 || since <= count / 2) return false;
  phase %= count;
  // The snapshot points at or below i: phase, phase + count, ...
  auto points = [&](uint64_t i) { return i < phase ? 0 : (i - phase) / count + 1; };
  return points(applied) > points(snapshot_index);
}

uint64_t snapshot_phase(uint64_t member_id, const std::vector<uint64_t>& voters, uint64_t count) {
  // Called after every apply: the rank is counted, not sorted for.
  if (std::find(voters.begin(), voters.end(), member_id) == voters.end()) return 0;
  const auto rank = static_cast<uint64_t>(
      std::count_if(voters.begin(), voters.end(), [&](uint64_t v) { return v < member_id; }));
  return count / voters.size() * rank;
}

void Core::maybe_snapshot() {
  // Like etcd, a snapshot once more than snapshot_count entries were applied since the last;
  // earlier (from half of that on) at this member's own point, staggered across the members.
  if (!raw || write_error || image_writer) return;
  if (!snapshot_due(applied, snapshot_index, config.snapshot_count,
                    snapshot_phase(member_id, raw->applied_conf_state().voters,
                                   config.snapshot_count))) {
    return;
  }
  raft::Snapshot snap;
  snap.metadata.index = applied;
  snap.metadata.term = applied_term;
  snap.metadata.conf_state = raw->applied_conf_state();
  snapshot_index = applied;
  if (!image_dir.empty() &&
      (last_image_bytes >= config.stepped_snapshot_min_bytes ||
       applied >= kSteppedSnapshotMinEntries) &&
      start_image(std::move(snap))) {
    return;
  }
  snap.data = store.save(last_image_bytes);
  last_image_bytes = snap.data.size();
  if (!image_dir.empty()) {
    // Written and ingested by the WAL writer's image thread: the appends go on meanwhile (on
    // the WAL thread, a 100k-key image held every write up for about 200 ms).
    const std::string path = image_tmp_path(snap.metadata.index);
    const uint64_t index = snap.metadata.index;
    std::weak_ptr<Core> weak = weak_from_this();
    if (wal->save_snapshot_data(std::move(snap.metadata), std::move(snap.data), path,
                                [weak, index](Status saved) {
                                  log_snapshot_saved(index, std::move(saved));
                                })) {
      return;
    }
    SPDLOG_WARN("snapshot not saved: {}", wal_refusal());
    return;
  }
  save_snapshot(std::move(snap));
}

std::string Core::image_tmp_path(uint64_t index) const {
  return (fs::path(image_dir) / (std::string(data_dir::kSnapshotTmpPrefix) +
                                       std::to_string(index) +
                                       std::string(data_dir::kSnapshotTmpSuffix)))
      .string();
}

void Core::save_snapshot(raft::Snapshot snap) {
  if (!wal->save_snapshot(std::move(snap))) {
    SPDLOG_WARN("snapshot not saved: {}", wal_refusal());
  }
}

// A large store takes long to serialize (about 2 ms a MB of image), and the strand would stall
// every request meanwhile; a forked child writing it from a copy-on-write view costs far more
// on a virtual machine (each page the child reads and each one the parent writes afterwards
// is a fault: a 1M-key store's snapshots took a quarter of its write throughput). So the image
// is made in steps on the strand (Store::begin_image / image_step: the image of the store at
// this applied index, while later commands go on), kImageStepNodes nodes a step, each step a
// separate task so that requests run in between. The pieces go to a thread that writes the
// image file (RaftLog::build_image: the SST file the WAL writer's image thread then moves into
// the log, so the image's bytes are written once and never whole in memory); the strand makes
// a piece only while fewer than kImageQueuedPieces wait for that thread.
constexpr size_t kImageStepNodes = 4096;
constexpr size_t kImageQueuedPieces = 4;

class ImageFileWriter {
 public:
  ImageFileWriter(std::shared_ptr<storage::RaftLog> log, uint64_t index, std::string path)
      : thread_([this, log = std::move(log), index, path = std::move(path)] {
          Status built = log->build_image(
              index, [this](const storage::RaftLog::ImagePut& put) { drain(put); }, path);
          std::lock_guard lock(mu_);
          if (abandoned_ && built.is_ok()) built = Status::error("abandoned");
          result_ = std::move(built);
          done_ = true;
        }) {}
  ~ImageFileWriter() {
    abandon();
    thread_.join();
  }

  // Strand side.
  void push(std::string_view piece) {
    std::lock_guard lock(mu_);
    queue_.emplace_back(piece);
    cv_.notify_one();
  }
  void end() {
    std::lock_guard lock(mu_);
    ended_ = true;
    cv_.notify_one();
  }
  void abandon() {
    std::lock_guard lock(mu_);
    abandoned_ = true;
    cv_.notify_one();
  }
  bool room() {
    std::lock_guard lock(mu_);
    return queue_.size() < kImageQueuedPieces;
  }
  // The file's outcome once written (or abandoned), else nullopt.
  std::optional<Status> result() {
    std::lock_guard lock(mu_);
    if (!done_) return std::nullopt;
    return result_;
  }

 private:
  void drain(const storage::RaftLog::ImagePut& put) {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return abandoned_ || ended_ || !queue_.empty(); });
      if (abandoned_) return;
      if (queue_.empty()) return;  // ended, all written
      std::string piece = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      const bool ok = put(piece);
      lock.lock();
      if (!ok) return;
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;  // GUARDED_BY(mu_)
  bool ended_ = false;             // GUARDED_BY(mu_)
  bool abandoned_ = false;         // GUARDED_BY(mu_)
  bool done_ = false;              // GUARDED_BY(mu_)
  Status result_ = Status::ok();  // GUARDED_BY(mu_)
  std::thread thread_;             // last: started once the rest exists
};

bool Core::start_image(raft::Snapshot snap) {
  image_path = image_tmp_path(snap.metadata.index);
  try {
    image_writer = std::make_shared<ImageFileWriter>(log, snap.metadata.index, image_path);
  } catch (const std::system_error& e) {
    SPDLOG_WARN("snapshot: cannot start the image thread: {}; writing the image inline",
                e.what());
    return false;
  }
  store.begin_image(storage::kImageChunkBytes);
  image_snapshot = std::move(snap.metadata);
  run_after(image_timer, std::chrono::milliseconds(0), [](Core& c) { c.image_step(); });
  return true;
}

// One step of the image in progress, then the next one (later when the writer is behind), or,
// once the image is whole, a wait for its file.
void Core::image_step() {
  if (!image_writer) return;
  ImageFileWriter& w = *image_writer;
  if (!store.image_in_progress() || w.result()) {
    // A leader's snapshot replaced the store, or the file could not be written: no image.
    store.end_image();
    w.abandon();
    return finish_image();
  }
  if (!w.room()) {
    run_after(image_timer, std::chrono::milliseconds(1), [](Core& c) { c.image_step(); });
    return;
  }
  const v2::Store::ImageStep r = store.image_step(kImageStepNodes, [&w](std::string_view piece) {
    w.push(piece);
    return true;
  });
  if (r == v2::Store::ImageStep::kMore) {
    run_after(image_timer, std::chrono::milliseconds(0), [](Core& c) { c.image_step(); });
    return;
  }
  if (r == v2::Store::ImageStep::kDone) w.end();
  else w.abandon();  // the store was replaced by a leader's snapshot meanwhile
  finish_image();
}

// Waits for the image's file, then hands it to the WAL writer.
void Core::finish_image() {
  std::optional<Status> written = image_writer->result();
  if (!written) {
    run_after(image_timer, std::chrono::milliseconds(5), [](Core& c) { c.finish_image(); });
    return;
  }
  image_writer.reset();  // joins the thread, which is done
  struct stat st {};
  bool ok = written->is_ok() && ::stat(image_path.c_str(), &st) == 0 && st.st_size > 0;
  if (!ok) {
    std::error_code ec;
    fs::remove(image_path, ec);
    if (!written->is_ok()) {
      SPDLOG_WARN("snapshot: the image at index {} was not written: {}", image_snapshot.index,
                  written->message());
    }
    // Tried again at the next snapshot point, not at once: an image that cannot be written
    // (a disk too full for it while appends still fit) must not be made again after every
    // apply. The log keeps every entry meanwhile (it is compacted only below a saved image).
    return;
  }
  last_image_bytes = static_cast<size_t>(st.st_size);
  // The WAL writer's image thread puts the file into the log; appends go on meanwhile.
  const uint64_t index = image_snapshot.index;
  std::weak_ptr<Core> weak = weak_from_this();
  if (!wal->save_snapshot_file(image_snapshot, image_path, [weak, index](Status saved) {
        const bool ok = saved.is_ok();
        log_snapshot_saved(index, std::move(saved));
        if (auto self = weak.lock(); self && ok) self->stepped_snapshots_saved.fetch_add(1);
      })) {
    std::error_code ec;
    fs::remove(image_path, ec);
    SPDLOG_WARN("snapshot not saved: {}", wal_refusal());
  }
}

// On stop: the image in progress is abandoned.
void Core::abandon_image() {
  if (!image_writer) return;
  store.end_image();
  image_writer->abandon();
  image_writer.reset();  // joins the thread
  std::error_code ec;
  fs::remove(image_path, ec);
}

}  // namespace kvd::server
