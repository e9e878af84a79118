// The peer transport's internals, shared by its four parts: peer_transport.cc (the public
// operations and stop), peer_listener.cc (the listeners, accepted connections and HTTP on the
// peer port), inbound_stream.cc (a peer's stream of frames into this member) and outbound_peer.cc
// (this member's connection to each peer: dial, back-off, queue, writes). Not part of the
// transport's interface: include server/peer/peer_transport.h instead.
//
// Threads: every member of Impl but the constants, `mu` and `halted` is guarded by Impl::mu
// (see the top of peer_transport.cc).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "common/ids.h"
#include "common/url.h"
#include "metrics/metrics.h"
#include "server/peer/peer_transport.h"
#include "server/peer/peer_wire.h"
#include "server/tls/stream.h"

namespace kvd::server {
namespace peer_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

// Repeated warnings about one peer or remote address are logged at most this often.
constexpr std::chrono::seconds kWarnInterval{60};
// An accept error (e.g. out of file descriptors) is retried after this pause, not in a hot loop.
constexpr std::chrono::milliseconds kAcceptRetry{100};
constexpr uint64_t kMaxHttpBodyBytes = 64 * 1024;


// Rate limit for warnings: allow() is true at most once per kWarnInterval per key.
// REQUIRES: Impl::mu held.
class WarnLimiter {
 public:
  bool allow(const std::string& key) {
    auto now = Clock::now();
    // Keys are peers and remote addresses; forget them all rather than grow without bound when
    // a scan of many addresses hits the port.
    if (last_.size() > 4096) last_.clear();
    auto [it, inserted] = last_.try_emplace(key, now);
    if (inserted) return true;
    if (now - it->second < kWarnInterval) return false;
    it->second = now;
    return true;
  }
  // Starts key's interval now, as if a warning had just been logged.
  void hold(const std::string& key) { last_[key] = Clock::now(); }

 private:
  std::map<std::string, Clock::time_point> last_;
};

// A peer URL's host and port: http://host:port[/path] (the path is ignored; no host means every
// address). On failure *why says why.
inline std::optional<url::Address> parse_peer_url(std::string_view u, std::string* why) {
  auto a = url::parse_address(u, why);
  if (!a) return std::nullopt;
  if (a->port.empty()) {
    *why = "no port";
    return std::nullopt;
  }
  if (a->host.empty()) a->host = "0.0.0.0";
  return a;
}

inline bool looks_like_http(std::string_view first4) {
  for (std::string_view method : {"GET ", "HEAD", "POST", "PUT ", "DELE", "OPTI", "PATC"}) {
    if (first4 == method) return true;
  }
  return false;
}

inline std::string remote_of(const tls::Stream& s) {
  error_code ec;
  auto ep = s.socket().remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

inline std::string remote_host_of(const tls::Stream& s) {
  error_code ec;
  auto ep = s.socket().remote_endpoint(ec);
  return ec ? "?" : ep.address().to_string();
}

// Sets TCP_USER_TIMEOUT (PeerTransportConfig::user_timeout) on a connected socket.
void set_user_timeout(tcp::socket& s, std::chrono::milliseconds timeout);

inline void close_socket(tls::Stream& s) {
  error_code ignored;
  s.close(ignored);
}

// Deadlines are plain timers whose handlers take Impl::mu (Beast's tcp_stream timeouts would
// close the socket from a handler outside the mutex). disarm() makes a fired-but-queued handler
// see a future expiry and do nothing.
inline void disarm(asio::steady_timer& t) { t.expires_at(Clock::time_point::max()); }
inline bool expired(const asio::steady_timer& t) { return t.expiry() <= Clock::now(); }

// One encoded message waiting for a write.
struct OutMessage {
  std::string bytes;
  bool heartbeat = false;
};

// A snapshot being streamed to a peer.
struct SnapshotJob {
  uint64_t id = 0;
  std::string begin_body;  // encoded kSnapshotBegin
  std::shared_ptr<const std::string> data;
  uint64_t offset = 0;     // Invariant: offset <= data->size(); bytes before it were queued
  uint32_t crc = 0;        // CRC32C of data[0, offset)
  bool begun = false;
  std::function<void(bool)> done;
};

// The outgoing connection to a peer; replaced on every dial. Handlers compare it with the peer's
// current `conn` to tell whether they are stale.
struct OutConn {
  explicit OutConn(asio::io_context& io) : socket(io), deadline(io), resolver(io) {}
  tls::Stream socket;
  asio::steady_timer deadline;  // dial_timeout for connect + handshake
  tcp::resolver resolver;
  std::string handshake;
  std::array<char, wire::kReplyFixedBytes> reply_header{};
  std::string reply_reason;
  std::array<char, wire::kFrameHeaderBytes> ack_header{};
  std::string ack_body;
  std::string url;
  std::string host;  // of url: what a TLS peer's certificate must name
  bool tls = false;  // url is https
};

// etcd's etcd_network_* families for one peer (To/From its hex id, Local/Remote for the
// connection gauges), looked up once.
metrics::Counter& received_bytes_from(uint64_t peer);
metrics::Counter& received_failures_from(uint64_t peer);
struct PeerMetrics {
  PeerMetrics(uint64_t local, uint64_t peer);
  metrics::Counter& sent_bytes;
  metrics::Counter& sent_failures;
  metrics::Counter& received_bytes;
  metrics::Counter& received_failures;
  metrics::Histogram& round_trip;
  metrics::Gauge& active;
  metrics::Counter& disconnected;
};

// Outgoing state for one member of the peer set. Guarded by Impl::mu.
struct Peer {
  enum class State { kDialing, kConnected, kBackoff };

  Peer(asio::io_context& io, uint64_t local, uint64_t id, std::vector<std::string> urls)
      : id(id), urls(std::move(urls)), backoff_timer(io), metrics(local, id) {}

  const uint64_t id;
  std::vector<std::string> urls;
  size_t next_url = 0;
  bool removed = false;
  State state = State::kDialing;
  std::shared_ptr<OutConn> conn;  // Invariant: non-null unless state == kBackoff or removed
  asio::steady_timer backoff_timer;
  std::chrono::milliseconds backoff;  // the next wait: config.initial_reconnect_backoff, doubling
  bool ever_connected = false;
  std::optional<Clock::time_point> connected_since;  // Invariant: set iff state == kConnected
  // Since when a peer that was connected is not (its "became inactive" line logged); the
  // "became active" line follows when it is back.
  std::optional<Clock::time_point> inactive_since;

  std::deque<OutMessage> queue;  // Invariant: queued_bytes == sum of queue[i].bytes.size()
  uint64_t queued_bytes = 0;
  bool writing = false;          // Invariant: at most one async_write in flight on conn
  std::deque<SnapshotJob> snapshots;  // front is being streamed
  std::map<uint64_t, std::function<void(bool)>> awaiting_ack;

  PeerStats stats;
  std::optional<Clock::time_point> heartbeat_sent;  // first unanswered heartbeat's write
  uint64_t latency_samples = 0;
  double latency_mean = 0;
  double latency_m2 = 0;  // Welford's running sum of squared deviations
  PeerMetrics metrics;
};

// An accepted connection: a peer's inbound stream, or an HTTP client.
struct InConn {
  explicit InConn(tcp::socket s) : socket(std::move(s)), deadline(socket.get_executor()) {}
  tls::Stream socket;
  asio::steady_timer deadline;  // handshake_timeout while a handshake, request or write is due
  std::string remote;
  std::array<char, 4> head{};
  std::array<char, wire::kHandshakeBytes - 4> handshake_rest{};
  uint64_t sender = 0;  // set once the handshake was accepted
  metrics::Counter* received_bytes = nullptr;     // the sender's, once it is known
  metrics::Counter* received_failures = nullptr;
  std::array<char, wire::kFrameHeaderBytes> frame_header{};
  std::string body;
  wire::FrameHeader header;
  // Bytes read from the stream past the handshake and not consumed yet: [rpos, rbuf.size()).
  std::string rbuf;
  size_t rpos = 0;

  // Snapshot being received.
  struct Assembly {
    uint64_t id = 0;
    uint64_t total_bytes = 0;
    raft::Message message;
    std::string data;
    uint32_t crc = 0;
  };
  std::optional<Assembly> assembly;

  // Replies and acks waiting to be written (written in order, one at a time).
  std::deque<std::string> out;
  bool writing = false;
  bool close_after_write = false;

  // HTTP.
  beast::flat_buffer http_buffer;
  std::optional<http::request_parser<http::string_body>> parser;
};

}  // namespace peer_detail

using namespace peer_detail;  // NOLINT: the transport's own vocabulary, in its four files

struct PeerTransport::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, asio::any_io_executor deliver, PeerTransportConfig config,
       Handler handler)
      : io(io), deliver(std::move(deliver)), config(std::move(config)),
        handler(std::move(handler)) {}

  asio::io_context& io;
  const asio::any_io_executor deliver;
  const PeerTransportConfig config;
  const Handler handler;

  mutable std::mutex mu;
  bool stopped = false;  // guarded by mu; once true, nothing new starts
  // Set with `stopped`; read without the mutex by posted Handler calls, which are skipped once
  // it is set: after stop() returns no Handler callback or done() starts.
  std::atomic<bool> halted{false};
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors;  // with their URL's TLS (https)
  std::vector<uint16_t> ports;
  std::map<uint64_t, std::shared_ptr<Peer>> peers;
  std::set<std::shared_ptr<InConn>> inbound;
  std::set<uint64_t> removed_members;  // removed from the cluster: refused as kRemovedMember
  bool removal_reported = false;       // Handler::on_removed was posted
  WarnLimiter warn_limiter;
  uint64_t next_snapshot_id = 1;

  // --- posting to the Handler (never inline) ---

  void post_unreachable(uint64_t peer);
  void post_done(std::function<void(bool)> done, bool ok);

  // --- listening ---

  Status listen();

  // REQUIRES: mu held.
  void start_accept_locked(const std::shared_ptr<tcp::acceptor>& acc, bool tls);

  // --- inbound connections ---

  // REQUIRES: mu held.
  void close_inbound_locked(const std::shared_ptr<InConn>& c);

  // Logs a refused or broken inbound connection, at most once per minute per remote host.
  // REQUIRES: mu held.
  void warn_inbound_locked(const std::shared_ptr<InConn>& c, const std::string& what);

  // Closes c unless the deadline is re-armed or disarmed first. REQUIRES: mu held.
  void arm_inbound_locked(const std::shared_ptr<InConn>& c, const char* what);

  // REQUIRES: mu held.
  void start_inbound_locked(const std::shared_ptr<InConn>& c);

  // An https listener's connection: the TLS handshake (within handshake_timeout), then etcd's
  // peer-port SAN rule (check_client_san), then start_inbound_locked. REQUIRES: mu held.
  void start_inbound_tls_locked(const std::shared_ptr<InConn>& c);
  void on_inbound_tls(const std::shared_ptr<InConn>& c, error_code ec);
  // etcd's checkSAN: a client certificate with SANs must name the remote address: by an IP SAN
  // when it has no DNS SANs; else one of its DNS SANs must resolve to it. REQUIRES: mu held.
  void check_client_san_locked(const std::shared_ptr<InConn>& c);
  void check_dns_san(const std::shared_ptr<InConn>& c, std::shared_ptr<tcp::resolver> resolver,
                     std::vector<std::string> names, size_t next, std::string remote);

  // Reads until the first four bytes are in (they may arrive in pieces), then dispatches.
  void on_first_bytes(const std::shared_ptr<InConn>& c, error_code ec, size_t n, size_t have);

  void on_handshake(const std::shared_ptr<InConn>& c, error_code ec);

  // Writes c->out in order. REQUIRES: mu held.
  void flush_inbound_locked(const std::shared_ptr<InConn>& c);

  // Frames are read through c->rbuf: one read takes whatever the stream holds (under load, many
  // frames), so that a frame costs no system call of its own.
  static constexpr size_t kReadChunk = 64 << 10;

  // Fills [out, out + n) from the stream, then done(ec, bytes filled) runs on c's executor:
  // posted when the buffer already held everything (the caller may hold mu), else from the
  // read's completion. filled: bytes of out already filled.
  // REQUIRES: no other read pending on c.
  template <class Done>
  void read_buffered(const std::shared_ptr<InConn>& c, char* out, size_t n, size_t filled,
                     bool may_call_inline, Done done) {
    const size_t take = std::min(n - filled, c->rbuf.size() - c->rpos);
    std::memcpy(out + filled, c->rbuf.data() + c->rpos, take);
    c->rpos += take;
    filled += take;
    if (filled == n) {
      if (may_call_inline) return done(error_code{}, n);
      asio::post(c->socket.get_executor(),
                 [done = std::move(done), n]() mutable { done(error_code{}, n); });
      return;
    }
    c->rbuf.resize(kReadChunk);  // drained: the read starts at its beginning
    c->rpos = 0;
    c->socket.async_read_some(
        asio::buffer(c->rbuf.data(), c->rbuf.size()),
        [self = shared_from_this(), c, out, n, filled, done = std::move(done)](
            error_code ec, size_t got) mutable {
          c->rbuf.resize(got);
          if (ec) return done(ec, filled);
          self->read_buffered(c, out, n, filled, true, std::move(done));
        });
  }

  // REQUIRES: mu held.
  void read_frame_header_locked(const std::shared_ptr<InConn>& c);

  void on_frame_header(const std::shared_ptr<InConn>& c, error_code ec, size_t n);

  // Sends a negative ack for the snapshot being received and closes after it.
  // REQUIRES: mu held.
  void abort_inbound_locked(const std::shared_ptr<InConn>& c, const std::string& why);

  void on_frame_body(const std::shared_ptr<InConn>& c, error_code ec);

  // The sender must still be a peer; an inbound stream from a removed member is closed.
  // REQUIRES: mu held.
  bool sender_still_peer_locked(const std::shared_ptr<InConn>& c);

  // A message must come from the handshake's sender, to this member, of a peer-to-peer type.
  bool valid_from_stream(const InConn& c, const raft::Message& m) const {
    return m.from == c.sender && m.to == config.member_id && wire::is_wire_message_type(m.type);
  }

  void on_messages(const std::shared_ptr<InConn>& c);

  void on_snapshot_begin(const std::shared_ptr<InConn>& c);

  void on_snapshot_chunk(const std::shared_ptr<InConn>& c);

  void on_snapshot_end(const std::shared_ptr<InConn>& c);

  // --- HTTP on the peer port ---

  // REQUIRES: mu held.
  void read_http_request_locked(const std::shared_ptr<InConn>& c);

  void on_http_request(const std::shared_ptr<InConn>& c, error_code ec);

  // --- outgoing connections ---

  // REQUIRES: mu held.
  void warn_peer_locked(const Peer& p, const std::string& what);

  // REQUIRES: mu held; p is in `peers`.
  void start_dial_locked(const std::shared_ptr<Peer>& p);

  void on_connected(const std::shared_ptr<Peer>& p, const std::shared_ptr<OutConn>& conn,
                    error_code ec);

  // Writes the peer handshake (after the TLS handshake on an https URL). REQUIRES: mu held.
  void send_handshake_locked(const std::shared_ptr<Peer>& p, const std::shared_ptr<OutConn>& conn);

  void on_reply_header(const std::shared_ptr<Peer>& p, const std::shared_ptr<OutConn>& conn,
                       error_code ec);

  // REQUIRES: mu held; p->conn == conn.
  void on_accepted_locked(const std::shared_ptr<Peer>& p, const std::shared_ptr<OutConn>& conn);

  // Reads snapshot acks from the acceptor; any error or end of stream breaks the connection.
  // REQUIRES: mu held; p->conn == conn.
  void read_ack_locked(const std::shared_ptr<Peer>& p, const std::shared_ptr<OutConn>& conn);

  // Drops everything queued or in flight for p, fails its snapshots, reports it unreachable and
  // schedules a reconnect. REQUIRES: mu held.
  void fail_connection_locked(const std::shared_ptr<Peer>& p, const std::string& why);

  // REQUIRES: mu held.
  void fail_snapshots_locked(Peer& p);

  // Starts a write of everything queued for p, if connected and idle. REQUIRES: mu held.
  void pump_writes_locked(const std::shared_ptr<Peer>& p);

  // Appends the next piece of the front snapshot: its begin frame, or one chunk (followed by the
  // end frame when it is the last). REQUIRES: mu held; !p.snapshots.empty().
  void append_snapshot_frames_locked(Peer& p, std::string& out);

  // REQUIRES: mu held.
  void record_heartbeat_resp_locked(Peer& p);

  // --- public operations ---

  void add_peer(uint64_t id, std::vector<std::string> urls);

  void update_peer(uint64_t id, std::vector<std::string> urls);

  void remove_peer(uint64_t id);

  void send(std::vector<raft::Message> messages);

  void send_snapshot(raft::Message m, std::shared_ptr<const std::string> data,
                     std::function<void(bool)> done);

  void stop();
};

}  // namespace kvd::server
