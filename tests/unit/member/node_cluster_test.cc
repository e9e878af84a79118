// Three Nodes in one process, each on its own real RocksDB data dir, wired by an in-memory
// PeerLink that can cut members off. Exercises the member (server/member/): election,
// forwarding, quorum reads, leader loss, request timeouts, snapshot catch-up and membership.
#include "server/member/node.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/members.h"
#include "server/peer_wiring.h"

namespace kvd::server {
namespace {

namespace fs = std::filesystem;
constexpr auto kWait = std::chrono::seconds(30);  // bound for every awaited event
constexpr int kMembers = 3;

struct Reply {
  StoreResult result;
  RaftStatus status;
  bool ok() const { return std::holds_alternative<v2::Event>(result); }
  const v2::Event& event() const { return std::get<v2::Event>(result); }
  const v2::Error& error() const { return std::get<v2::Error>(result); }
};

// Routes messages between the Nodes registered with it; a member in `down` neither sends nor
// receives. Node pointers are only used under mu, and a Node is unregistered before it dies.
class Network {
 public:
  void attach(uint64_t id, Node* node) {
    std::lock_guard lock(mu_);
    nodes_[id] = node;
  }
  void detach(uint64_t id) {
    std::lock_guard lock(mu_);
    nodes_.erase(id);
  }
  void set_down(uint64_t id, bool down) {
    std::lock_guard lock(mu_);
    if (down) {
      down_.insert(id);
    } else {
      down_.erase(id);
    }
  }
  uint64_t snapshots_delivered() {
    std::lock_guard lock(mu_);
    return snapshots_;
  }

  // The highest commit index member `from` has sent any other member in an append.
  uint64_t commit_sent(uint64_t from) {
    std::lock_guard lock(mu_);
    return commit_sent_[from];
  }

  PeerLink link(uint64_t self) {
    PeerLink l;
    l.send = [this, self](std::vector<raft::Message> msgs) {
      std::lock_guard lock(mu_);
      for (auto& m : msgs) {
        if (!down_.count(self) && m.type == raft::MessageType::kApp) {
          commit_sent_[self] = std::max(commit_sent_[self], m.commit);
        }
        if (Node* to = reachable(self, m.to)) to->step(std::move(m));
      }
    };
    l.send_snapshot = [this, self](raft::Message m, std::shared_ptr<const std::string> data,
                                   std::function<void(bool)> done) {
      bool ok = false;
      {
        std::lock_guard lock(mu_);
        if (Node* to = reachable(self, m.to)) {
          to->step_snapshot(std::move(m), *data);
          ++snapshots_;
          ok = true;
        }
      }
      done(ok);
    };
    l.add_peer = [](uint64_t, std::vector<std::string>) {};
    l.update_peer = [](uint64_t, std::vector<std::string>) {};
    l.remove_peer = [](uint64_t) {};
    l.connected = [this, self](uint64_t id) {
      std::lock_guard lock(mu_);
      return reachable(self, id) != nullptr;
    };
    l.stats = [] { return std::map<uint64_t, PeerStats>{}; };
    return l;
  }

 private:
  // REQUIRES: mu_ held.
  Node* reachable(uint64_t from, uint64_t to) {
    if (down_.count(from) || down_.count(to)) return nullptr;
    auto it = nodes_.find(to);
    return it == nodes_.end() ? nullptr : it->second;
  }

  std::mutex mu_;
  std::map<uint64_t, Node*> nodes_;
  std::set<uint64_t> down_;
  uint64_t snapshots_ = 0;
  std::map<uint64_t, uint64_t> commit_sent_;
};

class NodeClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "kvd-cluster-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    io_thread_ = std::thread([this] { io_.run(); });
    nodes_.resize(kMembers);
  }

  void TearDown() override {
    for (size_t i = 0; i < nodes_.size(); ++i) close(static_cast<int>(i));
    guard_.reset();
    io_thread_.join();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  NodeConfig config(int i) const {
    NodeConfig c;
    c.name = "n" + std::to_string(i + 1);
    c.data_dir = (dir_ / (c.name + ".etcd")).string();
    c.advertise_client_urls = {"http://127.0.0.1:" + std::to_string(23000 + 10 * i + 1)};
    c.initial_advertise_peer_urls = {peer_url(i)};
    for (int j = 0; j < kMembers; ++j) c.initial_cluster.emplace_back("n" + std::to_string(j + 1), peer_url(j));
    c.initial_cluster_token = "cluster-test";
    c.heartbeat_interval = std::chrono::milliseconds(10);
    c.election_timeout = std::chrono::milliseconds(100);
    c.snapshot_count = snapshot_count_;
    c.health_interval = health_interval_;
    c.fetch_cluster = [](const std::string& url, std::chrono::milliseconds timeout,
                         std::string* why) { return fetch_remote_cluster(url, timeout, nullptr, why); };
    return c;
  }
  static std::string peer_url(int i) {
    return "http://127.0.0.1:" + std::to_string(23000 + 10 * i + 2);
  }

  void open(int i) {
    auto r = Node::open(io_, config(i));
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    nodes_[i] = std::move(r.value());
    Node* n = nodes_[i].get();
    PeerLink l = net_.link(n->member_id());
    if (report_active_since_) {
      // Every reachable peer has been connected since the test started.
      l.active_since = [connected = l.connected, since = test_start_](uint64_t id) {
        return connected(id) ? std::optional(since) : std::nullopt;
      };
    }
    n->attach_peers(std::move(l));
    net_.attach(n->member_id(), n);
    n->start();
  }
  void open_all() {
    for (int i = 0; i < kMembers; ++i) open(i);
  }
  void close(int i) {
    if (!nodes_[i]) return;
    net_.detach(nodes_[i]->member_id());
    nodes_[i].reset();
  }

  template <class T>
  static T await(std::future<T>& f) {
    if (f.wait_for(kWait) != std::future_status::ready) {
      ADD_FAILURE() << "timed out waiting for a node";
      std::abort();  // a callback that never comes would leave dangling references
    }
    return f.get();
  }

  Reply put(int i, const std::string& key, const std::string& value) {
    v2::WriteRequest req;
    req.cmd.op = v2::Op::kSet;
    req.cmd.key = key;
    req.cmd.value = value;
    auto p = std::make_shared<std::promise<Reply>>();
    auto f = p->get_future();
    nodes_[i]->propose(std::move(req),
                       [p](StoreResult r, RaftStatus s) { p->set_value(Reply{std::move(r), s}); });
    return await(f);
  }
  Reply get(int i, const std::string& key, bool quorum) {
    v2::GetRequest req;
    req.key = key;
    req.quorum = quorum;
    auto p = std::make_shared<std::promise<Reply>>();
    auto f = p->get_future();
    nodes_[i]->get(req, [p](StoreResult r, RaftStatus s) { p->set_value(Reply{std::move(r), s}); });
    return await(f);
  }
  Node::Info info(int i) {
    auto p = std::make_shared<std::promise<Node::Info>>();
    auto f = p->get_future();
    nodes_[i]->info([p](Node::Info in) { p->set_value(std::move(in)); });
    return await(f);
  }
  MemberChange change(std::function<void(Node::MemberCallback)> start) {
    auto p = std::make_shared<std::promise<MemberChange>>();
    auto f = p->get_future();
    start([p](MemberChange mc) { p->set_value(std::move(mc)); });
    return await(f);
  }

  // Polls the members' info until pred holds for all open members, within kWait: the events are
  // elections and publications inside other members, which have no hook to await.
  bool wait_until(const std::function<bool()>& pred) {
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  }
  // The index of the member every open member agrees is leader, once all know one.
  int await_leader() {
    int leader = -1;
    bool agreed = wait_until([&] {
      uint64_t id = 0;
      for (int i = 0; i < kMembers; ++i) {
        if (!nodes_[i]) continue;
        Node::Info in = info(i);
        if (in.leader_id == 0 || (id != 0 && in.leader_id != id)) return false;
        id = in.leader_id;
      }
      for (int i = 0; i < kMembers; ++i) {
        if (nodes_[i] && nodes_[i]->member_id() == id) leader = i;
      }
      return leader >= 0;
    });
    EXPECT_TRUE(agreed) << "no agreed leader";
    return leader;
  }

  // Every member on member i's list has published its name.
  bool all_named(int i) {
    for (const auto& m : info(i).members) {
      if (m.name.empty()) return false;
    }
    return true;
  }

  uint64_t snapshot_count_ = 100000;
  std::chrono::milliseconds health_interval_{0};
  bool report_active_since_ = false;
  const std::chrono::steady_clock::time_point test_start_ = std::chrono::steady_clock::now();
  fs::path dir_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_{
      boost::asio::make_work_guard(io_)};
  std::thread io_thread_;
  Network net_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(NodeClusterTest, open_foundersShareClusterIdAndMembers) {
  open_all();
  const uint64_t cid = nodes_[0]->cluster_id();
  std::vector<uint64_t> ids;
  for (int i = 0; i < kMembers; ++i) {
    EXPECT_EQ(nodes_[i]->cluster_id(), cid);
    EXPECT_EQ(nodes_[i]->member_id(), compute_member_id({peer_url(i)}, "cluster-test"));
    ids.push_back(nodes_[i]->member_id());
  }
  EXPECT_EQ(cid, compute_cluster_id(ids));
  await_leader();
  // Every member publishes its name: all three named on every member.
  ASSERT_TRUE(wait_until([&] {
    for (int i = 0; i < kMembers; ++i) {
      Node::Info in = info(i);
      if (in.members.size() != 3) return false;
      for (const auto& m : in.members) {
        if (m.name.empty()) return false;
      }
    }
    return true;
  }));
  Node::Info in = info(1);
  EXPECT_EQ(in.members[0].peer_urls.size(), 1u);
  EXPECT_NE(render_members_json(nodes_[1]->members()).find("\"name\":\"n"), std::string::npos);
}

TEST_F(NodeClusterTest, propose_writeOnEveryMemberIsReadByQuorumReadOnEvery) {
  open_all();
  await_leader();
  for (int i = 0; i < kMembers; ++i) {
    Reply r = put(i, "/k" + std::to_string(i), "v" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.error().cause;
  }
  for (int i = 0; i < kMembers; ++i) {
    for (int k = 0; k < kMembers; ++k) {
      Reply r = get(i, "/k" + std::to_string(k), /*quorum=*/true);
      ASSERT_TRUE(r.ok()) << "member " << i << " key " << k << ": " << r.error().cause;
      EXPECT_EQ(r.event().node.value, "v" + std::to_string(k));
    }
  }
  // The same etcd index everywhere once applied.
  Reply a = get(0, "/k2", true);
  Reply b = get(2, "/k2", true);
  EXPECT_EQ(a.event().node.modified_index, b.event().node.modified_index);
  EXPECT_GT(a.status.raft_term, 1u);
}

// The leader answers a write before its appends tell the followers the write is committed:
// those messages promise nothing, and sent first they delayed the answer (two sends, then the
// cores the woken followers took). The followers still learn it and apply the write. (A
// heartbeat due at that moment carries the commit index too, at once: heartbeats confirm
// quorum reads and are not held back.)
TEST_F(NodeClusterTest, propose_leaderAnswersBeforeItSendsTheNewCommitIndex) {
  open_all();
  const int leader = await_leader();
  const uint64_t leader_id = nodes_[leader]->member_id();
  // The members' own proposals (names, the cluster version) are applied everywhere first: one
  // committed in the same Ready as a write would carry the write's commit index early.
  ASSERT_TRUE(wait_until([&] {
    for (int i = 0; i < kMembers; ++i) {
      if (!all_named(i)) return false;
    }
    return !info(leader).cluster_version.empty();
  })) << "the members never published their names and the cluster version";
  for (int n = 0; n < 20; ++n) {
    v2::WriteRequest req;
    req.cmd.op = v2::Op::kSet;
    req.cmd.key = "/order";
    req.cmd.value = std::to_string(n);
    struct Seen {
      Reply reply;
      uint64_t commit_sent_at_answer = 0;
    };
    auto p = std::make_shared<std::promise<Seen>>();
    auto f = p->get_future();
    nodes_[leader]->propose(std::move(req), [this, p, leader_id](StoreResult r, RaftStatus s) {
      // Runs on the leader's raft loop, where the messages are sent too.
      p->set_value(Seen{Reply{std::move(r), s}, net_.commit_sent(leader_id)});
    });
    Seen seen = await(f);
    ASSERT_TRUE(seen.reply.ok()) << seen.reply.error().cause;
    // The write's own index is at most the commit index it was answered with, and no append
    // had carried a commit index covering it.
    EXPECT_LT(seen.commit_sent_at_answer, seen.reply.status.raft_index) << "write " << n;
  }
  const uint64_t last = info(leader).applied;
  EXPECT_TRUE(wait_until([&] {
    for (int i = 0; i < kMembers; ++i) {
      if (info(i).applied < last) return false;
    }
    return true;
  })) << "the followers never applied the last write";
  for (int i = 0; i < kMembers; ++i) {
    Reply r = get(i, "/order", /*quorum=*/false);
    ASSERT_TRUE(r.ok()) << "member " << i << ": " << r.error().cause;
    EXPECT_EQ(r.event().node.value, "19") << "member " << i;
  }
}

TEST_F(NodeClusterTest, leaderLoss_newLeaderAndWritesContinue) {
  open_all();
  int leader = await_leader();
  ASSERT_TRUE(put(leader, "/before", "1").ok());
  const uint64_t old_id = nodes_[leader]->member_id();
  close(leader);
  int next = await_leader();
  ASSERT_GE(next, 0);
  EXPECT_NE(nodes_[next]->member_id(), old_id);
  int other = (next + 1) % kMembers == leader ? (next + 2) % kMembers : (next + 1) % kMembers;
  Reply r = put(other, "/after", "2");
  ASSERT_TRUE(r.ok()) << r.error().cause;
  Reply q = get(next, "/before", true);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q.event().node.value, "1");
  // The old leader comes back as a follower and catches up.
  open(leader);
  await_leader();
  ASSERT_TRUE(wait_until([&] {
    Reply g = get(leader, "/after", false);
    return g.ok() && g.event().node.value == "2";
  }));
}

TEST_F(NodeClusterTest, quorumLoss_writeTimesOutWithEtcdError) {
  open_all();
  int leader = await_leader();
  int survivor = (leader + 1) % kMembers;
  for (int i = 0; i < kMembers; ++i) {
    if (i != survivor) close(i);
  }
  auto start = std::chrono::steady_clock::now();
  Reply r = put(survivor, "/lost", "x");
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, v2::ErrorCode::kRaftInternal);
  EXPECT_EQ(r.error().cause, "etcdserver: request timed out");
  // Request timeout: 5 s + 2 x election timeout (100 ms here).
  EXPECT_GE(took, std::chrono::milliseconds(5100));
  EXPECT_LT(took, std::chrono::milliseconds(9000));
  Reply local = get(survivor, "/lost", false);  // plain reads still answer
  EXPECT_FALSE(local.ok());
  EXPECT_EQ(local.error().code, v2::ErrorCode::kKeyNotFound);
  // One member back: writes succeed again without restarting the survivor.
  open((survivor + 1) % kMembers);
  ASSERT_TRUE(wait_until([&] { return info(survivor).leader_id != 0; }));
  Reply again = put(survivor, "/back", "y");
  EXPECT_TRUE(again.ok()) << again.error().cause;
}

TEST_F(NodeClusterTest, snapshot_laggingMemberCatchesUpBySnapshot) {
  snapshot_count_ = 10;
  open_all();
  int leader = await_leader();
  int lagging = (leader + 1) % kMembers;
  net_.set_down(nodes_[lagging]->member_id(), true);
  for (int i = 0; i < 40; ++i) {
    Reply r = put(leader, "/s/" + std::to_string(i), std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.error().cause;
  }
  net_.set_down(nodes_[lagging]->member_id(), false);
  ASSERT_TRUE(wait_until([&] {
    Reply g = get(lagging, "/s/39", false);
    return g.ok() && g.event().node.value == "39";
  }));
  EXPECT_GE(net_.snapshots_delivered(), 1u);
  Reply first = get(lagging, "/s/0", false);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.event().node.modified_index, get(leader, "/s/0", false).event().node.modified_index);
  // It keeps following after the snapshot: a write through it commits.
  Reply w = put(lagging, "/after-snap", "z");
  EXPECT_TRUE(w.ok()) << w.error().cause;
  // And it restarts from its installed snapshot.
  close(lagging);
  open(lagging);
  Reply g = get(lagging, "/s/20", false);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g.event().node.value, "20");
}

TEST_F(NodeClusterTest, members_addUpdateRemove) {
  open_all();
  int leader = await_leader();
  ASSERT_TRUE(wait_until([&] { return all_named(leader); }));
  Node* n = nodes_[leader].get();
  MemberChange dup =
      change([&](Node::MemberCallback cb) { n->add_member({peer_url(1)}, std::move(cb)); });
  EXPECT_EQ(dup.outcome, MemberChange::Outcome::kPeerUrlInUse);
  EXPECT_EQ(dup.message, "membership: peerURL exists");

  MemberChange added = change(
      [&](Node::MemberCallback cb) { n->add_member({"http://127.0.0.1:23999"}, std::move(cb)); });
  ASSERT_EQ(added.outcome, MemberChange::Outcome::kDone) << added.message;
  EXPECT_NE(added.member.id, 0u);
  EXPECT_EQ(added.member.peer_urls, std::vector<std::string>{"http://127.0.0.1:23999"});
  const uint64_t new_id = added.member.id;
  ASSERT_TRUE(wait_until([&] { return info((leader + 1) % kMembers).members.size() == 4; }));

  MemberChange updated = change([&](Node::MemberCallback cb) {
    n->update_member(new_id, {"http://127.0.0.1:23998"}, std::move(cb));
  });
  EXPECT_EQ(updated.outcome, MemberChange::Outcome::kDone) << updated.message;

  MemberChange unknown =
      change([&](Node::MemberCallback cb) { n->remove_member(0x1234, std::move(cb)); });
  EXPECT_EQ(unknown.outcome, MemberChange::Outcome::kUnknownMember);
  EXPECT_EQ(unknown.message, "No such member: 1234");

  MemberChange removed =
      change([&](Node::MemberCallback cb) { n->remove_member(new_id, std::move(cb)); });
  EXPECT_EQ(removed.outcome, MemberChange::Outcome::kDone) << removed.message;
  MemberChange again =
      change([&](Node::MemberCallback cb) { n->remove_member(new_id, std::move(cb)); });
  EXPECT_EQ(again.outcome, MemberChange::Outcome::kRemovedMember);
  Node::Info in = info(leader);
  EXPECT_EQ(in.members.size(), 3u);
  ASSERT_TRUE(put(leader, "/still", "serving").ok());
}

// Serves one GET /members as a member's peer port does (the body a joining member reads).
class MembersServer {
 public:
  explicit MembersServer(std::function<std::string()> body, uint64_t cluster_id)
      : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this, body = std::move(body), cluster_id] {
      namespace http = boost::beast::http;
      boost::system::error_code ec;
      boost::asio::ip::tcp::socket sock(io_);
      acceptor_.accept(sock, ec);
      if (ec) return;
      boost::beast::flat_buffer buf;
      http::request<http::string_body> req;
      http::read(sock, buf, req, ec);
      if (ec) return;
      http::response<http::string_body> res{http::status::ok, 11};
      res.set("X-Etcd-Cluster-Id", hex(cluster_id));
      res.set(http::field::content_type, "application/json");
      res.body() = req.target() == "/members" ? body() : "";
      res.prepare_payload();
      http::write(sock, res, ec);
    });
  }
  ~MembersServer() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    thread_.join();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

 private:
  static std::string hex(uint64_t v) {
    char b[20];
    std::snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(v));
    return b;
  }
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

TEST_F(NodeClusterTest, join_addedMemberStartsWithExistingStateAndCatchesUp) {
  snapshot_count_ = 5;
  open_all();
  int leader = await_leader();
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(put(leader, "/j/" + std::to_string(i), "v").ok());
  ASSERT_TRUE(wait_until([&] { return all_named(leader); }));
  MemberChange added = change([&](Node::MemberCallback cb) {
    nodes_[leader]->add_member({peer_url(3)}, std::move(cb));
  });
  ASSERT_EQ(added.outcome, MemberChange::Outcome::kDone) << added.message;

  Node* existing = nodes_[leader].get();
  MembersServer server([existing] { return render_members_json(existing->members()); },
                       existing->cluster_id());
  NodeConfig c = config(3);
  c.name = "n4";
  c.initial_cluster_state = "existing";
  c.initial_cluster = {{"n1", server.url()}, {"n4", peer_url(3)}};
  nodes_.resize(4);
  auto r = Node::open(io_, c);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  nodes_[3] = std::move(r.value());
  EXPECT_EQ(nodes_[3]->member_id(), added.member.id);
  EXPECT_EQ(nodes_[3]->cluster_id(), existing->cluster_id());
  nodes_[3]->attach_peers(net_.link(nodes_[3]->member_id()));
  net_.attach(nodes_[3]->member_id(), nodes_[3].get());
  nodes_[3]->start();

  ASSERT_TRUE(wait_until([&] {
    Reply g = get(3, "/j/11", false);
    return g.ok();
  }));
  // It is a voter that serves writes, and its name reaches the others.
  Reply w = put(3, "/from-n4", "hello");
  ASSERT_TRUE(w.ok()) << w.error().cause;
  ASSERT_TRUE(wait_until([&] {
    for (const auto& m : info(leader).members) {
      if (m.id == added.member.id) return m.name == "n4";
    }
    return false;
  }));
}

TEST_F(NodeClusterTest, transferLeadershipForStop_anotherMemberLeadsBeforeDone) {
  open_all();
  int leader = await_leader();
  ASSERT_TRUE(put(leader, "/k", "v").ok());
  const uint64_t old_id = nodes_[leader]->member_id();
  auto p = std::make_shared<std::promise<void>>();
  auto f = p->get_future();
  nodes_[leader]->transfer_leadership_for_stop(std::chrono::seconds(5), [p] { p->set_value(); });
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
  EXPECT_NE(info(leader).leader_id, old_id);
  int next = await_leader();
  ASSERT_GE(next, 0);
  EXPECT_NE(nodes_[next]->member_id(), old_id);
  // A follower has nothing to hand over: done at once.
  auto q = std::make_shared<std::promise<void>>();
  auto g = q->get_future();
  nodes_[(next + 1) % kMembers]->transfer_leadership_for_stop(std::chrono::seconds(5),
                                                              [q] { q->set_value(); });
  EXPECT_EQ(g.wait_for(std::chrono::seconds(1)), std::future_status::ready);
}

TEST_F(NodeClusterTest, probeQuorum_trueWithAQuorumFalseWithin1sWithout) {
  open_all();
  int leader = await_leader();
  auto probe = [&](int i) {
    auto p = std::make_shared<std::promise<bool>>();
    auto f = p->get_future();
    nodes_[i]->probe_quorum(std::chrono::seconds(1), [p](bool ok) { p->set_value(ok); });
    return await(f);
  };
  EXPECT_TRUE(probe(leader));
  EXPECT_TRUE(probe((leader + 1) % kMembers));
  for (int i = 0; i < kMembers; ++i) {
    if (i != leader) close(i);
  }
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(probe(leader));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(900));
  EXPECT_LT(took, std::chrono::milliseconds(3000));
}

TEST_F(NodeClusterTest, strictReconfig_addRefusedUntilPeersConnectedForHealthIntervalFirst) {
  health_interval_ = std::chrono::minutes(10);
  report_active_since_ = true;
  open_all();
  int leader = await_leader();
  ASSERT_TRUE(wait_until([&] { return all_named(leader); }));
  Node* n = nodes_[leader].get();
  // etcd's mayAddMember: peers connected for less than HealthInterval make the cluster unhealthy.
  MemberChange added = change(
      [&](Node::MemberCallback cb) { n->add_member({"http://127.0.0.1:23999"}, std::move(cb)); });
  EXPECT_EQ(added.outcome, MemberChange::Outcome::kFailed);
  EXPECT_EQ(added.message, "unhealthy cluster");
  // ... and it is checked before the peer URL, as etcd does.
  MemberChange dup =
      change([&](Node::MemberCallback cb) { n->add_member({peer_url(1)}, std::move(cb)); });
  EXPECT_EQ(dup.outcome, MemberChange::Outcome::kFailed);
  // Removing a member that is not connected (here: unknown) passes the check and is then 404.
  MemberChange unknown =
      change([&](Node::MemberCallback cb) { n->remove_member(0x1234, std::move(cb)); });
  EXPECT_EQ(unknown.outcome, MemberChange::Outcome::kUnknownMember);
  EXPECT_EQ(info(leader).members.size(), 3u);
}

}  // namespace
}  // namespace kvd::server
