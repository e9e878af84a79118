// RaftLog: appends, snapshots and images, reads, and their agreement with a model log.
#include "tests/unit/storage/raft_log_test_util.h"

namespace kvd::storage {
namespace {

TEST_F(RaftLogTest, open_freshIsEmpty) {
  open_log();
  EXPECT_EQ(log_->first_index(), 1u);
  EXPECT_EQ(log_->last_index(), 0u);
  auto [hs, cs] = log_->initial_state();
  EXPECT_TRUE(hs.empty());
  EXPECT_TRUE(cs.voters.empty());
  Snapshot snap;
  ASSERT_EQ(log_->snapshot(&snap), StorageError::kOk);
  EXPECT_TRUE(snap.empty());
}

TEST_F(RaftLogTest, append_readBack) {
  open_log();
  auto ents = make_entries(1, 6, 1);
  ents[2].type = EntryType::kConfChange;
  ents[3].data.clear();  // a leader's empty no-op entry
  ASSERT_TRUE(log_->append(ents, HardState{1, 7, 3}).is_ok());
  ASSERT_TRUE(log_->append(make_entries(6, 8, 2), std::nullopt).is_ok());
  EXPECT_EQ(log_->first_index(), 1u);
  EXPECT_EQ(log_->last_index(), 7u);
  std::vector<Entry> got;
  ASSERT_EQ(log_->entries(1, 8, UINT64_MAX, &got), StorageError::kOk);
  auto want = ents;
  for (auto& e : make_entries(6, 8, 2)) want.push_back(e);
  EXPECT_EQ(got, want);
  got.clear();
  ASSERT_EQ(log_->entries(3, 5, UINT64_MAX, &got), StorageError::kOk);
  EXPECT_EQ(got, std::vector<Entry>(want.begin() + 2, want.begin() + 4));
  uint64_t t = 0;
  ASSERT_EQ(log_->term(5, &t), StorageError::kOk);
  EXPECT_EQ(t, 1u);
  ASSERT_EQ(log_->term(6, &t), StorageError::kOk);
  EXPECT_EQ(t, 2u);
  EXPECT_EQ(log_->initial_state().first, (HardState{1, 7, 3}));
}

TEST_F(RaftLogTest, append_conflictingSuffixReplacedByShorter) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  // A new leader in term 2 overwrites from index 5 on with a shorter log.
  ASSERT_TRUE(log_->append(make_entries(5, 7, 2), HardState{2, 2, 4}).is_ok());
  EXPECT_EQ(log_->last_index(), 6u);
  std::vector<Entry> got;
  ASSERT_EQ(log_->entries(1, 7, UINT64_MAX, &got), StorageError::kOk);
  auto want = make_entries(1, 5, 1);
  for (auto& e : make_entries(5, 7, 2)) want.push_back(e);
  EXPECT_EQ(got, want);
  std::vector<Entry> beyond;
  EXPECT_EQ(log_->entries(7, 8, UINT64_MAX, &beyond), StorageError::kUnavailable);
  // The old entries 7..10 are gone on disk too.
  open_log();
  EXPECT_EQ(log_->last_index(), 6u);
  got.clear();
  ASSERT_EQ(log_->entries(1, 7, UINT64_MAX, &got), StorageError::kOk);
  EXPECT_EQ(got, want);
}

TEST_F(RaftLogTest, append_conflictingSuffixReplacedByLonger) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 6, 1), std::nullopt).is_ok());
  ASSERT_TRUE(log_->append(make_entries(3, 9, 3), std::nullopt).is_ok());
  EXPECT_EQ(log_->last_index(), 8u);
  uint64_t t = 0;
  ASSERT_EQ(log_->term(2, &t), StorageError::kOk);
  EXPECT_EQ(t, 1u);
  ASSERT_EQ(log_->term(3, &t), StorageError::kOk);
  EXPECT_EQ(t, 3u);
  open_log();
  std::vector<Entry> got;
  ASSERT_EQ(log_->entries(3, 9, UINT64_MAX, &got), StorageError::kOk);
  EXPECT_EQ(got, make_entries(3, 9, 3));
}

TEST_F(RaftLogTest, append_gapRejected) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 4, 1), std::nullopt).is_ok());
  Status st = log_->append(make_entries(5, 6, 1), std::nullopt);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("gap"), std::string::npos) << st.message();
  EXPECT_EQ(log_->last_index(), 3u);
  // A rejected call is not sticky: the next valid append works.
  EXPECT_TRUE(log_->append(make_entries(4, 5, 1), std::nullopt).is_ok());
}

TEST_F(RaftLogTest, append_decreasingTermRejected) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 4, 2), std::nullopt).is_ok());
  Status st = log_->append(make_entries(4, 5, 1), std::nullopt);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("term"), std::string::npos) << st.message();
  EXPECT_EQ(log_->last_index(), 3u);
}

TEST_F(RaftLogTest, append_hardStateRoundTrip) {
  open_log();
  ASSERT_TRUE(log_->append({}, HardState{5, 3, 0}).is_ok());
  EXPECT_EQ(log_->initial_state().first, (HardState{5, 3, 0}));
  EXPECT_EQ(log_->last_index(), 0u);
  ASSERT_TRUE(log_->append({}, HardState{6, 0, 0}).is_ok());
  open_log();
  EXPECT_EQ(log_->initial_state().first, (HardState{6, 0, 0}));
}

TEST_F(RaftLogTest, append_unsyncedHardStateReadableAndKeptOnReopen) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 4, 1), HardState{1, 1, 1}).is_ok());
  ASSERT_TRUE(log_->append({}, HardState{1, 1, 3}, /*sync=*/false).is_ok());
  EXPECT_EQ(log_->initial_state().first, (HardState{1, 1, 3}));
  log_.reset();
  open_log();
  EXPECT_EQ(log_->initial_state().first, (HardState{1, 1, 3}));
  EXPECT_EQ(log_->last_index(), 3u);
}

TEST_F(RaftLogTest, append_belowSnapshotIgnored) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 6, 1), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {4, 1, {{1}}};
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  // Entries 3..7: 3 and 4 are covered by the snapshot, 5 is rewritten, 6 and 7 are new.
  ASSERT_TRUE(log_->append(make_entries(3, 8, 1), std::nullopt).is_ok());
  EXPECT_EQ(log_->first_index(), 5u);
  EXPECT_EQ(log_->last_index(), 7u);
}

TEST_F(RaftLogTest, open_reopenPreservesEverything) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 21, 1), HardState{1, 1, 15}).is_ok());
  ASSERT_TRUE(log_->append(make_entries(21, 31, 2), HardState{2, 1, 25}).is_ok());
  Snapshot snap;
  snap.metadata = {12, 1, {{1, 2, 3}}};
  snap.data = std::string("state\0machine", 13);
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  ASSERT_TRUE(log_->put_meta("member_id", "8e9e05c52164694d").is_ok());

  open_log();
  EXPECT_EQ(log_->first_index(), 13u);
  EXPECT_EQ(log_->last_index(), 30u);
  auto [hs, cs] = log_->initial_state();
  EXPECT_EQ(hs, (HardState{2, 1, 25}));
  EXPECT_EQ(cs.voters, (std::vector<raft::NodeId>{1, 2, 3}));
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.metadata, snap.metadata);
  EXPECT_EQ(got.data, snap.data);
  EXPECT_EQ(log_->get_meta("member_id"), "8e9e05c52164694d");
  EXPECT_EQ(log_->get_meta("cluster_id"), std::nullopt);
  std::vector<Entry> ents;
  ASSERT_EQ(log_->entries(13, 31, UINT64_MAX, &ents), StorageError::kOk);
  auto want = make_entries(13, 21, 1);
  for (auto& e : make_entries(21, 31, 2)) want.push_back(e);
  EXPECT_EQ(ents, want);
  // And it keeps working after reopen.
  ASSERT_TRUE(log_->append(make_entries(31, 32, 2), std::nullopt).is_ok());
  EXPECT_EQ(log_->last_index(), 31u);
}

TEST_F(RaftLogTest, saveSnapshot_compactsPrefixAndFirstIndexMoves) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 6, 1), std::nullopt).is_ok());
  ASSERT_TRUE(log_->append(make_entries(6, 11, 2), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {7, 2, {{1}}};
  snap.data = "image@7";
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  EXPECT_EQ(log_->first_index(), 8u);
  EXPECT_EQ(log_->last_index(), 10u);

  uint64_t t = 0;
  ASSERT_EQ(log_->term(7, &t), StorageError::kOk);  // the snapshot's own index
  EXPECT_EQ(t, 2u);
  EXPECT_EQ(log_->term(6, &t), StorageError::kCompacted);
  ASSERT_EQ(log_->term(8, &t), StorageError::kOk);
  EXPECT_EQ(t, 2u);
  std::vector<Entry> got;
  EXPECT_EQ(log_->entries(7, 9, UINT64_MAX, &got), StorageError::kCompacted);
  EXPECT_TRUE(got.empty());
  ASSERT_EQ(log_->entries(8, 11, UINT64_MAX, &got), StorageError::kOk);
  EXPECT_EQ(got, make_entries(8, 11, 2));

  // The compacted entries are still in the memtable, so their file is not dropped: reopened,
  // they are passed over, never read.
  open_log();
  EXPECT_EQ(log_->first_index(), 8u);
  EXPECT_EQ(log_->last_index(), 10u);
  got.clear();
  ASSERT_EQ(log_->entries(8, 11, UINT64_MAX, &got), StorageError::kOk);
  EXPECT_EQ(got, make_entries(8, 11, 2));
  EXPECT_EQ(log_->entries(7, 9, UINT64_MAX, &got), StorageError::kCompacted);
}

// Entries 1..10 in a table file below level 0 (level-0 files are never dropped whole; its path
// in entries_file_), then 11..20 appended after a reopen (in the memtable), the log open.
class RaftLogCompactionTest : public RaftLogTest {
 protected:
  std::string entries_file_;

  void write_entries_1_to_10_in_a_file_then_11_to_20() {
    open_log();
    ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
    log_.reset();
    {
      RawDb raw(dir_);
      ASSERT_TRUE(raw.status.ok()) << raw.status.ToString();
      rocksdb::CompactRangeOptions co;
      co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
      ASSERT_TRUE(raw.db->CompactRange(co, raw.handles[1], nullptr, nullptr).ok());
      std::vector<rocksdb::LiveFileMetaData> files;
      raw.db->GetLiveFilesMetaData(&files);
      int entry_files = 0;
      for (const auto& f : files) {
        if (f.column_family_name != "entries") continue;
        ++entry_files;
        EXPECT_GT(f.level, 0);
        entries_file_ = dir_ + f.name;  // f.name starts with '/'
      }
      EXPECT_EQ(entry_files, 1);
    }
    open_log();
    ASSERT_TRUE(log_->append(make_entries(11, 21, 1), std::nullopt).is_ok());
  }
};

TEST_F(RaftLogCompactionTest, recordSnapshot_keepsTheCompactedEntriesFileUntilDropReplaced) {
  write_entries_1_to_10_in_a_file_then_11_to_20();
  ASSERT_TRUE(fs::exists(entries_file_)) << entries_file_;
  auto image = log_->write_image(15, "image at 15");
  ASSERT_TRUE(image.is_ok()) << image.status().message();
  ASSERT_TRUE(log_->record_snapshot(SnapshotMetadata{15, 1, {{1}}}, image.value()).is_ok());
  EXPECT_TRUE(fs::exists(entries_file_));  // recorded: compacted, the file not dropped yet
  EXPECT_EQ(log_->first_index(), 16u);
  log_->drop_replaced();
  EXPECT_FALSE(fs::exists(entries_file_));
  std::vector<Entry> got;
  ASSERT_EQ(log_->entries(16, 21, UINT64_MAX, &got), StorageError::kOk);
  EXPECT_EQ(got, make_entries(16, 21, 1));
  open_log();
  EXPECT_EQ(log_->first_index(), 16u);
  Snapshot snap;
  ASSERT_EQ(log_->snapshot(&snap), StorageError::kOk);
  EXPECT_EQ(snap.data, "image at 15");
}

TEST_F(RaftLogCompactionTest, saveSnapshot_dropsTheFilesOfCompactedEntriesWithoutWritingDeletes) {
  write_entries_1_to_10_in_a_file_then_11_to_20();
  Snapshot snap;
  snap.metadata = {15, 1, {{1}}};
  snap.data = "image@15";
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  std::vector<Entry> got;
  ASSERT_EQ(log_->entries(16, 21, UINT64_MAX, &got), StorageError::kOk);
  EXPECT_EQ(got, make_entries(16, 21, 1));
  log_.reset();
  {
    RawDb raw(dir_);
    ASSERT_TRUE(raw.status.ok()) << raw.status.ToString();
    std::string v;
    // The file of 1..10 went whole; 11..15 (written since, flushed at close) are still there.
    for (uint64_t i = 1; i <= 10; ++i) {
      EXPECT_TRUE(raw.db->Get(rocksdb::ReadOptions(), raw.handles[1], RawDb::key(i), &v)
                      .IsNotFound())
          << i;
    }
    EXPECT_TRUE(raw.db->Get(rocksdb::ReadOptions(), raw.handles[1], RawDb::key(11), &v).ok());
    EXPECT_TRUE(raw.db->Get(rocksdb::ReadOptions(), raw.handles[1], RawDb::key(16), &v).ok());
  }
  open_log();
  EXPECT_EQ(log_->first_index(), 16u);
  EXPECT_EQ(log_->last_index(), 20u);
  got.clear();
  ASSERT_EQ(log_->entries(16, 21, UINT64_MAX, &got), StorageError::kOk);
  EXPECT_EQ(got, make_entries(16, 21, 1));
}

TEST_F(RaftLogTest, saveSnapshot_beyondLogReplacesLog) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 4, 1), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {50, 4, {{1, 2}}};
  snap.data = "leader's image";
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  EXPECT_EQ(log_->first_index(), 51u);
  EXPECT_EQ(log_->last_index(), 50u);
  uint64_t t = 0;
  ASSERT_EQ(log_->term(50, &t), StorageError::kOk);
  EXPECT_EQ(t, 4u);
  EXPECT_EQ(log_->term(3, &t), StorageError::kCompacted);
  ASSERT_TRUE(log_->append(make_entries(51, 53, 4), std::nullopt).is_ok());
  open_log();
  EXPECT_EQ(log_->first_index(), 51u);
  EXPECT_EQ(log_->last_index(), 52u);
}

TEST_F(RaftLogTest, saveSnapshot_conflictingTermDiscardsLog) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {5, 3, {{1}}};  // our entry 5 has term 1: our log diverged from the leader's
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  EXPECT_EQ(log_->first_index(), 6u);
  EXPECT_EQ(log_->last_index(), 5u);
}

TEST_F(RaftLogTest, saveSnapshot_olderRejected) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {8, 1, {{1}}};
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  snap.metadata.index = 4;
  Status st = log_->save_snapshot(snap);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("older"), std::string::npos) << st.message();
  EXPECT_EQ(log_->first_index(), 9u);
}

// SST files of the "images" family, as RocksDB lists them.
size_t image_files(const std::string& dir) {
  RawDb raw(dir);
  EXPECT_TRUE(raw.status.ok()) << raw.status.ToString();
  if (!raw.status.ok()) return 0;
  rocksdb::ColumnFamilyMetaData md;
  raw.db->GetColumnFamilyMetaData(raw.handles[2], &md);
  return md.file_count;
}

// Bytes that differ from chunk to chunk, so that a lost or reordered chunk shows.
std::string image_of(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + (i * 131) % 251);
  return s;
}

TEST_F(RaftLogTest, saveSnapshot_largeImageInChunksSurvivesReopen) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {8, 1, {{1, 2, 3}}};
  snap.data = image_of((3 << 20) + 12345, 'a');  // four chunks, the last one short
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  open_log();
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.metadata, snap.metadata);
  EXPECT_TRUE(got.data == snap.data) << got.data.size() << " bytes read back";
  EXPECT_EQ(log_->first_index(), 9u);
  log_.reset();
  EXPECT_EQ(image_files(dir_), 1u);
}

TEST_F(RaftLogTest, saveSnapshot_replacedImageFileIsDropped) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 21, 1), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {5, 1, {{1}}};
  snap.data = image_of(2 << 20, 'x');
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  snap.metadata.index = 15;
  snap.data = "the newer image";
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.data, "the newer image");
  log_.reset();
  EXPECT_EQ(image_files(dir_), 1u);
  open_log();
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 15u);
  EXPECT_EQ(got.data, "the newer image");
}

TEST_F(RaftLogTest, buildImageThenIngest_saveSnapshotMakesItTheSnapshot) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  const std::string image = image_of((1 << 20) * 2 + 7, 'k');
  const std::string path = (root_ / "snapshot-6.tmp").string();
  ASSERT_TRUE(log_->build_image(6, image, path).is_ok());
  ASSERT_TRUE(fs::exists(path));
  auto written = log_->ingest_image(6, path);
  ASSERT_TRUE(written.is_ok()) << written.status().message();
  EXPECT_EQ(written.value().index, 6u);
  EXPECT_EQ(written.value().bytes, image.size());
  EXPECT_EQ(written.value().chunks, 3u);
  EXPECT_FALSE(fs::exists(path));  // moved into the database, not copied
  // Ingested but not saved: still no snapshot.
  EXPECT_EQ(log_->first_index(), 1u);
  ASSERT_TRUE(log_->save_snapshot(SnapshotMetadata{6, 1, {{1}}}, written.value()).is_ok());
  EXPECT_EQ(log_->first_index(), 7u);
  open_log();
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 6u);
  EXPECT_TRUE(got.data == image);
}

TEST_F(RaftLogTest, buildImageFromPieces_eachPieceAChunkAndTheSnapshotTheirConcatenation) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  const std::vector<std::string> pieces = {image_of(kvd::storage::kImageChunkBytes, 'a'), "b",
                                           image_of(1000, 'c')};
  const std::string path = (root_ / "snapshot-8.tmp").string();
  ASSERT_TRUE(log_->build_image(
                      8,
                      [&](const RaftLog::ImagePut& put) {
                        for (const std::string& p : pieces) ASSERT_TRUE(put(p));
                      },
                      path)
                  .is_ok());
  auto written = log_->ingest_image(8, path);
  ASSERT_TRUE(written.is_ok()) << written.status().message();
  EXPECT_EQ(written.value().chunks, 3u);
  EXPECT_EQ(written.value().bytes, pieces[0].size() + pieces[1].size() + pieces[2].size());
  ASSERT_TRUE(log_->save_snapshot(SnapshotMetadata{8, 1, {{1}}}, written.value()).is_ok());
  open_log();
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_TRUE(got.data == pieces[0] + pieces[1] + pieces[2]);
}

TEST_F(RaftLogTest, buildImageFromPieces_aPieceOverAChunkFailsTheFileAndRemovesIt) {
  open_log();
  const std::string path = (root_ / "snapshot-9.tmp").string();
  int answers_after = 0;
  Status st = log_->build_image(
      9,
      [&](const RaftLog::ImagePut& put) {
        ASSERT_TRUE(put("fine"));
        EXPECT_FALSE(put(image_of(kvd::storage::kImageChunkBytes + 1, 'x')));
        if (!put("after")) ++answers_after;
      },
      path);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("writing the image " + path), std::string::npos) << st.message();
  EXPECT_EQ(answers_after, 1);  // a put after the failure answers false too
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(RaftLogTest, recordSnapshot_keepsTheReplacedImageUntilDropReplaced) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 21, 1), std::nullopt).is_ok());
  for (uint64_t index : {5u, 10u}) {
    auto written = log_->write_image(index, "image at " + std::to_string(index));
    ASSERT_TRUE(written.is_ok()) << written.status().message();
    ASSERT_TRUE(log_->record_snapshot(SnapshotMetadata{index, 1, {{1}}}, written.value()).is_ok());
  }
  EXPECT_EQ(log_->first_index(), 11u);
  log_.reset();
  EXPECT_EQ(image_files(dir_), 2u);  // recorded, not dropped yet
  open_log();  // open() drops an image no snapshot names: make a replaced one again
  auto written = log_->write_image(15, "image at 15");
  ASSERT_TRUE(written.is_ok()) << written.status().message();
  ASSERT_TRUE(log_->record_snapshot(SnapshotMetadata{15, 1, {{1}}}, written.value()).is_ok());
  log_->drop_replaced();  // drops 10's
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 15u);
  EXPECT_EQ(got.data, "image at 15");
  log_.reset();
  EXPECT_EQ(image_files(dir_), 1u);
}

TEST_F(RaftLogTest, buildImage_emptyImageIsOneEmptyChunk) {
  open_log();
  const std::string path = (root_ / "empty.tmp").string();
  ASSERT_TRUE(log_->build_image(2, "", path).is_ok());
  auto written = log_->ingest_image(2, path);
  ASSERT_TRUE(written.is_ok()) << written.status().message();
  EXPECT_EQ(written.value().chunks, 1u);
  EXPECT_EQ(written.value().bytes, 0u);
}

TEST_F(RaftLogTest, ingestImage_missingGarbageOrOtherIndexRefusedNamingTheFile) {
  open_log();
  auto missing = log_->ingest_image(3, (root_ / "nope").string());
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos)
      << missing.status().message();
  const std::string garbage = (root_ / "garbage.tmp").string();
  write_file(garbage, std::string(5000, 'g'));
  auto bad = log_->ingest_image(3, garbage);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("garbage.tmp"), std::string::npos)
      << bad.status().message();
  const std::string other = (root_ / "other.tmp").string();
  ASSERT_TRUE(log_->build_image(4, "image at 4", other).is_ok());
  auto wrong = log_->ingest_image(3, other);
  ASSERT_FALSE(wrong.is_ok());
  EXPECT_NE(wrong.status().message().find("not a store image of index 3"), std::string::npos)
      << wrong.status().message();
  // Nothing of them reached the database: a snapshot at 3 still needs its own image.
  auto good = log_->write_image(3, "image at 3");
  ASSERT_TRUE(good.is_ok());
  ASSERT_TRUE(log_->save_snapshot(SnapshotMetadata{3, 1, {{1}}}, good.value()).is_ok());
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.data, "image at 3");
}

TEST_F(RaftLogTest, saveSnapshotImage_olderThanStoredIsDroppedNotSaved) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  auto early = log_->write_image(4, "image at 4");
  ASSERT_TRUE(early.is_ok());
  Snapshot snap;  // e.g. the leader's, installed while the image at 4 was being written
  snap.metadata = {8, 1, {{1}}};
  snap.data = "image at 8";
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  ASSERT_TRUE(log_->save_snapshot(SnapshotMetadata{4, 1, {{1}}}, early.value()).is_ok());
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 8u);
  EXPECT_EQ(got.data, "image at 8");
  EXPECT_EQ(log_->first_index(), 9u);
  log_.reset();
  EXPECT_EQ(image_files(dir_), 1u);
}

TEST_F(RaftLogTest, open_dropsImagesNoSnapshotNames) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {5, 1, {{1}}};
  snap.data = "kept";
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  // A crash between ingesting an image and recording its snapshot leaves this one behind.
  ASSERT_TRUE(log_->write_image(9, "orphan").is_ok());
  write_file(dir_ + "/image-10.sst.tmp", "half-built image file");
  log_.reset();
  EXPECT_EQ(image_files(dir_), 2u);
  open_log();
  EXPECT_FALSE(fs::exists(dir_ + "/image-10.sst.tmp"));
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 5u);
  EXPECT_EQ(got.data, "kept");
  log_.reset();
  EXPECT_EQ(image_files(dir_), 1u);
}

TEST_F(RaftLogTest, open_earlierDatabaseWithImageRecordReadsAndUpgrades) {
  // As an earlier kvd wrote it: two column families, the image in "snapshot_data" and the
  // snapshot metadata without image fields.
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  log_.reset();
  {
    RawDb raw(dir_);
    ASSERT_TRUE(raw.status.ok()) << raw.status.ToString();
    ASSERT_TRUE(raw.db->DropColumnFamily(raw.handles[2]).ok());
  }
  {
    RawDb raw(dir_, /*images=*/false);
    ASSERT_TRUE(raw.status.ok()) << raw.status.ToString();
    std::string meta;
    for (uint64_t x : {uint64_t{6}, uint64_t{1}, uint64_t{1}, uint64_t{1}}) {
      for (int i = 0; i < 8; ++i) meta.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
    }
    rocksdb::WriteBatch b;
    ASSERT_TRUE(b.Put(raw.handles[0], "snapshot_meta", meta).ok());
    ASSERT_TRUE(b.Put(raw.handles[0], "snapshot_data", "earlier image").ok());
    for (uint64_t i = 1; i <= 6; ++i) ASSERT_TRUE(b.Delete(raw.handles[1], RawDb::key(i)).ok());
    ASSERT_TRUE(raw.db->Write(rocksdb::WriteOptions(), &b).ok());
  }
  open_log();
  Snapshot got;
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.metadata.index, 6u);
  EXPECT_EQ(got.data, "earlier image");
  EXPECT_EQ(log_->first_index(), 7u);
  Snapshot snap;
  snap.metadata = {9, 1, {{1}}};
  snap.data = "new image";
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  open_log();
  ASSERT_EQ(log_->snapshot(&got), StorageError::kOk);
  EXPECT_EQ(got.data, "new image");
  log_.reset();
  RawDb raw(dir_);
  std::string v;
  EXPECT_TRUE(raw.db->Get(rocksdb::ReadOptions(), raw.handles[0], "snapshot_data", &v).IsNotFound());
}

TEST_F(RaftLogTest, snapshot_missingImageFileIsAnErrorNotAnEmptyImage) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {5, 1, {{1}}};
  snap.data = image_of(3 << 20, 'm');
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  log_.reset();
  {
    RawDb raw(dir_);
    ASSERT_TRUE(raw.status.ok()) << raw.status.ToString();
    const std::string b = std::string(8, '\0') + std::string(4, '\0');
    const std::string e(12, '\xff');
    rocksdb::Slice bs(b), es(e);
    ASSERT_TRUE(rocksdb::DeleteFilesInRange(raw.db.get(), raw.handles[2], &bs, &es).ok());
  }
  open_log();
  Snapshot got;
  EXPECT_EQ(log_->snapshot(&got), StorageError::kIo);
  EXPECT_TRUE(got.data.empty());
  log_.reset();  // the invariant check in TearDown would read the missing image
}

TEST_F(RaftLogTest, entries_maxBytes) {
  open_log();
  std::vector<Entry> ents;
  for (uint64_t i = 1; i <= 5; ++i) ents.push_back(make_entry(i, 1, std::string(100, 'a' + i)));
  ASSERT_TRUE(log_->append(ents, std::nullopt).is_ok());
  std::vector<Entry> got;
  ASSERT_EQ(log_->entries(1, 6, 250, &got), StorageError::kOk);
  EXPECT_EQ(got, std::vector<Entry>(ents.begin(), ents.begin() + 2));
  got.clear();
  ASSERT_EQ(log_->entries(1, 6, 300, &got), StorageError::kOk);
  EXPECT_EQ(got.size(), 3u);
  got.clear();
  // At least one entry, even when it alone exceeds the budget.
  ASSERT_EQ(log_->entries(2, 6, 0, &got), StorageError::kOk);
  EXPECT_EQ(got, std::vector<Entry>(ents.begin() + 1, ents.begin() + 2));
}

TEST_F(RaftLogTest, entriesAndTerm_outOfRangeErrors) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 11, 1), std::nullopt).is_ok());
  Snapshot snap;
  snap.metadata = {4, 1, {{1}}};
  ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
  std::vector<Entry> got;
  EXPECT_EQ(log_->entries(4, 6, UINT64_MAX, &got), StorageError::kCompacted);
  EXPECT_EQ(log_->entries(1, 3, UINT64_MAX, &got), StorageError::kCompacted);
  EXPECT_EQ(log_->entries(5, 12, UINT64_MAX, &got), StorageError::kUnavailable);
  EXPECT_TRUE(got.empty());
  uint64_t t = 0;
  EXPECT_EQ(log_->term(3, &t), StorageError::kCompacted);
  EXPECT_EQ(log_->term(11, &t), StorageError::kUnavailable);
  ASSERT_EQ(log_->term(10, &t), StorageError::kOk);
}

TEST_F(RaftLogTest, readers_concurrentWithWriter) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 2, 1), std::nullopt).is_ok());
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    for (int n = 0; n < 200000 && !done.load(); ++n) {
      const uint64_t first = log_->first_index();
      const uint64_t last = log_->last_index();
      std::vector<Entry> got;
      StorageError err = log_->entries(last, last + 1, UINT64_MAX, &got);
      // The writer may have compacted or replaced in between: only a consistent answer is OK.
      if (err == StorageError::kOk && (got.size() != 1 || got[0].index != last)) ++bad;
      if (err == StorageError::kIo) ++bad;
      uint64_t t = 0;
      if (log_->term(first - 1, &t) == StorageError::kIo) ++bad;
    }
  });
  for (uint64_t i = 2; i <= 200; ++i) {
    ASSERT_TRUE(log_->append(make_entries(i, i + 1, 1 + i / 50), std::nullopt).is_ok());
    if (i % 40 == 0) {
      Snapshot snap;
      snap.metadata = {i - 10, 1 + (i - 10) / 50, {{1}}};
      ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
    }
  }
  done = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
}

// The entries a writer overwrites while a reader reads them: every answer is one the log held
// at some moment, never a mix of the old and the new suffix (terms would then go down).
TEST_F(RaftLogTest, readers_neverSeeAMixOfOverwrittenAndNewEntries) {
  open_log();
  ASSERT_TRUE(log_->append(make_entries(1, 101, 1), std::nullopt).is_ok());
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    for (int n = 0; n < 200000 && !done.load(); ++n) {
      std::vector<Entry> got;
      uint64_t before = 0, after = 0;
      if (log_->term(100, &before) != StorageError::kOk) ++bad;
      if (log_->entries(51, 101, UINT64_MAX, &got) != StorageError::kOk) continue;
      if (log_->term(100, &after) != StorageError::kOk) ++bad;
      ++reads;
      if (got.size() != 50) ++bad;
      // What the read saw was the log at a moment between the two term() calls.
      if (!got.empty() && (got[0].term < before || got[0].term > after)) ++bad;
      for (size_t i = 0; i < got.size(); ++i) {
        if (got[i].index != 51 + i || got[i] != make_entry(got[i].index, got[i].term)) ++bad;
        if (i > 0 && got[i].term < got[i - 1].term) ++bad;
        if (got[i].term != got[0].term) ++bad;  // each overwrite replaces [51, 100] whole
      }
    }
  });
  for (uint64_t term = 2; term <= 300; ++term) {
    ASSERT_TRUE(log_->append(make_entries(51, 101, term), std::nullopt).is_ok());
  }
  done = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(bad.load(), 0);
}

// Random appends (with conflicting suffixes), snapshots and reopens against a plain model of the
// log: entries() over any range answers as the model, whether it comes from the newest entries
// kept in memory or from RocksDB (after a reopen, below what memory keeps, past its size bound).
TEST_F(RaftLogTest, entries_matchModelThroughAppendsOverwritesSnapshotsAndReopens) {
  open_log();
  std::map<uint64_t, Entry> model;  // the log: (snap_index, last]
  uint64_t snap_index = 0, snap_term = 0, max_term = 1;
  uint64_t seed = 42;
  auto rnd = [&seed](uint64_t n) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (seed >> 33) % n;
  };
  auto last = [&] { return model.empty() ? snap_index : model.rbegin()->first; };
  auto term_at = [&](uint64_t i) { return i == snap_index ? snap_term : model.at(i).term; };
  auto check_range = [&](uint64_t lo, uint64_t hi, uint64_t max_bytes) {
    std::vector<Entry> got;
    ASSERT_EQ(log_->entries(lo, hi, max_bytes, &got), StorageError::kOk) << lo << ".." << hi;
    std::vector<Entry> want;
    uint64_t bytes = 0;
    for (uint64_t i = lo; i < hi; ++i) {
      bytes += model.at(i).data.size();
      if (i > lo && bytes > max_bytes) break;
      want.push_back(model.at(i));
    }
    ASSERT_EQ(got, want) << "entries(" << lo << ", " << hi << ", " << max_bytes << ")";
  };
  for (int step = 0; step < 400; ++step) {
    const uint64_t op = rnd(100);
    if (op < 70) {
      // Append at the end (same term), or overwrite from some index on with a newer term.
      const bool overwrite = !model.empty() && rnd(3) == 0;
      const uint64_t start = overwrite ? snap_index + 1 + rnd(last() - snap_index) : last() + 1;
      const uint64_t term = overwrite ? ++max_term : max_term;
      // Now and then past the count bound (thousands) or the byte bound (1 MiB each).
      const size_t data_bytes = rnd(40) == 0 ? (1 << 20) : 0;
      const uint64_t n = data_bytes ? 1 + rnd(20) : rnd(10) == 0 ? 3000 + rnd(3000) : 1 + rnd(40);
      std::vector<Entry> ents;
      for (uint64_t i = start; i < start + n; ++i) {
        ents.push_back(make_entry(i, term, data_bytes ? std::string(data_bytes, 'a' + i % 26) : ""));
      }
      ASSERT_TRUE(log_->append(ents, std::nullopt).is_ok());
      model.erase(model.lower_bound(start), model.end());
      for (auto& e : ents) model[e.index] = e;
    } else if (op < 85 && last() > snap_index) {
      // A snapshot of a prefix, or (now and then) one beyond the log that replaces it.
      Snapshot snap;
      if (rnd(4) == 0) {
        snap.metadata = {last() + 1 + rnd(5), ++max_term, {{1}}};
        model.clear();
      } else {
        const uint64_t index = snap_index + 1 + rnd(last() - snap_index);
        snap.metadata = {index, term_at(index), {{1}}};
        model.erase(model.begin(), model.upper_bound(index));
      }
      ASSERT_TRUE(log_->save_snapshot(snap).is_ok());
      snap_index = snap.metadata.index;
      snap_term = snap.metadata.term;
    } else if (op < 90) {
      open_log();
    }
    ASSERT_EQ(log_->first_index(), snap_index + 1);
    ASSERT_EQ(log_->last_index(), last());
    if (last() == snap_index) continue;
    check_range(snap_index + 1, last() + 1, UINT64_MAX);
    for (int r = 0; r < 5; ++r) {
      const uint64_t lo = snap_index + 1 + rnd(last() - snap_index);
      const uint64_t hi = lo + 1 + rnd(last() + 1 - lo);
      check_range(lo, hi, rnd(2) ? UINT64_MAX : rnd(4096));
    }
    if (HasFatalFailure()) return;
  }
}

// --- refusing what is not a healthy kvd log -------------------------------------------------

}  // namespace
}  // namespace kvd::storage
