// read_member on damaged copies of a real etcd 3.4 data dir (etcd_run.h): a torn WAL tail, a
// flipped byte before it, broken snap files, a WAL that does not reach the snapshot, a record type
// etcd never writes; then every truncation at and between record boundaries, and random bit
// flips: each gives an error or a warning, or (a flip in padding) the same result, and never a
// crash. The flips' seed is printed on failure; KVD_FUZZ_SEED=<seed> replays it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "etcd_data/etcd_member.h"
#include "tests/unit/etcd_data/etcd_run.h"
#include "tests/unit/etcd_data/wal_writer.h"

namespace kvd::etcd_data::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kWalFlips = 3000;
constexpr int kSnapFlips = 1000;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

class EtcdCorruptionTest : public EtcdRunTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(EtcdRunTest::SetUp());
    copy_compact(run_->data_dir, copy());
    Result<Member> m = read_member(copy());
    ASSERT_TRUE(m.is_ok()) << m.status().message();
    original_ = std::move(m.value());
    ASSERT_TRUE(original_.warnings.empty());
    ASSERT_EQ(wal_files(copy()).size(), 1u);  // etcd cuts a new file after 64 MB only
    wal_path_ = wal_files(copy())[0].path;
    wal_ = read_bytes(wal_path_);
    records_ = wal_records(copy());
  }
  std::string copy() const { return tmp_.path() + "/data"; }

  // The last record of `type` whose frame lies within one disk sector, so that damage to it
  // cannot read as a torn write (a frame part on a sector of its own that is all zeros).
  const WalRecord& record_within_a_sector(int64_t type, size_t before) const {
    for (size_t i = std::min(before, records_.size()); i-- > 0;) {
      const WalRecord& r = records_[i];
      if (r.type == type && (r.offset + 8) / 512 == (r.end - 1) / 512) return r;
    }
    ADD_FAILURE() << "no record of type " << type << " within a sector";
    return records_.front();
  }

  // Whether `m` is the original, read up to some point: each entry equal to the original's at the
  // same index.
  bool agrees_with_original(const Member& m) const {
    for (const Entry& e : m.entries) {
      if (e.index <= original_.snap_index) continue;
      const size_t at = e.index - original_.snap_index - 1;
      if (at >= original_.entries.size() || !(original_.entries[at] == e)) return false;
    }
    return m.member_id == original_.member_id && m.cluster_id == original_.cluster_id;
  }

  TempDir tmp_{"kvd-etcd-corrupt"};
  Member original_;
  std::string wal_path_;
  std::string wal_;
  std::vector<WalRecord> records_;
};

// etcd's repair truncates a torn last record; read_member drops it with a warning, leaving the
// file as it is.
TEST_F(EtcdCorruptionTest, torn_tail_of_last_wal_file_dropped_with_warning) {
  const WalRecord* last_entry = nullptr;
  for (const WalRecord& r : records_) {
    if (r.type == kEntryRecord) last_entry = &r;
  }
  ASSERT_NE(last_entry, nullptr);
  const size_t cut = last_entry->offset + (last_entry->end - last_entry->offset) / 2;
  write_bytes(wal_path_, wal_.substr(0, cut));
  Result<Member> r = read_member(copy());
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const Member& m = r.value();
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_TRUE(contains(m.warnings[0], wal_path_ + ": offset " +
                                          std::to_string(last_entry->offset) +
                                          ": the file ends inside a record"))
      << m.warnings[0];
  // Every entry up to the torn one.
  ASSERT_EQ(m.entries.size(), original_.entries.size() - 1);
  EXPECT_TRUE(std::equal(m.entries.begin(), m.entries.end(), original_.entries.begin()));
  EXPECT_EQ(m.snap_index, original_.snap_index);
  EXPECT_EQ(fs::file_size(wal_path_), cut);
}

TEST_F(EtcdCorruptionTest, flipped_byte_in_earlier_record_is_error_naming_file) {
  const WalRecord& r = record_within_a_sector(kEntryRecord, records_.size() / 2);
  // The record's last byte: the last byte of its data (the marshaled raftpb.Entry).
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = len << 8 | static_cast<unsigned char>(wal_[r.offset + i]);
  const size_t last_data_byte = r.offset + 8 + (len & ((uint64_t{1} << 56) - 1)) - 1;
  std::string damaged = wal_;
  damaged[last_data_byte] ^= 0x20;
  write_bytes(wal_path_, damaged);
  Result<Member> m = read_member(copy());
  ASSERT_FALSE(m.is_ok());
  EXPECT_TRUE(contains(m.status().message(), wal_path_ + ": offset " + std::to_string(r.offset)))
      << m.status().message();
}

// etcd renames a broken snap file to .broken and uses the next older one; read_member uses the
// older one too, with a warning, and renames nothing.
TEST_F(EtcdCorruptionTest, corrupt_newest_snap_falls_back_to_older_with_warning) {
  const std::vector<std::string> snaps = snap_files(copy());
  ASSERT_GE(snaps.size(), 2u);
  std::string bytes = read_bytes(snaps[0]);
  bytes[bytes.size() / 2] ^= 0x01;
  write_bytes(snaps[0], bytes);
  Result<Member> r = read_member(copy());
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const Member& m = r.value();
  EXPECT_EQ(m.snap_file, snaps[1]);
  EXPECT_LT(m.snap_index, original_.snap_index);
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_TRUE(contains(m.warnings[0], snaps[0] + ": CRC mismatch")) << m.warnings[0];
  // The entries from the older snapshot on: the original's, after the ones now replayed.
  ASSERT_GT(m.entries.size(), original_.entries.size());
  EXPECT_EQ(m.entries.front().index, m.snap_index + 1);
  EXPECT_TRUE(std::equal(original_.entries.rbegin(), original_.entries.rend(), m.entries.rbegin()));
  EXPECT_TRUE(fs::exists(snaps[0]));
  EXPECT_EQ(snap_files(copy()).size(), snaps.size());
}

TEST_F(EtcdCorruptionTest, corrupt_snap_without_older_one_is_error) {
  const std::vector<std::string> snaps = snap_files(copy());
  for (size_t i = 1; i < snaps.size(); ++i) fs::remove(snaps[i]);
  std::string bytes = read_bytes(snaps[0]);
  write_bytes(snaps[0], bytes.substr(0, bytes.size() - 10));
  Result<Member> m = read_member(copy());
  ASSERT_FALSE(m.is_ok());
  EXPECT_TRUE(contains(m.status().message(), snaps[0] + ": "));
  EXPECT_TRUE(contains(m.status().message(), "no older usable snap file")) << m.status().message();
}

// etcd names a WAL file after the index its entries follow: one named past the snapshot cannot
// hold it.
TEST_F(EtcdCorruptionTest, wal_not_reaching_back_to_snapshot_is_error) {
  char name[64];
  std::snprintf(name, sizeof name, "0000000000000000-%016llx.wal",
                static_cast<unsigned long long>(original_.snap_index + 1));
  fs::rename(wal_path_, copy() + "/member/wal/" + name);
  Result<Member> m = read_member(copy());
  ASSERT_FALSE(m.is_ok());
  EXPECT_TRUE(contains(m.status().message(),
                       "the WAL does not reach back to the snapshot at index " +
                           std::to_string(original_.snap_index)))
      << m.status().message();
}

// Records appended with the right rolling CRC: a second file is read on; a record type etcd does
// not write is an error naming the file and offset.
TEST_F(EtcdCorruptionTest, appended_records_second_file_and_unknown_type) {
  const uint64_t next = original_.entries.back().index + 1;
  const uint64_t term = original_.hard_state.term;
  WalWriter w(records_.back().crc);
  w.start_file(original_.member_id, original_.cluster_id)
      .state(term, original_.member_id, next - 1)
      .entry(term, next, 0, v2_request(99, "PUT", "/1/added", "yes").SerializeAsString())
      .state(term, original_.member_id, next);
  char name[64];
  std::snprintf(name, sizeof name, "0000000000000001-%016llx.wal",
                static_cast<unsigned long long>(next - 1));
  const std::string second = copy() + "/member/wal/" + name;
  write_bytes(second, w.bytes());
  Result<Member> r = read_member(copy());
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  ASSERT_EQ(r.value().entries.size(), original_.entries.size() + 1);
  EXPECT_EQ(r.value().entries.back().v2.path, "/1/added");
  EXPECT_EQ(r.value().hard_state.commit, next);

  const size_t at = w.bytes().size();
  w.record(6, "what");
  write_bytes(second, w.bytes());
  r = read_member(copy());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(),
            second + ": offset " + std::to_string(at) + ": unknown record type 6");
}

// A cut at a record boundary is a WAL that ends there: fewer entries, or an error when the
// snapshot's record is gone; a cut inside a record is a torn tail (a warning) or an error.
TEST_F(EtcdCorruptionTest, truncation_at_and_between_every_record_boundary) {
  std::vector<size_t> cuts = {0, 3};
  for (const WalRecord& r : records_) {
    cuts.push_back(r.offset + 4);
    cuts.push_back((r.offset + r.end) / 2);
    cuts.push_back(r.end - 1);
    cuts.push_back(r.end);
  }
  size_t ok = 0;
  for (size_t cut : cuts) {
    write_bytes(wal_path_, wal_.substr(0, cut));
    Result<Member> r = read_member(copy());
    const bool boundary = cut == 0 || std::any_of(records_.begin(), records_.end(),
                                                  [&](const WalRecord& x) { return x.end == cut; });
    if (!r.is_ok()) {
      EXPECT_TRUE(contains(r.status().message(), copy())) << cut << ": " << r.status().message();
      continue;
    }
    ++ok;
    const Member& m = r.value();
    EXPECT_TRUE(agrees_with_original(m)) << "cut at " << cut;
    if (!boundary) {
      EXPECT_FALSE(m.warnings.empty()) << "cut at " << cut;
    }
  }
  EXPECT_GT(ok, records_.size());  // most cuts leave a readable member
}

// One bit flipped at a random byte of the WAL or of the newest snap file, many times.
TEST_F(EtcdCorruptionTest, random_bit_flips_give_error_warning_or_same_result) {
  const char* fixed = std::getenv("KVD_FUZZ_SEED");
  const uint32_t seed = fixed ? static_cast<uint32_t>(std::strtoul(fixed, nullptr, 10))
                              : std::random_device{}();
  std::mt19937 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto check = [&](const std::string& path, const std::string& clean, size_t at, int bit) {
    std::string damaged = clean;
    damaged[at] = static_cast<char>(damaged[at] ^ (1 << bit));
    write_bytes(path, damaged);
    Result<Member> r = read_member(copy());
    if (!r.is_ok()) {
      EXPECT_TRUE(contains(r.status().message(), copy())) << r.status().message();
      return;
    }
    const Member& m = r.value();
    if (!m.warnings.empty()) return;
    EXPECT_EQ(m.entries, original_.entries) << path << " byte " << at << " bit " << bit;
    EXPECT_EQ(m.hard_state, original_.hard_state) << path << " byte " << at << " bit " << bit;
    EXPECT_EQ(m.store_json, original_.store_json) << path << " byte " << at << " bit " << bit;
  };
  for (int i = 0; i < kWalFlips; ++i) {
    check(wal_path_, wal_, rng() % wal_.size(), static_cast<int>(rng() % 8));
  }
  write_bytes(wal_path_, wal_);
  const std::string snap = snap_files(copy()).front();
  const std::string snap_bytes = read_bytes(snap);
  for (int i = 0; i < kSnapFlips; ++i) {
    check(snap, snap_bytes, rng() % snap_bytes.size(), static_cast<int>(rng() % 8));
  }
}

}  // namespace
}  // namespace kvd::etcd_data::testing
