// PeerTransport over real sockets on 127.0.0.1: two and three transports in one process, a
// relay that corrupts a snapshot in flight, and hand-written bytes speaking (or abusing) the
// wire format of server/peer_wire.h. Every wait is bounded and waits for an event.
#include "server/peer_transport.h"

#include <gtest/gtest.h>

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "server/peer_wire.h"

namespace kvd::server {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using raft::Message;
using raft::MessageType;
using namespace std::chrono_literals;

constexpr auto kWait = std::chrono::seconds(20);  // bound for every awaited event
constexpr uint64_t kCluster = 0xc1u;

std::string url(uint16_t port) { return "http://127.0.0.1:" + std::to_string(port); }

// What a transport handed to its Handler, in arrival order.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Message> messages;
  std::vector<std::pair<Message, std::string>> snapshots;
  std::vector<uint64_t> unreachable;
  std::vector<uint64_t> removed_by;  // Handler::on_removed calls

  template <class Pred>
  bool wait(Pred pred, std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, timeout, [&] { return pred(); });
  }
  size_t message_count() {
    std::lock_guard lk(mu);
    return messages.size();
  }
};

// One member: a transport on 127.0.0.1 whose Handler records into an Inbox.
struct Member {
  Member(asio::io_context& io, uint64_t id, PeerTransportConfig config = {}, uint16_t port = 0,
         uint64_t cluster = kCluster)
      : id(id), strand(asio::make_strand(io)) {
    config.member_id = id;
    config.cluster_id = cluster;
    config.listen_peer_urls = {url(port)};
    PeerTransport::Handler h;
    h.on_message = [this](Message m) {
      if (hook) hook(m);
      std::lock_guard lk(inbox.mu);
      inbox.messages.push_back(std::move(m));
      inbox.cv.notify_all();
    };
    h.on_snapshot = [this](Message m, std::string data) {
      std::lock_guard lk(inbox.mu);
      inbox.snapshots.emplace_back(std::move(m), std::move(data));
      inbox.cv.notify_all();
    };
    h.on_unreachable = [this](uint64_t peer) {
      std::lock_guard lk(inbox.mu);
      inbox.unreachable.push_back(peer);
      inbox.cv.notify_all();
    };
    h.on_removed = [this](uint64_t peer) {
      std::lock_guard lk(inbox.mu);
      inbox.removed_by.push_back(peer);
      inbox.cv.notify_all();
    };
    h.members_json = [id] { return "[{\"id\":" + std::to_string(id) + "}]\n"; };
    transport = std::make_unique<PeerTransport>(io, strand, std::move(config), std::move(h));
    Status st = transport->listen();
    EXPECT_TRUE(st.is_ok()) << st.message();
    if (st.is_ok()) this->port = transport->listening_ports().at(0);
  }

  // Stops the transport, then waits until the strand has finished whatever it was running, so
  // no Handler call can touch this Member after it is gone.
  ~Member() {
    transport.reset();
    std::promise<void> drained;
    asio::post(strand, [&drained] { drained.set_value(); });
    drained.get_future().wait_for(kWait);
  }

  uint64_t id;
  asio::any_io_executor strand;
  Inbox inbox;
  std::function<void(const Message&)> hook;  // runs on the strand before recording
  std::unique_ptr<PeerTransport> transport;
  uint16_t port = 0;
};

void link(Member& a, Member& b) {
  a.transport->add_peer(b.id, {url(b.port)});
  b.transport->add_peer(a.id, {url(a.port)});
}

Message msg(MessageType type, uint64_t from, uint64_t to, uint64_t index = 0) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.index = index;
  return m;
}

// Sends a probe from `from` to `to` until one arrives (each attempt waits for the arrival):
// a connection may still be dialing or backing off when the test starts sending.
bool probe_until_delivered(Member& from, Member& to) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    size_t before = to.inbox.message_count();
    from.transport->send({msg(MessageType::kHeartbeat, from.id, to.id, 7)});
    if (to.inbox.wait([&] { return to.inbox.messages.size() > before; }, 200ms)) return true;
  }
  return false;
}

// link(a, b), then waits until both directions deliver, and empties both inboxes of the
// probes: a member may dial the other before it knows the dialer, and sends are dropped while
// the dialer backs off. Once a probe has arrived, every earlier one has arrived or was dropped,
// so nothing of the probing arrives after the inboxes are emptied.
bool link_delivering(Member& a, Member& b) {
  link(a, b);
  if (!probe_until_delivered(a, b) || !probe_until_delivered(b, a)) return false;
  for (Member* m : {&a, &b}) {
    std::lock_guard lk(m->inbox.mu);
    m->inbox.messages.clear();
  }
  return true;
}

// Captures spdlog output for the test's duration.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096)) {
    old_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("capture", sink_);
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(old_); }
  bool contains(const std::string& needle) const {
    for (const auto& line : sink_->last_formatted()) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  size_t count(const std::string& needle) const {
    size_t n = 0;
    for (const auto& line : sink_->last_formatted()) n += line.find(needle) != std::string::npos;
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> old_;
};

class PeerTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  void TearDown() override {
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
  }

  asio::io_context io_;
  LogCapture logs_;

 private:
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(io_)};
  std::vector<std::thread> threads_;
};

// A blocking client socket for speaking the wire format by hand.
struct RawConn {
  explicit RawConn(uint16_t port) : socket(io) {
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  void write(std::string_view bytes) {
    asio::write(socket, asio::buffer(bytes.data(), bytes.size()));
  }
  // Reads until the peer closes; returns what arrived. Bounded by the transport's own timeouts
  // (a socket option caps each read at kWait as a backstop).
  std::string read_to_eof() {
    timeval tv{static_cast<time_t>(kWait.count()), 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out;
    boost::system::error_code ec;
    char buf[4096];
    while (!ec) {
      size_t n = socket.read_some(asio::buffer(buf), ec);
      out.append(buf, n);
    }
    eof = ec == asio::error::eof || ec == asio::error::connection_reset;
    return out;
  }
  asio::io_context io;
  tcp::socket socket;
  bool eof = false;
};

std::string handshake(uint64_t cluster, uint64_t sender, uint64_t receiver,
                      uint16_t version = wire::kFormatVersion) {
  return wire::encode_handshake({version, cluster, sender, receiver});
}

std::optional<wire::HandshakeCode> reply_code(std::string_view reply) {
  if (reply.size() < wire::kReplyFixedBytes) return std::nullopt;
  auto h = wire::decode_reply_header(reply.substr(0, wire::kReplyFixedBytes));
  if (!h) return std::nullopt;
  return h->code;
}

// One message of every type that travels between peers, with every field set.
std::vector<Message> every_wire_message(uint64_t from, uint64_t to) {
  std::vector<Message> out;
  uint64_t k = 1;
  for (int t = 0; t <= static_cast<int>(MessageType::kReadIndexResp); ++t) {
    auto type = static_cast<MessageType>(t);
    if (!wire::is_wire_message_type(type)) continue;
    Message m = msg(type, from, to);
    m.term = 10 + k;
    m.log_term = 20 + k;
    m.index = 30 + k;
    m.commit = 40 + k;
    m.reject = k % 2 == 0;
    m.reject_hint = 50 + k;
    m.context = "ctx-" + std::to_string(k) + std::string("\0\xff", 2);
    for (uint64_t e = 0; e < k % 4; ++e) {
      raft::Entry entry;
      entry.term = m.term;
      entry.index = m.index + e + 1;
      entry.type = e % 2 ? raft::EntryType::kConfChange : raft::EntryType::kNormal;
      entry.data = std::string(e * 100, static_cast<char>('a' + e));
      m.entries.push_back(entry);
    }
    out.push_back(m);
    ++k;
  }
  return out;
}

void expect_same(const Message& a, const Message& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.to, b.to);
  EXPECT_EQ(a.from, b.from);
  EXPECT_EQ(a.term, b.term);
  EXPECT_EQ(a.log_term, b.log_term);
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.entries, b.entries);
  EXPECT_EQ(a.commit, b.commit);
  EXPECT_EQ(a.snapshot.has_value(), b.snapshot.has_value());
  if (a.snapshot && b.snapshot) {
    EXPECT_EQ(a.snapshot->metadata, b.snapshot->metadata);
  }
  EXPECT_EQ(a.reject, b.reject);
  EXPECT_EQ(a.reject_hint, b.reject_hint);
  EXPECT_EQ(a.context, b.context);
}

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
  EXPECT_EQ(s.fail, 0u);
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

TEST_F(PeerTransportTest, send_reconnectsAfterThePeerTransportIsRecreatedOnItsPort) {
  PeerTransportConfig fast;
  fast.max_reconnect_backoff = 100ms;
  Member a(io_, 1, fast);
  auto b = std::make_unique<Member>(io_, 2, fast);
  uint16_t b_port = b->port;
  link(a, *b);
  ASSERT_TRUE(probe_until_delivered(a, *b));
  b.reset();
  // The broken connection is reported; sends during the outage are dropped and reported too.
  ASSERT_TRUE(a.inbox.wait([&] {
    return std::count(a.inbox.unreachable.begin(), a.inbox.unreachable.end(), 2u) > 0;
  }));
  b = std::make_unique<Member>(io_, 2, fast, b_port);
  ASSERT_EQ(b->port, b_port);
  b->transport->add_peer(1, {url(a.port)});
  ASSERT_TRUE(probe_until_delivered(a, *b));
  ASSERT_TRUE(probe_until_delivered(*b, a));
  EXPECT_TRUE(a.transport->connected(2));
  EXPECT_GT(a.transport->stats().at(2).fail + a.transport->stats().at(2).success, 0u);
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

class PeerPortRefusalTest : public PeerTransportTest {
 protected:
  void SetUp() override {
    PeerTransportTest::SetUp();
    PeerTransportConfig config;
    config.max_frame_bytes = 4096;
    config.handshake_timeout = 300ms;
    a_ = std::make_unique<Member>(io_, 1, config);
    b_ = std::make_unique<Member>(io_, 2, config);
    link(*a_, *b_);
  }
  void TearDown() override {
    // The transport keeps working for good peers after whatever the test did.
    EXPECT_TRUE(probe_until_delivered(*a_, *b_));
    EXPECT_TRUE(probe_until_delivered(*b_, *a_));
    a_.reset();
    b_.reset();
    PeerTransportTest::TearDown();
  }
  // No message from `sender` reached b.
  bool b_got_from(uint64_t sender) {
    std::lock_guard lk(b_->inbox.mu);
    return std::any_of(b_->inbox.messages.begin(), b_->inbox.messages.end(),
                       [&](const Message& m) { return m.from == sender && m.index == 99; });
  }
  std::string frame_to_b(uint64_t from) {
    std::string out;
    wire::append_frame(out, wire::FrameType::kMessages,
                       wire::encode_messages_body({msg(MessageType::kApp, from, 2, 99)}));
    return out;
  }

  std::unique_ptr<Member> a_, b_;
};

// Frames arrive however TCP cuts the stream: many in one read, one over many reads.
TEST_F(PeerPortRefusalTest, frames_manyInOneWriteOrCutAnywhereArriveInOrder) {
  std::string stream = handshake(kCluster, 1, 2);
  for (uint64_t i = 0; i < 200; ++i) {
    std::string body(i % 7 == 0 ? 3000 : 40, 'p');  // some frames longer than a cut
    Message m = msg(MessageType::kApp, 1, 2, 1000 + i);
    m.entries.push_back(raft::Entry{1, 1000 + i, raft::EntryType::kNormal, std::move(body)});
    wire::append_frame(stream, wire::FrameType::kMessages, wire::encode_messages_body({m}));
  }
  RawConn raw(b_->port);
  raw.write(std::string_view(stream).substr(0, stream.size() / 2));  // half the frames at once
  for (size_t at = stream.size() / 2; at < stream.size(); at += 97) {  // the rest in pieces
    raw.write(std::string_view(stream).substr(at, 97));
  }
  auto from_raw = [&] {  // REQUIRES: b_->inbox.mu held
    std::vector<uint64_t> got;
    for (const Message& m : b_->inbox.messages) {
      if (m.from == 1 && m.index >= 1000) got.push_back(m.index);
    }
    return got;
  };
  ASSERT_TRUE(b_->inbox.wait([&] { return from_raw().size() >= 200; }));
  std::vector<uint64_t> want;
  for (uint64_t i = 0; i < 200; ++i) want.push_back(1000 + i);
  std::lock_guard lk(b_->inbox.mu);
  EXPECT_EQ(from_raw(), want);
}

TEST_F(PeerPortRefusalTest, garbage_isClosedAndLogged) {
  RawConn raw(b_->port);
  raw.write("\x16\x03\x01 this is not kvd\r\n\r\n");
  EXPECT_EQ(raw.read_to_eof(), "");
  EXPECT_TRUE(raw.eof);
  EXPECT_TRUE(logs_.contains("neither a kvd peer handshake nor an HTTP request"));
}

TEST_F(PeerPortRefusalTest, wrongClusterId_isRefusedWithReason) {
  RawConn raw(b_->port);
  raw.write(handshake(kCluster + 1, 1, 2) + frame_to_b(1));
  std::string reply = raw.read_to_eof();
  EXPECT_EQ(reply_code(reply), wire::HandshakeCode::kWrongCluster);
  EXPECT_NE(reply.find("cluster id mismatch"), std::string::npos);
  EXPECT_TRUE(raw.eof);
  EXPECT_TRUE(logs_.contains("wrong cluster id"));
}

TEST_F(PeerPortRefusalTest, unknownMember_isRefused) {
  RawConn raw(b_->port);
  raw.write(handshake(kCluster, 77, 2) + frame_to_b(77));
  EXPECT_EQ(reply_code(raw.read_to_eof()), wire::HandshakeCode::kUnknownSender);
  EXPECT_TRUE(raw.eof);
  EXPECT_TRUE(logs_.contains("unknown member"));
  EXPECT_FALSE(b_got_from(77));
}

TEST_F(PeerPortRefusalTest, wrongReceiverAndVersion_areRefused) {
  {
    RawConn raw(b_->port);
    raw.write(handshake(kCluster, 1, 3));
    EXPECT_EQ(reply_code(raw.read_to_eof()), wire::HandshakeCode::kWrongReceiver);
  }
  {
    RawConn raw(b_->port);
    raw.write(handshake(kCluster, 1, 2, 99));
    EXPECT_EQ(reply_code(raw.read_to_eof()), wire::HandshakeCode::kWrongVersion);
  }
  EXPECT_TRUE(logs_.contains("wrong receiver"));
}

TEST_F(PeerPortRefusalTest, realTransportOfAnotherCluster_neverReachesTheHandler) {
  Member stranger(io_, 1, {}, 0, kCluster + 5);
  stranger.transport->add_peer(2, {url(b_->port)});
  stranger.transport->send({msg(MessageType::kApp, 1, 2, 99)});
  ASSERT_TRUE(stranger.inbox.wait([&] { return !stranger.inbox.unreachable.empty(); }));
  EXPECT_TRUE(logs_.contains("refused by"));
  EXPECT_FALSE(b_got_from(1));
}

TEST_F(PeerPortRefusalTest, oversizedFrame_closesTheConnection) {
  RawConn raw(b_->port);
  std::string header(wire::kFrameHeaderBytes, '\0');
  header[0] = static_cast<char>(0x01);
  header[1] = static_cast<char>(0x10);  // 4097 bytes > max_frame_bytes 4096
  header[4] = static_cast<char>(wire::FrameType::kMessages);
  raw.write(handshake(kCluster, 1, 2) + header);
  std::string reply = raw.read_to_eof();
  EXPECT_EQ(reply_code(reply), wire::HandshakeCode::kAccept);
  EXPECT_TRUE(raw.eof);
  EXPECT_TRUE(logs_.contains("exceeds the limit"));
}

TEST_F(PeerPortRefusalTest, halfAFrameThenClose_deliversNothing) {
  {
    RawConn raw(b_->port);
    std::string frame = frame_to_b(1);
    raw.write(handshake(kCluster, 1, 2) + frame.substr(0, frame.size() / 2));
    raw.socket.shutdown(tcp::socket::shutdown_send);
    EXPECT_EQ(reply_code(raw.read_to_eof()), wire::HandshakeCode::kAccept);
    EXPECT_TRUE(raw.eof);
  }
  EXPECT_TRUE(logs_.contains("truncated"));
  EXPECT_FALSE(b_got_from(1));
}

TEST_F(PeerPortRefusalTest, corruptFrame_closesTheConnection) {
  RawConn raw(b_->port);
  std::string frame = frame_to_b(1);
  frame.back() ^= 1;
  raw.write(handshake(kCluster, 1, 2) + frame);
  raw.read_to_eof();
  EXPECT_TRUE(raw.eof);
  EXPECT_TRUE(logs_.contains("checksum mismatch"));
  EXPECT_FALSE(b_got_from(1));
}

TEST_F(PeerPortRefusalTest, forgedSender_closesTheConnection) {
  RawConn raw(b_->port);
  raw.write(handshake(kCluster, 1, 2) + frame_to_b(3));  // from 3 on 1's stream
  raw.read_to_eof();
  EXPECT_TRUE(raw.eof);
  EXPECT_TRUE(logs_.contains("misaddressed"));
  EXPECT_FALSE(b_got_from(3));
}

TEST_F(PeerPortRefusalTest, silentConnection_isClosedAfterTheHandshakeTimeout) {
  RawConn raw(b_->port);
  EXPECT_EQ(raw.read_to_eof(), "");
  EXPECT_TRUE(raw.eof);
  EXPECT_TRUE(logs_.contains("handshake timeout"));
}

TEST_F(PeerPortRefusalTest, repeatedRefusals_areLoggedOncePerMinute) {
  for (int i = 0; i < 5; ++i) {
    RawConn raw(b_->port);
    raw.write(handshake(kCluster, 77, 2));
    EXPECT_EQ(reply_code(raw.read_to_eof()), wire::HandshakeCode::kUnknownSender);
  }
  // (Other lines may mention "unknown member": a's first dial can race b's add_peer(1).)
  EXPECT_EQ(logs_.count("(member 4d): unknown member"), 1u);
}

// --- HTTP on the peer port ---

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
