// read_member on a data dir written by a real etcd 3.4 (the scenario of etcd_run.h): the snapshot
// and its store image, the ids etcd reported, the entries after the snapshot as the writes were
// sent, the hard state; the whole WAL when there is no snap file; the source left as it was.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include "etcd_data/etcd_member.h"
#include "tests/unit/etcd_data/etcd_run.h"

namespace kvd::etcd_data::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// A member id as etcd writes it in store paths (Go's types.ID.String: hex, no leading zeros).
std::string id_hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

// The node at `path` ("/1/fill/3") of a v2 store image, or nullptr.
const json* store_node(const json& store, const std::string& path) {
  if (!store.contains("Root")) return nullptr;
  const json* n = &store["Root"];
  size_t pos = 1;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    const size_t end = slash == std::string::npos ? path.size() : slash;
    std::string name = path.substr(pos, end - pos);
    if (!n->contains("Children") || !(*n)["Children"].is_object() ||
        !(*n)["Children"].contains(name)) {
      return nullptr;
    }
    n = &(*n)["Children"][name];
    pos = slash == std::string::npos ? path.size() : slash + 1;
  }
  return n;
}

// The position in m.entries of the v2 request for `w`, searching from `from`; -1 if none.
int find_write(const Member& m, const Write& w, size_t from = 0) {
  for (size_t i = from; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    if (e.kind == Entry::Kind::kV2 && e.v2.method == w.method && e.v2.path == "/1" + w.key &&
        e.v2.val == w.value) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

class EtcdMemberTest : public EtcdRunTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(EtcdRunTest::SetUp());
    Result<Member> m = read_member(run_->data_dir);
    ASSERT_TRUE(m.is_ok()) << m.status().message();
    m_ = std::move(m.value());
  }
  Member m_;
};

TEST_F(EtcdMemberTest, read_member_snapshot_ids_and_store_image) {
  EXPECT_EQ(m_.member_dir, run_->data_dir + "/member");
  EXPECT_TRUE(m_.warnings.empty()) << m_.warnings.front();
  EXPECT_TRUE(m_.has_v3_backend);
  EXPECT_EQ(m_.member_id, run_->member_id);
  EXPECT_EQ(m_.cluster_id, run_->cluster_id);

  // The newest snap file, named %016x-%016x.snap after its term and index.
  const std::vector<std::string> snaps = snap_files(run_->data_dir);
  ASSERT_GE(snaps.size(), 2u);
  EXPECT_EQ(m_.snap_file, snaps.front());
  EXPECT_EQ(fs::path(m_.snap_file).filename().string(),
            hex16(m_.snap_term) + "-" + hex16(m_.snap_index) + ".snap");
  EXPECT_GT(m_.snap_index, uint64_t{kSnapshotCount});
  EXPECT_EQ(m_.snap_voters, std::vector<uint64_t>{run_->member_id});
  EXPECT_TRUE(m_.snap_learners.empty());

  // The store image: each filler is in it (with the index etcd answered) or in the entries.
  const json store = json::parse(m_.store_json, nullptr, false);
  ASSERT_TRUE(store.is_object()) << m_.store_json.substr(0, 200);
  uint64_t last_in_store = 0;
  size_t in_store = 0;
  for (const Write& w : run_->fillers) {
    const json* node = store_node(store, "/1" + w.key);
    if (find_write(m_, w) >= 0) {
      EXPECT_EQ(node, nullptr) << w.key << " is both in the image and after it";
      continue;
    }
    ASSERT_NE(node, nullptr) << w.key << " is neither in the image nor after it";
    EXPECT_EQ(node->value("Path", ""), "/1" + w.key);
    EXPECT_EQ(node->value("Value", ""), w.value);
    EXPECT_EQ(node->value("ModifiedIndex", uint64_t{0}), w.etcd_index);
    last_in_store = std::max(last_in_store, w.etcd_index);
    ++in_store;
  }
  EXPECT_GE(in_store, size_t{kSnapshotCount});
  EXPECT_EQ(store.value("CurrentIndex", uint64_t{0}), last_in_store);
  // etcd's own records are under /0: the member, by its id in hex, and the cluster version.
  const std::string member = "/0/members/" + id_hex(run_->member_id);
  ASSERT_NE(store_node(store, member + "/raftAttributes"), nullptr) << m_.store_json;
  EXPECT_NE(store_node(store, member + "/attributes"), nullptr);
  EXPECT_NE(store_node(store, "/0/version"), nullptr);
  // No scenario key is in the image: they all came after it.
  for (const Write& w : run_->scenario) {
    EXPECT_EQ(store_node(store, "/1" + w.key), nullptr) << w.key;
  }
}

TEST_F(EtcdMemberTest, read_member_entries_after_snapshot_as_sent) {
  ASSERT_FALSE(m_.entries.empty());
  for (size_t i = 0; i < m_.entries.size(); ++i) {
    ASSERT_EQ(m_.entries[i].index, m_.snap_index + 1 + i);
    EXPECT_GE(m_.entries[i].term, m_.snap_term);
  }
  // Every scenario write, in the order sent, with its fields as sent.
  std::vector<const Entry*> sent;
  size_t from = 0;
  for (const Write& w : run_->scenario) {
    const int at = find_write(m_, w, from);
    ASSERT_GE(at, 0) << w.method << " " << w.key << "?" << w.query << " not found in the entries";
    const Entry& e = m_.entries[static_cast<size_t>(at)];
    EXPECT_LE(e.index, w.raft_index) << w.key;  // X-Raft-Index: the commit index when answered
    sent.push_back(&e);
    from = static_cast<size_t>(at) + 1;
  }
  const auto& s = run_->scenario;
  for (const Entry* e : sent) EXPECT_NE(e->v2.id, 0u);
  // PUT /a, PUT /b: plain sets.
  EXPECT_EQ(sent[0]->v2.prev_value, "");
  EXPECT_FALSE(sent[0]->v2.prev_exist.has_value());
  EXPECT_EQ(sent[0]->v2.expiration, 0);
  // PUT /ttl?ttl=600: the expiry as Unix ns, computed by etcd when it received the request.
  const int64_t ttl_ns = int64_t{600} * 1000 * 1000 * 1000;
  const int64_t slack_ns = int64_t{1000} * 1000 * 1000;
  EXPECT_GE(sent[kTtlWrite]->v2.expiration, run_->ttl_sent_before_ns + ttl_ns - slack_ns);
  EXPECT_LE(sent[kTtlWrite]->v2.expiration, run_->ttl_sent_after_ns + ttl_ns + slack_ns);
  // POST /queue: in-order creation proposes the directory's path; the store names the key.
  EXPECT_EQ(sent[3]->v2.method, "POST");
  EXPECT_EQ(sent[3]->v2.path, "/1/queue");
  // PUT /dir?dir=true.
  EXPECT_TRUE(sent[4]->v2.dir);
  EXPECT_FALSE(sent[0]->v2.dir);
  // PUT /a?prevValue=1: compare-and-swap.
  EXPECT_EQ(sent[5]->v2.prev_value, "1");
  EXPECT_EQ(sent[5]->v2.val, "3");
  // DELETE /b.
  EXPECT_EQ(sent[6]->v2.method, "DELETE");
  // PUT /c?prevExist=false, then DELETE /c?prevIndex=<its index>: compare-and-delete.
  EXPECT_EQ(sent[7]->v2.prev_exist, std::optional<bool>(false));
  EXPECT_EQ(sent[8]->v2.prev_index, s[7].etcd_index);
  // PUT /ttl?ttl=900&refresh=true&prevExist=true.
  EXPECT_EQ(sent[9]->v2.refresh, std::optional<bool>(true));
  EXPECT_EQ(sent[9]->v2.prev_exist, std::optional<bool>(true));
  EXPECT_GT(sent[9]->v2.expiration, sent[kTtlWrite]->v2.expiration);

  // Everything else after the snapshot is a filler, or etcd's own: a quorum read of the health
  // check, or a SYNC (the leader's clock for TTL expiry) while the TTL key exists.
  std::set<const Entry*> ours(sent.begin(), sent.end());
  for (const Write& w : run_->fillers) {
    if (int at = find_write(m_, w); at >= 0) ours.insert(&m_.entries[static_cast<size_t>(at)]);
  }
  for (const Entry& e : m_.entries) {
    if (ours.count(&e)) continue;
    EXPECT_EQ(e.kind, Entry::Kind::kV2) << "entry " << e.index;
    EXPECT_TRUE(e.v2.method == "SYNC" || e.v2.method == "QGET")
        << "entry " << e.index << ": " << e.v2.method << " " << e.v2.path;
  }

  // The hard state: commit covers every write (each was answered after it committed).
  EXPECT_GE(m_.hard_state.commit, sent.back()->index);
  EXPECT_LE(m_.hard_state.commit, m_.entries.back().index);
  EXPECT_GE(m_.hard_state.term, m_.entries.back().term);
  EXPECT_EQ(m_.hard_state.vote, run_->member_id);
}

// Without a snap file etcd replays its WAL from the start: the member's own addition first.
TEST_F(EtcdMemberTest, read_member_without_snap_files_reads_whole_wal) {
  TempDir tmp("kvd-etcd-nosnap");
  const std::string copy = tmp.path() + "/data";
  copy_compact(run_->data_dir, copy);
  for (const std::string& f : snap_files(copy)) fs::remove(f);
  Result<Member> r = read_member(copy);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const Member& m = r.value();
  EXPECT_EQ(m.snap_file, "");
  EXPECT_EQ(m.snap_index, 0u);
  EXPECT_EQ(m.store_json, "");
  EXPECT_FALSE(m.has_v3_backend);  // copy_compact leaves snap/db out
  ASSERT_GT(m.entries.size(), m_.entries.size());
  EXPECT_EQ(m.entries[0].index, 1u);
  EXPECT_EQ(m.entries[0].kind, Entry::Kind::kConfChange);
  EXPECT_EQ(m.entries[0].conf_change.type, 0);  // add
  EXPECT_EQ(m.entries[0].conf_change.node_id, run_->member_id);
  const json ctx = json::parse(m.entries[0].conf_change.context, nullptr, false);
  ASSERT_TRUE(ctx.is_object()) << m.entries[0].conf_change.context;
  EXPECT_EQ(ctx.value("id", uint64_t{0}), run_->member_id);
  EXPECT_EQ(ctx.value("name", ""), "t");
  // The member's attributes and the cluster version are v2 writes under /0.
  bool attributes = false;
  bool version = false;
  for (const Entry& e : m.entries) {
    attributes |= e.kind == Entry::Kind::kV2 &&
                  e.v2.path == "/0/members/" + id_hex(run_->member_id) + "/attributes";
    version |= e.kind == Entry::Kind::kV2 && e.v2.path == "/0/version";
  }
  EXPECT_TRUE(attributes);
  EXPECT_TRUE(version);
  // The tail is what reading from the snapshot gives.
  const std::vector<Entry> tail(m.entries.end() - static_cast<std::ptrdiff_t>(m_.entries.size()),
                                m.entries.end());
  EXPECT_EQ(tail, m_.entries);
  EXPECT_EQ(m.hard_state, m_.hard_state);
}

// The source is read, never written: no file renamed, truncated or touched.
TEST_F(EtcdMemberTest, read_member_leaves_data_dir_unchanged) {
  auto listing = [&] {
    std::map<std::string, std::tuple<uintmax_t, fs::file_time_type>> files;
    for (const auto& e : fs::recursive_directory_iterator(run_->data_dir)) {
      if (e.is_regular_file()) files[e.path().string()] = {e.file_size(), e.last_write_time()};
    }
    return files;
  };
  const auto before = listing();
  Result<Member> again = read_member(run_->data_dir);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again.value().entries, m_.entries);
  EXPECT_EQ(listing(), before);
}

}  // namespace
}  // namespace kvd::etcd_data::testing
