#include "server/tls_setup.h"

#include <algorithm>

#include "common/url.h"

namespace kvd::server {

namespace {

struct Side {
  const char* name;        // "client", "peer"
  std::string auto_dir;    // where auto TLS keeps its files
  std::vector<std::string> auto_hosts_from;  // URLs whose hosts the auto certificate names
  const char* flag_names;  // for the errors: "--cert-file, --key-file"
  const char* flag_prefix; // "--" or "--peer-"
  const TlsFlags& flags;
  const std::vector<std::string>& listen_urls;
};

Result<std::shared_ptr<tls::TlsContexts>> make_side(const Side& side,
                                                    const std::vector<std::string>& ciphers,
                                                    bool tls13_only,
                                                    std::vector<std::string>& warnings,
                                                    std::vector<std::string>& notices,
                                                    bool always) {
  tls::TlsInfo info;
  info.cert_file = side.flags.cert_file;
  info.key_file = side.flags.key_file;
  info.trusted_ca_file = side.flags.trusted_ca_file;
  info.crl_file = side.flags.crl_file;
  info.allowed_cn = side.flags.allowed_cn;
  info.allowed_hostname = side.flags.allowed_hostname;
  info.client_cert_auth = side.flags.client_cert_auth;
  info.cipher_suites = ciphers;
  info.tls13_only = tls13_only;
  if (side.flags.auto_tls) {
    if (!info.empty()) {
      warnings.push_back(std::string("ignoring ") + side.name + " auto TLS since certs given");
    } else {
      std::vector<std::string> hosts;
      for (const auto& u : side.auto_hosts_from) {
        std::string why;
        auto a = url::parse_address(u, &why);
        if (a && std::find(hosts.begin(), hosts.end(), a->host) == hosts.end()) hosts.push_back(a->host);
      }
      auto made = tls::self_cert(side.auto_dir, hosts);
      if (!made.is_ok()) {
        return Status::error(std::string("cannot make the ") + side.name +
                             " auto TLS certificate: " + made.status().message());
      }
      tls::TlsInfo self = made.value();
      info.cert_file = self.cert_file;
      info.key_file = self.key_file;
      info.self_cert = true;
      // As etcd: a self-signed certificate comes with no client authentication (nothing could
      // verify the other side's self-signed one). Said, since it is weaker than what was asked.
      if (info.client_cert_auth || !info.trusted_ca_file.empty()) {
        warnings.push_back(std::string("ignoring ") + side.flag_prefix + "client-cert-auth and " +
                           side.flag_prefix + "trusted-ca-file with " + side.flag_prefix +
                           "auto-tls: clients of this " + side.name +
                           " port are not asked for a certificate (as etcd)");
        info.client_cert_auth = false;
        info.trusted_ca_file.clear();
      }
    }
  }
  if (!info.empty() || !info.trusted_ca_file.empty() || info.client_cert_auth) {
    notices.push_back(std::string("starting with ") + side.name + " TLS: cert = " + info.cert_file +
                      ", key = " + info.key_file + ", trusted-ca = " + info.trusted_ca_file +
                      ", client-cert-auth = " + (info.client_cert_auth ? "true" : "false") +
                      ", crl-file = " + info.crl_file);
  }
  for (const auto& u : side.listen_urls) {
    if (u.rfind("https://", 0) == 0) {
      if (info.empty()) {
        return Status::error(std::string("TLS key/cert (") + side.flag_names +
                             ") must be provided for " + side.name + " url " + u +
                             " with HTTPS scheme");
      }
    } else {
      if (!info.empty()) {
        warnings.push_back(std::string("scheme is HTTP while key and cert files are present; "
                                       "ignoring key and cert files (") +
                           side.name + "-url " + u + ")");
      }
      if (info.client_cert_auth) {
        warnings.push_back(std::string("scheme is HTTP while ") + side.flag_prefix +
                           "client-cert-auth is enabled; ignoring client cert auth for this URL (" +
                           side.name + "-url " + u + ")");
      }
    }
  }
  if (info.empty() && !always) return std::shared_ptr<tls::TlsContexts>();
  if (!info.empty() && (info.cert_file.empty() || info.key_file.empty())) {
    return Status::error(std::string(side.flag_prefix) + "cert-file and " + side.flag_prefix +
                         "key-file must both be given (key: \"" + info.key_file + "\", cert: \"" +
                         info.cert_file + "\")");
  }
  auto made = tls::TlsContexts::create(std::move(info));
  if (!made.is_ok()) return Status::error(std::string(side.name) + " TLS: " + made.status().message());
  return made.value();
}

}  // namespace

Result<TlsSetup> setup_tls(const Flags& flags) {
  bool tls13_only = false;
  auto ciphers = tls::go_cipher_suites(flags.cipher_suites, &tls13_only);
  if (!ciphers.is_ok()) return ciphers.status();
  TlsSetup out;
  const bool proxy = flags.proxy != ProxyMode::kOff;
  static const std::vector<std::string> kNone;
  // A proxy keeps its auto TLS files in its own dir and names its advertised URLs too (etcd).
  std::vector<std::string> client_hosts = flags.listen_client_urls;
  if (proxy) {
    client_hosts.insert(client_hosts.end(), flags.advertise_client_urls.begin(),
                        flags.advertise_client_urls.end());
  }
  Side client{"client",
              proxy ? flags.data_dir + "/proxy/clientCerts" : flags.data_dir + "/fixtures/client",
              client_hosts, "--cert-file, --key-file", "--", flags.client_tls,
              flags.listen_client_urls};
  // A proxy has no peer listener: its peer TLS only dials members' peer URLs.
  Side peer{"peer", flags.data_dir + "/fixtures/peer", flags.listen_peer_urls,
            "--peer-cert-file, --peer-key-file", "--peer-", flags.peer_tls,
            proxy ? kNone : flags.listen_peer_urls};
  // Peer first, as etcd configures its peer listeners first.
  auto p = make_side(peer, ciphers.value(), tls13_only, out.warnings, out.notices, true);
  if (!p.is_ok()) return p.status();
  out.peer = std::move(p.value());
  auto c = make_side(client, ciphers.value(), tls13_only, out.warnings, out.notices, false);
  if (!c.is_ok()) return c.status();
  out.client = std::move(c.value());
  return out;
}

}  // namespace kvd::server
