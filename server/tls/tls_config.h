// TLS settings and the OpenSSL contexts made from them, with etcd 3.4's meaning
// (pkg/transport.TLSInfo): one TlsInfo per side (client port, peer port), from the flags.
//
// - A server context presents cert_file/key_file. It asks for and verifies a client
//   certificate when trusted_ca_file is set or client_cert_auth is on (as etcd: a CA file alone
//   already requires one), against trusted_ca_file.
// - A client context (the member dialling peers, the proxy dialling members) verifies the
//   server's certificate against trusted_ca_file (the system's roots without one), unless
//   insecure_skip_verify or the certificate is self-made (auto TLS), and presents cert_file as
//   its own certificate when one is set.
// - allowed_cn (--peer-cert-allowed-cn): the verified certificate of the other side must have
//   exactly this common name, on both the server and the client side (etcd's baseConfig).
// - allowed_hostname (--client-cert-allowed-hostname, --peer-cert-allowed-hostname): instead,
//   the verified certificate must be valid for this name or address (its SANs).
// - crl_file: a presented certificate whose serial the CRL lists is refused (the chain's every
//   certificate is looked up, whoever issued the CRL, as etcd's checkCRL).
// - TLS 1.2 is the minimum; 1.3 is offered too. cipher_suites restricts TLS 1.2 only (TLS 1.3's
//   suites are not configurable), as in etcd 3.4.
//
// Renewal: the files are looked at (stat) when a context is asked for, i.e. once per new
// connection; when one changed, new contexts are built from them, so renewed certificates
// apply to new connections without a restart (etcd rereads the pair on every handshake).
// A renewal that does not load (a file half written, a key that does not match yet) keeps the
// previous contexts and logs a warning once per change.
//
// Threads: TlsContexts is thread-safe; the contexts it hands out are immutable once handed out.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/ssl/context.hpp>

#include "common/status.h"

namespace kvd::server::tls {

struct TlsInfo {
  std::string cert_file;
  std::string key_file;
  std::string trusted_ca_file;
  std::string crl_file;
  std::string allowed_cn;
  std::string allowed_hostname;
  bool client_cert_auth = false;
  bool insecure_skip_verify = false;
  bool self_cert = false;  // made by auto TLS: clients using it do not verify the other side
  std::vector<std::string> cipher_suites;  // OpenSSL names of TLS 1.2 suites (go_cipher_suites)
  bool tls13_only = false;  // cipher suites were given, all of them TLS 1.3 ones

  bool empty() const { return cert_file.empty() && key_file.empty(); }
  // What the server side asks of clients: a verified certificate.
  bool requires_client_cert() const { return !trusted_ca_file.empty() || client_cert_auth; }
};

// Go's cipher suite names (--cipher-suites, comma-separated, exact and case-sensitive) to
// OpenSSL's TLS 1.2 names; Go's TLS 1.3 names are accepted and left out (not configurable).
// *tls13_only: names were given, none of them a TLS 1.2 suite. Error: etcd's text,
// `unexpected TLS cipher suite "X"`.
Result<std::vector<std::string>> go_cipher_suites(const std::string& csv, bool* tls13_only);

// etcd's SelfCert (--auto-tls, --peer-auto-tls): dir/cert.pem and dir/key.pem, made unless both
// exist already: a self-signed certificate for `hosts` (listen URL hosts: IP SANs for
// addresses, DNS SANs for names), organization "etcd", valid a year, ECDSA P-521, key file 0600.
Result<TlsInfo> self_cert(const std::string& dir, const std::vector<std::string>& hosts);

// Why a handshake failed, for a log line: the certificate verification's reason when that was
// it ("certificate verify failed: unable to get local issuer certificate"), else the error's.
// ssl: the stream's native handle, or null.
std::string describe_handshake_error(void* ssl, const boost::system::error_code& ec);

struct CrlCache;

class TlsContexts {
 public:
  // Loads every file now; an error names the file and says what is wrong with it, in Go's
  // words where etcd shows Go's ("open F: no such file or directory", "tls: failed to find any
  // PEM data in certificate input", "tls: private key does not match public key").
  static Result<std::shared_ptr<TlsContexts>> create(TlsInfo info);

  // The current contexts (renewed from the files if they changed). Never null.
  std::shared_ptr<boost::asio::ssl::context> server();
  std::shared_ptr<boost::asio::ssl::context> client();

  const TlsInfo& info() const { return info_; }

  // A client context verifies the other side's name (REQUIRES: native handle of an SSL made
  // from client(), before its handshake): IP SAN for an address, DNS SAN for a name (no
  // fallback to the common name, as Go), and sends SNI for a name. A no-op when the context
  // does not verify (insecure_skip_verify, self_cert).
  void prepare_client(void* ssl, const std::string& host) const;

  // The SANs of the certificate the other side presented (REQUIRES: native handle of an SSL
  // after its handshake), for etcd's peer-port rule (checkSAN): a client certificate with IP or
  // DNS SANs must name the address it connects from, by IP SAN or by a DNS SAN that resolves to
  // it. IPs in their canonical text form.
  struct PeerSans {
    bool has_certificate = false;
    std::vector<std::string> ips;
    std::vector<std::string> dns_names;
  };
  static PeerSans peer_sans(void* ssl);

  // The common name of the certificate the other side presented, when it was asked for and
  // verified (REQUIRES: native handle of an SSL after its handshake); "" otherwise. What etcd's
  // v2 auth takes as the user of a request when --client-cert-auth is on.
  static std::string verified_peer_common_name(void* ssl);

  TlsContexts(const TlsContexts&) = delete;
  TlsContexts& operator=(const TlsContexts&) = delete;
  ~TlsContexts();

 private:
  struct Stamp {
    int64_t mtime_ns = 0;
    int64_t size = -1;
    uint64_t inode = 0;
    bool operator==(const Stamp&) const = default;
  };
  struct Built;

  explicit TlsContexts(TlsInfo info);
  std::vector<Stamp> stamps() const;
  Status build(Built& out) const;
  void renew_if_changed();

  const TlsInfo info_;
  std::shared_ptr<CrlCache> crl_;
  std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> server_;  // guarded by mu_
  std::shared_ptr<boost::asio::ssl::context> client_;  // guarded by mu_
  std::vector<Stamp> built_from_;                      // guarded by mu_
  std::vector<Stamp> warned_for_;                      // guarded by mu_
};

}  // namespace kvd::server::tls
