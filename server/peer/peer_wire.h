// The byte format of kvd's peer port (see PeerTransport in server/peer/peer_transport.h):
// handshake, frames, raft::Message encoding, snapshot chunks and acks. Pure functions over
// bytes; no I/O. Used by the peer transport and by tests that speak the protocol by hand.
//
// All integers are little-endian. A connection is one direction of traffic: the member that
// dials ("dialer") sends its messages to the member it dialed ("acceptor"); the acceptor only
// answers the handshake and acknowledges snapshots on that connection.
//
// Handshake (dialer -> acceptor), 32 bytes, the first bytes of the connection:
//   magic     4 bytes  "kvd\0" (never the start of an HTTP request: the port also serves HTTP)
//   version   u16      kFormatVersion
//   flags     u16      0 (reserved)
//   cluster   u64      dialer's cluster id
//   sender    u64      dialer's member id
//   receiver  u64      member id the dialer believes it is talking to
// Reply (acceptor -> dialer): magic (4), version u16, code u8 (HandshakeCode), reason length
// u16, then that many bytes of human-readable reason (empty on accept). On a refusal the
// acceptor closes the connection after the reply. Anything else is refused without a reply.
//
// Frames (both directions after an accepted handshake):
//   body_bytes u32   length of the body; more than the receiver's max_frame_bytes closes the
//                    connection
//   type       u8    FrameType
//   crc        u32   CRC32C (Castagnoli) of the body
//   body       body_bytes bytes
// A frame whose checksum does not match, whose type is unknown or whose body does not decode
// exactly closes the connection. A stream that ends inside a frame (header or body) is truncated:
// that partial frame is discarded; every complete frame before it was delivered.
//
// Frame bodies:
//   kMessages        u32 count, then `count` encoded messages (dialer -> acceptor). Messages of
//                    one frame are delivered in order; frames are delivered in stream order.
//   kSnapshotBegin   u64 snapshot id (sender-chosen), u64 total data bytes, encoded kSnap message
//                    (metadata only; its snapshot.data is sent in chunks)
//   kSnapshotChunk   u64 snapshot id, u64 offset of these bytes in the data, the bytes
//   kSnapshotEnd     u64 snapshot id, u32 CRC32C of the whole data
//   kSnapshotAck     u64 snapshot id, u8 ok (acceptor -> dialer)
// A snapshot is delivered only after its end frame, when the chunks were contiguous, the byte
// count matches and the whole-data checksum matches; otherwise the acceptor answers ack(ok=0).
// Each chunk is also covered by its frame's CRC32C: a corrupted chunk makes the acceptor answer
// ack(ok=0) and close. A stream that ends before kSnapshotEnd discards the partial snapshot; the
// dialer sees no ack and reports the snapshot as failed.
//
// Encoded raft::Message:
//   type u8, to u64, from u64, term u64, log_term u64, index u64, commit u64, reject u8 (0/1),
//   reject_hint u64, context (u32 length + bytes), entry count u32, then per entry:
//   term u64, index u64, type u8 (EntryType), data (u32 length + bytes);
//   has_snapshot u8 (0/1), then if 1: metadata index u64, metadata term u64, voter count u32,
//   voters u64 each, data (u32 length + bytes).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "raft/message.h"

namespace kvd::server::wire {

inline constexpr std::array<char, 4> kMagic = {'k', 'v', 'd', '\0'};
inline constexpr uint16_t kFormatVersion = 1;
inline constexpr size_t kHandshakeBytes = 32;
inline constexpr size_t kReplyFixedBytes = 9;
inline constexpr size_t kFrameHeaderBytes = 9;

// CRC32C (Castagnoli polynomial, reflected), as used by iSCSI and RocksDB. `crc` is the value
// returned by a previous call (0 to start), so data can be checksummed in pieces.
uint32_t crc32c(uint32_t crc, const void* data, size_t n);
// The same without the CPU's crc32 instruction (crc32c uses it where the CPU has SSE 4.2).
uint32_t crc32c_portable(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32c(std::string_view s) { return crc32c(0, s.data(), s.size()); }

struct Handshake {
  uint16_t version = kFormatVersion;
  uint64_t cluster_id = 0;
  uint64_t sender = 0;
  uint64_t receiver = 0;
};

std::string encode_handshake(const Handshake& h);
// REQUIRES: b.size() == kHandshakeBytes. Nullopt when the magic is wrong; any version decodes.
std::optional<Handshake> decode_handshake(std::string_view b);

enum class HandshakeCode : uint8_t {
  kAccept = 0,
  kWrongVersion = 1,
  kWrongCluster = 2,
  kUnknownSender = 3,  // the sender is not in the acceptor's peer set
  kWrongReceiver = 4,  // the acceptor is not the member the dialer asked for
  // The sender has been removed from the cluster (etcd's rafthttp answers 410 Gone): it missed
  // the commit of its own removal and learns it this way.
  kRemovedMember = 5,
};
const char* to_string(HandshakeCode c);

std::string encode_reply(HandshakeCode code, std::string_view reason);
struct ReplyHeader {
  uint16_t version = 0;
  HandshakeCode code = HandshakeCode::kAccept;
  uint16_t reason_bytes = 0;
};
// REQUIRES: b.size() == kReplyFixedBytes. Nullopt on a wrong magic or an unknown code.
std::optional<ReplyHeader> decode_reply_header(std::string_view b);

enum class FrameType : uint8_t {
  kMessages = 1,
  kSnapshotBegin = 2,
  kSnapshotChunk = 3,
  kSnapshotEnd = 4,
  kSnapshotAck = 5,
};

struct FrameHeader {
  uint32_t body_bytes = 0;
  FrameType type = FrameType::kMessages;
  uint32_t crc = 0;
};

// Appends header + body to `out`.
void append_frame(std::string& out, FrameType type, std::string_view body);
// REQUIRES: b.size() == kFrameHeaderBytes. Nullopt for an unknown frame type.
std::optional<FrameHeader> decode_frame_header(std::string_view b);

// One message, as described above; kMessages bodies are a u32 count and concatenated messages.
void append_message(std::string& out, const raft::Message& m);
std::string encode_message(const raft::Message& m);
// Nullopt unless the body is exactly a count and that many well-formed messages.
std::optional<std::vector<raft::Message>> decode_messages(std::string_view body);
// A whole kMessages body (the transport builds its bodies from queued encoded messages).
std::string encode_messages_body(const std::vector<raft::Message>& ms);

struct SnapshotBegin {
  uint64_t id = 0;
  uint64_t total_bytes = 0;
  raft::Message message;
};
std::string encode_snapshot_begin(const SnapshotBegin& b);
std::optional<SnapshotBegin> decode_snapshot_begin(std::string_view body);

struct SnapshotChunk {
  uint64_t id = 0;
  uint64_t offset = 0;
  std::string_view bytes;  // points into the decoded body
};
std::string encode_snapshot_chunk(uint64_t id, uint64_t offset, std::string_view bytes);
std::optional<SnapshotChunk> decode_snapshot_chunk(std::string_view body);
inline constexpr size_t kSnapshotChunkOverheadBytes = 16;

struct SnapshotEnd {
  uint64_t id = 0;
  uint32_t crc = 0;
};
std::string encode_snapshot_end(const SnapshotEnd& e);
std::optional<SnapshotEnd> decode_snapshot_end(std::string_view body);

struct SnapshotAck {
  uint64_t id = 0;
  bool ok = false;
};
std::string encode_snapshot_ack(const SnapshotAck& a);
std::optional<SnapshotAck> decode_snapshot_ack(std::string_view body);

// True for the message types that travel between peers outside snapshot frames.
bool is_wire_message_type(raft::MessageType t);

}  // namespace kvd::server::wire
