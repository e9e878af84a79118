// Peer transport over TCP (Boost.Asio). The byte format (handshake, frames, message encoding,
// snapshot chunks, acks, what a truncated stream means) is described in server/peer_wire.h.
//
// Connections. Each member dials every peer in its peer set and keeps one outgoing connection per
// peer, which carries only this member's messages and snapshots to that peer (plus the peer's
// handshake reply and snapshot acks coming back). Connections accepted on the listen URLs are the
// peers' outgoing connections: inbound streams whose frames are delivered to the Handler. The
// first four bytes of an accepted connection decide what it is: the kvd magic starts a peer
// handshake, an HTTP method starts an HTTP/1.1 exchange (GET /members, GET /version, anything
// else 404), anything else is logged and closed. An inbound connection that does not finish its
// handshake or HTTP request within handshake_timeout is closed.
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
//
// Threads: the io_context may run on any number of threads. All transport state and every call
// on a socket, timer or acceptor is guarded by Impl::mu, so stop() can close everything
// synchronously from any thread; completion handlers take the mutex, and handlers of a
// connection that was replaced or closed notice it (the peer's `conn` changed) and return.
// Handler callbacks and done() are only ever posted to the `deliver` executor, never called with
// the mutex held; once stop() has returned, none starts (pending snapshots' done() are
// dropped). Decoding of received frames happens outside the mutex (only the connection's read
// chain touches its buffers).
#include "server/peer_transport.h"

#include <algorithm>
#include <cstring>
#include <array>
#include <atomic>
#include <cmath>
#include <ctime>
#include <deque>
#include <mutex>
#include <set>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/peer_wire.h"

namespace kvd::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::chrono::milliseconds kInitialBackoff{50};
// Repeated warnings about one peer or remote address are logged at most this often.
constexpr std::chrono::seconds kWarnInterval{60};
// An accept error (e.g. out of file descriptors) is retried after this pause, not in a hot loop.
constexpr std::chrono::milliseconds kAcceptRetry{100};
constexpr uint64_t kMaxHttpBodyBytes = 64 * 1024;
constexpr std::string_view kVersionJson = R"({"etcdserver":"3.4.23","etcdcluster":"3.4.0"})";

std::string hex_id(uint64_t id) { return fmt::format("{:x}", id); }

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

 private:
  std::map<std::string, Clock::time_point> last_;
};

struct HostPort {
  std::string host;
  std::string port;
};

// "http://host:port[/path]" -> host, port. https and anything unparsable are refused.
std::optional<HostPort> parse_http_url(std::string_view url, std::string* why) {
  if (url.rfind("http://", 0) != 0) {
    *why = url.rfind("https://", 0) == 0 ? "https peer URLs are not supported"
                                         : "URL scheme must be http";
    return std::nullopt;
  }
  url.remove_prefix(7);
  if (size_t slash = url.find('/'); slash != std::string_view::npos) url = url.substr(0, slash);
  HostPort hp;
  if (!url.empty() && url.front() == '[') {
    size_t close = url.find(']');
    if (close == std::string_view::npos || close + 1 >= url.size() || url[close + 1] != ':') {
      *why = "no port";
      return std::nullopt;
    }
    hp.host = std::string(url.substr(1, close - 1));
    hp.port = std::string(url.substr(close + 2));
  } else {
    size_t colon = url.rfind(':');
    if (colon == std::string_view::npos) {
      *why = "no port";
      return std::nullopt;
    }
    hp.host = std::string(url.substr(0, colon));
    hp.port = std::string(url.substr(colon + 1));
  }
  if (hp.port.empty() || hp.port.find_first_not_of("0123456789") != std::string::npos) {
    *why = "bad port";
    return std::nullopt;
  }
  if (hp.host.empty()) hp.host = "0.0.0.0";
  return hp;
}

// The Date header as Go's net/http writes it (RFC 7231 IMF-fixdate).
std::string http_date() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} GMT", kDays[tm.tm_wday], tm.tm_mday,
                     kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

bool looks_like_http(std::string_view first4) {
  for (std::string_view method : {"GET ", "HEAD", "POST", "PUT ", "DELE", "OPTI", "PATC"}) {
    if (first4 == method) return true;
  }
  return false;
}

std::string remote_of(const tcp::socket& s) {
  error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

std::string remote_host_of(const tcp::socket& s) {
  error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? "?" : ep.address().to_string();
}

void close_socket(tcp::socket& s) {
  error_code ignored;
  s.shutdown(tcp::socket::shutdown_both, ignored);
  s.close(ignored);
}

// Deadlines are plain timers whose handlers take Impl::mu (Beast's tcp_stream timeouts would
// close the socket from a handler outside the mutex). disarm() makes a fired-but-queued handler
// see a future expiry and do nothing.
void disarm(asio::steady_timer& t) { t.expires_at(Clock::time_point::max()); }
bool expired(const asio::steady_timer& t) { return t.expiry() <= Clock::now(); }

}  // namespace

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
  tcp::socket socket;
  asio::steady_timer deadline;  // dial_timeout for connect + handshake
  tcp::resolver resolver;
  std::string handshake;
  std::array<char, wire::kReplyFixedBytes> reply_header{};
  std::string reply_reason;
  std::array<char, wire::kFrameHeaderBytes> ack_header{};
  std::string ack_body;
  std::string url;
};

// Outgoing state for one member of the peer set. Guarded by Impl::mu.
struct Peer {
  enum class State { kDialing, kConnected, kBackoff };

  Peer(asio::io_context& io, uint64_t id, std::vector<std::string> urls)
      : id(id), urls(std::move(urls)), backoff_timer(io) {}

  const uint64_t id;
  std::vector<std::string> urls;
  size_t next_url = 0;
  bool removed = false;
  State state = State::kDialing;
  std::shared_ptr<OutConn> conn;  // Invariant: non-null unless state == kBackoff or removed
  asio::steady_timer backoff_timer;
  std::chrono::milliseconds backoff = kInitialBackoff;
  bool ever_connected = false;
  std::optional<Clock::time_point> connected_since;  // Invariant: set iff state == kConnected

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
};

// An accepted connection: a peer's inbound stream, or an HTTP client.
struct InConn {
  explicit InConn(tcp::socket s) : socket(std::move(s)), deadline(socket.get_executor()) {}
  tcp::socket socket;
  asio::steady_timer deadline;  // handshake_timeout while a handshake, request or write is due
  std::string remote;
  std::array<char, 4> head{};
  std::array<char, wire::kHandshakeBytes - 4> handshake_rest{};
  uint64_t sender = 0;  // set once the handshake was accepted
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
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors;
  std::vector<uint16_t> ports;
  std::map<uint64_t, std::shared_ptr<Peer>> peers;
  std::set<std::shared_ptr<InConn>> inbound;
  std::set<uint64_t> removed_members;  // removed from the cluster: refused as kRemovedMember
  bool removal_reported = false;       // Handler::on_removed was posted
  WarnLimiter warn_limiter;
  uint64_t next_snapshot_id = 1;

  // --- posting to the Handler (never inline) ---

  void post_unreachable(uint64_t peer) {
    if (!handler.on_unreachable) return;
    asio::post(deliver, [self = shared_from_this(), peer] {
      if (!self->halted) self->handler.on_unreachable(peer);
    });
  }
  void post_done(std::function<void(bool)> done, bool ok) {
    if (!done) return;
    asio::post(deliver, [self = shared_from_this(), done = std::move(done), ok] {
      if (!self->halted) done(ok);
    });
  }

  // --- listening ---

  Status listen() {
    std::lock_guard lk(mu);
    if (stopped) return Status::error("peer transport is stopped");
    std::vector<std::shared_ptr<tcp::acceptor>> bound;
    std::vector<uint16_t> bound_ports;
    for (const std::string& url : config.listen_peer_urls) {
      std::string why;
      auto hp = parse_http_url(url, &why);
      if (!hp) return Status::error("cannot listen on peer URL " + url + ": " + why);
      error_code ec;
      tcp::resolver resolver(io);
      auto results = resolver.resolve(hp->host, hp->port, tcp::resolver::passive, ec);
      if (ec || results.empty()) {
        return Status::error("cannot listen on peer URL " + url + ": " +
                             (ec ? ec.message() : "host not found"));
      }
      auto acc = std::make_shared<tcp::acceptor>(io);
      tcp::endpoint ep = results.begin()->endpoint();
      acc->open(ep.protocol(), ec);
      if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) acc->bind(ep, ec);
      if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        for (auto& a : bound) a->close(ec);
        return Status::error("cannot listen on peer URL " + url + ": " + ec.message());
      }
      bound_ports.push_back(acc->local_endpoint(ec).port());
      bound.push_back(std::move(acc));
    }
    for (auto& acc : bound) {
      acceptors.push_back(acc);
      start_accept_locked(acc);
    }
    ports.insert(ports.end(), bound_ports.begin(), bound_ports.end());
    return Status::ok();
  }

  // REQUIRES: mu held.
  void start_accept_locked(const std::shared_ptr<tcp::acceptor>& acc) {
    acc->async_accept([self = shared_from_this(), acc](error_code ec, tcp::socket socket) {
      std::lock_guard lk(self->mu);
      if (self->stopped || !acc->is_open()) return;
      if (ec) {
        if (self->warn_limiter.allow("accept")) {
          spdlog::warn("peer port: accept failed: {}", ec.message());
        }
        auto timer = std::make_shared<asio::steady_timer>(self->io, kAcceptRetry);
        timer->async_wait([self, acc, timer](error_code) {
          std::lock_guard lk(self->mu);
          if (!self->stopped && acc->is_open()) self->start_accept_locked(acc);
        });
        return;
      }
      auto c = std::make_shared<InConn>(std::move(socket));
      self->inbound.insert(c);
      self->start_inbound_locked(c);
      self->start_accept_locked(acc);
    });
  }

  // --- inbound connections ---

  // REQUIRES: mu held.
  void close_inbound_locked(const std::shared_ptr<InConn>& c) {
    c->deadline.cancel();
    close_socket(c->socket);
    inbound.erase(c);
  }

  // Logs a refused or broken inbound connection, at most once per minute per remote host.
  // REQUIRES: mu held.
  void warn_inbound_locked(const std::shared_ptr<InConn>& c, const std::string& what) {
    std::string key = "in:" + remote_host_of(c->socket) + ":" + hex_id(c->sender);
    if (warn_limiter.allow(key)) spdlog::warn("peer port: connection from {}: {}", c->remote, what);
  }

  // Closes c unless the deadline is re-armed or disarmed first. REQUIRES: mu held.
  void arm_inbound_locked(const std::shared_ptr<InConn>& c, const char* what) {
    c->deadline.expires_after(config.handshake_timeout);
    c->deadline.async_wait([self = shared_from_this(), c, what](error_code ec) {
      if (ec == asio::error::operation_aborted) return;
      std::lock_guard lk(self->mu);
      if (self->stopped || !self->inbound.count(c) || !expired(c->deadline)) return;
      self->warn_inbound_locked(c, std::string("closed: ") + what);
      self->close_inbound_locked(c);
    });
  }

  // REQUIRES: mu held.
  void start_inbound_locked(const std::shared_ptr<InConn>& c) {
    c->remote = remote_of(c->socket);
    arm_inbound_locked(c, "nothing complete received within the handshake timeout");
    c->socket.async_read_some(asio::buffer(c->head), [self = shared_from_this(), c](
                                                         error_code ec, size_t n) {
      self->on_first_bytes(c, ec, n, 0);
    });
  }

  // Reads until the first four bytes are in (they may arrive in pieces), then dispatches.
  void on_first_bytes(const std::shared_ptr<InConn>& c, error_code ec, size_t n, size_t have) {
    std::lock_guard lk(mu);
    if (stopped || !inbound.count(c)) return;
    have += n;
    if (ec) {
      if (have > 0) {
        warn_inbound_locked(c, "closed before a complete handshake: " + ec.message());
      }
      return close_inbound_locked(c);
    }
    if (have < c->head.size()) {
      c->socket.async_read_some(
          asio::buffer(c->head.data() + have, c->head.size() - have),
          [self = shared_from_this(), c, have](error_code ec, size_t n) {
            self->on_first_bytes(c, ec, n, have);
          });
      return;
    }
    std::string_view head(c->head.data(), c->head.size());
    if (head == std::string_view(wire::kMagic.data(), wire::kMagic.size())) {
      asio::async_read(c->socket, asio::buffer(c->handshake_rest),
                       [self = shared_from_this(), c](error_code ec, size_t) {
                         self->on_handshake(c, ec);
                       });
    } else if (looks_like_http(head)) {
      c->http_buffer.commit(asio::buffer_copy(c->http_buffer.prepare(head.size()),
                                              asio::buffer(head.data(), head.size())));
      read_http_request_locked(c);
    } else {
      warn_inbound_locked(c, "refused: neither a kvd peer handshake nor an HTTP request");
      close_inbound_locked(c);
    }
  }

  void on_handshake(const std::shared_ptr<InConn>& c, error_code ec) {
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
        spdlog::warn("peer port: refused connection from {} (member {}): {}: {}", c->remote,
                     hex_id(h->sender), wire::to_string(code), reason);
      }
      c->close_after_write = true;
      return flush_inbound_locked(c);
    }
    c->sender = h->sender;
    disarm(c->deadline);
    spdlog::debug("peer port: accepted stream from member {} at {}", hex_id(c->sender), c->remote);
    flush_inbound_locked(c);
    read_frame_header_locked(c);
  }

  // Writes c->out in order. REQUIRES: mu held.
  void flush_inbound_locked(const std::shared_ptr<InConn>& c) {
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
  void read_frame_header_locked(const std::shared_ptr<InConn>& c) {
    read_buffered(c, c->frame_header.data(), c->frame_header.size(), 0, false,
                  [self = shared_from_this(), c](error_code ec, size_t n) {
                    self->on_frame_header(c, ec, n);
                  });
  }

  void on_frame_header(const std::shared_ptr<InConn>& c, error_code ec, size_t n) {
    std::lock_guard lk(mu);
    if (stopped || !inbound.count(c)) return;
    if (ec) {
      if (n > 0) {
        warn_inbound_locked(c, "stream truncated inside a frame header: " + ec.message());
      } else if (c->assembly) {
        warn_inbound_locked(c, "stream ended during a snapshot: the partial snapshot is dropped");
      } else {
        spdlog::debug("peer port: stream from member {} closed: {}", hex_id(c->sender),
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

  // Sends a negative ack for the snapshot being received and closes after it.
  // REQUIRES: mu held.
  void abort_inbound_locked(const std::shared_ptr<InConn>& c, const std::string& why) {
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

  void on_frame_body(const std::shared_ptr<InConn>& c, error_code ec) {
    // Checksum and decoding run without the mutex: only this read chain touches c's buffers.
    if (!ec && wire::crc32c(c->body) != c->header.crc) {
      std::lock_guard lk(mu);
      if (stopped || !inbound.count(c)) return;
      return abort_inbound_locked(c, "frame checksum mismatch");
    }
    if (ec) {
      std::lock_guard lk(mu);
      if (stopped || !inbound.count(c)) return;
      warn_inbound_locked(c, "stream truncated inside a frame body: " + ec.message());
      return close_inbound_locked(c);
    }
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

  // The sender must still be a peer; an inbound stream from a removed member is closed.
  // REQUIRES: mu held.
  bool sender_still_peer_locked(const std::shared_ptr<InConn>& c) {
    if (peers.count(c->sender)) return true;
    warn_inbound_locked(c, "closed: member " + hex_id(c->sender) + " is no longer a peer");
    close_inbound_locked(c);
    return false;
  }

  // A message must come from the handshake's sender, to this member, of a peer-to-peer type.
  bool valid_from_stream(const InConn& c, const raft::Message& m) const {
    return m.from == c.sender && m.to == config.member_id && wire::is_wire_message_type(m.type);
  }

  void on_messages(const std::shared_ptr<InConn>& c) {
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

  void on_snapshot_begin(const std::shared_ptr<InConn>& c) {
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

  void on_snapshot_chunk(const std::shared_ptr<InConn>& c) {
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

  void on_snapshot_end(const std::shared_ptr<InConn>& c) {
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
      spdlog::info("peer port: received snapshot at index {} ({} bytes) from member {}",
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

  // --- HTTP on the peer port ---

  // REQUIRES: mu held.
  void read_http_request_locked(const std::shared_ptr<InConn>& c) {
    c->parser.emplace();
    c->parser->body_limit(kMaxHttpBodyBytes);
    arm_inbound_locked(c, "no complete HTTP request within the handshake timeout");
    http::async_read(c->socket, c->http_buffer, *c->parser,
                     [self = shared_from_this(), c](error_code ec, size_t) {
                       self->on_http_request(c, ec);
                     });
  }

  void on_http_request(const std::shared_ptr<InConn>& c, error_code ec) {
    if (ec) {
      std::lock_guard lk(mu);
      if (stopped || !inbound.count(c)) return;
      if (ec != http::error::end_of_stream) {
        warn_inbound_locked(c, "HTTP request not read: " + ec.message());
      }
      return close_inbound_locked(c);
    }
    const auto& req = c->parser->get();
    std::string_view target(req.target().data(), req.target().size());
    target = target.substr(0, target.find('?'));
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req.version());
    res->keep_alive(req.keep_alive());
    auto method_not_allowed = [&] {
      res->result(http::status::method_not_allowed);
      res->set(http::field::allow, "GET");
      res->set(http::field::content_type, "text/plain; charset=utf-8");
      res->set("X-Content-Type-Options", "nosniff");
      res->body() = "Method Not Allowed\n";
    };
    if (target == "/members") {
      if (req.method() != http::verb::get) {
        method_not_allowed();
      } else {
        res->result(http::status::ok);
        res->set(http::field::content_type, "application/json");
        res->set("X-Etcd-Cluster-Id", hex_id(config.cluster_id));
        // members_json is safe from any thread (Handler contract) and runs without our mutex.
        res->body() = handler.members_json ? handler.members_json() : "[]\n";
      }
    } else if (target == "/version") {
      if (req.method() != http::verb::get) {
        method_not_allowed();
      } else {
        res->result(http::status::ok);
        res->set(http::field::content_type, "application/json");
        res->body() = std::string(kVersionJson);
      }
    } else {
      res->result(http::status::not_found);
      res->set(http::field::content_type, "text/plain; charset=utf-8");
      res->set("X-Content-Type-Options", "nosniff");
      res->body() = "404 page not found\n";
    }
    res->set(http::field::date, http_date());
    res->prepare_payload();
    std::lock_guard lk(mu);
    if (stopped || !inbound.count(c)) return;
    arm_inbound_locked(c, "the HTTP client did not read its answer within the handshake timeout");
    http::async_write(c->socket, *res, [self = shared_from_this(), c, res](error_code ec, size_t) {
      std::lock_guard lk(self->mu);
      if (self->stopped || !self->inbound.count(c)) return;
      if (ec || !res->keep_alive()) return self->close_inbound_locked(c);
      self->read_http_request_locked(c);
    });
  }

  // --- outgoing connections ---

  // REQUIRES: mu held.
  void warn_peer_locked(const Peer& p, const std::string& what) {
    if (warn_limiter.allow("out:" + hex_id(p.id))) {
      spdlog::warn("peer transport: member {}: {}", hex_id(p.id), what);
    }
  }

  // REQUIRES: mu held; p is in `peers`.
  void start_dial_locked(const std::shared_ptr<Peer>& p) {
    p->state = Peer::State::kDialing;
    auto conn = std::make_shared<OutConn>(io);
    p->conn = conn;
    if (p->urls.empty()) return fail_connection_locked(p, "no peer URLs");
    conn->url = p->urls[p->next_url++ % p->urls.size()];
    std::string why;
    auto hp = parse_http_url(conn->url, &why);
    if (!hp) return fail_connection_locked(p, "bad peer URL " + conn->url + ": " + why);
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
          asio::async_connect(conn->socket, results,
                              [self, p, conn](error_code ec, const tcp::endpoint&) {
                                self->on_connected(p, conn, ec);
                              });
        });
  }

  void on_connected(const std::shared_ptr<Peer>& p, const std::shared_ptr<OutConn>& conn,
                    error_code ec) {
    std::lock_guard lk(mu);
    if (stopped || p->conn != conn) return;
    if (ec) return fail_connection_locked(p, "connect to " + conn->url + ": " + ec.message());
    error_code ignored;
    conn->socket.set_option(tcp::no_delay(true), ignored);
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

  void on_reply_header(const std::shared_ptr<Peer>& p, const std::shared_ptr<OutConn>& conn,
                       error_code ec) {
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

  // REQUIRES: mu held; p->conn == conn.
  void on_accepted_locked(const std::shared_ptr<Peer>& p, const std::shared_ptr<OutConn>& conn) {
    disarm(conn->deadline);
    p->state = Peer::State::kConnected;
    p->connected_since = Clock::now();
    p->backoff = kInitialBackoff;
    if (!p->ever_connected) {
      spdlog::info("peer transport: connected to member {} at {}", hex_id(p->id), conn->url);
    } else {
      spdlog::debug("peer transport: reconnected to member {} at {}", hex_id(p->id), conn->url);
    }
    p->ever_connected = true;
    read_ack_locked(p, conn);
    pump_writes_locked(p);
  }

  // Reads snapshot acks from the acceptor; any error or end of stream breaks the connection.
  // REQUIRES: mu held; p->conn == conn.
  void read_ack_locked(const std::shared_ptr<Peer>& p, const std::shared_ptr<OutConn>& conn) {
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

  // Drops everything queued or in flight for p, fails its snapshots, reports it unreachable and
  // schedules a reconnect. REQUIRES: mu held.
  void fail_connection_locked(const std::shared_ptr<Peer>& p, const std::string& why) {
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
    p->queue.clear();
    p->queued_bytes = 0;
    bool snapshots_failed = !p->snapshots.empty() || !p->awaiting_ack.empty();
    fail_snapshots_locked(*p);
    if (p->removed) return;
    warn_peer_locked(*p, (was_connected ? "lost connection: " : "cannot connect: ") + why);
    if (was_connected || dropped > 0 || snapshots_failed) post_unreachable(p->id);
    p->state = Peer::State::kBackoff;
    p->backoff_timer.expires_after(p->backoff);
    p->backoff = std::min(p->backoff * 2, std::max(config.max_reconnect_backoff, kInitialBackoff));
    p->backoff_timer.async_wait([self = shared_from_this(), p](error_code ec) {
      if (ec == asio::error::operation_aborted) return;
      std::lock_guard lk(self->mu);
      if (self->stopped || p->removed || p->state != Peer::State::kBackoff) return;
      self->start_dial_locked(p);
    });
  }

  // REQUIRES: mu held.
  void fail_snapshots_locked(Peer& p) {
    for (auto& job : p.snapshots) post_done(std::move(job.done), false);
    p.snapshots.clear();
    for (auto& [id, done] : p.awaiting_ack) post_done(std::move(done), false);
    p.awaiting_ack.clear();
  }

  // Starts a write of everything queued for p, if connected and idle. REQUIRES: mu held.
  void pump_writes_locked(const std::shared_ptr<Peer>& p) {
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
          spdlog::error("peer transport: dropping a {}-byte message to member {}: over "
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
                          return self->fail_connection_locked(p, "write: " + ec.message());
                        }
                        p->stats.success += count;
                        self->pump_writes_locked(p);
                      });
  }

  // Appends the next piece of the front snapshot: its begin frame, or one chunk (followed by the
  // end frame when it is the last). REQUIRES: mu held; !p.snapshots.empty().
  void append_snapshot_frames_locked(Peer& p, std::string& out) {
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

  // REQUIRES: mu held.
  void record_heartbeat_resp_locked(Peer& p) {
    if (!p.heartbeat_sent) return;
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - *p.heartbeat_sent).count();
    p.heartbeat_sent.reset();
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

  // --- public operations ---

  void add_peer(uint64_t id, std::vector<std::string> urls) {
    std::lock_guard lk(mu);
    if (stopped || id == config.member_id) return;
    if (auto it = peers.find(id); it != peers.end()) {
      it->second->urls = std::move(urls);
      return;
    }
    auto p = std::make_shared<Peer>(io, id, std::move(urls));
    peers.emplace(id, p);
    start_dial_locked(p);
  }

  void update_peer(uint64_t id, std::vector<std::string> urls) {
    std::lock_guard lk(mu);
    if (stopped) return;
    auto it = peers.find(id);
    if (it == peers.end()) return;
    Peer& p = *it->second;
    // A live connection keeps going (the member is the same); the next dial uses the new URLs.
    p.urls = std::move(urls);
    p.next_url = 0;
  }

  void remove_peer(uint64_t id) {
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

  void send(std::vector<raft::Message> messages) {
    std::vector<std::pair<uint64_t, OutMessage>> encoded;
    encoded.reserve(messages.size());
    for (const raft::Message& m : messages) {
      if (!wire::is_wire_message_type(m.type)) {
        spdlog::error("peer transport: not sending a {} message to member {}: {}",
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
        spdlog::debug("peer transport: dropping a message to unknown member {}", hex_id(to));
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

  void send_snapshot(raft::Message m, std::shared_ptr<const std::string> data,
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

  void stop() {
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
};

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
