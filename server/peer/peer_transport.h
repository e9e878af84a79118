// Peer transport: moves raft::Messages and snapshot bytes between kvd members over TCP on the
// --listen-peer-urls. Owned by main (server/peer_wiring.h connects it to the member through a
// PeerLink); one instance per member process.
//
// Threads: every public method may be called from any thread. The Handler callbacks are invoked
// through the `deliver` executor given at construction (the Node passes its raft strand), so the
// Node sees incoming messages on the strand that owns the raft core.
//
// Contract with the Node:
// - send() never blocks and never fails synchronously: messages to a peer that is unreachable are
//   dropped (raft retransmits); the transport then calls Handler::on_unreachable(peer) so the Node
//   can report it to raft (MessageType::kUnreachable).
// - Messages to one peer are delivered in the order send() was called for that peer (one ordered
//   stream per peer); across peers there is no order.
// - kSnap messages must go through send_snapshot(), which streams the state-machine bytes next to
//   the metadata and reports the outcome (the Node reports it to raft as kSnapStatus).
// - Connections carry the cluster id and the sender's member id in a handshake; a peer with
//   another cluster id, an unknown member id, a wrong format version or garbage is refused and
//   logged, and never reaches the Handler.
// - The same listening port also answers etcd's peer-side HTTP endpoints that tools use
//   (GET /members, GET /version), by looking at the first bytes of each connection.
//
// The wire format is described in server/peer/peer_wire.h; how connections, back-off and
// batching work at the top of server/peer/peer_transport.cc and outbound_peer.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/status.h"
#include "raft/message.h"
#include "server/peer/peer_link.h"
#include "server/tls/tls_config.h"

namespace kvd::server {

// Listeners bound on the peer URLs ahead of the transport (kvd binds every port before it
// writes to the data dir), handed over in PeerTransportConfig::listeners.
struct PeerListeners {
  std::vector<std::shared_ptr<boost::asio::ip::tcp::acceptor>> acceptors;
  std::vector<bool> tls;  // per acceptor: an https URL
};
// Binds and listens on every URL (http or https, host names resolved), on io. Errors name the
// URL: "cannot listen on peer URL U: bind: Address already in use", or https without TLS.
Result<PeerListeners> bind_peer_listeners(boost::asio::io_context& io,
                                          const std::vector<std::string>& urls,
                                          const std::shared_ptr<tls::TlsContexts>& tls);

struct PeerTransportConfig {
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  std::vector<std::string> listen_peer_urls;  // http:// or https://host:port
  // Bound already (bind_peer_listeners, on the transport's io_context): listen() serves these
  // instead of binding listen_peer_urls.
  std::optional<PeerListeners> listeners;
  // TLS for the https listen URLs and for dialling https peer URLs. Null: https is refused at
  // listen(), and an https peer cannot be reached.
  std::shared_ptr<tls::TlsContexts> tls;
  std::chrono::milliseconds dial_timeout{1000};
  std::chrono::milliseconds max_reconnect_backoff{1000};
  // The shortest wait before redialling a peer after a failure (the wait doubles from here up
  // to max_reconnect_backoff). A peer that dials in ends the wait at once.
  std::chrono::milliseconds initial_reconnect_backoff{50};
  uint64_t max_frame_bytes = 64ull << 20;     // a bigger frame from a peer closes the connection
  uint64_t snapshot_chunk_bytes = 1ull << 20; // each chunk carries a CRC32C
  // Encoded messages waiting for one peer beyond this are dropped oldest first (counted as fail);
  // snapshots are not counted here.
  uint64_t max_queued_bytes = 64ull << 20;
  // An inbound connection must complete its handshake (or HTTP request) within this time, and
  // its TLS handshake first within the same bound again.
  std::chrono::milliseconds handshake_timeout{5000};
  // A peer connection whose sent bytes stay unacknowledged this long is closed by the kernel
  // (TCP_USER_TIMEOUT) and dialled anew. Without it, a connection cut by a partition that
  // drops packets silently carries on after the heal only when TCP's exponentially backed-off
  // retransmission next fires: after a few seconds of partitions, tens of seconds later, with
  // the heartbeats queued behind it. Re-dialling takes one round trip.
  std::chrono::milliseconds user_timeout{2000};
};

class PeerTransport {
 public:
  struct Handler {
    // A message from a peer (never kSnap: those arrive through on_snapshot).
    std::function<void(raft::Message)> on_message;
    // A complete, checksum-verified snapshot: the kSnap message and the state-machine bytes.
    std::function<void(raft::Message, std::string data)> on_snapshot;
    // Sending to `peer` failed (could not connect or the connection broke).
    std::function<void(uint64_t peer)> on_unreachable;
    // GET /members on the peer port: the JSON body etcd serves there (array of members).
    std::function<std::string()> members_json;
    // A peer refused this member's handshake because this member was removed from the cluster
    // (see remove_peer); `peer` is the one that said so. Runs at most once.
    std::function<void(uint64_t peer)> on_removed;
  };

  PeerTransport(boost::asio::io_context& io, boost::asio::any_io_executor deliver,
                PeerTransportConfig config, Handler handler);
  ~PeerTransport();  // stop()s
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // Binds every listen URL; fails with a message naming the URL.
  [[nodiscard]] Status listen();
  // Closes listeners and connections; pending sends are dropped. Idempotent.
  void stop();

  // Peer set (the cluster's members other than this one), keyed by member id.
  void add_peer(uint64_t id, std::vector<std::string> peer_urls);
  void update_peer(uint64_t id, std::vector<std::string> peer_urls);
  // Also remembers `id` (known as a peer or not) as removed: its handshakes are then refused
  // with kRemovedMember, which tells that member to stop.
  void remove_peer(uint64_t id);

  // Queues messages for their `to` peers (see the contract above).
  void send(std::vector<raft::Message> messages);
  // Streams a snapshot (m.type == kSnap, m.snapshot set) with its bytes; done(ok) runs on the
  // deliver executor once the receiver acknowledged it (ok) or the stream failed (!ok).
  void send_snapshot(raft::Message m, std::shared_ptr<const std::string> data,
                     std::function<void(bool ok)> done);

  // True when a connection to `peer` is established now (for /v2/stats and health).
  bool connected(uint64_t peer) const;
  // When the current connection to `peer` was established; nullopt while not connected (etcd's
  // transport ActiveSince, which --strict-reconfig-check consults).
  std::optional<std::chrono::steady_clock::time_point> active_since(uint64_t peer) const;
  std::map<uint64_t, PeerStats> stats() const;
  // The ports listen() bound, in listen URL order (useful when a URL asked for port 0).
  std::vector<uint16_t> listening_ports() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace kvd::server
