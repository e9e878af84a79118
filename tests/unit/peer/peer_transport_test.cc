// PeerTransport between real members on 127.0.0.1: messages, snapshots, HTTP on the peer port,
// removed members.
#include "tests/unit/peer/peer_transport_test_util.h"

namespace kvd::server {
namespace {

TEST_F(PeerTransportTest, send_everyMessageTypeRoundTripsExactly) {
  Member a(io_, 1), b(io_, 2);
  ASSERT_TRUE(link_delivering(a, b));
  auto to_b = every_wire_message(1, 2);
  auto to_a = every_wire_message(2, 1);
  a.transport->send(to_b);
  b.transport->send(to_a);
  ASSERT_TRUE(b.inbox.wait([&] { return b.inbox.messages.size() >= to_b.size(); }));
  ASSERT_TRUE(a.inbox.wait([&] { return a.inbox.messages.size() >= to_a.size(); }));
  std::lock_guard lk(b.inbox.mu);
  ASSERT_EQ(b.inbox.messages.size(), to_b.size());
  for (size_t i = 0; i < to_b.size(); ++i) expect_same(to_b[i], b.inbox.messages[i]);
  std::lock_guard lk2(a.inbox.mu);
  ASSERT_EQ(a.inbox.messages.size(), to_a.size());
  for (size_t i = 0; i < to_a.size(); ++i) expect_same(to_a[i], a.inbox.messages[i]);
  EXPECT_TRUE(a.transport->connected(2));
  EXPECT_TRUE(b.transport->connected(1));
}

TEST_F(PeerTransportTest, send_hundredThousandMessagesArriveInOrderInFewerWrites) {
  Member a(io_, 1), b(io_, 2);
  link(a, b);
  // a may dial b before b knows a (link adds the peers one after the other): b refuses, and
  // while a backs off its sends are dropped. Wait for a working connection first.
  ASSERT_TRUE(probe_until_delivered(a, b));
  const size_t base = b.inbox.message_count();
  // Probes sent while a backed off were dropped and counted as failures: count from here.
  const uint64_t fail_before = a.transport->stats().at(2).fail;
  constexpr uint64_t kCount = 100000;
  for (uint64_t i = 1; i <= kCount; ++i) {
    Message m = msg(MessageType::kApp, 1, 2, i);
    m.entries.push_back({1, i, raft::EntryType::kNormal, "v" + std::to_string(i)});
    a.transport->send({std::move(m)});
  }
  ASSERT_TRUE(b.inbox.wait([&] { return b.inbox.messages.size() >= base + kCount; }, 60s));
  {
    std::lock_guard lk(b.inbox.mu);
    ASSERT_EQ(b.inbox.messages.size(), base + kCount);
    for (uint64_t i = 0; i < kCount; ++i) {
      ASSERT_EQ(b.inbox.messages[base + i].index, i + 1) << "at position " << i;
      ASSERT_EQ(b.inbox.messages[base + i].entries.at(0).data, "v" + std::to_string(i + 1));
    }
  }
  PeerStats s = a.transport->stats().at(2);
  // How much coalescing happens depends on scheduling; fewer writes than messages does not.
  EXPECT_GE(s.writes, 1u);
  EXPECT_LT(s.writes, kCount) << "messages were not batched";
  EXPECT_EQ(s.fail, fail_before);
}

TEST_F(PeerTransportTest, send_everythingQueuedGoesInOneWrite) {
  Member a(io_, 1), b(io_, 2);
  link(a, b);
  ASSERT_TRUE(probe_until_delivered(a, b));
  size_t before = b.inbox.message_count();
  uint64_t writes_before = a.transport->stats().at(2).writes;
  // Whether or not the probe's write is still in flight, these 1000 messages (well under
  // max_frame_bytes) leave in exactly one write: at once, or when that write completes.
  std::vector<Message> burst;
  for (uint64_t i = 1; i <= 1000; ++i) burst.push_back(msg(MessageType::kApp, 1, 2, i));
  a.transport->send(burst);
  ASSERT_TRUE(b.inbox.wait([&] { return b.inbox.messages.size() >= before + 1000; }));
  EXPECT_EQ(a.transport->stats().at(2).writes - writes_before, 1u);
  std::lock_guard lk(b.inbox.mu);
  for (uint64_t i = 0; i < 1000; ++i) ASSERT_EQ(b.inbox.messages[before + i].index, i + 1);
}

TEST_F(PeerTransportTest, send_threeMembersEachGetTheirOwnStreamInOrder) {
  Member a(io_, 1), b(io_, 2), c(io_, 3);
  ASSERT_TRUE(link_delivering(a, b));
  ASSERT_TRUE(link_delivering(a, c));
  ASSERT_TRUE(link_delivering(b, c));
  constexpr uint64_t kCount = 5000;
  for (uint64_t i = 1; i <= kCount; ++i) {
    a.transport->send({msg(MessageType::kApp, 1, 2, i), msg(MessageType::kApp, 1, 3, i)});
    b.transport->send({msg(MessageType::kAppResp, 2, 3, i)});
  }
  ASSERT_TRUE(b.inbox.wait([&] { return b.inbox.messages.size() >= kCount; }));
  ASSERT_TRUE(c.inbox.wait([&] { return c.inbox.messages.size() >= 2 * kCount; }));
  std::lock_guard lk(b.inbox.mu);
  ASSERT_EQ(b.inbox.messages.size(), kCount);
  for (uint64_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(b.inbox.messages[i].from, 1u);
    ASSERT_EQ(b.inbox.messages[i].index, i + 1);
  }
  std::lock_guard lk2(c.inbox.mu);
  ASSERT_EQ(c.inbox.messages.size(), 2 * kCount);
  uint64_t next_from_a = 1, next_from_b = 1;
  for (const auto& m : c.inbox.messages) {
    ASSERT_EQ(m.index, m.from == 1 ? next_from_a++ : next_from_b++);
  }
  EXPECT_EQ(next_from_a, kCount + 1);
  EXPECT_EQ(next_from_b, kCount + 1);
}

// Links a and b (member 2), stops b until a reports it unreachable, and starts a new member 2
// on b's port. Returns it, or null (after a failed ASSERT) when a step failed. The new b does not
// know a yet: once told (add_peer), it dials a at once.
std::unique_ptr<Member> restart_after_outage(asio::io_context& io, Member& a,
                                             const PeerTransportConfig& config) {
  auto b = std::make_unique<Member>(io, 2, config);
  const uint16_t b_port = b->port;
  link(a, *b);
  if (!probe_until_delivered(a, *b)) {
    ADD_FAILURE() << "a never reached b";
    return nullptr;
  }
  b.reset();
  // The broken connection is reported; sends during the outage are dropped and reported too.
  if (!a.inbox.wait([&] {
        return std::count(a.inbox.unreachable.begin(), a.inbox.unreachable.end(), 2u) > 0;
      })) {
    ADD_FAILURE() << "b's outage was not reported";
    return nullptr;
  }
  b = std::make_unique<Member>(io, 2, config, b_port);
  if (b->port != b_port) {
    ADD_FAILURE() << "b came back on another port";
    return nullptr;
  }
  return b;
}

TEST_F(PeerTransportTest, send_reconnectsAfterThePeerTransportIsRecreatedOnItsPort) {
  PeerTransportConfig fast;
  fast.max_reconnect_backoff = 100ms;
  Member a(io_, 1, fast);
  auto b = restart_after_outage(io_, a, fast);
  ASSERT_TRUE(b);
  b->transport->add_peer(1, {url(a.port)});
  ASSERT_TRUE(probe_until_delivered(a, *b));
  ASSERT_TRUE(probe_until_delivered(*b, a));
  EXPECT_TRUE(a.transport->connected(2));
  EXPECT_GT(a.transport->stats().at(2).fail + a.transport->stats().at(2).success, 0u);
}

TEST_F(PeerTransportTest, dial_aPeerThatDialsInEndsTheBackoffTowardsIt) {
  // Every wait before a redial is a minute: without the dial-in ending it, a could not reach the
  // restarted b within the probes' 20 s.
  PeerTransportConfig slow;
  slow.initial_reconnect_backoff = 60s;
  slow.max_reconnect_backoff = 60s;
  Member a(io_, 1, slow);
  auto b = restart_after_outage(io_, a, slow);
  ASSERT_TRUE(b);
  // a waits out its minute. (Checked before b knows a: b dials a as soon as it does, and a may
  // then be connected already.)
  EXPECT_FALSE(a.transport->connected(2));
  b->transport->add_peer(1, {url(a.port)});
  ASSERT_TRUE(probe_until_delivered(*b, a));  // b dials in
  ASSERT_TRUE(probe_until_delivered(a, *b));  // and a reaches b again without the minute
  EXPECT_TRUE(a.transport->connected(2));
}

TEST_F(PeerTransportTest, send_unreachablePeerIsReportedAndCounted) {
  // A port that was bound and released: nothing listens there.
  uint16_t dead_port;
  {
    asio::io_context tmp;
    tcp::acceptor acc(tmp, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = acc.local_endpoint().port();
  }
  Member a(io_, 1);
  a.transport->add_peer(2, {url(dead_port)});
  a.transport->send({msg(MessageType::kApp, 1, 2, 1)});
  ASSERT_TRUE(a.inbox.wait([&] { return !a.inbox.unreachable.empty(); }));
  EXPECT_EQ(a.inbox.unreachable.front(), 2u);
  EXPECT_GE(a.transport->stats().at(2).fail, 1u);
  EXPECT_FALSE(a.transport->connected(2));
  EXPECT_TRUE(logs_.contains("cannot connect"));
}

TEST_F(PeerTransportTest, send_queueBeyondMaxQueuedBytesDropsOldest) {
  // The "peer" accepts TCP but never answers the handshake: the transport stays dialing and
  // queues; the queue bound must drop the oldest messages.
  asio::io_context tmp;
  tcp::acceptor silent(tmp, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  PeerTransportConfig config;
  config.max_queued_bytes = 10000;
  config.dial_timeout = 30s;
  Member a(io_, 1, config);
  a.transport->add_peer(2, {url(silent.local_endpoint().port())});
  Message m = msg(MessageType::kApp, 1, 2, 1);
  m.entries.push_back({1, 1, raft::EntryType::kNormal, std::string(1000, 'x')});
  size_t encoded = wire::encode_message(m).size();
  for (int i = 0; i < 100; ++i) a.transport->send({m});
  uint64_t kept = 10000 / encoded;
  EXPECT_EQ(a.transport->stats().at(2).fail, 100 - kept);
  EXPECT_TRUE(logs_.contains("max_queued_bytes"));
}

TEST_F(PeerTransportTest, heartbeat_roundTripGivesLatency) {
  Member a(io_, 1), b(io_, 2);
  link(a, b);
  b.hook = [&b](const Message& m) {
    if (m.type == MessageType::kHeartbeat) {
      b.transport->send({msg(MessageType::kHeartbeatResp, 2, 1, m.index)});
    }
  };
  ASSERT_TRUE(probe_until_delivered(a, b));
  ASSERT_TRUE(a.inbox.wait([&] {
    return std::any_of(a.inbox.messages.begin(), a.inbox.messages.end(),
                       [](const Message& m) { return m.type == MessageType::kHeartbeatResp; });
  }));
  PeerStats s = a.transport->stats().at(2);
  EXPECT_GT(s.latency_current_ms, 0);
  EXPECT_GE(s.latency_maximum_ms, s.latency_minimum_ms);
  EXPECT_GT(s.success, 0u);
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& ch : s) ch = static_cast<char>(rng());
  return s;
}

Message snapshot_message(uint64_t from, uint64_t to) {
  Message m = msg(MessageType::kSnap, from, to);
  m.term = 5;
  raft::Snapshot snap;
  snap.metadata.index = 1234;
  snap.metadata.term = 4;
  snap.metadata.conf_state.voters = {1, 2, 3};
  m.snapshot = snap;
  return m;
}

struct DoneFlag {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<bool> ok;
  std::function<void(bool)> callback() {
    return [this](bool v) {
      std::lock_guard lk(mu);
      ok = v;
      cv.notify_all();
    };
  }
  std::optional<bool> wait() {
    std::unique_lock lk(mu);
    cv.wait_for(lk, kWait, [&] { return ok.has_value(); });
    return ok;
  }
};

TEST_F(PeerTransportTest, sendSnapshot_severalMegabytesArriveIntactInChunks) {
  PeerTransportConfig config;
  config.snapshot_chunk_bytes = 256 * 1024;
  Member a(io_, 1, config), b(io_, 2, config);
  link(a, b);
  auto data = std::make_shared<const std::string>(random_bytes(5 * 1024 * 1024 + 17, 42));
  DoneFlag done;
  ASSERT_TRUE(probe_until_delivered(a, b));
  uint64_t writes_before = a.transport->stats().at(2).writes;
  a.transport->send_snapshot(snapshot_message(1, 2), data, done.callback());
  ASSERT_EQ(done.wait(), std::optional<bool>(true));
  ASSERT_TRUE(b.inbox.wait([&] { return !b.inbox.snapshots.empty(); }));
  std::lock_guard lk(b.inbox.mu);
  ASSERT_EQ(b.inbox.snapshots.size(), 1u);
  expect_same(b.inbox.snapshots[0].first, snapshot_message(1, 2));
  EXPECT_TRUE(b.inbox.snapshots[0].second == *data);
  // One write per chunk at least: the snapshot went in pieces.
  EXPECT_GE(a.transport->stats().at(2).writes - writes_before, data->size() / (256 * 1024));
}

// Forwards TCP connections to `target`, flipping one byte of the first connection's
// client-to-server stream at `flip_offset`. Threads end when their sockets close.
class CorruptingRelay {
 public:
  CorruptingRelay(uint16_t target, uint64_t flip_offset)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        target_(target), flip_offset_(flip_offset) {
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~CorruptingRelay() {
    stopping_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    {
      std::lock_guard lk(mu_);
      for (auto& s : sockets_) ::shutdown(s->native_handle(), SHUT_RDWR);
    }
    accept_thread_.join();
    for (auto& t : pumps_) t.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  bool flipped() const { return flipped_; }

 private:
  void accept_loop() {
    for (int conn = 0; conn < 100 && !stopping_; ++conn) {
      auto client = std::make_shared<tcp::socket>(io_);
      boost::system::error_code ec;
      acceptor_.accept(*client, ec);
      if (ec || stopping_) return;
      auto server = std::make_shared<tcp::socket>(io_);
      server->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), target_), ec);
      if (ec) return;
      std::lock_guard lk(mu_);
      sockets_.push_back(client);
      sockets_.push_back(server);
      bool corrupt = conn == 0;
      pumps_.emplace_back([this, client, server, corrupt] { pump(*client, *server, corrupt); });
      pumps_.emplace_back([this, client, server] { pump(*server, *client, false); });
    }
  }
  void pump(tcp::socket& from, tcp::socket& to, bool corrupt) {
    char buf[64 * 1024];
    uint64_t offset = 0;
    boost::system::error_code ec;
    while (!ec) {
      size_t n = from.read_some(asio::buffer(buf), ec);
      if (corrupt && offset <= flip_offset_ && flip_offset_ < offset + n) {
        buf[flip_offset_ - offset] ^= 0x5a;
        flipped_ = true;
      }
      offset += n;
      if (n > 0) asio::write(to, asio::buffer(buf, n), ec);
    }
    ::shutdown(to.native_handle(), SHUT_RDWR);
    ::shutdown(from.native_handle(), SHUT_RDWR);
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint16_t target_;
  uint64_t flip_offset_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> flipped_{false};
  std::mutex mu_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  std::vector<std::thread> pumps_;
  std::thread accept_thread_;
};

TEST_F(PeerTransportTest, sendSnapshot_corruptedChunkIsRejectedAndTheLinkRecovers) {
  PeerTransportConfig config;
  config.snapshot_chunk_bytes = 256 * 1024;
  config.max_reconnect_backoff = 100ms;
  Member a(io_, 1, config), b(io_, 2, config);
  // Deep inside the snapshot data: past the handshake, the begin frame and the first chunk.
  CorruptingRelay relay(b.port, 1'000'000);
  a.transport->add_peer(2, {url(relay.port())});
  b.transport->add_peer(1, {url(a.port)});
  auto data = std::make_shared<const std::string>(random_bytes(3 * 1024 * 1024, 7));
  DoneFlag done;
  a.transport->send_snapshot(snapshot_message(1, 2), data, done.callback());
  ASSERT_EQ(done.wait(), std::optional<bool>(false));
  EXPECT_TRUE(relay.flipped());
  EXPECT_TRUE(logs_.contains("checksum mismatch"));
  // The next connection through the relay is clean: messages and a snapshot get through.
  ASSERT_TRUE(probe_until_delivered(a, b));
  DoneFlag again;
  a.transport->send_snapshot(snapshot_message(1, 2), data, again.callback());
  ASSERT_EQ(again.wait(), std::optional<bool>(true));
  ASSERT_TRUE(b.inbox.wait([&] { return !b.inbox.snapshots.empty(); }));
  std::lock_guard lk(b.inbox.mu);
  ASSERT_EQ(b.inbox.snapshots.size(), 1u);  // the corrupted one was never delivered
  EXPECT_TRUE(b.inbox.snapshots[0].second == *data);
}

TEST_F(PeerTransportTest, sendSnapshot_toAnUnreachablePeerFails) {
  Member a(io_, 1);
  a.transport->add_peer(2, {url(1)});  // port 1: connection refused
  DoneFlag done;
  a.transport->send_snapshot(snapshot_message(1, 2), std::make_shared<const std::string>("x"),
                             done.callback());
  EXPECT_EQ(done.wait(), std::optional<bool>(false));
}

// --- refusals on the peer port; after each, the good peer still gets through ---

http::response<http::string_body> http_get(uint16_t port, const std::string& target) {
  asio::io_context io;
  boost::beast::tcp_stream stream(io);
  stream.expires_after(kWait);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  http::write(stream, req);
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return res;
}

TEST_F(PeerTransportTest, http_membersVersionAndNotFound) {
  Member a(io_, 0x2a);
  auto members = http_get(a.port, "/members");
  EXPECT_EQ(members.result_int(), 200);
  EXPECT_EQ(members.body(), "[{\"id\":42}]\n");
  EXPECT_EQ(members["Content-Type"], "application/json");
  EXPECT_EQ(members["X-Etcd-Cluster-Id"], "c1");
  auto version = http_get(a.port, "/version");
  EXPECT_EQ(version.result_int(), 200);
  EXPECT_EQ(version.body(), R"({"etcdserver":"3.4.23","etcdcluster":"3.4.0"})");
  EXPECT_EQ(version["Content-Type"], "application/json");
  EXPECT_FALSE(version["Date"].empty());
  auto other = http_get(a.port, "/raft/stream");
  EXPECT_EQ(other.result_int(), 404);
  EXPECT_EQ(other.body(), "404 page not found\n");
}

TEST_F(PeerTransportTest, http_keepAliveServesSeveralRequestsOnOneConnection) {
  Member a(io_, 1);
  asio::io_context io;
  boost::beast::tcp_stream stream(io);
  stream.expires_after(kWait);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), a.port));
  boost::beast::flat_buffer buffer;
  for (const char* target : {"/version", "/members", "/version"}) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    http::write(stream, req);
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    EXPECT_EQ(res.result_int(), 200) << target;
  }
}

TEST_F(PeerTransportTest, listen_httpsAndBadUrlsAreRefusedNamingTheUrl) {
  PeerTransportConfig config;
  config.listen_peer_urls = {"https://127.0.0.1:0"};
  PeerTransport t(io_, io_.get_executor(), config, {});
  Status st = t.listen();
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("https://127.0.0.1:0"), std::string::npos);
}

TEST_F(PeerTransportTest, removePeer_failsItsSnapshotAndRefusesItsNewConnections) {
  Member a(io_, 1), b(io_, 2);
  link(a, b);
  ASSERT_TRUE(probe_until_delivered(a, b));
  b.transport->remove_peer(1);
  RawConn raw(b.port);
  raw.write(handshake(kCluster, 1, 2));
  EXPECT_EQ(reply_code(raw.read_to_eof()), wire::HandshakeCode::kRemovedMember);
  EXPECT_EQ(b.transport->stats().count(1), 0u);
}

TEST_F(PeerTransportTest, removePeer_theRemovedMemberHearsItOnceWhenItDialsAgain) {
  Member a(io_, 1), b(io_, 2);
  link(a, b);
  ASSERT_TRUE(probe_until_delivered(a, b));
  b.transport->remove_peer(1);
  // a's stream is closed at its next frame; its next dial is refused as a removed member.
  bool heard = false;
  for (int attempt = 0; attempt < 100 && !heard; ++attempt) {
    a.transport->send({msg(MessageType::kHeartbeat, 1, 2, 7)});
    heard = a.inbox.wait([&] { return !a.inbox.removed_by.empty(); }, 100ms);
  }
  ASSERT_TRUE(heard);
  for (int i = 0; i < 5; ++i) a.transport->send({msg(MessageType::kHeartbeat, 1, 2, 7)});
  a.inbox.wait([] { return false; }, 300ms);
  std::lock_guard lk(a.inbox.mu);
  EXPECT_EQ(a.inbox.removed_by, std::vector<uint64_t>{2});
}

}  // namespace
}  // namespace kvd::server
