// TLS over one connected socket of kvctl's HTTP client. OpenSSL runs the protocol in memory:
// the caller feeds it the bytes the socket received and sends the bytes it hands out, so the
// socket, its deadlines and Go's socket error texts stay in http_client.cc.
//
// Failures carry the text Go's crypto/tls and crypto/x509 give (etcdctl prints them):
// "x509: certificate signed by unknown authority", "x509: certificate is valid for
// 127.0.0.2, not 127.0.0.1", "remote error: tls: bad certificate", "tls: first record does
// not look like a TLS handshake", "EOF". The server's certificate is checked in the order of
// Go's x509.Certificate.Verify, which reports a different problem than OpenSSL's order when
// a certificate has several: the leaf's validity period, then its names against the
// endpoint's host (SANs only, as Go 1.15+), then the chain to the roots (any root is a trust
// anchor, as in Go), then the extended key usage serverAuth.
//
// One per connection; not thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "cli/tls_client_config.h"

// OpenSSL's SSL, SSL_CTX, BIO and X509_STORE_CTX.
struct ssl_st;
struct ssl_ctx_st;
struct bio_st;
struct x509_store_ctx_st;

namespace kvd::cli {

class TlsSession {
 public:
  enum class Result {
    kDone,      // the step completed (read: some data was appended)
    kWantRead,  // feed() more received bytes, after sending take_outgoing()
    kClosed,    // read: the server ended the stream with close_notify (Go's io.EOF)
    kFailed,    // error() says why
  };

  // `host` is the endpoint's host (an IP address or a name, without brackets): the name the
  // certificate must be valid for, and the SNI sent when it is a name.
  TlsSession(const TlsClientConfig& config, std::string host);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  Result handshake();
  Result write(std::string_view data);  // all of it, into the outgoing bytes
  Result read(std::string* out);        // appends what could be decrypted

  // Bytes received from the server.
  void feed(std::string_view bytes);
  // Bytes to send to the server (handshake messages, encrypted data, alerts).
  std::string take_outgoing();

  // Go's text for the server closing the connection without close_notify: "EOF" between
  // records, "unexpected EOF" inside one.
  std::string eof_error() const;
  // After kFailed.
  const std::string& error() const { return error_; }
  // After kFailed: the server's first bytes were "HTTP/" (Go's http.Client then says
  // "http: server gave HTTP response to HTTPS client").
  bool answered_plain_http() const { return answered_plain_http_; }

  // Makes every connection from `ctx` verify the server's certificate as described above.
  static void install_verification(ssl_ctx_st* ctx);

 private:
  static int verify_callback(x509_store_ctx_st* store_ctx, void* arg);
  static void info_callback(const ssl_st* ssl, int where, int ret);
  Result fail();

  ssl_st* ssl_ = nullptr;
  bio_st* in_ = nullptr;   // received bytes, read by OpenSSL (owned by ssl_)
  bio_st* out_ = nullptr;  // bytes OpenSSL wrote for the server (owned by ssl_)
  std::string host_;
  std::string error_;
  std::string verify_error_;  // set by the verification callback
  int fatal_alert_ = -1;      // description of an alert received from the server
  // The TLS record framing of the received bytes, for the first-record check and eof_error().
  // Invariant: record_header_.size() < 5.
  std::string record_header_;
  std::size_t record_body_left_ = 0;
  bool first_record_seen_ = false;
  bool bad_first_record_ = false;
  bool answered_plain_http_ = false;
};

}  // namespace kvd::cli
