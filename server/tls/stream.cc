// The OpenSSL side of tls::Stream: the session, its two BIOs (received bytes in a memory BIO,
// records sent by a BIO that calls send()), and one OpenSSL call mapped to what it waits for.
#include "server/tls/stream.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>


#include <boost/asio/ssl/error.hpp>
#include <boost/system/system_error.hpp>

namespace kvd::server::tls {

// The sending BIO: each write is one non-blocking send() on the stream's socket (MSG_NOSIGNAL:
// a peer gone is an error, not a signal). A full socket is a retry, which OpenSSL reports as
// SSL_ERROR_WANT_WRITE with the record kept until the write is retried.
struct SendBio {
  static int write(BIO* b, const char* data, int len) {
    auto* s = static_cast<Stream*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    for (;;) {
      const ssize_t n = ::send(s->socket_.native_handle(), data, static_cast<size_t>(len),
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) return static_cast<int>(n);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        BIO_set_retry_write(b);
      } else {
        s->send_errno_ = errno;
      }
      return -1;
    }
  }
  static long ctrl(BIO*, int cmd, long, void*) {
    // OpenSSL flushes after each handshake flight; every write was sent already.
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
  }
  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }
  static BIO_METHOD* method() {
    static BIO_METHOD* m = [] {
      BIO_METHOD* made = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kvd send");
      BIO_meth_set_write(made, &SendBio::write);
      BIO_meth_set_ctrl(made, &SendBio::ctrl);
      BIO_meth_set_create(made, &SendBio::create);
      return made;
    }();
    return m;
  }
};

namespace {

void throw_ssl(const char* what) {
  throw boost::system::system_error(
      boost::system::error_code(static_cast<int>(ERR_get_error()), boost::asio::error::get_ssl_category()),
      what);
}

}  // namespace

Stream::~Stream() {
  if (ssl_) SSL_free(ssl_);  // frees both BIOs
}

void Stream::use_tls(std::shared_ptr<boost::asio::ssl::context> ctx) {
  ctx_ = std::move(ctx);
  ERR_clear_error();
  ssl_ = SSL_new(ctx_->native_handle());
  if (!ssl_) throw_ssl("SSL_new");
  // A write's record may be retried from another address (gathered_ may move), and a write
  // returns once a record went out, as a socket's write_some does.
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  input_ = BIO_new(BIO_s_mem());
  BIO* output = BIO_new(SendBio::method());
  if (!input_ || !output) {
    BIO_free(input_);
    BIO_free(output);
    input_ = nullptr;
    throw_ssl("BIO_new");
  }
  BIO_set_data(output, this);
  SSL_set_bio(ssl_, input_, output);
}

void Stream::start_handshake(handshake_type type) {
  if (type == boost::asio::ssl::stream_base::server) SSL_set_accept_state(ssl_);
  else SSL_set_connect_state(ssl_);
  handshake_buf_ = std::make_unique<char[]>(kHandshakeBufBytes);
}

void Stream::feed(const void* data, size_t n) {
  if (n > 0) BIO_write(input_, data, static_cast<int>(n));
}

bool Stream::holds_input() const {
  return input_ended_ || BIO_ctrl_pending(input_) > 0 || SSL_has_pending(ssl_) != 0;
}

Stream::error_code Stream::input_ended_error() const {
  if (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) return boost::asio::error::eof;
  return boost::asio::ssl::error::stream_truncated;
}

Stream::Want Stream::step(Op op, void* data, size_t size, size_t& n, error_code& ec) {
  n = 0;
  ec = {};
  if (op != Op::kHandshake && size == 0) return Want::kNothing;
  // Nothing received waits in OpenSSL (the usual case for a read after an answer): SSL_read
  // could only ask for more, so ask for it without the call.
  if (op == Op::kRead && !holds_input()) return Want::kInput;
  // SSL_get_error() below reads this thread's error queue, which must hold nothing from before
  // this call. It is almost always empty: looking costs a fraction of clearing it (which
  // resets and frees all sixteen of its slots each time).
  if (ERR_peek_error() != 0) ERR_clear_error();
  send_errno_ = 0;
  int r = 0;
  switch (op) {
    case Op::kHandshake: r = SSL_do_handshake(ssl_); break;
    case Op::kRead: r = SSL_read_ex(ssl_, data, size, &n); break;
    case Op::kWrite: r = SSL_write_ex(ssl_, data, size, &n); break;
  }
  if (r == 1) return Want::kNothing;
  n = 0;
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
      if (op != Op::kWrite) return Want::kInput;
      // A write that needs the peer's bytes first (renegotiation, refused by the contexts).
      ec = boost::asio::error::operation_not_supported;
      return Want::kNothing;
    case SSL_ERROR_WANT_WRITE:
      return Want::kOutput;
    case SSL_ERROR_ZERO_RETURN:
      ec = boost::asio::error::eof;
      return Want::kNothing;
    case SSL_ERROR_SYSCALL: {
      const unsigned long err = ERR_get_error();
      if (send_errno_ != 0) ec = error_code(send_errno_, boost::system::system_category());
      else if (err != 0) ec = error_code(static_cast<int>(err), boost::asio::error::get_ssl_category());
      else ec = boost::asio::ssl::error::unspecified_system_error;
      return Want::kNothing;
    }
    default: {
      const unsigned long err = ERR_get_error();
      if (ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ec = boost::asio::ssl::error::stream_truncated;
      } else {
        ec = error_code(static_cast<int>(err), boost::asio::error::get_ssl_category());
      }
      return Want::kNothing;
    }
  }
}

}  // namespace kvd::server::tls
