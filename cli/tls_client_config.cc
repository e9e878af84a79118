// Go's file and PEM handling for kvctl's TLS settings (io/ioutil.ReadFile, encoding/pem.Decode,
// crypto/tls.X509KeyPair, crypto/x509.CertPool as etcd's tlsutil fills it), with OpenSSL
// parsing the DER. Go's checks and their order are kept because etcdctl prints the first
// failing one.
#include "cli/tls_client_config.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "cli/tls_session.h"

namespace kvd::cli {
namespace {

// Go's syscall error strings are strerror() with a lower-case first letter.
std::string errno_text(int err) {
  std::string s = std::strerror(err);
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z' && !(s.size() > 1 && s[1] >= 'A' && s[1] <= 'Z')) {
    s[0] = static_cast<char>(s[0] - 'A' + 'a');
  }
  return s;
}

// ioutil.ReadFile: "open P: ..." when the file cannot be opened, "read P: ..." when it cannot
// be read (a directory opens but does not read).
std::optional<std::string> read_file(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open " + path + ": " + errno_text(errno);
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out->append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int err = errno;
    ::close(fd);
    if (n < 0) return "read " + path + ": " + errno_text(err);
    return std::nullopt;
  }
}

// base64.StdEncoding.Decode: padded, '\r' and '\n' skipped anywhere. nullopt on bad input.
std::optional<std::string> base64_decode(std::string_view in) {
  std::string s;
  for (char c : in) {
    if (c != '\r' && c != '\n') s += c;
  }
  if (s.size() % 4 != 0) return std::nullopt;
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); i += 4) {
    int pad = 0;
    unsigned v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      char c = s[i + k];
      if (c == '=') {
        // Padding only at the end of the last quantum, in its last one or two places.
        if (i + 4 != s.size() || k < 2) return std::nullopt;
        ++pad;
        v <<= 6;
        continue;
      }
      if (pad > 0) return std::nullopt;
      int d = value(c);
      if (d < 0) return std::nullopt;
      v = (v << 6) | static_cast<unsigned>(d);
    }
    out += static_cast<char>((v >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((v >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(v & 0xff);
  }
  return out;
}

struct PemBlock {
  std::string type;
  std::string der;
};

// The line at the start of `rest` without its "\n" and trailing spaces, tabs and '\r'; `rest`
// moves past it (Go's pem.getLine).
std::string_view get_line(std::string_view* rest) {
  std::size_t nl = rest->find('\n');
  std::string_view line = rest->substr(0, nl);
  *rest = nl == std::string_view::npos ? std::string_view() : rest->substr(nl + 1);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
    line.remove_suffix(1);
  }
  return line;
}

// Go's pem.Decode: the next well-formed block of `*data` (which moves past it), skipping
// malformed ones; nullopt when there is none.
std::optional<PemBlock> pem_decode(std::string_view* data) {
  static constexpr std::string_view kStart = "\n-----BEGIN ";
  static constexpr std::string_view kEnd = "\n-----END ";
  static constexpr std::string_view kDashes = "-----";
  std::string_view rest = *data;
  for (;;) {
    if (rest.substr(0, kStart.size() - 1) == kStart.substr(1)) {
      rest.remove_prefix(kStart.size() - 1);
    } else if (std::size_t at = rest.find(kStart); at != std::string_view::npos) {
      rest.remove_prefix(at + kStart.size());
    } else {
      return std::nullopt;
    }
    std::string_view type = get_line(&rest);
    if (type.size() < kDashes.size() || type.substr(type.size() - kDashes.size()) != kDashes) {
      continue;
    }
    type.remove_suffix(kDashes.size());
    bool headers = false;
    for (;;) {
      if (rest.empty()) return std::nullopt;
      std::string_view next = rest;
      std::string_view line = get_line(&next);
      if (line.find(':') == std::string_view::npos) break;
      headers = true;
      rest = next;
    }
    std::size_t end_index;
    std::size_t trailer_index;
    if (!headers && rest.substr(0, kEnd.size() - 1) == kEnd.substr(1)) {
      end_index = 0;
      trailer_index = kEnd.size() - 1;
    } else {
      end_index = rest.find(kEnd);
      if (end_index == std::string_view::npos) continue;
      trailer_index = end_index + kEnd.size();
    }
    std::string_view trailer = rest.substr(trailer_index);
    const std::size_t trailer_len = type.size() + kDashes.size();
    if (trailer.size() < trailer_len) continue;
    std::string_view rest_of_end_line = trailer.substr(trailer_len);
    trailer = trailer.substr(0, trailer_len);
    if (trailer.substr(0, type.size()) != type || trailer.substr(type.size()) != kDashes) continue;
    if (!get_line(&rest_of_end_line).empty()) continue;
    std::string b64;
    for (char c : rest.substr(0, end_index)) {
      if (c != ' ' && c != '\t') b64 += c;
    }
    auto der = base64_decode(b64);
    if (!der) continue;
    std::string_view after = rest.substr(end_index + kEnd.size() - 1);
    get_line(&after);
    *data = after;
    return PemBlock{std::string(type), std::move(*der)};
  }
}

std::vector<PemBlock> pem_blocks(std::string_view data) {
  std::vector<PemBlock> out;
  while (auto b = pem_decode(&data)) out.push_back(std::move(*b));
  return out;
}

// Reads one DER TLV header at `p` of `n` bytes: tag, and the length of header plus content.
std::optional<std::pair<unsigned char, std::size_t>> der_element(const unsigned char* p,
                                                                 std::size_t n) {
  if (n < 2) return std::nullopt;
  std::size_t len = p[1];
  std::size_t header = 2;
  if (len & 0x80) {
    std::size_t bytes = len & 0x7f;
    if (bytes == 0 || bytes > 4 || n < 2 + bytes) return std::nullopt;
    len = 0;
    for (std::size_t i = 0; i < bytes; ++i) len = (len << 8) | p[2 + i];
    header += bytes;
  }
  if (header + len > n) return std::nullopt;
  return std::make_pair(p[0], header + len);
}

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// x509.ParseCertificate. Go's parser names the part that is malformed; the outer two levels
// (a key or other DER where a certificate belongs) are told apart exactly, anything deeper is
// reported as "x509: malformed certificate".
std::variant<X509Ptr, std::string> parse_certificate(const std::string& der) {
  auto* p = reinterpret_cast<const unsigned char*>(der.data());
  auto outer = der_element(p, der.size());
  if (!outer || outer->first != 0x30) return std::string("x509: malformed certificate");
  if (outer->second != der.size()) return std::string("x509: trailing data");
  // The content of the outer SEQUENCE starts after its header.
  const std::size_t outer_header = 2 + ((p[1] & 0x80) ? (p[1] & 0x7f) : 0);
  auto tbs = der_element(p + outer_header, der.size() - outer_header);
  if (!tbs || tbs->first != 0x30) return std::string("x509: malformed tbs certificate");
  const unsigned char* q = p;
  X509Ptr cert(d2i_X509(nullptr, &q, static_cast<long>(der.size())));
  if (!cert) return std::string("x509: malformed certificate");
  return cert;
}

std::string block_types(const std::vector<std::string>& types) {
  std::string out = "[";
  for (std::size_t i = 0; i < types.size(); ++i) out += (i ? " " : "") + types[i];
  return out + "]";
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// What the files held: the client's chain (leaf first) and key, and the roots.
struct TlsClientConfig::Files {
  std::vector<X509Ptr> chain;  // empty: no client certificate
  PkeyPtr key;
  bool custom_roots = false;  // --ca-file given: exactly these roots, else the system's
  std::vector<X509Ptr> roots;
};

TlsClientConfig::TlsClientConfig(std::unique_ptr<Files> files) : files_(std::move(files)) {}

TlsClientConfig::~TlsClientConfig() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

std::variant<std::shared_ptr<const TlsClientConfig>, std::string> TlsClientConfig::load(
    const std::string& cert_file, const std::string& key_file, const std::string& ca_file) {
  auto files = std::make_unique<Files>();
  if (!cert_file.empty() || !key_file.empty()) {
    if (cert_file.empty() || key_file.empty()) {
      return "KeyFile and CertFile must both be present[key: " + key_file +
             ", cert: " + cert_file + "]";
    }
    std::string cert_pem;
    std::string key_pem;
    if (auto e = read_file(cert_file, &cert_pem)) return *e;
    if (auto e = read_file(key_file, &key_pem)) return *e;
    // tls.X509KeyPair, check by check.
    std::vector<std::string> cert_ders;
    std::vector<std::string> skipped;
    for (auto& b : pem_blocks(cert_pem)) {
      if (b.type == "CERTIFICATE") {
        cert_ders.push_back(std::move(b.der));
      } else {
        skipped.push_back(b.type);
      }
    }
    if (cert_ders.empty()) {
      if (skipped.empty()) {
        return std::string("tls: failed to find any PEM data in certificate input");
      }
      if (skipped.size() == 1 && ends_with(skipped[0], "PRIVATE KEY")) {
        return std::string(
            "tls: failed to find certificate PEM data in certificate input, but did find a "
            "private key; PEM inputs may have been switched");
      }
      return "tls: failed to find \"CERTIFICATE\" PEM block in certificate input after skipping "
             "PEM blocks of the following types: " + block_types(skipped);
    }
    skipped.clear();
    std::optional<std::string> key_der;
    std::string_view rest = key_pem;
    while (auto b = pem_decode(&rest)) {
      if (b->type == "PRIVATE KEY" || ends_with(b->type, " PRIVATE KEY")) {
        key_der = std::move(b->der);
        break;
      }
      skipped.push_back(b->type);
    }
    if (!key_der) {
      if (skipped.empty()) return std::string("tls: failed to find any PEM data in key input");
      if (skipped.size() == 1 && skipped[0] == "CERTIFICATE") {
        return std::string(
            "tls: found a certificate rather than a key in the PEM for the private key");
      }
      return "tls: failed to find PEM block with type ending in \"PRIVATE KEY\" in key input "
             "after skipping PEM blocks of the following types: " + block_types(skipped);
    }
    auto leaf = parse_certificate(cert_ders[0]);
    if (auto* e = std::get_if<std::string>(&leaf)) return *e;
    files->chain.push_back(std::move(std::get<X509Ptr>(leaf)));
    // Go parses only the leaf; the rest of the chain is sent as it is. OpenSSL needs it
    // parsed, so a chain certificate OpenSSL cannot read is left out.
    for (std::size_t i = 1; i < cert_ders.size(); ++i) {
      auto* q = reinterpret_cast<const unsigned char*>(cert_ders[i].data());
      if (X509* x = d2i_X509(nullptr, &q, static_cast<long>(cert_ders[i].size()))) {
        files->chain.emplace_back(x);
      }
    }
    // Go accepts PKCS#1 RSA, PKCS#8 (RSA, ECDSA, Ed25519) and SEC 1 EC keys.
    auto* kq = reinterpret_cast<const unsigned char*>(key_der->data());
    PkeyPtr key(d2i_AutoPrivateKey(nullptr, &kq, static_cast<long>(key_der->size())));
    const int key_type = key ? EVP_PKEY_get_base_id(key.get()) : 0;
    if (!key ||
        (key_type != EVP_PKEY_RSA && key_type != EVP_PKEY_EC && key_type != EVP_PKEY_ED25519)) {
      return std::string("tls: failed to parse private key");
    }
    EVP_PKEY* pub = X509_get0_pubkey(files->chain[0].get());
    const int pub_type = pub ? EVP_PKEY_get_base_id(pub) : 0;
    if (pub_type != EVP_PKEY_RSA && pub_type != EVP_PKEY_EC && pub_type != EVP_PKEY_ED25519) {
      return std::string("tls: unknown public key algorithm");
    }
    if (pub_type != key_type) {
      return std::string("tls: private key type does not match public key type");
    }
    if (EVP_PKEY_eq(pub, key.get()) != 1) {
      return std::string("tls: private key does not match public key");
    }
    files->key = std::move(key);
  }
  if (!ca_file.empty()) {
    // x509.CertPool from every PEM block of the file, whatever its type; a file without any
    // leaves the pool empty, so that no server is trusted.
    std::string ca_pem;
    if (auto e = read_file(ca_file, &ca_pem)) return *e;
    files->custom_roots = true;
    for (auto& b : pem_blocks(ca_pem)) {
      auto cert = parse_certificate(b.der);
      if (auto* e = std::get_if<std::string>(&cert)) return *e;
      files->roots.push_back(std::move(std::get<X509Ptr>(cert)));
    }
  }
  return std::shared_ptr<const TlsClientConfig>(new TlsClientConfig(std::move(files)));
}

std::shared_ptr<const TlsClientConfig> TlsClientConfig::system_default() {
  static const std::shared_ptr<const TlsClientConfig> kDefault(
      new TlsClientConfig(std::make_unique<Files>()));
  return kDefault;
}

ssl_ctx_st* TlsClientConfig::context() const {
  if (ctx_ != nullptr) return ctx_;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return nullptr;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (!files_->chain.empty()) {
    SSL_CTX_use_certificate(ctx, files_->chain[0].get());
    for (std::size_t i = 1; i < files_->chain.size(); ++i) {
      SSL_CTX_add1_chain_cert(ctx, files_->chain[i].get());
    }
    SSL_CTX_use_PrivateKey(ctx, files_->key.get());
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  if (files_->custom_roots) {
    for (const auto& root : files_->roots) X509_STORE_add_cert(store, root.get());
  } else {
    // Go's system roots on Linux are the distribution's bundle, honouring SSL_CERT_FILE and
    // SSL_CERT_DIR, as OpenSSL's default paths do.
    SSL_CTX_set_default_verify_paths(ctx);
  }
  TlsSession::install_verification(ctx);
  ctx_ = ctx;
  return ctx_;
}

}  // namespace kvd::cli
