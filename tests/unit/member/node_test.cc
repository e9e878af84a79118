// Node against a real RocksDB log in a temp dir and a real io_context on its own thread.
#include "server/member/node.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "api_v2/command.h"
#include "storage/raft_log.h"

namespace kvd::server {
namespace {

namespace fs = std::filesystem;
constexpr auto kWait = std::chrono::seconds(20);  // bound for every awaited event

struct Reply {
  StoreResult result;
  RaftStatus status;

  const v2::Event& event() const { return std::get<v2::Event>(result); }
  bool ok() const { return std::holds_alternative<v2::Event>(result); }
  const v2::Error& error() const { return std::get<v2::Error>(result); }
};

v2::WriteRequest set_request(const std::string& key, const std::string& value,
                             std::optional<uint64_t> ttl = std::nullopt) {
  v2::WriteRequest req;
  req.cmd.op = v2::Op::kSet;
  req.cmd.key = key;
  req.cmd.value = value;
  req.ttl_seconds = ttl;
  return req;
}

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "kvd-node-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    node_.reset();
    guard_.reset();
    io_thread_.join();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  NodeConfig config() const {
    NodeConfig c;
    c.name = "n1";
    c.data_dir = (dir_ / "n1.etcd").string();
    c.advertise_client_urls = {"http://127.0.0.1:22379"};
    c.initial_advertise_peer_urls = {"http://127.0.0.1:22380"};
    c.initial_cluster = {{"n1", "http://127.0.0.1:22380"}};
    return c;
  }

  void open(NodeConfig c) {
    auto r = Node::open(io_, std::move(c));
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    node_ = std::move(r.value());
    node_->start();
  }
  void open() { open(config()); }
  // Destroys the node (which drains the WAL) and opens the same data dir again.
  void restart(NodeConfig c) {
    node_.reset();
    open(std::move(c));
  }
  void restart() { restart(config()); }

  template <class T>
  static T await(std::future<T>& f) {
    if (f.wait_for(kWait) != std::future_status::ready) {
      ADD_FAILURE() << "timed out waiting for the node";
      std::abort();  // a callback that never comes would leave dangling references
    }
    return f.get();
  }

  Reply propose(v2::WriteRequest req) {
    auto p = std::make_shared<std::promise<Reply>>();
    auto f = p->get_future();
    node_->propose(std::move(req), [p](StoreResult r, RaftStatus s) {
      p->set_value(Reply{std::move(r), s});
    });
    return await(f);
  }
  Reply put(const std::string& key, const std::string& value,
            std::optional<uint64_t> ttl = std::nullopt) {
    return propose(set_request(key, value, ttl));
  }
  Reply get(const std::string& key, bool quorum = false) {
    v2::GetRequest req;
    req.key = key;
    req.quorum = quorum;
    auto p = std::make_shared<std::promise<Reply>>();
    auto f = p->get_future();
    node_->get(req, [p](StoreResult r, RaftStatus s) { p->set_value(Reply{std::move(r), s}); });
    return await(f);
  }
  Node::Info info() {
    auto p = std::make_shared<std::promise<Node::Info>>();
    auto f = p->get_future();
    node_->info([p](Node::Info i) { p->set_value(std::move(i)); });
    return await(f);
  }

  fs::path dir_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_{
      boost::asio::make_work_guard(io_)};
  std::thread io_thread_;
  std::unique_ptr<Node> node_;
};

TEST(NodeIdsTest, computeIds_matchEtcd) {
  uint64_t member = compute_member_id({"http://127.0.0.1:22380"}, "etcd-cluster");
  EXPECT_EQ(member, 0x9e737febb6b99eeeULL);
  EXPECT_EQ(compute_cluster_id({member}), 0xc8730d66636ff140ULL);
}

TEST(NodeIdsTest, computeMemberId_sortsPeerUrls) {
  EXPECT_EQ(compute_member_id({"http://b:1", "http://a:1"}, "t"),
            compute_member_id({"http://a:1", "http://b:1"}, "t"));
  EXPECT_NE(compute_member_id({"http://a:1"}, "t1"), compute_member_id({"http://a:1"}, "t2"));
}

TEST_F(NodeTest, open_freshMemberHasEtcdIdsAndPublishedAttributes) {
  open();
  EXPECT_EQ(node_->member_id(), 0x9e737febb6b99eeeULL);
  EXPECT_EQ(node_->cluster_id(), 0xc8730d66636ff140ULL);
  Node::Info i = info();
  EXPECT_EQ(i.leader_id, node_->member_id());
  EXPECT_TRUE(i.is_leader);
  ASSERT_EQ(i.members.size(), 1u);
  EXPECT_EQ(i.members[0].id, 0x9e737febb6b99eeeULL);
  EXPECT_EQ(i.members[0].name, "n1");
  EXPECT_EQ(i.members[0].peer_urls, std::vector<std::string>{"http://127.0.0.1:22380"});
  EXPECT_EQ(i.members[0].client_urls, std::vector<std::string>{"http://127.0.0.1:22379"});
  // etcd 3.4 on a fresh 1-node cluster: member add, cluster version, publish.
  EXPECT_EQ(i.status.etcd_index, 3u);
  EXPECT_EQ(i.status.raft_index, 4u);
  EXPECT_EQ(i.status.raft_term, 2u);
}

TEST_F(NodeTest, propose_indexesFollowEtcd) {
  open();
  Reply r = put("/foo", "bar");
  ASSERT_TRUE(r.ok()) << r.error().cause;
  EXPECT_EQ(r.event().action, v2::Action::kSet);
  EXPECT_EQ(r.event().node.modified_index, 4u);
  EXPECT_EQ(r.status.etcd_index, 4u);
  EXPECT_EQ(r.status.raft_index, 5u);
  EXPECT_EQ(r.status.raft_term, 2u);
  for (uint64_t want = 5; want <= 7; ++want) {
    Reply n = put("/k" + std::to_string(want), "v");
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(n.event().node.created_index, want);
    EXPECT_EQ(n.status.etcd_index, want);
    EXPECT_EQ(n.status.raft_index, want + 1);
  }
}

TEST_F(NodeTest, get_readsWhatWasWritten) {
  open();
  ASSERT_TRUE(put("/a/b", "hello").ok());
  Reply r = get("/a/b");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.event().action, v2::Action::kGet);
  EXPECT_EQ(r.event().node.value, "hello");
  EXPECT_EQ(r.status.etcd_index, 4u);
  EXPECT_EQ(r.status.raft_index, 5u);

  Reply missing = get("/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, v2::ErrorCode::kKeyNotFound);
}

TEST_F(NodeTest, get_quorumReadByReadIndexTakesNoLogEntry) {
  open();
  ASSERT_TRUE(put("/q", "1").ok());  // etcd index 4, raft index 5
  Reply r = get("/q", /*quorum=*/true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.event().node.value, "1");
  // ReadIndex (read_index.cc): the read sees every write before it and appends nothing (etcd's
  // QGET would have taken raft index 6).
  EXPECT_EQ(r.status.etcd_index, 4u);
  EXPECT_EQ(r.status.raft_index, 5u);
  Reply w = put("/q", "2");
  EXPECT_EQ(w.status.etcd_index, 5u);
  EXPECT_EQ(w.status.raft_index, 6u);
  Reply again = get("/q", /*quorum=*/true);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.event().node.value, "2");
}

TEST_F(NodeTest, propose_ttlExpiresThroughExpireCommand) {
  open();
  auto event = std::make_shared<std::promise<v2::Event>>();
  auto started = std::make_shared<std::promise<v2::WatchResult>>();
  auto event_f = event->get_future();
  auto started_f = started->get_future();
  ASSERT_TRUE(put("/t", "soon", 1).ok());
  v2::WatchRequest wr;
  wr.key = "/t";
  node_->watch(
      wr, [event](const auto& ev) { event->set_value(*ev); },
      [started](v2::WatchResult r, RaftStatus) { started->set_value(std::move(r)); });
  v2::WatchResult res = await(started_f);
  ASSERT_FALSE(res.error);
  ASSERT_FALSE(res.event);
  v2::Event ev = await(event_f);
  EXPECT_EQ(ev.action, v2::Action::kExpire);
  EXPECT_EQ(ev.node.key, "/t");
  EXPECT_EQ(ev.etcd_index, 5u);
  Reply gone = get("/t");
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, v2::ErrorCode::kKeyNotFound);
}

TEST_F(NodeTest, restart_recoversStateIndexesAndRepublishes) {
  open();
  ASSERT_TRUE(put("/foo", "bar").ok());
  ASSERT_TRUE(put("/dir/x", "1").ok());
  Reply last = put("/foo", "baz");  // etcd index 6, raft index 7
  ASSERT_TRUE(last.ok());

  restart();
  Reply r = get("/foo");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.event().node.value, "baz");
  EXPECT_EQ(r.event().node.modified_index, 6u);
  EXPECT_EQ(r.event().node.created_index, 6u);  // a set replaces the node, as in etcd
  // etcd after a restart: a new term, its no-op, and the member's attributes published again.
  EXPECT_EQ(r.status.etcd_index, 7u);
  EXPECT_EQ(r.status.raft_index, 9u);
  EXPECT_EQ(r.status.raft_term, 3u);
  Reply x = get("/dir/x");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x.event().node.modified_index, 5u);

  Reply next = put("/foo", "qux");
  EXPECT_EQ(next.status.etcd_index, 8u);
  EXPECT_EQ(next.status.raft_index, 10u);
  EXPECT_EQ(node_->member_id(), 0x9e737febb6b99eeeULL);
}

TEST_F(NodeTest, restart_publishesChangedClientUrls) {
  open();
  NodeConfig c = config();
  c.advertise_client_urls = {"http://127.0.0.1:32379"};
  c.initial_cluster = {{"n1", "http://10.9.9.9:1"}};  // ignored: the data dir holds a member
  restart(c);
  Node::Info i = info();
  EXPECT_EQ(i.member_id, 0x9e737febb6b99eeeULL);
  ASSERT_EQ(i.members.size(), 1u);
  EXPECT_EQ(i.members[0].client_urls, std::vector<std::string>{"http://127.0.0.1:32379"});
}

TEST_F(NodeTest, snapshot_compactsLogAndRestartRecoversSnapshotPlusTail) {
  NodeConfig c = config();
  c.snapshot_count = 5;
  open(c);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(put("/s/" + std::to_string(i), std::to_string(i)).ok());
  ASSERT_TRUE(put("/tail/a", "a").ok());
  ASSERT_TRUE(put("/tail/b", "b").ok());
  node_.reset();  // drains the WAL queue, snapshots included

  {
    auto log = storage::RaftLog::open((fs::path(c.data_dir) / "member" / "kvd").string());
    ASSERT_TRUE(log.is_ok()) << log.status().message();
    raft::Snapshot snap;
    ASSERT_EQ(log.value()->snapshot(&snap), raft::StorageError::kOk);
    EXPECT_GT(snap.metadata.index, 4u);
    EXPECT_EQ(snap.metadata.term, 2u);
    EXPECT_EQ(snap.metadata.conf_state.voters, std::vector<raft::NodeId>{0x9e737febb6b99eeeULL});
    EXPECT_EQ(log.value()->first_index(), snap.metadata.index + 1);
    EXPECT_GT(log.value()->last_index(), snap.metadata.index);  // a tail after the snapshot
  }

  open(c);
  for (int i = 0; i < 20; ++i) {
    Reply r = get("/s/" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << i;
    EXPECT_EQ(r.event().node.value, std::to_string(i));
    EXPECT_EQ(r.event().node.modified_index, 4u + i);
  }
  Reply b = get("/tail/b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.event().node.modified_index, 25u);
  EXPECT_EQ(b.status.etcd_index, 26u);  // + the attributes published at this start
}

// A lone write is written on the raft loop's thread (the WAL thread being idle), and is as
// durable as any: it is there after a restart.
TEST_F(NodeTest, propose_aLoneWriteIsWrittenOnTheLoopThreadAndSurvivesARestart) {
  open();
  const uint64_t before = info().wal_loop_writes;
  // A write is not claimed right after a synced write slower than WalWriter::kClaimMaxSync (a
  // loaded disk): a few lone writes in a row, at most 100, until one is.
  int writes = 0;
  while (writes < 100 && info().wal_loop_writes == before) {
    ASSERT_TRUE(put("/lone/" + std::to_string(writes), std::to_string(writes)).ok());
    ++writes;
  }
  EXPECT_GT(info().wal_loop_writes, before) << "none of " << writes << " lone writes";
  restart();
  for (int i = 0; i < writes; ++i) {
    Reply r = get("/lone/" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << i;
    EXPECT_EQ(r.event().node.value, std::to_string(i));
  }
}

TEST_F(NodeTest, propose_concurrentProposalsShareFsyncs) {
  open();
  const uint64_t appends_before = info().wal_append_calls;
  constexpr int kProposals = 1000;
  std::mutex mu;
  std::set<uint64_t> indexes;
  std::atomic<int> failures{0};
  auto done = std::make_shared<std::promise<void>>();
  auto done_f = done->get_future();
  std::atomic<int> remaining{kProposals};
  for (int i = 0; i < kProposals; ++i) {
    node_->propose(set_request("/g/" + std::to_string(i), "v"),
                   [&, done](StoreResult r, RaftStatus) {
                     if (auto* ev = std::get_if<v2::Event>(&r)) {
                       std::lock_guard lock(mu);
                       indexes.insert(ev->node.modified_index);
                     } else {
                       failures.fetch_add(1);
                     }
                     if (remaining.fetch_sub(1) == 1) done->set_value();
                   });
  }
  await(done_f);
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(indexes.size(), static_cast<size_t>(kProposals));
  EXPECT_EQ(*indexes.begin(), 4u);
  EXPECT_EQ(*indexes.rbegin(), 4u + kProposals - 1);
  const uint64_t appends = info().wal_append_calls - appends_before;
  EXPECT_GE(appends, 1u);
  // Each fsync takes far longer than queueing a proposal, so most proposals share one.
  EXPECT_LT(appends, static_cast<uint64_t>(kProposals) / 4) << appends << " appends";
  RecordProperty("wal_appends", static_cast<int>(appends));
}

TEST_F(NodeTest, get_plainReadsOnCallerThreadsWhileWritesApply) {
  open();
  ASSERT_TRUE(std::holds_alternative<v2::Event>(put("/counter", "0").result));
  // Writers bump /counter; readers on their own threads see it from the store directly: the
  // callback runs on the calling thread, before get() returns, and what it sees never goes
  // backwards (value and X-Etcd-Index agree with the last applied write).
  constexpr int kWrites = 300;
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int i = 1; i <= kWrites; ++i) put("/counter", std::to_string(i));
    writing = false;
  });
  std::atomic<int> bad{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      int last_value = -1;
      uint64_t last_index = 0;
      while (writing.load() || reads.load() < 100) {
        v2::GetRequest req;
        req.key = "/counter";
        bool called = false;
        const auto me = std::this_thread::get_id();
        node_->get(req, [&](StoreResult r, RaftStatus st) {
          called = std::this_thread::get_id() == me;
          auto* ev = std::get_if<v2::Event>(&r);
          if (!ev) {
            bad.fetch_add(1);
            return;
          }
          int v = std::stoi(ev->node.value);
          if (v < last_value || st.etcd_index < last_index ||
              ev->node.modified_index > st.etcd_index) {
            bad.fetch_add(1);
          }
          last_value = v;
          last_index = st.etcd_index;
        });
        if (!called) bad.fetch_add(1);
        reads.fetch_add(1);
      }
    });
  }
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GE(reads.load(), 100);
  Reply last = get("/counter");
  ASSERT_TRUE(std::holds_alternative<v2::Event>(last.result));
  EXPECT_EQ(std::get<v2::Event>(last.result).node.value, std::to_string(kWrites));
}

TEST_F(NodeTest, snapshot_imageMadeInStepsRecoversOnRestart) {
  NodeConfig c = config();
  c.snapshot_count = 5;
  c.stepped_snapshot_min_bytes = 0;  // every image made in steps
  open(c);
  int written = 0;
  // Writes go on while images are made in steps between them until two were saved (at most
  // 30 s: how many writes that takes depends on how fast the image thread gets a core).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (info().stepped_snapshots < 2 && std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 10; ++i, ++written) {
      ASSERT_TRUE(put("/c/" + std::to_string(written), std::to_string(written)).ok());
    }
  }
  ASSERT_GE(info().stepped_snapshots, 2u);
  node_.reset();
  for (const auto& f : fs::directory_iterator(fs::path(c.data_dir) / "member")) {
    if (f.path().filename() == "kvd.mark") continue;  // the raft log's commit mark
    EXPECT_EQ(f.path().extension(), "") << f.path() << " was left behind";
  }
  {
    auto log = storage::RaftLog::open((fs::path(c.data_dir) / "member" / "kvd").string());
    ASSERT_TRUE(log.is_ok()) << log.status().message();
    raft::Snapshot snap;
    ASSERT_EQ(log.value()->snapshot(&snap), raft::StorageError::kOk);
    EXPECT_GT(snap.metadata.index, 5u);
    EXPECT_FALSE(snap.data.empty());
  }
  open(c);
  for (int i = 0; i < written; ++i) {
    Reply r = get("/c/" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << i;
    EXPECT_EQ(r.event().node.value, std::to_string(i));
  }
}

TEST_F(NodeTest, open_removesAnAbandonedChildImage) {
  NodeConfig c = config();
  open(c);
  ASSERT_TRUE(put("/k", "v").ok());
  node_.reset();
  const fs::path stale = fs::path(c.data_dir) / "member" / "snapshot-123.tmp";
  { std::ofstream(stale) << "half an image"; }
  open(c);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_EQ(get("/k").event().node.value, "v");
}

TEST_F(NodeTest, stop_failsLaterProposalsWith300) {
  open();
  ASSERT_TRUE(put("/a", "1").ok());
  node_->stop();
  Reply r = put("/b", "2");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, v2::ErrorCode::kRaftInternal);
  EXPECT_EQ(r.error().cause, "etcdserver: server stopped");
  Reply q = get("/a", /*quorum=*/true);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().code, v2::ErrorCode::kRaftInternal);
  Reply plain = get("/a");  // local reads still work
  EXPECT_TRUE(plain.ok());
}

TEST_F(NodeTest, open_refusesEtcdDataDir) {
  NodeConfig c = config();
  fs::create_directories(fs::path(c.data_dir) / "member" / "wal");
  auto r = Node::open(io_, c);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("etcd member"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("member/wal"), std::string::npos) << r.status().message();
}

TEST_F(NodeTest, open_corruptSnapshotNamesTheDatabase) {
  NodeConfig c = config();
  open(c);
  ASSERT_TRUE(put("/a", "1").ok());
  node_.reset();
  const std::string db = (fs::path(c.data_dir) / "member" / "kvd").string();
  {
    auto log = storage::RaftLog::open(db);
    ASSERT_TRUE(log.is_ok()) << log.status().message();
    raft::Snapshot snap;
    snap.metadata.index = log.value()->last_index();
    snap.metadata.term = 2;
    snap.data = "definitely not a store image";
    ASSERT_TRUE(log.value()->save_snapshot(snap).is_ok());
  }
  auto r = Node::open(io_, c);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find(db), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("snapshot"), std::string::npos) << r.status().message();
}

TEST_F(NodeTest, open_undecodableEntryNamesTheDatabase) {
  NodeConfig c = config();
  open(c);
  node_.reset();
  const std::string db = (fs::path(c.data_dir) / "member" / "kvd").string();
  {
    auto log = storage::RaftLog::open(db);
    ASSERT_TRUE(log.is_ok()) << log.status().message();
    uint64_t next = log.value()->last_index() + 1;
    raft::Entry bad{2, next, raft::EntryType::kNormal, std::string("\x01garbage", 8)};
    ASSERT_TRUE(log.value()->append({bad}, raft::HardState{2, 0, next}).is_ok());
  }
  auto r = Node::open(io_, c);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find(db), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("undecodable"), std::string::npos) << r.status().message();
}

TEST_F(NodeTest, open_unknownLocalNameIsRefused) {
  NodeConfig c = config();
  c.name = "other";
  auto r = Node::open(io_, c);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("couldn't find local name \"other\""), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace kvd::server
