// The peer wire codec (server/peer/peer_wire.h): CRC32C against published check values and a
// naive bitwise implementation, exact round trips, and rejection of every truncation and of
// hostile counts.
#include "server/peer/peer_wire.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace kvd::server::wire {
namespace {

using raft::Message;
using raft::MessageType;

// Bit-at-a-time CRC32C: slow and obviously right.
uint32_t naive_crc32c(std::string_view s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char ch : s) {
    c ^= ch;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

Message full_message() {
  Message m;
  m.type = MessageType::kApp;
  m.to = 0xfffffffffffffff1ull;
  m.from = 3;
  m.term = 4;
  m.log_term = 5;
  m.index = 6;
  m.commit = 7;
  m.reject = true;
  m.reject_hint = 8;
  m.context = std::string("c\0x", 3);
  m.entries.push_back({4, 7, raft::EntryType::kNormal, "put a"});
  m.entries.push_back({4, 8, raft::EntryType::kConfChange, std::string(300, '\x01')});
  m.entries.push_back({4, 9, raft::EntryType::kNormal, ""});
  raft::Snapshot s;
  s.metadata = {100, 3, {{1, 2, 3}}};
  s.data = "image";
  m.snapshot = s;
  return m;
}

TEST(PeerWireTest, crc32c_matchesCheckValuesAndNaive) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);  // the standard check value
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::mt19937 rng(1234);
  SCOPED_TRACE("seed 1234");
  for (int round = 0; round < 200; ++round) {
    std::string s(rng() % 100, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng());
    ASSERT_EQ(crc32c(s), naive_crc32c(s)) << "length " << s.size();
    ASSERT_EQ(crc32c_portable(0, s.data(), s.size()), naive_crc32c(s)) << "length " << s.size();
    // Checksumming in two pieces gives the same value.
    size_t cut = s.empty() ? 0 : rng() % s.size();
    uint32_t first = crc32c(0, s.data(), cut);
    ASSERT_EQ(crc32c(first, s.data() + cut, s.size() - cut), crc32c(s));
  }
}

TEST(PeerWireTest, messages_roundTripExactly) {
  Message m = full_message();
  Message bare;
  bare.type = MessageType::kHeartbeatResp;
  bare.to = 1;
  bare.from = 2;
  auto decoded = decode_messages(encode_messages_body({m, bare}));
  ASSERT_TRUE(decoded.has_value());
  ASSERT_EQ(decoded->size(), 2u);
  const Message& d = (*decoded)[0];
  EXPECT_EQ(d.type, m.type);
  EXPECT_EQ(d.to, m.to);
  EXPECT_EQ(d.from, m.from);
  EXPECT_EQ(d.term, m.term);
  EXPECT_EQ(d.log_term, m.log_term);
  EXPECT_EQ(d.index, m.index);
  EXPECT_EQ(d.commit, m.commit);
  EXPECT_EQ(d.reject, m.reject);
  EXPECT_EQ(d.reject_hint, m.reject_hint);
  EXPECT_EQ(d.context, m.context);
  EXPECT_EQ(d.entries, m.entries);
  ASSERT_TRUE(d.snapshot.has_value());
  EXPECT_EQ(d.snapshot->metadata, m.snapshot->metadata);
  EXPECT_EQ(d.snapshot->data, "image");
  EXPECT_FALSE((*decoded)[1].snapshot.has_value());
  EXPECT_TRUE((*decoded)[1].entries.empty());
  // Encoding is deterministic: re-encoding the decoded messages gives the same bytes.
  EXPECT_EQ(encode_messages_body(*decoded), encode_messages_body({m, bare}));
}

TEST(PeerWireTest, messages_everyTruncationAndExtensionIsRejected) {
  std::string body = encode_messages_body({full_message(), full_message()});
  for (size_t n = 0; n < body.size(); ++n) {
    ASSERT_FALSE(decode_messages(body.substr(0, n)).has_value()) << "prefix " << n;
  }
  EXPECT_FALSE(decode_messages(body + "x").has_value());
}

TEST(PeerWireTest, messages_hostileCountsAndValuesAreRejected) {
  std::string huge_count("\xff\xff\xff\xff", 4);
  EXPECT_FALSE(decode_messages(huge_count).has_value());
  std::string body = encode_messages_body({full_message()});
  // Message type byte out of range.
  std::string bad_type = body;
  bad_type[4] = static_cast<char>(200);
  EXPECT_FALSE(decode_messages(bad_type).has_value());
  // reject flag must be 0 or 1 (offset: count 4 + type 1 + six u64).
  std::string bad_bool = body;
  bad_bool[4 + 1 + 48] = 2;
  EXPECT_FALSE(decode_messages(bad_bool).has_value());
  // Entry count far beyond what the body holds (offset after the 3-byte context).
  std::string bad_entries = body;
  size_t entries_at = 4 + 1 + 48 + 1 + 8 + 4 + 3;
  bad_entries.replace(entries_at, 4, std::string("\xff\xff\xff\x7f", 4));
  EXPECT_FALSE(decode_messages(bad_entries).has_value());
}

TEST(PeerWireTest, handshakeAndReply_roundTripAndRejectWrongMagic) {
  std::string h = encode_handshake({kFormatVersion, 0xabc, 1, 2});
  ASSERT_EQ(h.size(), kHandshakeBytes);
  auto d = decode_handshake(h);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->cluster_id, 0xabcu);
  EXPECT_EQ(d->sender, 1u);
  EXPECT_EQ(d->receiver, 2u);
  h[0] = 'K';
  EXPECT_FALSE(decode_handshake(h).has_value());
  EXPECT_FALSE(decode_handshake("GET / HTTP/1.1\r\nHost: x\r\n\r\n1234").has_value());

  std::string r = encode_reply(HandshakeCode::kWrongCluster, "why");
  auto rh = decode_reply_header(std::string_view(r).substr(0, kReplyFixedBytes));
  ASSERT_TRUE(rh.has_value());
  EXPECT_EQ(rh->code, HandshakeCode::kWrongCluster);
  EXPECT_EQ(rh->reason_bytes, 3u);
  EXPECT_EQ(r.substr(kReplyFixedBytes), "why");
  r[6] = 9;  // unknown code
  EXPECT_FALSE(decode_reply_header(std::string_view(r).substr(0, kReplyFixedBytes)).has_value());
}

TEST(PeerWireTest, frames_headerCarriesLengthTypeAndChecksum) {
  std::string out;
  append_frame(out, FrameType::kSnapshotAck, encode_snapshot_ack({5, true}));
  auto h = decode_frame_header(std::string_view(out).substr(0, kFrameHeaderBytes));
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->type, FrameType::kSnapshotAck);
  std::string_view body = std::string_view(out).substr(kFrameHeaderBytes);
  EXPECT_EQ(h->body_bytes, body.size());
  EXPECT_EQ(h->crc, crc32c(body));
  auto ack = decode_snapshot_ack(body);
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->id, 5u);
  EXPECT_TRUE(ack->ok);
  out[4] = 0;  // unknown frame type
  EXPECT_FALSE(decode_frame_header(std::string_view(out).substr(0, kFrameHeaderBytes)));
}

TEST(PeerWireTest, snapshotFrames_roundTrip) {
  Message m = full_message();
  m.type = MessageType::kSnap;
  auto b = decode_snapshot_begin(encode_snapshot_begin({9, 1 << 20, m}));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->id, 9u);
  EXPECT_EQ(b->total_bytes, 1u << 20);
  EXPECT_EQ(b->message.type, MessageType::kSnap);
  EXPECT_EQ(b->message.snapshot->metadata, m.snapshot->metadata);

  std::string chunk_body = encode_snapshot_chunk(9, 4096, "bytes");
  auto c = decode_snapshot_chunk(chunk_body);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->id, 9u);
  EXPECT_EQ(c->offset, 4096u);
  EXPECT_EQ(c->bytes, "bytes");
  EXPECT_FALSE(decode_snapshot_chunk(chunk_body.substr(0, 15)).has_value());

  auto e = decode_snapshot_end(encode_snapshot_end({9, 0xdeadbeef}));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->crc, 0xdeadbeefu);
  EXPECT_FALSE(decode_snapshot_end(encode_snapshot_end({9, 1}) + "x").has_value());
  EXPECT_FALSE(decode_snapshot_ack(encode_snapshot_ack({1, true}).substr(0, 8)).has_value());
}

TEST(PeerWireTest, isWireMessageType_excludesLocalAndSnap) {
  EXPECT_FALSE(is_wire_message_type(MessageType::kHup));
  EXPECT_FALSE(is_wire_message_type(MessageType::kSnapStatus));
  EXPECT_FALSE(is_wire_message_type(MessageType::kSnap));
  EXPECT_TRUE(is_wire_message_type(MessageType::kProp));
  EXPECT_TRUE(is_wire_message_type(MessageType::kReadIndexResp));
}

}  // namespace
}  // namespace kvd::server::wire
