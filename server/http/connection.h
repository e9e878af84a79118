// One client connection of a ClientServer: reads requests, hands each to the server's
// RequestHandler, and writes the answers back, as Go's net/http server does for etcd.
//
// A connection alternates between reading one request and answering it; it never reads the
// next request before the current answer is fully written, so pipelined requests are answered
// in order. Watches answer in pieces (headers at once, then chunks); while one runs, a single
// pending read on the socket notices the client leaving (EOF or error) and removes the
// watcher; bytes it receives are kept for the next request.
//
// Ownership: a Connection is owned by the shared_ptrs held by its pending operations and by
// handlers answering its current request; ClientServer::State lists it (weakly) so that a stop
// can close it. Threads: every private method runs on the executor of its socket (an event
// loop's single thread, or a strand); the public methods may be called from any thread and
// dispatch to it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "server/http/client_server.h"
#include "server/http/host_whitelist.h"
#include "server/http/request_parser.h"
#include "server/http/response_writer.h"
#include "server/http/types.h"
#include "server/tls/stream.h"
#include "server/tls/tls_config.h"

namespace kvd::server {

class Connection;

// What a ClientServer shares with its connections. Connections keep it alive until they end,
// so a ClientServer may be destroyed while its event loops still drain.
struct ClientServer::State {
  using Clock = std::chrono::steady_clock;

  State(boost::asio::io_context& io_, RequestHandler& handler_, ClientServerConfig cfg_)
      : io(io_), cfg(std::move(cfg_)), handler(handler_), hosts(cfg.host_whitelist),
        accept_strand(boost::asio::make_strand(io_)) {
    cors_any = std::find(cfg.cors.begin(), cfg.cors.end(), "*") != cfg.cors.end();
    read_timeout = cfg.read_timeout_override.count() > 0
                       ? std::chrono::duration_cast<Clock::duration>(cfg.read_timeout_override)
                       : std::chrono::duration_cast<Clock::duration>(cfg.read_header_timeout);
  }

  boost::asio::io_context& io;
  const ClientServerConfig cfg;
  RequestHandler& handler;
  const HostWhitelist hosts;
  bool cors_any = false;
  Clock::duration read_timeout{};

  // Acceptors and their endpoints; the acceptors are used only on accept_strand after listen().
  boost::asio::strand<boost::asio::io_context::executor_type> accept_strand;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;
  std::vector<bool> acceptor_tls;  // per acceptor: an https URL (uses cfg.tls)

  mutable std::mutex mu;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;  // guarded by mu
  std::atomic<bool> stopped{false};  // no new connections or requests (stop or shutdown)
  bool stop_done = false;            // stop() ran; guarded by mu
  // Requests handed to the handler and not answered yet, over all connections.
  std::atomic<int64_t> handling{0};
  // Request body bytes charged by connections reading (or holding) a body.
  std::atomic<uint64_t> body_bytes{0};

  // Accept failures and refusals are logged at most once a minute. Used on accept_strand.
  Clock::time_point last_accept_warning{};
  // Refused TLS handshakes are logged at most once a second, with how many were not logged.
  std::mutex tls_warn_mu;
  Clock::time_point last_tls_warning{};  // guarded by tls_warn_mu
  uint64_t tls_warnings_suppressed = 0;  // guarded by tls_warn_mu

  bool warn_due(Clock::time_point now) {
    if (last_accept_warning != Clock::time_point{} &&
        now - last_accept_warning < std::chrono::minutes(1)) {
      return false;
    }
    last_accept_warning = now;
    return true;
  }
};

// One client connection (see the top of this file). REQUIRES: every private method runs on the
// executor of socket_; the public methods may be called from any thread.
class Connection final : public Exchange, public std::enable_shared_from_this<Connection> {
 public:
  // tls: the server's TLS contexts when the socket came from an https listener, else null.
  // place_lease: held until the connection is destroyed (ClientServerConfig::place_connection).
  Connection(std::shared_ptr<ClientServer::State> state, boost::asio::ip::tcp::socket socket,
             std::shared_ptr<tls::TlsContexts> tls, std::shared_ptr<void> place_lease);

  ~Connection() override;

  // Any thread.
  void start() {
    boost::asio::dispatch(socket_.get_executor(), [self = shared_from_this()] {
      if (self->tls_) self->start_tls();
      else self->read_request();
    });
  }
  // Closes now, except that a response being written is finished first (then it closes).
  void stop();
  // Shutdown: closes the connection unless a request on it is being handled or answered
  // (those close after their answer, see finish_request).
  void stop_if_idle();

  void reply(HttpResponse response) override;
  void begin_stream(HttpResponse headers, std::function<void()> on_close) override;
  void send_chunk(std::string data) override;
  void send_chunk(std::string data, std::function<void()> written) override;
  void end_stream() override {
    boost::asio::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->do_end_stream(); });
  }
  void send_last_chunk(std::string data) override;
  void send_chunk(SharedBytes data) override;
  void send_last_chunk(SharedBytes data) override;
  void notify_close(std::function<void()> on_close) override;

 private:
  // ---- TLS ----

  // Reads the first bytes in plain: a TLS client starts with a handshake record (0x16); anything
  // else (a plain HTTP request too) is closed with nothing sent and a warning logged, as etcd
  // does (a client then reports EOF). Then the TLS handshake, bounded by
  // ClientServerConfig::tls_handshake_timeout (etcd has no bound), and the first request.
  void start_tls();
  void read_first_bytes();
  void on_tls_handshake(boost::system::error_code ec);
  void warn_tls(const std::string& why);

  // ---- reading requests ----

  void read_request();

  // Waits for the whole header block in buf_, then checks and parses it (normalize_header).
  void scan_header();

  void on_header();

  void read_body();

  // Go hands a request to the handler before its body is read, so a broken chunked body
  // surfaces as the body reader's error: the API answers with it (etcd: 210 "Invalid POST
  // form"), and the connection closes since the stream is out of step.
  void dispatch_broken_chunked_body();

  // Go's server answers "OPTIONS *" itself (200, empty); its ServeMux answers any other method
  // with "*" with 400 and "Connection: close" set as a handler header.
  void reply_asterisk();

  void on_read_error(boost::system::error_code ec);

  void dispatch_request();

  void set_handling(bool on);

  // ---- answering ----

  void reply_too_large();
  // The bodies being read over all connections are bounded (ClientServerConfig::
  // max_buffered_body_bytes): a body is charged before it is read and released with its request.
  // A body that would exceed the bound is refused with 503, unless it is the only one.
  [[nodiscard]] bool charge_body(uint64_t bytes);
  void release_body_charge();
  void reply_busy();

  // Go's answer to a request it cannot read: no CORS, no Date, body = status text unless
  // given; always closes.
  void write_raw_and_close(std::string_view status_text, std::string_view body = {});

  // out_ = the status line and headers of r for this request (append_response_head).
  void compose_headers(const HttpResponse& r, Framing framing);

  void do_reply(HttpResponse r);

  void write_response(bool finish_normally);

  // The current request is fully answered: next request, or close.
  void finish_request();

  void do_begin_stream(HttpResponse h, std::function<void()> on_close);

  // The pending read that notices a client leaving is the one a stream uses (start_bg_read).
  void do_notify_close(std::function<void()> on_close);

  // Bytes to write: owned, or shared with other connections (never both).
  struct Piece {
    std::string own;
    SharedBytes shared;
    boost::asio::const_buffer buffer() const {
      return shared ? boost::asio::buffer(*shared) : boost::asio::buffer(own);
    }
    size_t size() const { return shared ? shared->size() : own.size(); }
  };

  void do_send_chunk(Piece data, std::function<void()> written);
  // send_last_chunk's hand-off, for either kind of bytes.
  void post_last_chunk(Piece data);
  // Queues one chunk; false if the stream is closed or ending (nothing queued) or was closed
  // now because the client reads too slowly.
  bool queue_chunk(Piece data, std::function<void()> written);

  void do_end_stream();

  // Writes bufs (which stay valid until done runs), then done(error_code): at once when the
  // socket takes all of it now (done runs before this returns, unless a next request is
  // already buffered or the write failed: then it is posted), else the rest through
  // async_write. The asynchronous path alone costs a reactor operation and a posted completion
  // per answer; most answers fit the socket's buffer.
  template <class Buffers, class Done>
  void write_bufs(const Buffers& bufs, Done done);

  void flush();

  // ---- reading while not parsing: disconnect detection and draining ----

  void start_bg_read();

  void on_bg_read(boost::system::error_code ec, size_t n);

  // Final answer written: stop sending, drain what the client still sends for a while.
  void graceful_close();

  void close();

  bool state_stopping() const { return state_->stopped.load(std::memory_order_relaxed); }

  // ---- the read deadline: one timer per connection, re-armed lazily ----

  void set_deadline(ClientServer::State::Clock::time_point t);
  void clear_deadline() { deadline_ = ClientServer::State::Clock::time_point::max(); }

  void on_timer(boost::system::error_code ec);

  std::shared_ptr<void> place_lease_;  // counts this connection on its loop (EventLoops::place)
  std::shared_ptr<ClientServer::State> state_;
  const std::shared_ptr<tls::TlsContexts> tls_;  // null on a plain-HTTP listener's connection
  tls::Stream socket_;
  boost::asio::steady_timer timer_;
  boost::beast::flat_buffer buf_;
  RequestData req_;
  std::optional<RequestParser> parser_;

  // The current request. Invariant: at most one write in flight (writing_).
  int version_ = 11;
  bool keep_alive_ = true;
  bool close_after_ = false;
  bool writing_ = false;
  bool handling_ = false;  // handed to the handler, not answered yet (counted in State)
  std::string out_;   // headers of a plain response
  std::string body_;  // body of a plain response
  std::string tail_;  // after body_: the end of a chunked plain response, else empty
  uint64_t req_count_ = 0;   // requests whose header was read on this connection
  std::string header_;       // the current request's header block, normalized for Beast
  size_t header_scanned_ = 0;  // bytes of buf_ already searched for the header's end
  std::string body_error_;   // why the body could not be read (Go's text), else empty
  uint64_t body_charge_ = 0;  // this request's share of State::body_bytes

  // Streaming (watch) state. Invariant: on_close_ is set only while streaming_, or between
  // notify_close() and the answer.
  bool streaming_ = false;
  bool stream_ending_ = false;
  bool chunked_ = true;
  std::function<void()> on_close_;
  std::deque<Piece> queue_;   // not yet handed to the socket
  size_t queued_bytes_ = 0;   // Invariant: the bytes in queue_
  // send_chunk's callbacks for the chunks in queue_, and for those in the batch being written.
  std::vector<std::function<void()>> written_, batch_written_;
  std::vector<Piece> batch_;  // being written
  std::vector<boost::asio::const_buffer> batch_bufs_;

  bool bg_reading_ = false;
  bool resume_after_bg_read_ = false;
  bool lingering_ = false;
  bool closed_ = false;
  std::string remote_ip_;
  std::string client_cert_cn_;  // HttpRequest::client_cert_cn, set after the TLS handshake

  ClientServer::State::Clock::time_point deadline_ = ClientServer::State::Clock::time_point::max();
  bool timer_armed_ = false;
};

}  // namespace kvd::server
