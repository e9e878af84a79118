// Encoding and decoding of the peer wire format; the format is described in
// server/peer/peer_wire.h.
#include "server/peer/peer_wire.h"

#include <bit>
#include <cstring>

#include "common/codec.h"

namespace kvd::server::wire {

namespace {

// Slicing-by-8 tables for CRC32C, reflected polynomial 0x82F63B78.
struct Crc32cTables {
  uint32_t t[8][256];
  Crc32cTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
  }
};

const Crc32cTables& crc_tables() {
  static const Crc32cTables tables;
  return tables;
}

using codec::put_bytes;
using codec::put_u16;
using codec::put_u32;
using codec::put_u64;
using codec::put_u8;
using codec::Reader;

bool decode_message(Reader& r, raft::Message* m) {
  uint8_t type = 0;
  if (!r.u8(&type) || type > static_cast<uint8_t>(raft::MessageType::kReadIndexResp)) return false;
  m->type = static_cast<raft::MessageType>(type);
  if (!r.u64(&m->to) || !r.u64(&m->from) || !r.u64(&m->term) || !r.u64(&m->log_term) ||
      !r.u64(&m->index) || !r.u64(&m->commit) || !r.boolean(&m->reject) ||
      !r.u64(&m->reject_hint) || !r.bytes(&m->context)) {
    return false;
  }
  uint32_t n_entries = 0;
  // Each entry takes at least 21 bytes: a count the body cannot hold is rejected before any
  // allocation, so a hostile count cannot make us reserve gigabytes.
  if (!r.u32(&n_entries) || n_entries > r.remaining() / 21) return false;
  m->entries.resize(n_entries);
  for (raft::Entry& e : m->entries) {
    uint8_t et = 0;
    if (!r.u64(&e.term) || !r.u64(&e.index) || !r.u8(&et) || et > 1 || !r.bytes(&e.data)) {
      return false;
    }
    e.type = static_cast<raft::EntryType>(et);
  }
  bool has_snapshot = false;
  if (!r.boolean(&has_snapshot)) return false;
  if (has_snapshot) {
    raft::Snapshot s;
    uint32_t n_voters = 0;
    if (!r.u64(&s.metadata.index) || !r.u64(&s.metadata.term) || !r.u32(&n_voters) ||
        n_voters > r.remaining() / 8) {
      return false;
    }
    s.metadata.conf_state.voters.resize(n_voters);
    for (auto& v : s.metadata.conf_state.voters) {
      if (!r.u64(&v)) return false;
    }
    if (!r.bytes(&s.data)) return false;
    m->snapshot = std::move(s);
  }
  return true;
}

}  // namespace

uint32_t crc32c_portable(uint32_t crc, const void* data, size_t n) {
  const auto& t = crc_tables().t;
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (n >= 8) {
    uint32_t lo;
    uint32_t hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    if constexpr (std::endian::native == std::endian::big) {
      lo = __builtin_bswap32(lo);
      hi = __builtin_bswap32(hi);
    }
    lo ^= c;
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
        t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xff];
  return ~c;
}

namespace {

#if defined(__x86_64__)
// The same function with SSE 4.2's crc32 instruction (CRC-32C's polynomial), 8 bytes a step.
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const void* data,
                                                        size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t c = ~crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; ++p, --n) c32 = __builtin_ia32_crc32qi(c32, *p);
  return ~c32;
}
#endif

}  // namespace

uint32_t crc32c(uint32_t crc, const void* data, size_t n) {
#if defined(__x86_64__)
  static const bool sse42 = __builtin_cpu_supports("sse4.2");
  if (sse42) return crc32c_sse42(crc, data, n);
#endif
  return crc32c_portable(crc, data, n);
}

std::string encode_handshake(const Handshake& h) {
  std::string out(kMagic.data(), kMagic.size());
  put_u16(out, h.version);
  put_u16(out, 0);
  put_u64(out, h.cluster_id);
  put_u64(out, h.sender);
  put_u64(out, h.receiver);
  return out;
}

std::optional<Handshake> decode_handshake(std::string_view b) {
  if (b.size() != kHandshakeBytes || b.substr(0, 4) != std::string_view(kMagic.data(), 4)) {
    return std::nullopt;
  }
  Reader r(b.substr(4));
  Handshake h;
  uint16_t flags = 0;
  if (!r.u16(&h.version) || !r.u16(&flags) || !r.u64(&h.cluster_id) || !r.u64(&h.sender) ||
      !r.u64(&h.receiver) || !r.done()) {
    return std::nullopt;
  }
  return h;
}

const char* to_string(HandshakeCode c) {
  switch (c) {
    case HandshakeCode::kAccept: return "accepted";
    case HandshakeCode::kWrongVersion: return "wrong format version";
    case HandshakeCode::kWrongCluster: return "wrong cluster id";
    case HandshakeCode::kUnknownSender: return "unknown member";
    case HandshakeCode::kWrongReceiver: return "wrong receiver";
    case HandshakeCode::kRemovedMember: return "removed member";
  }
  return "unknown";
}

std::string encode_reply(HandshakeCode code, std::string_view reason) {
  if (reason.size() > 0xffff) reason = reason.substr(0, 0xffff);
  std::string out(kMagic.data(), kMagic.size());
  put_u16(out, kFormatVersion);
  put_u8(out, static_cast<uint8_t>(code));
  put_u16(out, static_cast<uint16_t>(reason.size()));
  out.append(reason);
  return out;
}

std::optional<ReplyHeader> decode_reply_header(std::string_view b) {
  if (b.size() != kReplyFixedBytes || b.substr(0, 4) != std::string_view(kMagic.data(), 4)) {
    return std::nullopt;
  }
  Reader r(b.substr(4));
  ReplyHeader h;
  uint8_t code = 0;
  if (!r.u16(&h.version) || !r.u8(&code) || !r.u16(&h.reason_bytes) || !r.done() ||
      code > static_cast<uint8_t>(HandshakeCode::kRemovedMember)) {
    return std::nullopt;
  }
  h.code = static_cast<HandshakeCode>(code);
  return h;
}

void append_frame(std::string& out, FrameType type, std::string_view body) {
  put_u32(out, static_cast<uint32_t>(body.size()));
  put_u8(out, static_cast<uint8_t>(type));
  put_u32(out, crc32c(body));
  out.append(body);
}

std::optional<FrameHeader> decode_frame_header(std::string_view b) {
  if (b.size() != kFrameHeaderBytes) return std::nullopt;
  Reader r(b);
  FrameHeader h;
  uint8_t type = 0;
  if (!r.u32(&h.body_bytes) || !r.u8(&type) || !r.u32(&h.crc)) return std::nullopt;
  if (type < static_cast<uint8_t>(FrameType::kMessages) ||
      type > static_cast<uint8_t>(FrameType::kSnapshotAck)) {
    return std::nullopt;
  }
  h.type = static_cast<FrameType>(type);
  return h;
}

void append_message(std::string& out, const raft::Message& m) {
  put_u8(out, static_cast<uint8_t>(m.type));
  put_u64(out, m.to);
  put_u64(out, m.from);
  put_u64(out, m.term);
  put_u64(out, m.log_term);
  put_u64(out, m.index);
  put_u64(out, m.commit);
  put_u8(out, m.reject ? 1 : 0);
  put_u64(out, m.reject_hint);
  put_bytes(out, m.context);
  put_u32(out, static_cast<uint32_t>(m.entries.size()));
  for (const raft::Entry& e : m.entries) {
    put_u64(out, e.term);
    put_u64(out, e.index);
    put_u8(out, static_cast<uint8_t>(e.type));
    put_bytes(out, e.data);
  }
  put_u8(out, m.snapshot ? 1 : 0);
  if (m.snapshot) {
    const raft::SnapshotMetadata& md = m.snapshot->metadata;
    put_u64(out, md.index);
    put_u64(out, md.term);
    put_u32(out, static_cast<uint32_t>(md.conf_state.voters.size()));
    for (uint64_t v : md.conf_state.voters) put_u64(out, v);
    put_bytes(out, m.snapshot->data);
  }
}

std::string encode_message(const raft::Message& m) {
  std::string out;
  append_message(out, m);
  return out;
}

std::optional<std::vector<raft::Message>> decode_messages(std::string_view body) {
  Reader r(body);
  uint32_t count = 0;
  // An encoded message takes at least 67 bytes.
  if (!r.u32(&count) || count > r.remaining() / 67) return std::nullopt;
  std::vector<raft::Message> ms(count);
  for (raft::Message& m : ms) {
    if (!decode_message(r, &m)) return std::nullopt;
  }
  if (!r.done()) return std::nullopt;
  return ms;
}

std::string encode_messages_body(const std::vector<raft::Message>& ms) {
  std::string out;
  put_u32(out, static_cast<uint32_t>(ms.size()));
  for (const auto& m : ms) append_message(out, m);
  return out;
}

std::string encode_snapshot_begin(const SnapshotBegin& b) {
  std::string out;
  put_u64(out, b.id);
  put_u64(out, b.total_bytes);
  append_message(out, b.message);
  return out;
}

std::optional<SnapshotBegin> decode_snapshot_begin(std::string_view body) {
  Reader r(body);
  SnapshotBegin b;
  if (!r.u64(&b.id) || !r.u64(&b.total_bytes) || !decode_message(r, &b.message) || !r.done()) {
    return std::nullopt;
  }
  return b;
}

std::string encode_snapshot_chunk(uint64_t id, uint64_t offset, std::string_view bytes) {
  std::string out;
  out.reserve(kSnapshotChunkOverheadBytes + bytes.size());
  put_u64(out, id);
  put_u64(out, offset);
  out.append(bytes);
  return out;
}

std::optional<SnapshotChunk> decode_snapshot_chunk(std::string_view body) {
  Reader r(body);
  SnapshotChunk c;
  if (!r.u64(&c.id) || !r.u64(&c.offset)) return std::nullopt;
  c.bytes = r.rest();
  return c;
}

std::string encode_snapshot_end(const SnapshotEnd& e) {
  std::string out;
  put_u64(out, e.id);
  put_u32(out, e.crc);
  return out;
}

std::optional<SnapshotEnd> decode_snapshot_end(std::string_view body) {
  Reader r(body);
  SnapshotEnd e;
  if (!r.u64(&e.id) || !r.u32(&e.crc) || !r.done()) return std::nullopt;
  return e;
}

std::string encode_snapshot_ack(const SnapshotAck& a) {
  std::string out;
  put_u64(out, a.id);
  put_u8(out, a.ok ? 1 : 0);
  return out;
}

std::optional<SnapshotAck> decode_snapshot_ack(std::string_view body) {
  Reader r(body);
  SnapshotAck a;
  if (!r.u64(&a.id) || !r.boolean(&a.ok) || !r.done()) return std::nullopt;
  return a;
}

bool is_wire_message_type(raft::MessageType t) {
  using T = raft::MessageType;
  return t >= T::kProp && t <= T::kReadIndexResp && t != T::kSnap;
}

}  // namespace kvd::server::wire
