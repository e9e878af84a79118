// A connection's byte stream: a TCP socket, or TLS over it once use_tls() ran. It models
// Asio's AsyncReadStream and AsyncWriteStream, so asio::async_write, asio::async_read and
// Beast's http::async_read/async_write take it as they take a socket; the plain path pays one
// branch per operation and nothing else.
//
// TLS is OpenSSL driven directly rather than through Asio's ssl::stream: records go out from
// OpenSSL to the socket with one send each (a BIO that sends, non-blocking), so an answer is
// encrypted and written in one call, write_now() works as on a plain socket, and no composed
// operation, output buffer copy or reactor round trip is paid per write. Received bytes are read
// by the socket's own asynchronous read (no extra system call while the socket is empty) into
// the caller's buffer and handed to OpenSSL through a memory BIO. A write of several buffers
// (headers, body, chunk framing) is gathered into one buffer first, so that it goes out as one
// TLS record and one system call, as a plain socket's writev does.
//
// Errors are those of Asio's SSL streams: OpenSSL's in asio::error::get_ssl_category(), the
// socket's own, asio::error::eof after the peer's close_notify and ssl::error::stream_truncated
// when the connection ended without one.
//
// Ownership: owns the socket and the TLS state; not movable (OpenSSL refers to the stream).
// Threads: as a socket: one executor, one read and one write in flight at a time.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>

typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace kvd::server::tls {

class Stream {
 public:
  using tcp = boost::asio::ip::tcp;
  using executor_type = tcp::socket::executor_type;
  using handshake_type = boost::asio::ssl::stream_base::handshake_type;
  using error_code = boost::system::error_code;

  explicit Stream(tcp::socket socket) : socket_(std::move(socket)) {}
  template <class ExecutionContextOrExecutor>
  explicit Stream(ExecutionContextOrExecutor&& ex,
                  std::enable_if_t<!std::is_same_v<std::decay_t<ExecutionContextOrExecutor>, tcp::socket>>* = nullptr)
      : socket_(std::forward<ExecutionContextOrExecutor>(ex)) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  executor_type get_executor() { return socket_.get_executor(); }
  tcp::socket& socket() { return socket_; }
  const tcp::socket& socket() const { return socket_; }

  // Makes this a TLS stream with `ctx` (kept alive as long as the stream). REQUIRES: no I/O yet,
  // the socket open. Throws boost::system::system_error when OpenSSL cannot make the session.
  void use_tls(std::shared_ptr<boost::asio::ssl::context> ctx);
  bool is_tls() const { return ssl_ != nullptr; }
  // The OpenSSL handle (SSL*), or null on a plain stream.
  void* native_ssl() { return ssl_; }

  // Handshake(error_code). REQUIRES: is_tls().
  template <class Handler>
  void async_handshake(handshake_type type, Handler&& handler) {
    start_handshake(type);
    run<void(error_code)>(Op::kHandshake, nullptr, 0, std::forward<Handler>(handler));
  }
  // The server's handshake when the first bytes were already read from the socket:
  // Handler(error_code, size_t bytes of `initial` used). All of them are: what follows the
  // handshake in them is kept for the first read. REQUIRES: is_tls().
  template <class ConstBuffers, class Handler>
  void async_handshake(handshake_type type, const ConstBuffers& initial, Handler&& handler) {
    start_handshake(type);
    size_t used = 0;
    for (auto it = boost::asio::buffer_sequence_begin(initial);
         it != boost::asio::buffer_sequence_end(initial); ++it) {
      boost::asio::const_buffer b(*it);
      feed(b.data(), b.size());
      used += b.size();
    }
    run<void(error_code, size_t)>(Op::kHandshake, nullptr, used, std::forward<Handler>(handler));
  }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (!ssl_) return socket_.async_read_some(buffers, std::forward<Handler>(handler));
    boost::asio::mutable_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      first = boost::asio::mutable_buffer(*it);
      if (first.size() > 0) break;
    }
    run<void(error_code, size_t)>(Op::kRead, first.data(), first.size(), std::forward<Handler>(handler));
  }

  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (!ssl_) return socket_.async_write_some(buffers, std::forward<Handler>(handler));
    boost::asio::const_buffer b = gather(buffers);
    run<void(error_code, size_t)>(Op::kWrite, const_cast<void*>(b.data()), b.size(),
                                  std::forward<Handler>(handler));
  }

  // Writes what the socket takes now, without waiting and without a trip through the reactor:
  // one sendmsg of up to kMaxPieces buffers, or with TLS one SSL write of the gathered buffers.
  // Returns the bytes written; ec is would_block when nothing could be written now (the caller
  // then writes the same buffers with async_write, which TLS requires to finish a record it
  // began), another error when the connection failed.
  template <class ConstBuffers>
  size_t write_now(const ConstBuffers& buffers, error_code& ec) {
    ec = {};
    if (ssl_) {
      boost::asio::const_buffer b = gather(buffers);
      if (b.size() == 0) return 0;
      size_t n = 0;
      if (step(Op::kWrite, const_cast<void*>(b.data()), b.size(), n, ec) != Want::kNothing) {
        ec = boost::asio::error::would_block;
        return 0;
      }
      return n;
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
      else ec = error_code(errno, boost::system::system_category());
      return 0;
    }
  }

  // Closes the socket (a TLS stream sends no close_notify: every answer is framed, as Go's
  // server also relies on).
  void close(error_code& ec) {
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

 private:
  enum class Op { kHandshake, kRead, kWrite };
  enum class Want { kNothing, kInput, kOutput };

  // One TLS operation: OpenSSL is called until it is done, reading from the socket into the
  // operation's buffer (the handshake's own one) when it wants input and waiting for the socket
  // to take more when it wants to send. A result at the first try is posted, never called
  // inline, as Asio requires of every asynchronous operation.
  struct TlsOp {
    TlsOp(Stream* stream, Op o, void* d, size_t len) : s(stream), op(o), data(d), size(len) {}

    Stream* s;
    Op op;
    void* data;
    size_t size;
    enum { kStart, kReading, kWaiting, kDeliver } state = kStart;
    size_t n = 0;
    error_code result;

    template <class Self>
    void operator()(Self& self, error_code ec = {}, size_t got = 0) {
      switch (state) {
        case kDeliver:
          return self.complete(result, n);
        case kReading:
          if (ec == boost::asio::error::eof) s->input_ended_ = true;
          else if (ec) return self.complete(ec, 0);
          else s->feed(read_buffer().data(), got);
          break;
        case kWaiting:
          if (ec) return self.complete(ec, 0);
          break;
        case kStart:
          break;
      }
      const bool first = state == kStart;
      Want want = s->step(op, data, size, n, result);
      if (want == Want::kInput && s->input_ended_) {
        want = Want::kNothing;
        result = s->input_ended_error();
        n = 0;
      }
      if (want == Want::kNothing) {
        if (op == Op::kHandshake) {
          s->finish_handshake();
          n = result ? 0 : size;
        }
        if (!first) return self.complete(result, n);
        state = kDeliver;
        return boost::asio::post(s->socket_.get_executor(), std::move(self));
      }
      if (want == Want::kOutput) {
        state = kWaiting;
        return s->socket_.async_wait(tcp::socket::wait_write, std::move(self));
      }
      state = kReading;
      s->socket_.async_read_some(read_buffer(), std::move(self));
    }

    boost::asio::mutable_buffer read_buffer() const {
      // A read decrypts into the caller's buffer; the ciphertext read there first was copied
      // into OpenSSL by feed() before that.
      if (op == Op::kRead) return boost::asio::buffer(data, size);
      return boost::asio::buffer(s->handshake_buf_.get(), kHandshakeBufBytes);
    }
  };

  template <class Signature, class Handler>
  void run(Op op, void* data, size_t size, Handler&& handler) {
    if constexpr (std::is_same_v<Signature, void(error_code)>) {
      auto wrapped = [h = std::forward<Handler>(handler)](error_code ec, size_t) mutable { h(ec); };
      boost::asio::async_compose<decltype(wrapped), void(error_code, size_t)>(
          TlsOp{this, op, data, size}, wrapped, socket_);
    } else {
      boost::asio::async_compose<Handler, void(error_code, size_t)>(TlsOp{this, op, data, size},
                                                                    handler, socket_);
    }
  }

  // One OpenSSL call for `op`. kNothing: done, with `ec` and `n` (bytes read or written).
  Want step(Op op, void* data, size_t size, size_t& n, error_code& ec);
  void start_handshake(handshake_type type);
  void finish_handshake() { handshake_buf_.reset(); }
  // Hands received bytes to OpenSSL.
  void feed(const void* data, size_t n);
  // Whether a read may be answered without reading the socket: received bytes (or records)
  // wait in OpenSSL, or the socket's input ended.
  bool holds_input() const;
  // What a read gets once the socket's input ended: eof after a close_notify, else truncated.
  error_code input_ended_error() const;

  template <class ConstBuffers>
  boost::asio::const_buffer gather(const ConstBuffers& buffers) {
    size_t pieces = 0;
    boost::asio::const_buffer only;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() > 0) {
        ++pieces;
        only = b;
      }
    }
    if (pieces <= 1) return only;
    // Gathered: the bytes written are a prefix of `buffers`, which the caller consumes. The
    // same buffers gather to the same bytes, as a retried TLS write must present.
    gathered_.resize(std::min<size_t>(boost::asio::buffer_size(buffers), kMaxGatherBytes));
    boost::asio::buffer_copy(boost::asio::buffer(gathered_), buffers);
    return boost::asio::buffer(gathered_);
  }

  friend struct SendBio;

  // One TLS record's worth: a longer write goes out record by record anyway, and gathering
  // more would copy the rest again on every record.
  static constexpr size_t kMaxGatherBytes = 16 * 1024;
  // Buffers one plain write_now takes (the rest waits for the next write).
  static constexpr size_t kMaxPieces = 64;
  // The handshake's read size (a client hello, a server's flight arrive in a few of them).
  static constexpr size_t kHandshakeBufBytes = 4096;

  tcp::socket socket_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;
  SSL* ssl_ = nullptr;
  BIO* input_ = nullptr;         // received ciphertext, owned by ssl_
  bool input_ended_ = false;     // the socket read end of file
  int send_errno_ = 0;           // errno of the last failed send, for SSL_ERROR_SYSCALL
  std::unique_ptr<char[]> handshake_buf_;
  std::string gathered_;  // the buffer of the write in flight, when gathered
};

}  // namespace kvd::server::tls
