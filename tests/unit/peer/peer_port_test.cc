// What the peer port refuses: garbage, other clusters, unknown and forged senders, oversized,
// torn and corrupt frames, silent connections; and how often it logs that.
#include "tests/unit/peer/peer_transport_test_util.h"

namespace kvd::server {
namespace {

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

}  // namespace
}  // namespace kvd::server
