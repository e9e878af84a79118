// RaftLog under power cuts (PowerCutFs drops everything not synced, file data and directory
// entries): a seeded stream of appends (commit-only hard states unsynced, as the member writes
// them), overwrites of uncommitted suffixes, snapshots with images (save_snapshot, write_image,
// build_image + ingest_image) and, with small memtables, many RocksDB memtable flushes, WAL
// switches and compactions, cut at a random file operation, often in the middle of one of those,
// or while the database opens. After each cut the database opens and holds exactly the state of
// some write at or after the last acknowledged synced one (so every acknowledged append is there
// with its data, the hard state is at least as new as the last synced one), the fixture's
// invariants hold, and the log goes on accepting appends.
//
// kvd's commit mark (<dir>.mark) is written with plain POSIX calls, outside the file system under
// test, and a cut leaves it as it is: that is right, because the mark is written only after the
// synced write it records, so it is never ahead of the synced log; a stale or torn mark only
// weakens open()'s check (raft_log_impl.h, Impl::mark). That open() checks the log against it
// after each cut is part of what is tested here.
//
// Replay: the seed is printed; KVD_POWER_SEED=<seed> runs the same stream and cut points.
// RocksDB's background threads are scheduled by the system, so a replay repeats the writes and
// the cut counts but not always the exact interleaving of flushes with them.
#include "tests/unit/storage/raft_log_test_util.h"

#include <chrono>
#include <cstdio>
#include <random>

namespace kvd::storage {
namespace {

// Deterministic bytes for an entry or an image: the same (a, b, len) always gives the same data.
std::string stream_bytes(uint64_t a, uint64_t b, uint64_t len) {
  std::string out(len, '\0');
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 1) * 0xC2B2AE3D27D4EB4Full;
  for (size_t i = 0; i < len; i += 8) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(out.data() + i, &z, std::min<size_t>(8, len - i));
  }
  return out;
}

std::string image_data(uint64_t index, uint64_t len) { return stream_bytes(~index, 7, len); }

// What the log should hold after some write: the hard state, the snapshot and its image, and the
// entries after it (term and data length; the data is stream_bytes(index, term, len)).
struct Model {
  struct Slot {
    uint64_t term;
    uint32_t len;
  };
  HardState hs;
  SnapshotMetadata snap;
  uint64_t image_len = 0;
  std::vector<Slot> log;  // entries snap.index + 1, ...

  uint64_t last() const { return snap.index + log.size(); }
  uint64_t term_at(uint64_t i) const {
    return i == snap.index ? snap.term : log[i - snap.index - 1].term;
  }
  void append(const std::vector<Entry>& ents) {
    log.resize(ents.front().index - snap.index - 1);
    for (const Entry& e : ents) log.push_back({e.term, static_cast<uint32_t>(e.data.size())});
  }
  void snapshot(const SnapshotMetadata& meta, uint64_t len) {
    if (meta.index <= last() && term_at(meta.index) == meta.term) {
      log.erase(log.begin(), log.begin() + (meta.index - snap.index));
    } else {
      log.clear();
    }
    snap = meta;
    image_len = len;
  }
};

// Everything a reopened log holds.
struct Recovered {
  HardState hs;
  Snapshot snap;
  uint64_t first = 0, last = 0;
  std::vector<Entry> entries;
};

Recovered read_all(const RaftLog& log) {
  Recovered r;
  r.hs = log.initial_state().first;
  EXPECT_EQ(log.snapshot(&r.snap), StorageError::kOk);
  r.first = log.first_index();
  r.last = log.last_index();
  if (r.last >= r.first) {
    EXPECT_EQ(log.entries(r.first, r.last + 1, UINT64_MAX, &r.entries), StorageError::kOk);
  }
  return r;
}

// "" if r is m's state; else what differs. Entry data and the image are compared only with data
// (the rest decides which state r is; data is then checked for that one).
std::string mismatch(const Recovered& r, const Model& m, bool data) {
  auto hs = [](const HardState& h) {
    return "{term " + std::to_string(h.term) + " vote " + std::to_string(h.vote) + " commit " +
           std::to_string(h.commit) + "}";
  };
  if (!(r.hs == m.hs)) return "hard state " + hs(r.hs) + ", want " + hs(m.hs);
  if (!(r.snap.metadata == m.snap)) {
    return "snapshot at " + std::to_string(r.snap.metadata.index) + " term " +
           std::to_string(r.snap.metadata.term) + ", want " + std::to_string(m.snap.index) +
           " term " + std::to_string(m.snap.term);
  }
  if (r.snap.data.size() != m.image_len) {
    return "image of " + std::to_string(r.snap.data.size()) + " bytes, want " +
           std::to_string(m.image_len);
  }
  if (r.first != m.snap.index + 1 || r.last != m.last() || r.entries.size() != m.log.size()) {
    return "log [" + std::to_string(r.first) + ", " + std::to_string(r.last) + "] (" +
           std::to_string(r.entries.size()) + " read), want [" + std::to_string(m.snap.index + 1) +
           ", " + std::to_string(m.last()) + "]";
  }
  for (size_t i = 0; i < m.log.size(); ++i) {
    const Entry& e = r.entries[i];
    if (e.term != m.log[i].term || e.data.size() != m.log[i].len) {
      return "entry " + std::to_string(e.index) + ": term " + std::to_string(e.term) + ", " +
             std::to_string(e.data.size()) + " bytes; want term " + std::to_string(m.log[i].term) +
             ", " + std::to_string(m.log[i].len) + " bytes";
    }
    if (data && e.data != stream_bytes(e.index, e.term, e.data.size())) {
      return "entry " + std::to_string(e.index) + ": wrong data";
    }
  }
  if (data && r.snap.data != image_data(m.snap.index, m.image_len)) return "wrong image data";
  return "";
}

uint64_t seed_from_env() {
  if (const char* s = std::getenv("KVD_POWER_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device()() * 0x100000000ull + std::random_device()();
}

class RaftLogPowerTest : public RaftLogFsTest {
 protected:
  struct Config {
    int rounds;
    size_t write_buffer_bytes;
    int writes_per_round;
    uint32_t max_entry_bytes;
    uint32_t max_entries;        // per append
    uint64_t max_image_bytes;
  };

  void run(const Config& config);

  // One write of the stream on log_ (first: an append), applied to cur; *synced: it was
  // acknowledged as synced.
  Status write_one(std::mt19937_64& rng, const Config& config, bool first, Model* cur,
                   bool* synced);

  uint64_t builds_ = 0;
};

Status RaftLogPowerTest::write_one(std::mt19937_64& rng, const Config& config, bool first,
                                   Model* cur, bool* synced) {
  auto pick = [&](uint64_t n) { return n == 0 ? 0 : rng() % n; };
  Model next = *cur;
  HardState& hs = next.hs;
  const uint64_t op = pick(100);
  *synced = true;
  auto entries_from = [&](uint64_t start, uint64_t term) {
    std::vector<Entry> ents;
    const uint64_t n = 1 + pick(config.max_entries);
    for (uint64_t i = start; i < start + n; ++i) {
      ents.push_back(Entry{term, i, EntryType::kNormal,
                           stream_bytes(i, term, pick(config.max_entry_bytes) + 1)});
    }
    return ents;
  };
  Status st = Status::ok();
  if (first) {
    // Entries at the end, committing them all.
    auto ents = entries_from(next.last() + 1, std::max<uint64_t>(hs.term, 1));
    next.append(ents);
    hs.term = std::max<uint64_t>(hs.term, 1);
    hs.commit = next.last();
    st = log_->append(ents, hs);
  } else if (op < 12 && hs.commit < next.last()) {
    // The commit index alone moves: not synced (etcd-io/raft MustSync).
    hs.commit += 1 + pick(next.last() - hs.commit);
    *synced = false;
    st = log_->append({}, hs, false);
  } else if (op < 16) {
    // A new term and vote: synced, no entries.
    ++hs.term;
    hs.vote = 1 + pick(3);
    st = log_->append({}, hs);
  } else if (op < 22 && next.last() > std::max(hs.commit, next.snap.index)) {
    // A new leader's entries replace an uncommitted suffix (Raft thesis §3.5).
    const uint64_t low = std::max(hs.commit, next.snap.index) + 1;
    const uint64_t start = low + pick(next.last() - low + 1);
    ++hs.term;
    auto ents = entries_from(start, hs.term);
    next.append(ents);
    st = log_->append(ents, hs);
  } else if (op < 34 && hs.commit > next.snap.index) {
    // A snapshot of the applied prefix, its image written one of three ways.
    const uint64_t index = next.snap.index + 1 + pick(hs.commit - next.snap.index);
    SnapshotMetadata meta{index, next.term_at(index), {{1, 2, 3}}};
    const uint64_t len = pick(4) == 0 ? pick(config.max_image_bytes) : pick(4096);
    const std::string data = image_data(index, len);
    next.snapshot(meta, len);
    const uint64_t how = pick(3);
    if (how == 0) {
      st = log_->save_snapshot(Snapshot{meta, data});
    } else if (how == 1) {
      Result<ImageInfo> image = log_->write_image(index, data);
      st = image.is_ok() ? log_->save_snapshot(meta, image.value()) : image.status();
    } else {
      // As the member's snapshotter: a file beside the database, then moved into it.
      const std::string path =
          (root_ / ("snapshot-" + std::to_string(++builds_) + ".tmp")).string();
      st = log_->build_image(index, data, path);
      if (st.is_ok()) {
        Result<ImageInfo> image = log_->ingest_image(index, path);
        st = image.is_ok() ? log_->save_snapshot(meta, image.value()) : image.status();
      }
      pfs_->DeleteFile(path, rocksdb::IOOptions(), nullptr).PermitUncheckedError();
    }
  } else if (op < 36) {
    // A snapshot from the leader, beyond the log: replaces it.
    SnapshotMetadata meta{next.last() + 1 + pick(20), hs.term, {{1, 2, 3}}};
    const uint64_t len = pick(4096);
    next.snapshot(meta, len);
    st = log_->save_snapshot(Snapshot{meta, image_data(meta.index, len)});
    // The hard state then commits the snapshot (the member's next Ready carries it).
  } else {
    // Entries at the end, committing some of the earlier ones: the common write.
    auto ents = entries_from(next.last() + 1, hs.term);
    next.append(ents);
    hs.commit = std::max(hs.commit, next.snap.index);
    hs.commit += pick(next.last() - hs.commit + 1);
    st = log_->append(ents, hs);
  }
  // A failed write's state is a candidate too: it may have reached the disk all the same.
  *cur = std::move(next);
  if (!st.is_ok()) *synced = false;
  return st;
}

void RaftLogPowerTest::run(const Config& config) {
  const uint64_t seed = seed_from_env();
  std::printf("power cut test seed %llu (replay: KVD_POWER_SEED=%llu storage_tests "
              "--gtest_filter=%s.%s)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
              ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name(),
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  RaftLog::OpenOptions options = options_;
  options.write_buffer_bytes = config.write_buffer_bytes;

  // The states a cut may leave: states[acked] is the last acknowledged synced write's, the later
  // ones are of writes not (or not yet synced) acknowledged.
  std::vector<Model> states(1);
  size_t acked = 0;
  // File operations in a round, on all files and on table files, to place the cuts in.
  uint64_t span = 0, table_span = 0;
  struct {
    int in_open = 0, in_writes = 0, in_tables = 0, at_end = 0, torn = 0, newer = 0;
    uint64_t bytes_lost = 0, entries_undone = 0, pages_undone = 0;
  } stats;
  const auto start = std::chrono::steady_clock::now();

  for (int round = 0; round < config.rounds; ++round) {
    SCOPED_TRACE("seed " + std::to_string(seed) + ", round " + std::to_string(round));
    // Now and then the power goes off while the database opens (creating or recovering it).
    const bool cut_in_open = round > 0 && rng() % 8 == 0;
    if (cut_in_open) pfs_->cut_at(1 + rng() % 40);
    auto opened = RaftLog::open(dir_, options);
    if (pfs_->is_cut()) {
      if (opened.is_ok()) opened.value().reset();
      ++stats.in_open;
      pfs_->power_on(rng(), rng() % 2);
      opened = RaftLog::open(dir_, options);
    }
    pfs_->cut_at(0);
    ASSERT_TRUE(opened.is_ok()) << opened.status().message();
    log_ = std::move(opened.value());

    // The log holds one of the states a cut may leave, and nothing older than the acknowledged.
    const Recovered got = read_all(*log_);
    size_t match = states.size();
    for (size_t j = acked; j < states.size() && match == states.size(); ++j) {
      if (mismatch(got, states[j], false).empty()) match = j;
    }
    ASSERT_LT(match, states.size())
        << "after the cut, the log holds no state at or after the last acknowledged write: vs "
           "that one: "
        << mismatch(got, states[acked], false)
        << "; vs the newest: " << mismatch(got, states.back(), false);
    ASSERT_EQ(mismatch(got, states[match], true), "");
    EXPECT_GE(got.hs.term, states[acked].hs.term);
    EXPECT_GE(got.hs.commit, states[acked].hs.commit);
    stats.newer += match > acked;
    check_invariants(*log_);
    if (HasFatalFailure()) return;
    Model cur = states[match];
    states.assign(1, cur);
    acked = 0;

    // The log goes on accepting writes (the power stays on for the first one), then the power
    // goes off at a random operation of this round, or at its end.
    const uint64_t ops_before = pfs_->ops();
    const uint64_t table_ops_before = pfs_->ops(PowerCutFs::Files::kTable);
    // Half of the cuts fall on an operation on a table file: inside a flush, a compaction or the
    // writing of an image.
    const bool on_tables = table_span > 0 && rng() % 2;
    for (int w = 0; w < config.writes_per_round; ++w) {
      if (w == 1 && span > 0) {
        if (on_tables) {
          pfs_->cut_at(1 + rng() % table_span, PowerCutFs::Files::kTable);
        } else {
          pfs_->cut_at(1 + rng() % span);
        }
      }
      bool synced = false;
      Status st = write_one(rng, config, w == 0, &cur, &synced);
      states.push_back(cur);
      if (st.is_ok()) {
        if (synced) acked = states.size() - 1;
        continue;
      }
      ASSERT_TRUE(pfs_->is_cut()) << "write " << w << " failed with the power on: " << st.message();
      ASSERT_GT(w, 0) << "the first write after reopening failed: " << st.message();
      break;
    }
    if (pfs_->is_cut()) {
      ++stats.in_writes;
      stats.in_tables += on_tables;
    } else {
      ++stats.at_end;
      span = std::max(span, pfs_->ops() - ops_before);
      table_span =
          std::max(table_span, pfs_->ops(PowerCutFs::Files::kTable) - table_ops_before);
      pfs_->cut_now();
    }
    log_.reset();  // what a closing process does with the power off: nothing reaches the disk
    const bool torn = rng() % 2;
    stats.torn += torn;
    const PowerCutFs::Boot boot = pfs_->power_on(rng(), torn);
    stats.bytes_lost += boot.bytes_lost;
    stats.entries_undone += boot.entries_undone;
    stats.pages_undone += boot.pages_undone;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%d power cuts (%d while opening, %d during writes, %d of them on a table file "
              "operation, %d after a round's last write; %d torn), %.1f MB of unsynced data and "
              "%llu directory entries lost, %llu pages written over undone; %d recovered a newer state than the last acknowledged "
              "one; %llu WAL files and %llu table files made; %.1f s\n",
              stats.in_open + stats.in_writes + stats.at_end, stats.in_open, stats.in_writes,
              stats.in_tables, stats.at_end, stats.torn, stats.bytes_lost / 1e6,
              static_cast<unsigned long long>(stats.entries_undone),
              static_cast<unsigned long long>(stats.pages_undone), stats.newer,
              static_cast<unsigned long long>(pfs_->created(PowerCutFs::Files::kWal)),
              static_cast<unsigned long long>(pfs_->created(PowerCutFs::Files::kTable)), secs);
}

// Small memtables (64 KiB; the WAL bound is twice that): flushes, WAL switches and L0
// compactions every few writes, so that many cuts fall inside them.
TEST_F(RaftLogPowerTest, powerCut_acknowledgedWritesSurviveWithSmallMemtables) {
  run(Config{.rounds = 250,
             .write_buffer_bytes = 64 << 10,
             .writes_per_round = 40,
             .max_entry_bytes = 3000,
             .max_entries = 8,
             .max_image_bytes = 3 << 20});
}

// kvd's own sizes (16 MiB memtables, 32 MiB of WAL): tens of MB per round, so that the cuts fall
// into flushes of full memtables and WAL switches forced by the WAL bound.
TEST_F(RaftLogPowerTest, powerCut_acknowledgedWritesSurviveWithKvdSizes) {
  run(Config{.rounds = 12,
             .write_buffer_bytes = 0,
             .writes_per_round = 120,
             .max_entry_bytes = 64 << 10,
             .max_entries = 16,
             .max_image_bytes = 4 << 20});
}

}  // namespace
}  // namespace kvd::storage
