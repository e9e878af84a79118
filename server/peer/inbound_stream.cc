// A peer's stream into this member: the handshake (accepted or refused with a reason), then
// frames of messages and snapshot chunks, each checked (CRC32C, decoding, sender and receiver)
// before the Handler sees it, and the replies and snapshot acks written back. The byte format is
// server/peer/peer_wire.h's.
#include "server/peer/transport_impl.h"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace kvd::server {

void PeerTransport::Impl::on_handshake(const std::shared_ptr<InConn>& c, error_code ec) {
  std::lock_guard lk(mu);
  if (stopped || !inbound.count(c)) return;
  if (ec) {
    warn_inbound_locked(c, "closed before a complete handshake: " + ec.message());
    return close_inbound_locked(c);
  }
  std::string raw(c->head.data(), c->head.size());
  raw.append(c->handshake_rest.data(), c->handshake_rest.size());
  auto h = wire::decode_handshake(raw);
  if (!h) {
    warn_inbound_locked(c, "refused: malformed handshake");
    return close_inbound_locked(c);
  }
  wire::HandshakeCode code = wire::HandshakeCode::kAccept;
  std::string reason;
  if (h->version != wire::kFormatVersion) {
    code = wire::HandshakeCode::kWrongVersion;
    reason = fmt::format("format version {} is not supported (this member speaks {})",
                         h->version, wire::kFormatVersion);
  } else if (h->cluster_id != config.cluster_id) {
    code = wire::HandshakeCode::kWrongCluster;
    reason = fmt::format("cluster id mismatch: sender is in cluster {}, this member in {}",
                         hex_id(h->cluster_id), hex_id(config.cluster_id));
  } else if (h->receiver != config.member_id) {
    code = wire::HandshakeCode::kWrongReceiver;
    reason = fmt::format("this member is {}, not {}", hex_id(config.member_id),
                         hex_id(h->receiver));
  } else if (removed_members.count(h->sender)) {
    code = wire::HandshakeCode::kRemovedMember;
    reason = fmt::format("member {} has been removed from the cluster", hex_id(h->sender));
  } else if (!peers.count(h->sender)) {
    code = wire::HandshakeCode::kUnknownSender;
    reason = fmt::format("member {} is not a peer of member {}", hex_id(h->sender),
                         hex_id(config.member_id));
  }
  c->out.push_back(wire::encode_reply(code, reason));
  if (code != wire::HandshakeCode::kAccept) {
    // One line a minute per remote, sender and reason: a new reason is always logged.
    std::string key = "refuse:" + remote_host_of(c->socket) + ":" + hex_id(h->sender) + ":" +
                      std::string(wire::to_string(code));
    if (warn_limiter.allow(key)) {
      SPDLOG_WARN("peer port: refused connection from {} (member {}): {}: {}", c->remote,
                   hex_id(h->sender), wire::to_string(code), reason);
    }
    c->close_after_write = true;
    return flush_inbound_locked(c);
  }
  c->sender = h->sender;
  c->received_bytes = &received_bytes_from(c->sender);
  c->received_failures = &received_failures_from(c->sender);
  disarm(c->deadline);
  SPDLOG_DEBUG("peer port: accepted stream from member {} at {}", hex_id(c->sender), c->remote);
  // The sender is up: if our connection to it waits out a backoff, it dials now. A restarted
  // member dials its peers at once, while their backoff towards it may have grown to
  // max_reconnect_backoff (the election timeout by default) during its outage; waiting that out
  // would keep a leader's heartbeats from it long enough for it to call an election and depose
  // that leader (no pre-vote by default, as etcd 3.4).
  if (auto it = peers.find(c->sender);
      it != peers.end() && !stopped && !it->second->removed &&
      it->second->state == Peer::State::kBackoff) {
    it->second->backoff_timer.cancel();  // its handler sees the state is no longer kBackoff
    start_dial_locked(it->second);
  }
  flush_inbound_locked(c);
  read_frame_header_locked(c);
}

void PeerTransport::Impl::flush_inbound_locked(const std::shared_ptr<InConn>& c) {
  if (c->writing) return;
  if (c->out.empty()) {
    if (c->close_after_write) close_inbound_locked(c);
    return;
  }
  c->writing = true;
  // A bounded write: a peer that stops reading cannot pin the connection forever.
  arm_inbound_locked(c, "the peer did not read our reply within the handshake timeout");
  asio::async_write(c->socket, asio::buffer(c->out.front()),
                    [self = shared_from_this(), c](error_code ec, size_t) {
                      std::lock_guard lk(self->mu);
                      if (self->stopped || !self->inbound.count(c)) return;
                      c->writing = false;
                      c->out.pop_front();
                      if (ec) return self->close_inbound_locked(c);
                      if (c->out.empty()) disarm(c->deadline);
                      self->flush_inbound_locked(c);
                    });
}

void PeerTransport::Impl::read_frame_header_locked(const std::shared_ptr<InConn>& c) {
  read_buffered(c, c->frame_header.data(), c->frame_header.size(), 0, false,
                [self = shared_from_this(), c](error_code ec, size_t n) {
                  self->on_frame_header(c, ec, n);
                });
}

void PeerTransport::Impl::on_frame_header(const std::shared_ptr<InConn>& c, error_code ec, size_t n) {
  std::lock_guard lk(mu);
  if (stopped || !inbound.count(c)) return;
  if (ec) {
    if (n > 0) {
      warn_inbound_locked(c, "stream truncated inside a frame header: " + ec.message());
    } else if (c->assembly) {
      warn_inbound_locked(c, "stream ended during a snapshot: the partial snapshot is dropped");
    } else {
      SPDLOG_DEBUG("peer port: stream from member {} closed: {}", hex_id(c->sender),
                    ec.message());
    }
    return close_inbound_locked(c);
  }
  auto h = wire::decode_frame_header(std::string_view(c->frame_header.data(), n));
  if (!h) {
    warn_inbound_locked(c, "closed: unknown frame type");
    return close_inbound_locked(c);
  }
  if (h->body_bytes > config.max_frame_bytes) {
    warn_inbound_locked(c, fmt::format("closed: frame of {} bytes exceeds the limit of {}",
                                       h->body_bytes, config.max_frame_bytes));
    return close_inbound_locked(c);
  }
  if (h->type == wire::FrameType::kSnapshotAck) {
    warn_inbound_locked(c, "closed: unexpected frame type on an inbound stream");
    return close_inbound_locked(c);
  }
  c->header = *h;
  c->body.resize(h->body_bytes);
  read_buffered(c, c->body.data(), c->body.size(), 0, false,
                [self = shared_from_this(), c](error_code ec, size_t) {
                  self->on_frame_body(c, ec);
                });
}

void PeerTransport::Impl::abort_inbound_locked(const std::shared_ptr<InConn>& c,
    const std::string& why) {
  warn_inbound_locked(c, "closed: " + why);
  if (c->assembly) {
    c->out.push_back({});
    wire::append_frame(c->out.back(), wire::FrameType::kSnapshotAck,
                       wire::encode_snapshot_ack({c->assembly->id, false}));
    c->assembly.reset();
  }
  c->close_after_write = true;
  flush_inbound_locked(c);
}

void PeerTransport::Impl::on_frame_body(const std::shared_ptr<InConn>& c, error_code ec) {
  // Checksum and decoding run without the mutex: only this read chain touches c's buffers.
  if (!ec && wire::crc32c(c->body) != c->header.crc) {
    std::lock_guard lk(mu);
    if (stopped || !inbound.count(c)) return;
    if (c->received_failures) c->received_failures->inc();
    return abort_inbound_locked(c, "frame checksum mismatch");
  }
  if (ec) {
    std::lock_guard lk(mu);
    if (stopped || !inbound.count(c)) return;
    if (c->received_failures) c->received_failures->inc();
    warn_inbound_locked(c, "stream truncated inside a frame body: " + ec.message());
    return close_inbound_locked(c);
  }
  if (c->received_bytes) c->received_bytes->inc(wire::kFrameHeaderBytes + c->body.size());
  switch (c->header.type) {
    case wire::FrameType::kMessages: return on_messages(c);
    case wire::FrameType::kSnapshotBegin: return on_snapshot_begin(c);
    case wire::FrameType::kSnapshotChunk: return on_snapshot_chunk(c);
    case wire::FrameType::kSnapshotEnd: return on_snapshot_end(c);
    case wire::FrameType::kSnapshotAck: break;
  }
  std::lock_guard lk(mu);
  if (!stopped && inbound.count(c)) close_inbound_locked(c);
}

bool PeerTransport::Impl::sender_still_peer_locked(const std::shared_ptr<InConn>& c) {
  if (peers.count(c->sender)) return true;
  warn_inbound_locked(c, "closed: member " + hex_id(c->sender) + " is no longer a peer");
  close_inbound_locked(c);
  return false;
}

void PeerTransport::Impl::on_messages(const std::shared_ptr<InConn>& c) {
  auto ms = wire::decode_messages(c->body);
  bool valid = ms.has_value();
  if (valid) {
    for (const auto& m : *ms) valid = valid && valid_from_stream(*c, m);
  }
  std::lock_guard lk(mu);
  if (stopped || !inbound.count(c)) return;
  if (!valid) return abort_inbound_locked(c, "malformed or misaddressed messages frame");
  if (!sender_still_peer_locked(c)) return;
  if (auto it = peers.find(c->sender); it != peers.end()) {
    for (const auto& m : *ms) {
      if (m.type == raft::MessageType::kHeartbeatResp) record_heartbeat_resp_locked(*it->second);
    }
  }
  if (handler.on_message && !ms->empty()) {
    asio::post(deliver, [self = shared_from_this(), ms = std::move(*ms)]() mutable {
      for (auto& m : ms) {
        if (self->halted) return;
        self->handler.on_message(std::move(m));
      }
    });
  }
  read_frame_header_locked(c);
}

void PeerTransport::Impl::on_snapshot_begin(const std::shared_ptr<InConn>& c) {
  auto b = wire::decode_snapshot_begin(c->body);
  bool valid = b && b->message.type == raft::MessageType::kSnap && b->message.snapshot &&
               b->message.from == c->sender && b->message.to == config.member_id;
  std::lock_guard lk(mu);
  if (stopped || !inbound.count(c)) return;
  if (!valid || c->assembly) return abort_inbound_locked(c, "unexpected snapshot begin frame");
  if (!sender_still_peer_locked(c)) return;
  InConn::Assembly a;
  a.id = b->id;
  a.total_bytes = b->total_bytes;
  a.message = std::move(b->message);
  a.data.reserve(std::min<uint64_t>(a.total_bytes, 64ull << 20));
  c->assembly = std::move(a);
  read_frame_header_locked(c);
}

void PeerTransport::Impl::on_snapshot_chunk(const std::shared_ptr<InConn>& c) {
  auto chunk = wire::decode_snapshot_chunk(c->body);
  auto& a = c->assembly;
  bool valid = chunk && a && chunk->id == a->id && chunk->offset == a->data.size() &&
               chunk->bytes.size() <= a->total_bytes - a->data.size();
  if (valid) {
    a->data.append(chunk->bytes);
    a->crc = wire::crc32c(a->crc, chunk->bytes.data(), chunk->bytes.size());
  }
  std::lock_guard lk(mu);
  if (stopped || !inbound.count(c)) return;
  if (!valid) return abort_inbound_locked(c, "snapshot chunk out of sequence");
  read_frame_header_locked(c);
}

void PeerTransport::Impl::on_snapshot_end(const std::shared_ptr<InConn>& c) {
  auto e = wire::decode_snapshot_end(c->body);
  std::lock_guard lk(mu);
  if (stopped || !inbound.count(c)) return;
  if (!e || !c->assembly || e->id != c->assembly->id) {
    return abort_inbound_locked(c, "unexpected snapshot end frame");
  }
  InConn::Assembly a = std::move(*c->assembly);
  c->assembly.reset();
  bool ok = a.data.size() == a.total_bytes && a.crc == e->crc;
  if (!ok) {
    warn_inbound_locked(c, fmt::format("snapshot {} from member {} rejected: {} of {} bytes, "
                                       "checksum {:08x}, expected {:08x}",
                                       a.id, hex_id(c->sender), a.data.size(), a.total_bytes,
                                       a.crc, e->crc));
  } else if (handler.on_snapshot) {
    SPDLOG_INFO("peer port: received snapshot at index {} ({} bytes) from member {}",
                 a.message.snapshot->metadata.index, a.data.size(), hex_id(c->sender));
    asio::post(deliver, [self = shared_from_this(), m = std::move(a.message),
                         data = std::move(a.data)]() mutable {
      if (!self->halted) self->handler.on_snapshot(std::move(m), std::move(data));
    });
  }
  c->out.push_back({});
  wire::append_frame(c->out.back(), wire::FrameType::kSnapshotAck,
                     wire::encode_snapshot_ack({a.id, ok}));
  flush_inbound_locked(c);
  read_frame_header_locked(c);
}

}  // namespace kvd::server
