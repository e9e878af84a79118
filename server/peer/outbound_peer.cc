// This member's connection to one peer.
//
// Outgoing state per peer: dialing (resolve, connect within dial_timeout, handshake) -> connected
// -> on any failure backoff (50 ms doubling up to max_reconnect_backoff) -> dialing again.
// While dialing, messages queue (bounded by max_queued_bytes, oldest dropped first); while in
// backoff, send() drops them at once. Every drop counts as fail and the Handler hears
// on_unreachable(peer), so raft probes the follower again later instead of streaming into a void.
// When a connection breaks, its queued messages are dropped and its snapshots fail.
//
// Batching: a write takes everything queued for the peer (up to max_frame_bytes) as one kMessages
// frame, plus at most one snapshot frame, in one async_write; messages sent while a write is in
// flight wait for the next write. So a busy peer gets few large writes, an idle one gets
// each message at once. Snapshots go in chunks interleaved with message frames, so heartbeats
// keep flowing while several MB of snapshot are on the way.
#include "server/peer/transport_impl.h"

#include <cmath>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/log_event.h"


namespace kvd::server {

void PeerTransport::Impl::warn_peer_locked(const Peer& p, const std::string& what) {
  if (warn_limiter.allow("out:" + hex_id(p.id))) {
    SPDLOG_WARN("peer transport: member {}: {}", hex_id(p.id), what);
  }
}

void PeerTransport::Impl::start_dial_locked(const std::shared_ptr<Peer>& p) {
  p->state = Peer::State::kDialing;
  auto conn = std::make_shared<OutConn>(io);
  p->conn = conn;
  if (p->urls.empty()) return fail_connection_locked(p, "no peer URLs");
  conn->url = p->urls[p->next_url++ % p->urls.size()];
  std::string why;
  auto hp = parse_peer_url(conn->url, &why);
  if (!hp) return fail_connection_locked(p, "bad peer URL " + conn->url + ": " + why);
  conn->host = hp->host;
  conn->tls = hp->tls;
  // One deadline covers resolve, connect, handshake and reply.
  conn->deadline.expires_after(config.dial_timeout);
  conn->deadline.async_wait([self = shared_from_this(), p, conn](error_code ec) {
    if (ec == asio::error::operation_aborted) return;
    std::lock_guard lk(self->mu);
    if (self->stopped || p->conn != conn || !expired(conn->deadline)) return;
    self->fail_connection_locked(p, "timed out dialing " + conn->url);
  });
  conn->resolver.async_resolve(
      hp->host, hp->port,
      [self = shared_from_this(), p, conn](error_code ec, tcp::resolver::results_type results) {
        std::lock_guard lk(self->mu);
        if (self->stopped || p->conn != conn) return;
        if (ec) {
          return self->fail_connection_locked(p, "resolve " + conn->url + ": " + ec.message());
        }
        asio::async_connect(conn->socket.socket(), results,
                            [self, p, conn](error_code ec, const tcp::endpoint&) {
                              self->on_connected(p, conn, ec);
                            });
      });
}

void PeerTransport::Impl::on_connected(const std::shared_ptr<Peer>& p,
    const std::shared_ptr<OutConn>& conn, error_code ec) {
  std::lock_guard lk(mu);
  if (stopped || p->conn != conn) return;
  if (ec) return fail_connection_locked(p, "connect to " + conn->url + ": " + ec.message());
  error_code ignored;
  conn->socket.socket().set_option(tcp::no_delay(true), ignored);
  set_user_timeout(conn->socket.socket(), config.user_timeout);
  if (!conn->tls) return send_handshake_locked(p, conn);
  if (!config.tls) return fail_connection_locked(p, conn->url + ": https, but no TLS is set up");
  conn->socket.use_tls(config.tls->client());
  config.tls->prepare_client(conn->socket.native_ssl(), conn->host);
  conn->socket.async_handshake(
      asio::ssl::stream_base::client, [self = shared_from_this(), p, conn](error_code ec) {
        std::lock_guard lk(self->mu);
        if (self->stopped || p->conn != conn) return;
        if (ec) {
          return self->fail_connection_locked(
              p, "TLS handshake with " + conn->url + ": " +
                     tls::describe_handshake_error(conn->socket.native_ssl(), ec));
        }
        self->send_handshake_locked(p, conn);
      });
}

void PeerTransport::Impl::send_handshake_locked(const std::shared_ptr<Peer>& p,
                                                const std::shared_ptr<OutConn>& conn) {
  conn->handshake = wire::encode_handshake(
      {wire::kFormatVersion, config.cluster_id, config.member_id, p->id});
  // The handshake and its reply share the dial timeout set before connecting.
  asio::async_write(conn->socket, asio::buffer(conn->handshake),
                    [self = shared_from_this(), p, conn](error_code ec, size_t) {
                      std::lock_guard lk(self->mu);
                      if (self->stopped || p->conn != conn) return;
                      if (ec) {
                        return self->fail_connection_locked(p, "handshake: " + ec.message());
                      }
                      asio::async_read(conn->socket, asio::buffer(conn->reply_header),
                                       [self, p, conn](error_code ec, size_t) {
                                         self->on_reply_header(p, conn, ec);
                                       });
                    });
}

void PeerTransport::Impl::on_reply_header(const std::shared_ptr<Peer>& p,
    const std::shared_ptr<OutConn>& conn, error_code ec) {
  std::lock_guard lk(mu);
  if (stopped || p->conn != conn) return;
  if (ec) return fail_connection_locked(p, "handshake reply: " + ec.message());
  auto h = wire::decode_reply_header(
      std::string_view(conn->reply_header.data(), conn->reply_header.size()));
  if (!h) return fail_connection_locked(p, conn->url + " is not a kvd peer port");
  conn->reply_reason.resize(h->reason_bytes);
  asio::async_read(conn->socket, asio::buffer(conn->reply_reason),
                   [self = shared_from_this(), p, conn, code = h->code](error_code ec, size_t) {
                     std::lock_guard lk(self->mu);
                     if (self->stopped || p->conn != conn) return;
                     if (ec) {
                       return self->fail_connection_locked(p, "handshake reply: " +
                                                                  ec.message());
                     }
                     if (code == wire::HandshakeCode::kRemovedMember &&
                         !self->removal_reported && self->handler.on_removed) {
                       self->removal_reported = true;
                       asio::post(self->deliver, [self, peer = p->id] {
                         if (!self->halted) self->handler.on_removed(peer);
                       });
                     }
                     if (code != wire::HandshakeCode::kAccept) {
                       return self->fail_connection_locked(
                           p, fmt::format("refused by {}: {}: {}", conn->url,
                                          wire::to_string(code), conn->reply_reason));
                     }
                     self->on_accepted_locked(p, conn);
                   });
}

void PeerTransport::Impl::on_accepted_locked(const std::shared_ptr<Peer>& p,
    const std::shared_ptr<OutConn>& conn) {
  disarm(conn->deadline);
  p->state = Peer::State::kConnected;
  p->connected_since = Clock::now();
  p->metrics.active.set(1);
  p->backoff = config.initial_reconnect_backoff;
  if (!p->ever_connected) {
    SPDLOG_INFO("peer transport: connected to member {} at {}", hex_id(p->id), conn->url);
  } else if (p->inactive_since) {
    KVD_LOG_EVENT(INFO, "peer " + hex_id(p->id) + " became active",
                  logev::str("url", conn->url),
                  logev::dur("inactive-for", Clock::now() - *p->inactive_since));
  } else {
    SPDLOG_DEBUG("peer transport: reconnected to member {} at {}", hex_id(p->id), conn->url);
  }
  p->inactive_since.reset();
  p->ever_connected = true;
  read_ack_locked(p, conn);
  pump_writes_locked(p);
}

void PeerTransport::Impl::read_ack_locked(const std::shared_ptr<Peer>& p,
    const std::shared_ptr<OutConn>& conn) {
  asio::async_read(
      conn->socket, asio::buffer(conn->ack_header),
      [self = shared_from_this(), p, conn](error_code ec, size_t) {
        std::lock_guard lk(self->mu);
        if (self->stopped || p->conn != conn) return;
        if (ec) return self->fail_connection_locked(p, "connection lost: " + ec.message());
        auto h = wire::decode_frame_header(
            std::string_view(conn->ack_header.data(), conn->ack_header.size()));
        if (!h || h->type != wire::FrameType::kSnapshotAck || h->body_bytes > 64) {
          return self->fail_connection_locked(p, "unexpected frame from the peer");
        }
        conn->ack_body.resize(h->body_bytes);
        asio::async_read(
            conn->socket, asio::buffer(conn->ack_body),
            [self, p, conn, crc = h->crc](error_code ec, size_t) {
              std::lock_guard lk(self->mu);
              if (self->stopped || p->conn != conn) return;
              if (ec) return self->fail_connection_locked(p, "connection lost: " + ec.message());
              auto ack = wire::decode_snapshot_ack(conn->ack_body);
              if (wire::crc32c(conn->ack_body) != crc || !ack) {
                return self->fail_connection_locked(p, "malformed snapshot ack from the peer");
              }
              if (auto it = p->awaiting_ack.find(ack->id); it != p->awaiting_ack.end()) {
                if (!ack->ok) self->warn_peer_locked(*p, "snapshot rejected by the peer");
                self->post_done(std::move(it->second), ack->ok);
                p->awaiting_ack.erase(it);
              }
              self->read_ack_locked(p, conn);
            });
      });
}

void PeerTransport::Impl::fail_connection_locked(const std::shared_ptr<Peer>& p,
    const std::string& why) {
  bool was_connected = p->state == Peer::State::kConnected;
  if (p->conn) {
    p->conn->resolver.cancel();
    p->conn->deadline.cancel();
    close_socket(p->conn->socket);
    p->conn.reset();
  }
  p->writing = false;
  p->heartbeat_sent.reset();
  p->connected_since.reset();
  uint64_t dropped = p->queue.size();
  p->stats.fail += dropped;
  p->metrics.sent_failures.inc(dropped);
  if (was_connected) {
    p->metrics.active.set(0);
    p->metrics.disconnected.inc();
  }
  p->queue.clear();
  p->queued_bytes = 0;
  bool snapshots_failed = !p->snapshots.empty() || !p->awaiting_ack.empty();
  fail_snapshots_locked(*p);
  if (p->removed) return;
  if (was_connected) {
    // Once per loss, whatever the rate limit of the dial failures that follow (etcd's "peer X
    // became inactive"); those then wait out the limit so that a dead peer is not a line a try.
    KVD_LOG_EVENT(WARN, "peer " + hex_id(p->id) + " became inactive (lost connection: " + why + ")",
                  logev::count("dropped-messages", dropped));
    p->inactive_since = Clock::now();
    warn_limiter.hold("out:" + hex_id(p->id));
  } else {
    warn_peer_locked(*p, "cannot connect: " + why);
  }
  if (was_connected || dropped > 0 || snapshots_failed) post_unreachable(p->id);
  p->state = Peer::State::kBackoff;
  p->backoff_timer.expires_after(p->backoff);
  p->backoff = std::min(p->backoff * 2,
                        std::max(config.max_reconnect_backoff, config.initial_reconnect_backoff));
  p->backoff_timer.async_wait([self = shared_from_this(), p](error_code ec) {
    if (ec == asio::error::operation_aborted) return;
    std::lock_guard lk(self->mu);
    if (self->stopped || p->removed || p->state != Peer::State::kBackoff) return;
    self->start_dial_locked(p);
  });
}

void PeerTransport::Impl::fail_snapshots_locked(Peer& p) {
  for (auto& job : p.snapshots) post_done(std::move(job.done), false);
  p.snapshots.clear();
  for (auto& [id, done] : p.awaiting_ack) post_done(std::move(done), false);
  p.awaiting_ack.clear();
}

void PeerTransport::Impl::pump_writes_locked(const std::shared_ptr<Peer>& p) {
  if (p->state != Peer::State::kConnected || p->writing) return;
  auto out = std::make_shared<std::string>();
  uint64_t count = 0;
  bool heartbeat = false;
  if (!p->queue.empty()) {
    std::string body(4, '\0');
    while (!p->queue.empty()) {
      OutMessage& m = p->queue.front();
      if (m.bytes.size() + 4 > config.max_frame_bytes) {
        // Too big for any frame the peer accepts: it can never be sent.
        SPDLOG_ERROR("peer transport: dropping a {}-byte message to member {}: over "
                      "max_frame_bytes", m.bytes.size(), hex_id(p->id));
        p->stats.fail++;
        p->queued_bytes -= m.bytes.size();
        p->queue.pop_front();
        continue;
      }
      if (count > 0 && body.size() + m.bytes.size() > config.max_frame_bytes) break;
      body += m.bytes;
      heartbeat = heartbeat || m.heartbeat;
      p->queued_bytes -= m.bytes.size();
      p->queue.pop_front();
      ++count;
    }
    if (count > 0) {
      for (int i = 0; i < 4; ++i) body[i] = static_cast<char>((count >> (8 * i)) & 0xff);
      wire::append_frame(*out, wire::FrameType::kMessages, body);
    }
  }
  if (!p->snapshots.empty()) append_snapshot_frames_locked(*p, *out);
  if (out->empty()) return;
  p->writing = true;
  p->stats.writes++;
  if (heartbeat && !p->heartbeat_sent) p->heartbeat_sent = Clock::now();
  auto conn = p->conn;
  asio::async_write(conn->socket, asio::buffer(*out),
                    [self = shared_from_this(), p, conn, out, count](error_code ec, size_t) {
                      std::lock_guard lk(self->mu);
                      if (self->stopped || p->conn != conn) return;
                      p->writing = false;
                      if (ec) {
                        p->stats.fail += count;
                        p->metrics.sent_failures.inc(count);
                        return self->fail_connection_locked(p, "write: " + ec.message());
                      }
                      p->stats.success += count;
                      p->metrics.sent_bytes.inc(out->size());
                      self->pump_writes_locked(p);
                    });
}

void PeerTransport::Impl::append_snapshot_frames_locked(Peer& p, std::string& out) {
  SnapshotJob& job = p.snapshots.front();
  if (!job.begun) {
    wire::append_frame(out, wire::FrameType::kSnapshotBegin, job.begin_body);
    job.begun = true;
    return;
  }
  const std::string& data = *job.data;
  uint64_t room = config.max_frame_bytes > wire::kSnapshotChunkOverheadBytes
                      ? config.max_frame_bytes - wire::kSnapshotChunkOverheadBytes
                      : 1;
  uint64_t n = std::min<uint64_t>({std::max<uint64_t>(config.snapshot_chunk_bytes, 1), room,
                                   data.size() - job.offset});
  if (n > 0) {
    std::string_view piece(data.data() + job.offset, n);
    wire::append_frame(out, wire::FrameType::kSnapshotChunk,
                       wire::encode_snapshot_chunk(job.id, job.offset, piece));
    job.crc = wire::crc32c(job.crc, piece.data(), piece.size());
    job.offset += n;
  }
  if (job.offset == data.size()) {
    wire::append_frame(out, wire::FrameType::kSnapshotEnd,
                       wire::encode_snapshot_end({job.id, job.crc}));
    p.awaiting_ack.emplace(job.id, std::move(job.done));
    p.snapshots.pop_front();
  }
}

void PeerTransport::Impl::record_heartbeat_resp_locked(Peer& p) {
  if (!p.heartbeat_sent) return;
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - *p.heartbeat_sent).count();
  p.heartbeat_sent.reset();
  p.metrics.round_trip.observe(ms / 1000);
  ++p.latency_samples;
  double delta = ms - p.latency_mean;
  p.latency_mean += delta / static_cast<double>(p.latency_samples);
  p.latency_m2 += delta * (ms - p.latency_mean);
  PeerStats& s = p.stats;
  s.latency_current_ms = ms;
  s.latency_average_ms = p.latency_mean;
  s.latency_minimum_ms = p.latency_samples == 1 ? ms : std::min(s.latency_minimum_ms, ms);
  s.latency_maximum_ms = std::max(s.latency_maximum_ms, ms);
  s.latency_stddev_ms = std::sqrt(p.latency_m2 / static_cast<double>(p.latency_samples));
}

}  // namespace kvd::server
