// read_member on members built from scratch in etcd's format (wal_writer.h): how entry data is
// told apart (a bare v2 Request, an InternalRaftRequest, a ConfChange), how the WAL's records are
// put together (rewritten entries, gaps, the CRC chain across files, torn writes), which snap file
// is used, and the data dir layouts that are refused.
#include <gtest/gtest.h>

#include <filesystem>

#include "etcd_data/etcd_member.h"
#include "tests/unit/etcd_data/etcd_process.h"
#include "tests/unit/etcd_data/etcd_run.h"
#include "tests/unit/etcd_data/wal_writer.h"

namespace kvd::etcd_data::testing {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMember = 0x1111;
constexpr uint64_t kCluster = 0x2222;
constexpr char kFirstWal[] = "0000000000000000-0000000000000000.wal";

class EtcdSyntheticTest : public ::testing::Test {
 protected:
  EtcdSyntheticTest() : tmp_("kvd-etcd-synth") {
    fs::create_directories(dir() + "/member/wal");
    fs::create_directories(dir() + "/member/snap");
  }
  std::string dir() const { return tmp_.path(); }
  void wal(const std::string& name, const std::string& bytes) {
    write_bytes(dir() + "/member/wal/" + name, bytes);
  }
  void snap(uint64_t term, uint64_t index, const std::string& bytes) {
    char name[64];
    std::snprintf(name, sizeof name, "%016llx-%016llx.snap", static_cast<unsigned long long>(term),
                  static_cast<unsigned long long>(index));
    write_bytes(dir() + "/member/snap/" + name, bytes);
  }
  // The first WAL file as etcd's Create writes it: crc, metadata, the empty snapshot record.
  static WalWriter first_file() {
    WalWriter w;
    w.start_file(kMember, kCluster).snapshot(0, 0);
    return w;
  }
  Member read_ok() {
    Result<Member> r = read_member(dir());
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    return r.is_ok() ? std::move(r.value()) : Member{};
  }
  std::string read_error() {
    Result<Member> r = read_member(dir());
    EXPECT_FALSE(r.is_ok());
    return r.is_ok() ? "" : r.status().message();
  }

 private:
  TempDir tmp_;
};

TEST(EtcdCrc32cTest, crc32c_update_matches_castagnoli_check_value) {
  EXPECT_EQ(crc32c_update(0, "123456789"), 0xe3069283u);
  EXPECT_EQ(crc32c_update(crc32c_update(0, "1234"), "56789"), 0xe3069283u);
}

// etcd 3.4 proposes v2 writes as bare Requests. "POST" as a message reads, field by field, as a
// bool and a group for libprotobuf (gogo refuses it): the bare Request must not pass for an
// InternalRaftRequest whose v2 is that.
TEST_F(EtcdSyntheticTest, entry_bare_v2_request_read_as_v2) {
  pb::Request put = v2_request(7, "PUT", "/1/a", "x");
  put.set_prev_exist(false);
  put.set_expiration(1234567890123456789);
  const pb::Request post = v2_request(8, "POST", "/1/q", "job");
  pb::Request del = v2_request(9, "DELETE", "/1/a", "");
  del.set_prev_index(5);
  del.set_refresh(true);
  wal(kFirstWal, first_file()
                     .entry(1, 1, 0, put.SerializeAsString())
                     .entry(1, 2, 0, post.SerializeAsString())
                     .entry(1, 3, 0, del.SerializeAsString())
                     .state(1, kMember, 3)
                     .bytes());
  const Member m = read_ok();
  ASSERT_EQ(m.entries.size(), 3u);
  for (const Entry& e : m.entries) EXPECT_EQ(e.kind, Entry::Kind::kV2);
  EXPECT_EQ(m.entries[0].v2.id, 7u);
  EXPECT_EQ(m.entries[0].v2.method, "PUT");
  EXPECT_EQ(m.entries[0].v2.path, "/1/a");
  EXPECT_EQ(m.entries[0].v2.val, "x");
  EXPECT_EQ(m.entries[0].v2.prev_exist, std::optional<bool>(false));
  EXPECT_EQ(m.entries[0].v2.expiration, 1234567890123456789);
  EXPECT_FALSE(m.entries[0].v2.refresh.has_value());
  EXPECT_EQ(m.entries[1].v2.method, "POST");
  EXPECT_EQ(m.entries[1].v2.path, "/1/q");
  EXPECT_EQ(m.entries[2].v2.prev_index, 5u);
  EXPECT_EQ(m.entries[2].v2.refresh, std::optional<bool>(true));
  EXPECT_FALSE(m.entries[2].v2.prev_exist.has_value());
  EXPECT_EQ(m.member_id, kMember);
  EXPECT_EQ(m.cluster_id, kCluster);
  EXPECT_EQ(m.hard_state, (HardState{1, kMember, 3}));
  EXPECT_TRUE(m.warnings.empty());
}

TEST_F(EtcdSyntheticTest, entry_internal_raft_request_v2_or_v3) {
  pb::InternalRaftRequest with_v2;
  with_v2.set_id(11);
  *with_v2.mutable_v2() = v2_request(11, "PUT", "/1/k", "v");
  pb::InternalRaftRequest put;
  put.mutable_header()->set_id(12);
  put.set_put(std::string("\x0a\x03" "foo\x12\x03" "bar", 10));  // PutRequest{key, value}
  pb::InternalRaftRequest alarm;
  alarm.set_id(13);
  alarm.set_alarm("");
  wal(kFirstWal, first_file()
                     .entry(1, 1, 0, with_v2.SerializeAsString())
                     .entry(1, 2, 0, put.SerializeAsString())
                     .entry(1, 3, 0, alarm.SerializeAsString())
                     .entry(1, 4, 0, "")
                     .state(1, kMember, 4)
                     .bytes());
  const Member m = read_ok();
  ASSERT_EQ(m.entries.size(), 4u);
  EXPECT_EQ(m.entries[0].kind, Entry::Kind::kV2);
  EXPECT_EQ(m.entries[0].v2.path, "/1/k");
  EXPECT_EQ(m.entries[0].v2.val, "v");
  EXPECT_EQ(m.entries[1].kind, Entry::Kind::kV3);
  EXPECT_EQ(m.entries[2].kind, Entry::Kind::kV3);
  EXPECT_EQ(m.entries[3].kind, Entry::Kind::kEmpty);
}

TEST_F(EtcdSyntheticTest, entry_conf_changes) {
  pb::ConfChange cc;
  cc.set_id(5);
  cc.set_type(3);
  cc.set_node_id(0x3333);
  cc.set_context(R"({"id":13107,"peerURLs":["http://127.0.0.1:2380"],"isLearner":true})");
  wal(kFirstWal, first_file()
                     .entry(1, 1, 1, cc.SerializeAsString())
                     .entry(1, 2, 2, "\x08\x00")
                     .state(1, kMember, 2)
                     .bytes());
  const Member m = read_ok();
  ASSERT_EQ(m.entries.size(), 2u);
  EXPECT_EQ(m.entries[0].kind, Entry::Kind::kConfChange);
  EXPECT_EQ(m.entries[0].conf_change, (ConfChange{5, 3, 0x3333, cc.context()}));
  EXPECT_EQ(m.entries[1].kind, Entry::Kind::kConfChangeV2);
}

TEST_F(EtcdSyntheticTest, entry_of_unknown_type_or_undecodable_data_is_error) {
  wal(kFirstWal, first_file().entry(1, 1, 7, "").state(1, kMember, 1).bytes());
  EXPECT_NE(read_error().find("entry 1: unknown entry type 7"), std::string::npos);
  wal(kFirstWal, first_file().entry(1, 1, 0, "\xff\xff\xff").state(1, kMember, 1).bytes());
  EXPECT_NE(read_error().find("neither an InternalRaftRequest nor a v2 Request"),
            std::string::npos);
  wal(kFirstWal, first_file().entry(1, 1, 1, "\x08\x01\x13").state(1, kMember, 1).bytes());
  EXPECT_NE(read_error().find("raftpb.ConfChange"), std::string::npos);
}

// A leader change rewrites the log's tail: the entry written later at an index replaces the
// earlier one and every entry after it.
TEST_F(EtcdSyntheticTest, wal_later_entry_replaces_earlier_ones_from_its_index) {
  const std::string a = v2_request(1, "PUT", "/1/a", "1").SerializeAsString();
  const std::string b = v2_request(2, "PUT", "/1/b", "2").SerializeAsString();
  wal(kFirstWal, first_file()
                     .entry(1, 1, 0, a)
                     .entry(1, 2, 0, a)
                     .entry(1, 3, 0, a)
                     .state(2, 0, 1)
                     .entry(2, 2, 0, b)
                     .state(2, 0, 2)
                     .bytes());
  const Member m = read_ok();
  ASSERT_EQ(m.entries.size(), 2u);
  EXPECT_EQ(m.entries[0].term, 1u);
  EXPECT_EQ(m.entries[1].term, 2u);
  EXPECT_EQ(m.entries[1].v2.path, "/1/b");
  EXPECT_EQ(m.hard_state.commit, 2u);
}

TEST_F(EtcdSyntheticTest, wal_gap_or_falling_term_is_error) {
  wal(kFirstWal, first_file().entry(1, 1, 0, "").entry(1, 3, 0, "").state(1, 0, 3).bytes());
  EXPECT_NE(read_error().find("entry 3 leaves a gap after entry 1"), std::string::npos);
  wal(kFirstWal, first_file().entry(2, 1, 0, "").entry(1, 2, 0, "").state(2, 0, 2).bytes());
  EXPECT_NE(read_error().find("entry 2 has term 1, below the term 2"), std::string::npos);
}

// The rolling CRC continues into the next file, whose crc record must hold it.
TEST_F(EtcdSyntheticTest, wal_second_file_continues_crc_chain) {
  WalWriter w0 = first_file();
  w0.entry(1, 1, 0, "").entry(1, 2, 0, "").state(1, kMember, 2);
  WalWriter w1(w0.crc());
  w1.start_file(kMember, kCluster).state(1, kMember, 2).entry(1, 3, 0, "").state(1, kMember, 3);
  wal(kFirstWal, w0.bytes());
  wal("0000000000000001-0000000000000002.wal", w1.bytes());
  const Member m = read_ok();
  ASSERT_EQ(m.entries.size(), 3u);
  EXPECT_EQ(m.entries[2].index, 3u);
  EXPECT_EQ(m.hard_state.commit, 3u);

  WalWriter bad(w0.crc() ^ 1);
  bad.start_file(kMember, kCluster).entry(1, 3, 0, "");
  wal("0000000000000001-0000000000000002.wal", bad.bytes());
  const std::string e = read_error();
  EXPECT_NE(e.find("0000000000000001-0000000000000002.wal: offset 0: CRC mismatch: the file does "
                   "not continue the one before it"),
            std::string::npos)
      << e;
}

// A frame cut short is a torn tail only in the last file.
TEST_F(EtcdSyntheticTest, wal_cut_short_is_torn_tail_in_last_file_only) {
  WalWriter w0 = first_file();
  w0.entry(1, 1, 0, "").state(1, kMember, 1);
  const size_t whole = w0.bytes().size();
  w0.entry(1, 2, 0, v2_request(1, "PUT", "/1/a", "1").SerializeAsString());
  wal(kFirstWal, w0.bytes().substr(0, whole + 20));
  Member m = read_ok();
  EXPECT_EQ(m.entries.size(), 1u);
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_NE(m.warnings[0].find(std::string(kFirstWal) + ": offset " + std::to_string(whole) +
                               ": the file ends inside a record"),
            std::string::npos)
      << m.warnings[0];

  WalWriter w1(w0.crc());
  w1.start_file(kMember, kCluster);
  wal("0000000000000001-0000000000000002.wal", w1.bytes());
  EXPECT_NE(read_error().find("and it is not the last WAL file"), std::string::npos);
}

// A torn write can also leave a frame whole in length but with a sector never written (zeros,
// as the file was preallocated): etcd's isTornEntry. Other damage there is an error.
TEST_F(EtcdSyntheticTest, wal_zero_sector_in_last_frame_is_torn_tail) {
  WalWriter w = first_file();
  w.entry(1, 1, 0, "").state(1, kMember, 1);
  const size_t big_at = w.bytes().size();
  w.entry(1, 2, 0, v2_request(1, "PUT", "/1/a", std::string(3000, 'v')).SerializeAsString());
  std::string bytes = w.bytes();
  const size_t sector = (big_at + 8 + 511) / 512 * 512 + 512;  // a whole sector inside the frame
  std::string zeroed = bytes;
  std::fill(zeroed.begin() + static_cast<std::ptrdiff_t>(sector),
            zeroed.begin() + static_cast<std::ptrdiff_t>(sector + 512), '\0');
  wal(kFirstWal, zeroed);
  Member m = read_ok();
  EXPECT_EQ(m.entries.size(), 1u);
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_NE(
      m.warnings[0].find("offset " + std::to_string(big_at) + ": a record that fails its CRC"),
      std::string::npos)
      << m.warnings[0];

  std::string flipped = bytes;
  flipped[sector + 100] ^= 0x01;
  wal(kFirstWal, flipped);
  EXPECT_NE(read_error().find("offset " + std::to_string(big_at) + ": CRC mismatch"),
            std::string::npos);
}

TEST_F(EtcdSyntheticTest, wal_unknown_record_type_or_other_member_is_error) {
  WalWriter w = first_file();
  w.entry(1, 1, 0, "").record(9, "x");
  wal(kFirstWal, w.bytes());
  EXPECT_NE(read_error().find("unknown record type 9"), std::string::npos);
  WalWriter other = first_file();
  other.metadata(kMember + 1, kCluster);
  wal(kFirstWal, other.bytes());
  EXPECT_NE(read_error().find("differs from the first one"), std::string::npos);
}

TEST_F(EtcdSyntheticTest, wal_files_must_be_consecutive_and_reach_back_to_snapshot) {
  WalWriter w0 = first_file();
  w0.entry(1, 1, 0, "").state(1, kMember, 1);
  WalWriter w2(w0.crc());
  w2.start_file(kMember, kCluster);
  wal(kFirstWal, w0.bytes());
  wal("0000000000000002-0000000000000001.wal", w2.bytes());
  EXPECT_NE(read_error().find("WAL files are not consecutive: 0000000000000002-0000000000000001.wal"
                              " follows 0000000000000000-0000000000000000.wal"),
            std::string::npos);
  fs::remove(dir() + "/member/wal/" + kFirstWal);
  EXPECT_NE(read_error().find("the WAL does not reach back to the snapshot at index 0"),
            std::string::npos);
}

// A snap file is used only with a committed snapshot record in the WAL for it; etcd saves the file
// first, so a crash can leave one without.
TEST_F(EtcdSyntheticTest, snap_file_without_committed_wal_record_passed_over) {
  const std::string json = R"({"Root":{},"CurrentIndex":1})";
  WalWriter w = first_file();
  w.entry(1, 1, 0, "").entry(1, 2, 0, "").state(1, kMember, 2).snapshot(2, 1);
  wal(kFirstWal, w.bytes());
  snap(1, 2, snap_file_bytes(2, 1, {kMember}, json));
  snap(1, 3, snap_file_bytes(3, 1, {kMember}, json));  // no record for it
  Member m = read_ok();
  EXPECT_EQ(m.snap_index, 2u);
  EXPECT_EQ(m.snap_voters, std::vector<uint64_t>{kMember});
  EXPECT_EQ(m.store_json, json);
  EXPECT_TRUE(m.entries.empty());
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_NE(m.warnings[0].find("0000000000000001-0000000000000003.snap: the snapshot at index 3"),
            std::string::npos);

  // A record above the last commit index does not count either.
  WalWriter uncommitted = first_file();
  uncommitted.entry(1, 1, 0, "").entry(1, 2, 0, "").state(1, kMember, 1).snapshot(2, 1);
  wal(kFirstWal, uncommitted.bytes());
  m = read_ok();
  EXPECT_EQ(m.snap_index, 0u);
  EXPECT_EQ(m.entries.size(), 2u);
}

TEST(EtcdLayoutTest, data_dirs_that_are_not_etcd_3_members_are_refused) {
  TempDir tmp("kvd-etcd-layout");
  auto error_for = [&](const std::string& d) {
    Result<Member> r = read_member(d);
    EXPECT_FALSE(r.is_ok()) << d;
    return r.is_ok() ? std::string() : r.status().message();
  };
  const std::string base = tmp.path();
  EXPECT_EQ(error_for(base + "/missing"), base + "/missing: no such directory");
  fs::create_directories(base + "/empty");
  EXPECT_EQ(error_for(base + "/empty"), base + "/empty: not an etcd data dir (it is empty)");
  fs::create_directories(base + "/v2/wal");
  fs::create_directories(base + "/v2/snap");
  EXPECT_NE(error_for(base + "/v2").find("etcd 2.x layout"), std::string::npos);
  fs::create_directories(base + "/v04/snapshot");
  write_bytes(base + "/v04/log", "x");
  write_bytes(base + "/v04/conf", "x");
  EXPECT_NE(error_for(base + "/v04").find("etcd 0.4 layout"), std::string::npos);
  fs::create_directories(base + "/kvd/member/kvd");
  EXPECT_NE(error_for(base + "/kvd").find("a kvd data dir"), std::string::npos);
  fs::create_directories(base + "/m/member/wal");
  EXPECT_NE(error_for(base + "/m/member/").find("a member directory; give the data dir"),
            std::string::npos);
  fs::create_directories(base + "/proxy/proxy");
  EXPECT_NE(error_for(base + "/proxy").find("an etcd proxy's data dir"), std::string::npos);
  EXPECT_EQ(error_for(base + "/m"),
            base + "/m/member/wal: not an etcd data dir: no WAL file in it");
  write_bytes(base + "/other", "x");
  EXPECT_EQ(error_for(base + "/other"), base + "/other: not a directory");
}

}  // namespace
}  // namespace kvd::etcd_data::testing
