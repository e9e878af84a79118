// Peer transport over TCP (Boost.Asio). The byte format (handshake, frames, message encoding,
// snapshot chunks, acks, what a truncated stream means) is described in server/peer/peer_wire.h.
//
// Connections. Each member dials every peer in its peer set and keeps one outgoing connection per
// peer (outbound_peer.cc), which carries only this member's messages and snapshots to that peer
// (plus the peer's handshake reply and snapshot acks coming back). Connections accepted on the
// listen URLs (peer_listener.cc) are the peers' outgoing connections: inbound streams whose
// frames are delivered to the Handler (inbound_stream.cc).
//
// Threads: the io_context may run on any number of threads. All transport state and every call
// on a socket, timer or acceptor is guarded by Impl::mu, so stop() can close everything
// synchronously from any thread; completion handlers take the mutex, and handlers of a
// connection that was replaced or closed notice it (the peer's `conn` changed) and return.
// Handler callbacks and done() are only ever posted to the `deliver` executor, never called with
// the mutex held; once stop() has returned, none starts (pending snapshots' done() are
// dropped). Decoding of received frames happens outside the mutex (only the connection's read
// chain touches its buffers).
#include "server/peer/transport_impl.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

namespace kvd::server {

namespace peer_detail {

void set_user_timeout(tcp::socket& s, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return;
  const unsigned int ms = static_cast<unsigned int>(timeout.count());
  // Best effort: without it a dead connection is noticed later, not wrongly.
  (void)::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

}  // namespace peer_detail

void PeerTransport::Impl::post_unreachable(uint64_t peer) {
  if (!handler.on_unreachable) return;
  asio::post(deliver, [self = shared_from_this(), peer] {
    if (!self->halted) self->handler.on_unreachable(peer);
  });
}

void PeerTransport::Impl::post_done(std::function<void(bool)> done, bool ok) {
  if (!done) return;
  asio::post(deliver, [self = shared_from_this(), done = std::move(done), ok] {
    if (!self->halted) done(ok);
  });
}

metrics::Counter& peer_detail::received_bytes_from(uint64_t peer) {
  return metrics::registry()
      .counter("etcd_network_peer_received_bytes_total",
               "The total number of bytes received from peers.", {"From"})
      .with({hex_id(peer)});
}

metrics::Counter& peer_detail::received_failures_from(uint64_t peer) {
  return metrics::registry()
      .counter("etcd_network_peer_received_failures_total",
               "The total number of receive failures from peers.", {"From"})
      .with({hex_id(peer)});
}

PeerMetrics::PeerMetrics(uint64_t local, uint64_t peer)
    : sent_bytes(metrics::registry()
                     .counter("etcd_network_peer_sent_bytes_total",
                              "The total number of bytes sent to peers.", {"To"})
                     .with({hex_id(peer)})),
      sent_failures(metrics::registry()
                        .counter("etcd_network_peer_sent_failures_total",
                                 "The total number of send failures from peers.", {"To"})
                        .with({hex_id(peer)})),
      received_bytes(received_bytes_from(peer)),
      received_failures(received_failures_from(peer)),
      round_trip(metrics::registry()
                     .histogram("etcd_network_peer_round_trip_time_seconds",
                                "Round-Trip-Time histogram between peers",
                                metrics::exponential_buckets(0.0001, 2, 14), {"To"})
                     .with({hex_id(peer)})),
      active(metrics::registry()
                 .gauge("etcd_network_active_peers", "The current number of active peer connections.",
                        {"Local", "Remote"})
                 .with({hex_id(local), hex_id(peer)})),
      disconnected(metrics::registry()
                       .counter("etcd_network_disconnected_peers_total",
                                "The total number of disconnected peers.", {"Local", "Remote"})
                       .with({hex_id(local), hex_id(peer)})) {}

void PeerTransport::Impl::add_peer(uint64_t id, std::vector<std::string> urls) {
  std::lock_guard lk(mu);
  if (stopped || id == config.member_id) return;
  if (auto it = peers.find(id); it != peers.end()) {
    it->second->urls = std::move(urls);
    return;
  }
  auto p = std::make_shared<Peer>(io, config.member_id, id, std::move(urls));
  p->backoff = config.initial_reconnect_backoff;
  peers.emplace(id, p);
  start_dial_locked(p);
}

void PeerTransport::Impl::update_peer(uint64_t id, std::vector<std::string> urls) {
  std::lock_guard lk(mu);
  if (stopped) return;
  auto it = peers.find(id);
  if (it == peers.end()) return;
  Peer& p = *it->second;
  // A live connection keeps going (the member is the same); the next dial uses the new URLs.
  p.urls = std::move(urls);
  p.next_url = 0;
}

void PeerTransport::Impl::remove_peer(uint64_t id) {
  std::lock_guard lk(mu);
  removed_members.insert(id);
  auto it = peers.find(id);
  if (it == peers.end()) return;
  std::shared_ptr<Peer> p = it->second;
  peers.erase(it);
  p->removed = true;
  p->backoff_timer.cancel();
  fail_connection_locked(p, "removed");
  // Inbound streams from the removed member are closed when their next frame arrives.
}

void PeerTransport::Impl::send(std::vector<raft::Message> messages) {
  std::vector<std::pair<uint64_t, OutMessage>> encoded;
  encoded.reserve(messages.size());
  for (const raft::Message& m : messages) {
    if (!wire::is_wire_message_type(m.type)) {
      SPDLOG_ERROR("peer transport: not sending a {} message to member {}: {}",
                    raft::to_string(m.type), hex_id(m.to),
                    m.type == raft::MessageType::kSnap ? "snapshots go through send_snapshot"
                                                       : "local message type");
      continue;
    }
    encoded.emplace_back(m.to, OutMessage{wire::encode_message(m),
                                          m.type == raft::MessageType::kHeartbeat});
  }
  std::lock_guard lk(mu);
  if (stopped) return;
  std::set<uint64_t> unreachable;
  std::set<std::shared_ptr<Peer>> touched;
  for (auto& [to, om] : encoded) {
    auto it = peers.find(to);
    if (it == peers.end()) {
      SPDLOG_DEBUG("peer transport: dropping a message to unknown member {}", hex_id(to));
      continue;
    }
    Peer& p = *it->second;
    if (p.state == Peer::State::kBackoff) {
      p.stats.fail++;
      unreachable.insert(to);
      continue;
    }
    p.queued_bytes += om.bytes.size();
    p.queue.push_back(std::move(om));
    while (p.queued_bytes > config.max_queued_bytes && p.queue.size() > 1) {
      p.queued_bytes -= p.queue.front().bytes.size();
      p.queue.pop_front();
      p.stats.fail++;
      warn_peer_locked(p, "send queue over max_queued_bytes: dropping the oldest messages");
    }
    touched.insert(it->second);
  }
  for (const auto& p : touched) pump_writes_locked(p);
  for (uint64_t id : unreachable) post_unreachable(id);
}

void PeerTransport::Impl::send_snapshot(raft::Message m, std::shared_ptr<const std::string> data,
    std::function<void(bool)> done) {
  std::lock_guard lk(mu);
  auto it = stopped ? peers.end() : peers.find(m.to);
  if (it == peers.end() || !data || m.type != raft::MessageType::kSnap || !m.snapshot ||
      it->second->state == Peer::State::kBackoff) {
    if (it != peers.end()) post_unreachable(m.to);
    return post_done(std::move(done), false);
  }
  SnapshotJob job;
  job.id = next_snapshot_id++;
  job.data = std::move(data);
  job.done = std::move(done);
  m.snapshot->data.clear();  // the bytes travel in chunks
  job.begin_body = wire::encode_snapshot_begin({job.id, job.data->size(), std::move(m)});
  it->second->snapshots.push_back(std::move(job));
  pump_writes_locked(it->second);
}

void PeerTransport::Impl::stop() {
  std::lock_guard lk(mu);
  if (stopped) return;
  stopped = true;
  halted = true;
  error_code ignored;
  for (auto& acc : acceptors) acc->close(ignored);
  acceptors.clear();
  for (auto& [id, p] : peers) {
    p->removed = true;
    p->backoff_timer.cancel();
    if (p->conn) {
      p->conn->resolver.cancel();
      p->conn->deadline.cancel();
      close_socket(p->conn->socket);
      p->conn.reset();
    }
    p->queue.clear();
    p->queued_bytes = 0;
    // Dropped without calling done(): after stop() the caller hears nothing more.
    p->snapshots.clear();
    p->awaiting_ack.clear();
  }
  peers.clear();
  for (const auto& c : inbound) {
    c->deadline.cancel();
    close_socket(c->socket);
  }
  inbound.clear();
}


PeerTransport::PeerTransport(asio::io_context& io, asio::any_io_executor deliver,
                             PeerTransportConfig config, Handler handler)
    : impl_(std::make_shared<Impl>(io, std::move(deliver), std::move(config),
                                   std::move(handler))) {}

PeerTransport::~PeerTransport() { stop(); }

Status PeerTransport::listen() { return impl_->listen(); }
void PeerTransport::stop() { impl_->stop(); }

void PeerTransport::add_peer(uint64_t id, std::vector<std::string> peer_urls) {
  impl_->add_peer(id, std::move(peer_urls));
}
void PeerTransport::update_peer(uint64_t id, std::vector<std::string> peer_urls) {
  impl_->update_peer(id, std::move(peer_urls));
}
void PeerTransport::remove_peer(uint64_t id) { impl_->remove_peer(id); }

void PeerTransport::send(std::vector<raft::Message> messages) {
  impl_->send(std::move(messages));
}

void PeerTransport::send_snapshot(raft::Message m, std::shared_ptr<const std::string> data,
                                  std::function<void(bool ok)> done) {
  impl_->send_snapshot(std::move(m), std::move(data), std::move(done));
}

bool PeerTransport::connected(uint64_t peer) const {
  std::lock_guard lk(impl_->mu);
  auto it = impl_->peers.find(peer);
  return it != impl_->peers.end() && it->second->state == Peer::State::kConnected;
}

std::optional<Clock::time_point> PeerTransport::active_since(uint64_t peer) const {
  std::lock_guard lk(impl_->mu);
  auto it = impl_->peers.find(peer);
  if (it == impl_->peers.end() || it->second->state != Peer::State::kConnected) return std::nullopt;
  return it->second->connected_since;
}

std::map<uint64_t, PeerStats> PeerTransport::stats() const {
  std::lock_guard lk(impl_->mu);
  std::map<uint64_t, PeerStats> out;
  for (const auto& [id, p] : impl_->peers) out.emplace(id, p->stats);
  return out;
}

std::vector<uint16_t> PeerTransport::listening_ports() const {
  std::lock_guard lk(impl_->mu);
  return impl_->ports;
}

}  // namespace kvd::server
