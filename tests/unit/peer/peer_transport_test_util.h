// PeerTransport over real sockets on 127.0.0.1: two and three transports in one process, a
// relay that corrupts a snapshot in flight, and hand-written bytes speaking (or abusing) the
// wire format of server/peer/peer_wire.h. Every wait is bounded and waits for an event.
// Shared by peer_transport_test.cc and peer_port_test.cc: members on real sockets with recording
// handlers, linking helpers, a raw connection that speaks the wire by hand, and the fixture.
#pragma once

#include "server/peer/peer_transport.h"

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

#include "server/peer/peer_wire.h"

namespace kvd::server {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using raft::Message;
using raft::MessageType;
using namespace std::chrono_literals;

constexpr auto kWait = std::chrono::seconds(20);  // bound for every awaited event
constexpr uint64_t kCluster = 0xc1u;

inline std::string url(uint16_t port) { return "http://127.0.0.1:" + std::to_string(port); }

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

inline void link(Member& a, Member& b) {
  a.transport->add_peer(b.id, {url(b.port)});
  b.transport->add_peer(a.id, {url(a.port)});
}

inline Message msg(MessageType type, uint64_t from, uint64_t to, uint64_t index = 0) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.index = index;
  return m;
}

// Sends a probe from `from` to `to` until one arrives (each attempt waits for the arrival):
// a connection may still be dialing or backing off when the test starts sending.
inline bool probe_until_delivered(Member& from, Member& to) {
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
inline bool link_delivering(Member& a, Member& b) {
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

inline std::string handshake(uint64_t cluster, uint64_t sender, uint64_t receiver,
                      uint16_t version = wire::kFormatVersion) {
  return wire::encode_handshake({version, cluster, sender, receiver});
}

inline std::optional<wire::HandshakeCode> reply_code(std::string_view reply) {
  if (reply.size() < wire::kReplyFixedBytes) return std::nullopt;
  auto h = wire::decode_reply_header(reply.substr(0, wire::kReplyFixedBytes));
  if (!h) return std::nullopt;
  return h->code;
}

// One message of every type that travels between peers, with every field set.
inline std::vector<Message> every_wire_message(uint64_t from, uint64_t to) {
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

inline void expect_same(const Message& a, const Message& b) {
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

}  // namespace kvd::server
