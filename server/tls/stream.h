// A connection's byte stream: a TCP socket, or TLS over it once use_tls() ran. It models
// Asio's AsyncReadStream and AsyncWriteStream, so asio::async_write, asio::async_read and
// Beast's http::async_read/async_write take it as they take a socket; the plain path pays one
// branch per operation and nothing else.
//
// With TLS, a write of several buffers (headers, body, chunk framing) is gathered into one
// buffer first, so that it goes out as one TLS record and one system call, as a plain socket's
// writev does, instead of one of each per buffer.
//
// Ownership: owns the socket and the TLS state; not movable (the TLS layer refers to the
// socket). Threads: as a socket: one executor, one read and one write in flight at a time.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

namespace kvd::server::tls {

class Stream {
 public:
  using tcp = boost::asio::ip::tcp;
  using executor_type = tcp::socket::executor_type;
  using handshake_type = boost::asio::ssl::stream_base::handshake_type;

  explicit Stream(tcp::socket socket) : socket_(std::move(socket)) {}
  template <class ExecutionContextOrExecutor>
  explicit Stream(ExecutionContextOrExecutor&& ex,
                  std::enable_if_t<!std::is_same_v<std::decay_t<ExecutionContextOrExecutor>, tcp::socket>>* = nullptr)
      : socket_(std::forward<ExecutionContextOrExecutor>(ex)) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  tcp::socket& socket() { return socket_; }
  const tcp::socket& socket() const { return socket_; }

  // Makes this a TLS stream with `ctx` (kept alive as long as the stream). REQUIRES: no I/O yet.
  void use_tls(std::shared_ptr<boost::asio::ssl::context> ctx) {
    ctx_ = std::move(ctx);
    tls_ = std::make_unique<boost::asio::ssl::stream<tcp::socket&>>(socket_, *ctx_);
  }
  bool is_tls() const { return tls_ != nullptr; }
  // The OpenSSL handle (SSL*), or null on a plain stream.
  void* native_ssl() { return tls_ ? tls_->native_handle() : nullptr; }

  // Handshake(error_code). REQUIRES: is_tls().
  template <class Handler>
  void async_handshake(handshake_type type, Handler&& handler) {
    tls_->async_handshake(type, std::forward<Handler>(handler));
  }
  // The server's handshake when the first bytes were already read from the socket:
  // Handler(error_code, size_t bytes of `initial` used). REQUIRES: is_tls().
  template <class ConstBuffers, class Handler>
  void async_handshake(handshake_type type, const ConstBuffers& initial, Handler&& handler) {
    tls_->async_handshake(type, initial, std::forward<Handler>(handler));
  }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_) tls_->async_read_some(buffers, std::forward<Handler>(handler));
    else socket_.async_read_some(buffers, std::forward<Handler>(handler));
  }

  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (!tls_) return socket_.async_write_some(buffers, std::forward<Handler>(handler));
    size_t pieces = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      if (boost::asio::const_buffer(*it).size() > 0) ++pieces;
    }
    if (pieces <= 1) return tls_->async_write_some(buffers, std::forward<Handler>(handler));
    // Gathered: the bytes written are a prefix of `buffers`, which the caller consumes.
    gathered_.resize(std::min<size_t>(boost::asio::buffer_size(buffers), kMaxGatherBytes));
    boost::asio::buffer_copy(boost::asio::buffer(gathered_), buffers);
    tls_->async_write_some(boost::asio::buffer(gathered_), std::forward<Handler>(handler));
  }

  // Writes what the socket takes now, without waiting and without a trip through the reactor:
  // one sendmsg of up to kMaxPieces buffers. A TLS stream writes nothing here (its records go
  // through async_write_some). Returns the bytes written; ec is would_block when nothing could
  // be written now, another error when the connection failed.
  template <class ConstBuffers>
  size_t write_now(const ConstBuffers& buffers, boost::system::error_code& ec) {
    ec = {};
    if (tls_) {
      ec = boost::asio::error::would_block;
      return 0;
    }
    std::array<iovec, kMaxPieces> iov{};
    size_t pieces = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && pieces < kMaxPieces; ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() > 0) iov[pieces++] = iovec{const_cast<void*>(b.data()), b.size()};
    }
    if (pieces == 0) return 0;
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = pieces;
    for (;;) {
      const ssize_t n = ::sendmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) ec = boost::asio::error::would_block;
      else ec = boost::system::error_code(errno, boost::system::system_category());
      return 0;
    }
  }

  // Closes the socket (a TLS stream sends no close_notify: every answer is framed, as Go's
  // server also relies on).
  void close(boost::system::error_code& ec) {
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

 private:
  // One TLS record's worth: a longer write goes out record by record anyway, and gathering
  // more would copy the rest again on every record.
  static constexpr size_t kMaxGatherBytes = 16 * 1024;
  // Buffers one write_now takes (the rest waits for the next write).
  static constexpr size_t kMaxPieces = 64;

  tcp::socket socket_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;
  std::unique_ptr<boost::asio::ssl::stream<tcp::socket&>> tls_;
  std::string gathered_;  // the buffer of the write in flight, when gathered
};

}  // namespace kvd::server::tls
