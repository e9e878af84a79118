// Store snapshots: every snapshot_count applied entries the Store image (with the member
// records) is saved and the log below it compacted. A large image is written by a forked child
// from its copy-on-write view of the store (see start_snapshot_child), a small one inline.
#include "server/member/core.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

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

// A store that has taken this many entries is made into an image by a child even before the
// size of its first image is known: serializing 100k keys on the strand stalled every write for
// about 150 ms.
constexpr uint64_t kChildSnapshotMinEntries = 50000;

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
  if (!raw || write_error || snapshot_child != 0) return;
  if (!snapshot_due(applied, snapshot_index, config.snapshot_count,
                    snapshot_phase(member_id, raw->applied_conf_state().voters,
                                   config.snapshot_count))) {
    return;
  }
  raft::Snapshot snap;
  snap.metadata.index = applied;
  snap.metadata.term = applied_term;
  snap.metadata.conf_state = raw->applied_conf_state();
  const uint64_t before = snapshot_index;
  snapshot_index = applied;
  if (!child_snapshots_failed && !child_image_dir.empty() &&
      (last_image_bytes >= config.child_snapshot_min_bytes || applied >= kChildSnapshotMinEntries) &&
      start_snapshot_child(std::move(snap), before)) {
    return;
  }
  snap.data = store.save(last_image_bytes);
  last_image_bytes = snap.data.size();
  if (!child_image_dir.empty()) {
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
  return (fs::path(child_image_dir) / (std::string(data_dir::kSnapshotTmpPrefix) +
                                       std::to_string(index) +
                                       std::string(data_dir::kSnapshotTmpSuffix)))
      .string();
}

void Core::save_snapshot(raft::Snapshot snap) {
  if (!wal->save_snapshot(std::move(snap))) {
    SPDLOG_WARN("snapshot not saved: {}", wal_refusal());
  }
}

// A large store takes long to serialize (about 0.4 us a key), and the strand would stall every
// request meanwhile. So, as Redis does, a child process made by fork() writes the image from
// its copy-on-write view of the store at this applied index, and the strand goes on. The child
// only serializes and writes the image file (RaftLog::build_image: RocksDB's SST file writer, no
// database, no logger): tcmalloc keeps malloc usable after fork, and the child touches no lock
// another thread may hold, logs nothing and leaves with _exit(). The parent polls for it and
// hands the file to the WAL writer, whose image thread moves it into the log (the parent never
// holds the image in memory, and its bytes are written once).
bool Core::start_snapshot_child(raft::Snapshot snap, uint64_t snapshot_index_before) {
  child_image_path = image_tmp_path(snap.metadata.index);
  int fd = ::open(child_image_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    SPDLOG_WARN("snapshot: cannot create {}: {}; writing the image inline",
                 child_image_path, std::strerror(errno));
    return false;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Hold none of the parent's sockets (a killed parent's ports must come free at once), and
    // die with it.
    if (fd > 3) ::close_range(3, static_cast<unsigned>(fd) - 1, 0);
    ::close_range(static_cast<unsigned>(fd) + 1, ~0U, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int rc = 1;
    try {
      // The image file in its final form (a synced SST file, which the parent moves into the
      // log without copying it): the image's bytes are written once, here, each piece as it is
      // made. Never whole in memory: every page the child writes costs a page fault, and the
      // parent pays one for each page it writes while the child lives. A crash before the
      // parent records it loses nothing recorded (snapshot*.tmp files are removed at start).
      ::close(fd);
      const Status built = log->build_image(
          snap.metadata.index,
          [this](const storage::RaftLog::ImagePut& put) {
            store.save_pieces(storage::kImageChunkBytes, put);
          },
          child_image_path);
      if (built.is_ok()) rc = 0;
    } catch (...) {
    }
    ::_exit(rc);
  }
  ::close(fd);
  if (pid < 0) {
    SPDLOG_WARN("snapshot: fork failed: {}; writing the image inline", std::strerror(errno));
    return false;
  }
  snapshot_child = pid;
  child_snapshot = std::move(snap.metadata);
  snapshot_index_before_child = snapshot_index_before;
  poll_snapshot_child();
  return true;
}

void Core::poll_snapshot_child() {
  run_after(snapshot_child_timer, std::chrono::milliseconds(5), [](Core& c) {
    if (c.snapshot_child != 0) c.reap_snapshot_child();
  });
}

// Collects the child if it has exited and saves its image.
void Core::reap_snapshot_child() {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(snapshot_child, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return poll_snapshot_child();
  snapshot_child = 0;
  bool ok = r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  struct stat st {};
  if (ok) ok = ::stat(child_image_path.c_str(), &st) == 0 && st.st_size > 0;
  if (!ok) {
    std::error_code ec;
    fs::remove(child_image_path, ec);
    SPDLOG_WARN("snapshot: the child writing {} failed (status {}); images are made inline "
                 "from now on",
                 child_image_path, status);
    child_snapshots_failed = true;
    snapshot_index = std::min(snapshot_index, snapshot_index_before_child);
    return;
  }
  last_image_bytes = static_cast<size_t>(st.st_size);
  // The WAL writer's image thread puts the file into the log; appends go on meanwhile.
  const uint64_t index = child_snapshot.index;
  std::weak_ptr<Core> weak = weak_from_this();
  if (!wal->save_snapshot_file(child_snapshot, child_image_path, [weak, index](Status saved) {
        const bool ok = saved.is_ok();
        log_snapshot_saved(index, std::move(saved));
        if (auto self = weak.lock(); self && ok) self->child_snapshots_saved.fetch_add(1);
      })) {
    std::error_code ec;
    fs::remove(child_image_path, ec);
    SPDLOG_WARN("snapshot not saved: {}", wal_refusal());
  }
}

// On stop: the image of a child still running is abandoned.
void Core::kill_snapshot_child() {
  if (snapshot_child == 0) return;
  ::kill(snapshot_child, SIGKILL);
  while (::waitpid(snapshot_child, nullptr, 0) < 0 && errno == EINTR) {
  }
  snapshot_child = 0;
  std::error_code ec;
  fs::remove(child_image_path, ec);
}

}  // namespace kvd::server
