#include "server/tls/tls_config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

namespace kvd::server::tls {

namespace ssl = boost::asio::ssl;

namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using CrlPtr = std::unique_ptr<X509_CRL, CrlFree>;

// Go's os error texts: "open F: no such file or directory".
std::string os_error(const char* op, const std::string& path, int err) {
  std::string text = std::strerror(err);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return std::string(op) + " " + path + ": " + text;
}

Result<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::error(os_error("open", path, errno));
  std::string out;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Status::error(os_error("read", path, err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

BioPtr mem_bio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// Every CERTIFICATE block of a PEM text, in order (a chain: leaf first).
std::vector<X509Ptr> parse_certificates(const std::string& pem) {
  std::vector<X509Ptr> out;
  BioPtr bio = mem_bio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(x);
  ERR_clear_error();  // the read that ended the loop
  return out;
}

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Where a server-side verify callback keeps the reason it refused a certificate, for the log
// (the alert says only "bad certificate").
int refusal_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

struct KeyPair {
  std::vector<X509Ptr> chain;
  PkeyPtr key;
};

// Go's tls.X509KeyPair over the two files, with its error texts, each naming the file.
Result<KeyPair> load_key_pair(const std::string& cert_file, const std::string& key_file) {
  auto cert_pem = read_file(cert_file);
  if (!cert_pem.is_ok()) return cert_pem.status();
  auto key_pem = read_file(key_file);
  if (!key_pem.is_ok()) return key_pem.status();
  KeyPair kp;
  kp.chain = parse_certificates(cert_pem.value());
  if (kp.chain.empty())
    return Status::error("tls: failed to find any PEM data in certificate input (" + cert_file + ")");
  BioPtr bio = mem_bio(key_pem.value());
  kp.key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!kp.key) {
    ERR_clear_error();
    return Status::error(key_pem.value().find("-----BEGIN") == std::string::npos
                             ? "tls: failed to find any PEM data in key input (" + key_file + ")"
                             : "tls: failed to parse private key (" + key_file + ")");
  }
  if (X509_check_private_key(kp.chain.front().get(), kp.key.get()) != 1) {
    ERR_clear_error();
    return Status::error("tls: private key does not match public key (" + key_file +
                         " is not the key of " + cert_file + ")");
  }
  return kp;
}

Result<std::vector<X509Ptr>> load_ca(const std::string& file) {
  auto pem = read_file(file);
  if (!pem.is_ok()) return pem.status();
  auto certs = parse_certificates(pem.value());
  // etcd (Go) would start with an empty pool and then refuse every certificate.
  if (certs.empty()) return Status::error("no PEM certificate found in CA file " + file);
  return certs;
}

}  // namespace

// The serials a CRL file lists, reread when the file changes. Thread-safe.
struct CrlCache {
  explicit CrlCache(std::string path) : path(std::move(path)) {}

  // Loads the file if it changed; an error says what is wrong with it.
  Status refresh() {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return Status::error(os_error("stat", path, errno));
    std::lock_guard lock(mu);
    if (loaded && st.st_mtim.tv_sec == mtime.tv_sec && st.st_mtim.tv_nsec == mtime.tv_nsec &&
        st.st_size == size) {
      return Status::ok();
    }
    auto data = read_file(path);
    if (!data.is_ok()) return data.status();
    BioPtr bio = mem_bio(data.value());
    CrlPtr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    if (!crl) {
      ERR_clear_error();
      const unsigned char* p = reinterpret_cast<const unsigned char*>(data.value().data());
      crl.reset(d2i_X509_CRL(nullptr, &p, static_cast<long>(data.value().size())));
      ERR_clear_error();
    }
    if (!crl) return Status::error("no PEM or DER certificate revocation list in " + path);
    std::set<std::string> out;
    STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
    for (int i = 0; revoked && i < sk_X509_REVOKED_num(revoked); ++i) {
      const ASN1_INTEGER* serial = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i));
      out.emplace(reinterpret_cast<const char*>(serial->data), static_cast<size_t>(serial->length));
    }
    serials = std::move(out);
    mtime = st.st_mtim;
    size = st.st_size;
    loaded = true;
    return Status::ok();
  }

  // Whether x's serial is listed. A CRL that cannot be read refuses every certificate, as etcd.
  bool revoked(X509* x) {
    if (Status st = refresh(); !st.is_ok()) {
      SPDLOG_WARN("refusing a certificate: {}", st.message());
      return true;
    }
    const ASN1_INTEGER* serial = X509_get0_serialNumber(x);
    std::lock_guard lock(mu);
    return serials.count(
               std::string(reinterpret_cast<const char*>(serial->data), static_cast<size_t>(serial->length))) > 0;
  }

  const std::string path;
  std::mutex mu;
  bool loaded = false;             // guarded by mu
  timespec mtime{};                // guarded by mu
  off_t size = 0;                  // guarded by mu
  std::set<std::string> serials;   // guarded by mu
};

Result<std::vector<std::string>> go_cipher_suites(const std::string& csv, bool* tls13_only) {
  static const std::map<std::string, std::string> kNames = {
      {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"},
      {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
      {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
      {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
      {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
      {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
      {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
      {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
      {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
      {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"},
      {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
      {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
      {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
      {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"},
      {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"},
      {"TLS_AES_128_GCM_SHA256", ""},  // TLS 1.3: always on
      {"TLS_AES_256_GCM_SHA384", ""},
      {"TLS_CHACHA20_POLY1305_SHA256", ""},
  };
  std::vector<std::string> out;
  *tls13_only = false;
  if (csv.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t comma = csv.find(',', start);
    std::string name = csv.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto it = kNames.find(name);
    if (it == kNames.end()) return Status::error("unexpected TLS cipher suite \"" + name + "\"");
    if (!it->second.empty()) out.push_back(it->second);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  *tls13_only = out.empty();
  return out;
}

Result<TlsInfo> self_cert(const std::string& dir, const std::vector<std::string>& hosts) {
  // As fileutil.TouchDirAll: every missing level, 0700.
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
      return Status::error("cannot create cert directory: " + os_error("mkdir", part, errno));
  }
  TlsInfo info;
  info.cert_file = dir + "/cert.pem";
  info.key_file = dir + "/key.pem";
  info.self_cert = true;
  struct stat st {};
  if (::stat(info.cert_file.c_str(), &st) == 0 && ::stat(info.key_file.c_str(), &st) == 0)
    return info;

  auto fail = [](const std::string& what) { return Status::error(what + ": " + openssl_error()); };
  PkeyPtr key(EVP_EC_gen("P-521"));
  if (!key) return fail("cannot generate ECDSA key");
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  {
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1) return fail("cannot generate random number");
    serial[0] &= 0x7f;  // positive
    std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(serial, sizeof serial, nullptr), BN_free);
    BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get()));
  }
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("etcd"), -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 365L * 24 * 3600);
  X509_set_pubkey(x.get(), key.get());
  std::string sans;
  for (const auto& h : hosts) {
    std::string host = h;
    if (!host.empty() && host.front() == '[') host = host.substr(1, host.find(']') - 1);
    else if (auto colon = host.rfind(':'); colon != std::string::npos && host.find(':') == colon)
      host = host.substr(0, colon);
    if (host.empty()) continue;
    unsigned char buf[16];
    bool ip = inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
    sans += (sans.empty() ? "" : ",") + std::string(ip ? "IP:" : "DNS:") + host;
  }
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x.get(), x.get(), nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> exts = {
      {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, "serverAuth,clientAuth"},
      {NID_basic_constraints, "critical,CA:FALSE"},
  };
  if (!sans.empty()) exts.emplace_back(NID_subject_alt_name, sans);
  for (const auto& [nid, value] : exts) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    if (!ext) return fail("cannot generate x509 certificate");
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x.get(), key.get(), EVP_sha512()) == 0) return fail("cannot generate x509 certificate");

  auto write = [](const std::string& path, mode_t mode, auto&& emit) -> Status {
    std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return Status::error(os_error("open", tmp, errno));
    BioPtr mem(BIO_new(BIO_s_mem()));
    emit(mem.get());
    char* data = nullptr;
    long len = BIO_get_mem_data(mem.get(), &data);
    bool ok = len > 0 && ::write(fd, data, static_cast<size_t>(len)) == len && ::fsync(fd) == 0;
    int err = errno;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
      return Status::error(os_error("write", path, ok ? errno : err));
    return Status::ok();
  };
  // The key first: a cert.pem without its key would be taken as a complete pair next time.
  if (Status s = write(info.key_file, 0600, [&](BIO* b) {
        PEM_write_bio_PrivateKey_traditional(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
      });
      !s.is_ok()) {
    return s;
  }
  if (Status s = write(info.cert_file, 0644, [&](BIO* b) { PEM_write_bio_X509(b, x.get()); });
      !s.is_ok()) {
    return s;
  }
  SPDLOG_INFO("created cert file {} and key file {} (auto TLS)", info.cert_file, info.key_file);
  return info;
}

std::string describe_handshake_error(void* handle, const boost::system::error_code& ec) {
  if (handle) {
    auto* s = static_cast<SSL*>(handle);
    long v = static_cast<long>(reinterpret_cast<intptr_t>(SSL_get_ex_data(s, refusal_index())));
    if (v == X509_V_OK) v = SSL_get_verify_result(s);
    if (v == X509_V_ERR_APPLICATION_VERIFICATION) return "client certificate authentication failed (common name not allowed)";
    if (v != X509_V_OK) return std::string("certificate verify failed: ") + X509_verify_cert_error_string(v);
  }
  if (ec == boost::asio::error::eof) return "the other side closed the connection";
  return ec.message();
}

// ---- contexts ----

struct TlsContexts::Built {
  std::shared_ptr<ssl::context> server;
  std::shared_ptr<ssl::context> client;
  std::vector<Stamp> stamps;
};

namespace {

// What the verify callbacks check beyond the chain: the allowed CN and the CRL.
struct VerifyRules {
  std::string allowed_cn;
  std::string allowed_hostname;
  std::shared_ptr<CrlCache> crl;
};

std::string common_name(X509* x) {
  X509_NAME* n = X509_get_subject_name(x);
  int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
  if (i < 0) return "";
  ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

// server: refusals are reported to the client as Go's server reports every client certificate
// it refuses, with a bad_certificate alert (OpenSSL would name the reason: unknown CA, expired).
void set_verify_rules(ssl::context& ctx, std::shared_ptr<const VerifyRules> rules, bool server) {
  ctx.set_verify_callback([rules, server](bool preverified, ssl::verify_context& vc) {
    X509_STORE_CTX* store = vc.native_handle();
    X509* cert = X509_STORE_CTX_get_current_cert(store);
    int refused = X509_V_OK;
    if (!preverified) {
      refused = X509_STORE_CTX_get_error(store);
    } else if (rules->crl && cert && rules->crl->revoked(cert)) {
      refused = X509_V_ERR_CERT_REVOKED;
    } else if (X509_STORE_CTX_get_error_depth(store) == 0) {
      if (!rules->allowed_cn.empty() && common_name(cert) != rules->allowed_cn) {
        refused = X509_V_ERR_APPLICATION_VERIFICATION;
      } else if (!rules->allowed_hostname.empty()) {
        const std::string& h = rules->allowed_hostname;
        bool ok = X509_check_ip_asc(cert, h.c_str(), 0) == 1 ||
                  X509_check_host(cert, h.c_str(), h.size(), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                                  nullptr) == 1;
        if (!ok) refused = X509_V_ERR_HOSTNAME_MISMATCH;
      }
    }
    if (refused == X509_V_OK) return true;
    if (server) {
      auto* s = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
      if (s) SSL_set_ex_data(s, refusal_index(), reinterpret_cast<void*>(static_cast<intptr_t>(refused)));
      refused = X509_V_ERR_CERT_REJECTED;
    }
    X509_STORE_CTX_set_error(store, refused);
    return false;
  });
}

void common_settings(ssl::context& ctx, const TlsInfo& info) {
  SSL_CTX* c = ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, info.tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.3 suites in the order Go (and so etcd) picks them on a CPU with AES instructions:
  // AES-128-GCM first, where OpenSSL's default picks AES-256-GCM with SHA-384, which costs more
  // per record and per handshake for no gain a client asked for.
  SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384");
  // Idle connections (watchers) give their read and write buffers back.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
}

Status use_key_pair(ssl::context& ctx, KeyPair& kp) {
  SSL_CTX* c = ctx.native_handle();
  if (SSL_CTX_use_certificate(c, kp.chain.front().get()) != 1 ||
      SSL_CTX_use_PrivateKey(c, kp.key.get()) != 1) {
    return Status::error(openssl_error());
  }
  for (size_t i = 1; i < kp.chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(c, kp.chain[i].get()) != 1) return Status::error(openssl_error());
  }
  return Status::ok();
}

}  // namespace

TlsContexts::TlsContexts(TlsInfo info) : info_(std::move(info)) {
  if (!info_.crl_file.empty()) crl_ = std::make_shared<CrlCache>(info_.crl_file);
}

TlsContexts::~TlsContexts() = default;

std::vector<TlsContexts::Stamp> TlsContexts::stamps() const {
  std::vector<Stamp> out;
  for (const std::string* f : {&info_.cert_file, &info_.key_file, &info_.trusted_ca_file}) {
    Stamp s;
    struct stat st {};
    if (!f->empty() && ::stat(f->c_str(), &st) == 0) {
      s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
      s.size = st.st_size;
      s.inode = st.st_ino;
    }
    out.push_back(s);
  }
  return out;
}

Status TlsContexts::build(Built& out) const {
  out.stamps = stamps();
  std::optional<KeyPair> kp;
  if (!info_.empty()) {
    if (info_.cert_file.empty() || info_.key_file.empty())
      return Status::error("KeyFile and CertFile must both be present[key: " + info_.key_file +
                           ", cert: " + info_.cert_file + "]");
    auto loaded = load_key_pair(info_.cert_file, info_.key_file);
    if (!loaded.is_ok()) return loaded.status();
    kp = std::move(loaded.value());
  }
  std::vector<X509Ptr> cas;
  if (!info_.trusted_ca_file.empty()) {
    auto loaded = load_ca(info_.trusted_ca_file);
    if (!loaded.is_ok()) return loaded.status();
    cas = std::move(loaded.value());
  }
  if (crl_) {
    if (Status s = crl_->refresh(); !s.is_ok()) return s;
  }
  auto add_cas = [&](ssl::context& ctx) {
    if (cas.empty()) {
      SSL_CTX_set_default_verify_paths(ctx.native_handle());
      return;
    }
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.native_handle());
    for (auto& ca : cas) X509_STORE_add_cert(store, ca.get());
  };
  if (!info_.cipher_suites.empty()) {
    std::string list;
    for (const auto& c : info_.cipher_suites) list += (list.empty() ? "" : ":") + c;
    // Checked once here so that an unusable list fails at start, not at the first handshake.
    ssl::context probe(ssl::context::tls);
    if (SSL_CTX_set_cipher_list(probe.native_handle(), list.c_str()) != 1)
      return Status::error("none of the cipher suites is available in this OpenSSL: " + openssl_error());
  }
  auto set_ciphers = [&](ssl::context& ctx) {
    std::string list;
    for (const auto& c : info_.cipher_suites) list += (list.empty() ? "" : ":") + c;
    if (!list.empty()) SSL_CTX_set_cipher_list(ctx.native_handle(), list.c_str());
  };
  auto rules = std::make_shared<VerifyRules>();
  rules->allowed_cn = info_.allowed_cn;
  rules->allowed_hostname = info_.allowed_hostname;
  if (!info_.allowed_cn.empty() && !info_.allowed_hostname.empty())
    return Status::error("AllowedCN and AllowedHostname are mutually exclusive (cn=\"" +
                         info_.allowed_cn + "\", hostname=\"" + info_.allowed_hostname + "\")");
  rules->crl = crl_;

  if (kp) {
    auto server = std::make_shared<ssl::context>(ssl::context::tls_server);
    common_settings(*server, info_);
    set_ciphers(*server);
    if (Status s = use_key_pair(*server, *kp); !s.is_ok())
      return Status::error("cannot use " + info_.cert_file + ": " + s.message());
    static const unsigned char kSessionContext[] = "kvd";
    SSL_CTX_set_session_id_context(server->native_handle(), kSessionContext, 3);
    // One TLS 1.3 session ticket per handshake, as etcd (Go) sends, where OpenSSL sends two:
    // a client resumes with one, and each costs the server an encryption and the client a
    // record to read on every new connection.
    SSL_CTX_set_num_tickets(server->native_handle(), 1);
    if (info_.requires_client_cert()) {
      add_cas(*server);
      STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
      for (auto& ca : cas) sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(ca.get())));
      SSL_CTX_set_client_CA_list(server->native_handle(), names);
      server->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      set_verify_rules(*server, rules, true);
    }
    out.server = std::move(server);
  }

  auto client = std::make_shared<ssl::context>(ssl::context::tls_client);
  common_settings(*client, info_);
  set_ciphers(*client);
  if (kp) {
    if (Status s = use_key_pair(*client, *kp); !s.is_ok())
      return Status::error("cannot use " + info_.cert_file + ": " + s.message());
  }
  if (info_.insecure_skip_verify || info_.self_cert) {
    client->set_verify_mode(ssl::verify_none);
  } else {
    add_cas(*client);
    client->set_verify_mode(ssl::verify_peer);
    set_verify_rules(*client, rules, false);
  }
  out.client = std::move(client);
  return Status::ok();
}

Result<std::shared_ptr<TlsContexts>> TlsContexts::create(TlsInfo info) {
  std::shared_ptr<TlsContexts> c(new TlsContexts(std::move(info)));
  Built b;
  if (Status s = c->build(b); !s.is_ok()) return s;
  c->server_ = std::move(b.server);
  c->client_ = std::move(b.client);
  c->built_from_ = std::move(b.stamps);
  return c;
}

void TlsContexts::renew_if_changed() {
  std::vector<Stamp> now = stamps();
  std::lock_guard lock(mu_);
  if (now == built_from_ || now == warned_for_) return;
  Built b;
  if (Status s = build(b); !s.is_ok()) {
    warned_for_ = now;
    SPDLOG_WARN("the TLS files changed but cannot be used (keeping the previous certificates "
                 "for new connections): {}", s.message());
    return;
  }
  SPDLOG_INFO("TLS files changed: new connections use {}", info_.cert_file.empty()
                                                                 ? info_.trusted_ca_file
                                                                 : info_.cert_file);
  if (b.server) server_ = std::move(b.server);
  client_ = std::move(b.client);
  built_from_ = std::move(b.stamps);
  warned_for_.clear();
}

std::shared_ptr<ssl::context> TlsContexts::server() {
  renew_if_changed();
  std::lock_guard lock(mu_);
  return server_;
}

std::shared_ptr<ssl::context> TlsContexts::client() {
  renew_if_changed();
  std::lock_guard lock(mu_);
  return client_;
}

void TlsContexts::prepare_client(void* handle, const std::string& host) const {
  SSL* s = static_cast<SSL*>(handle);
  unsigned char buf[16];
  bool ip = inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
  if (!ip && !host.empty()) SSL_set_tlsext_host_name(s, host.c_str());
  if (info_.insecure_skip_verify || info_.self_cert || host.empty()) return;
  if (ip) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), host.c_str());
  } else {
    SSL_set_hostflags(s, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    SSL_set1_host(s, host.c_str());
  }
}

std::string TlsContexts::verified_peer_common_name(void* handle) {
  auto* s = static_cast<SSL*>(handle);
  X509* cert = SSL_get0_peer_certificate(s);
  if (!cert || SSL_get_verify_result(s) != X509_V_OK) return "";
  if (!(SSL_get_verify_mode(s) & SSL_VERIFY_PEER)) return "";
  return common_name(cert);
}

TlsContexts::PeerSans TlsContexts::peer_sans(void* handle) {
  PeerSans out;
  X509* cert = SSL_get0_peer_certificate(static_cast<SSL*>(handle));
  if (!cert) return out;
  out.has_certificate = true;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type == GEN_DNS) {
      out.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName)),
                                 static_cast<size_t>(ASN1_STRING_length(n->d.dNSName)));
    } else if (n->type == GEN_IPADD) {
      char text[INET6_ADDRSTRLEN] = {};
      int len = ASN1_STRING_length(n->d.iPAddress);
      const unsigned char* d = ASN1_STRING_get0_data(n->d.iPAddress);
      if (len == 4) inet_ntop(AF_INET, d, text, sizeof text);
      else if (len == 16) inet_ntop(AF_INET6, d, text, sizeof text);
      if (text[0]) out.ips.emplace_back(text);
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace kvd::server::tls
