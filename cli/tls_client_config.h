// kvctl's TLS client settings, built as etcdctl builds its transport (etcd's
// transport.TLSInfo.ClientConfig with Go's crypto/tls): a client certificate and key
// (--cert-file/--key-file, both or neither), the roots server certificates must chain to
// (--ca-file, else the system's), TLS 1.2 and later. The files are read and checked when the
// settings are made, before any connection, with Go's error texts, because etcdctl fails at
// start on a bad file even when every endpoint is http:// ("open x.pem: no such file or
// directory", "tls: private key does not match public key", ...).
//
// Immutable once made; the OpenSSL context is made on first use (that loads the system roots
// only when an https:// endpoint is contacted). Single-threaded, as kvctl is.
#pragma once

#include <memory>
#include <string>
#include <variant>

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace kvd::cli {

class TlsClientConfig {
 public:
  // Reads the files (empty names: not given) with etcd's checks, in its order: both or neither
  // of cert and key, then the cert file, the key file, the pair (Go's tls.X509KeyPair), then the
  // CA file (Go's x509.CertPool from every PEM block in it). Returns Go's error text on failure.
  static std::variant<std::shared_ptr<const TlsClientConfig>, std::string> load(
      const std::string& cert_file, const std::string& key_file, const std::string& ca_file);

  // No client certificate, the system's roots: what Go's http.Transport uses for https://
  // when it was given no TLS settings.
  static std::shared_ptr<const TlsClientConfig> system_default();

  ~TlsClientConfig();
  TlsClientConfig(const TlsClientConfig&) = delete;
  TlsClientConfig& operator=(const TlsClientConfig&) = delete;

  // The context every connection of this config is made from: minimum TLS 1.2, the client
  // certificate (sent whenever a server asks, as Go does), the roots, and peer verification
  // done by tls_session.cc in Go's order. nullptr only if OpenSSL cannot allocate.
  ssl_ctx_st* context() const;

 private:
  struct Files;
  explicit TlsClientConfig(std::unique_ptr<Files> files);

  std::unique_ptr<Files> files_;
  mutable ssl_ctx_st* ctx_ = nullptr;  // made by context()
};

}  // namespace kvd::cli
