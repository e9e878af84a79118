#include "cli/tls_session.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <vector>

namespace kvd::cli {
namespace {

// Go's crypto/tls alert texts (alert.go); others print as "tls: alert(N)".
std::string alert_text(int desc) {
  switch (desc) {
    case 0: return "close notify";
    case 10: return "unexpected message";
    case 20: return "bad record MAC";
    case 21: return "decryption failed";
    case 22: return "record overflow";
    case 30: return "decompression failure";
    case 40: return "handshake failure";
    case 42: return "bad certificate";
    case 43: return "unsupported certificate";
    case 44: return "revoked certificate";
    case 45: return "expired certificate";
    case 46: return "unknown certificate";
    case 47: return "illegal parameter";
    case 48: return "unknown certificate authority";
    case 49: return "access denied";
    case 50: return "error decoding message";
    case 51: return "error decrypting message";
    case 60: return "export restriction";
    case 70: return "protocol version not supported";
    case 71: return "insufficient security level";
    case 80: return "internal error";
    case 86: return "inappropriate fallback";
    case 90: return "user canceled";
    case 100: return "no renegotiation";
    case 109: return "missing extension";
    case 110: return "unsupported extension";
    case 111: return "certificate unobtainable";
    case 112: return "unrecognized name";
    case 113: return "bad certificate status response";
    case 114: return "bad certificate hash value";
    case 115: return "unknown PSK identity";
    case 116: return "certificate required";
    case 120: return "no application protocol";
    default: return "alert(" + std::to_string(desc) + ")";
  }
}

bool is_ip(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Go's time.RFC3339 of an ASN.1 time (certificate times are UTC: "...Z").
std::string asn1_time_text(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

// Go's time.Now().Format(time.RFC3339): local time, "Z" when the zone is UTC.
std::string now_text(std::time_t now) {
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  long off = tm.tm_gmtoff / 60;
  if (off == 0) {
    std::snprintf(buf + n, sizeof buf - n, "Z");
  } else {
    std::snprintf(buf + n, sizeof buf - n, "%c%02ld:%02ld", off < 0 ? '-' : '+',
                  (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
  }
  return buf;
}

// x509.CertificateInvalidError{Reason: Expired} for `cert`, or "" while it is valid.
std::string validity_error(X509* cert) {
  std::time_t now = std::time(nullptr);
  const ASN1_TIME* not_before = X509_get0_notBefore(cert);
  const ASN1_TIME* not_after = X509_get0_notAfter(cert);
  const std::string prefix = "x509: certificate has expired or is not yet valid: current time ";
  if (X509_cmp_time(not_before, &now) > 0) {
    return prefix + now_text(now) + " is before " + asn1_time_text(not_before);
  }
  if (X509_cmp_time(not_after, &now) < 0) {
    return prefix + now_text(now) + " is after " + asn1_time_text(not_after);
  }
  return "";
}

// The value of the last `nid` attribute of a name (Go's pkix.Name keeps the last CN), or of
// the first one.
std::string name_entry(const X509_NAME* name, int nid, bool last) {
  int found = -1;
  for (int i = X509_NAME_get_index_by_NID(name, nid, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(name, nid, i)) {
    found = i;
    if (!last) break;
  }
  if (found < 0) return "";
  const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, found));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<std::size_t>(ASN1_STRING_length(s)));
}

std::string lower_ascii(std::string s) {
  for (auto& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t p = s.find('.', start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}

// Go's matchHostnames (crypto/x509): a leftmost "*" label matches any one label.
bool match_hostnames(std::string pattern, std::string host) {
  pattern = lower_ascii(pattern);
  host = lower_ascii(host);
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (pattern.empty() || host.empty()) return false;
  auto p = split_dots(pattern);
  auto h = split_dots(host);
  if (p.size() != h.size()) return false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (i == 0 && p[i] == "*") continue;
    if (p[i] != h[i]) return false;
  }
  return true;
}

// Go's net.IP.String of an iPAddress SAN (IPv4-mapped IPv6 addresses print as IPv4).
std::string ip_text(const ASN1_OCTET_STRING* ip) {
  const unsigned char* d = ASN1_STRING_get0_data(ip);
  const int n = ASN1_STRING_length(ip);
  char buf[INET6_ADDRSTRLEN] = {0};
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (n == 4) {
    inet_ntop(AF_INET, d, buf, sizeof buf);
  } else if (n == 16 && std::equal(kMapped, kMapped + 12, d)) {
    inet_ntop(AF_INET, d + 12, buf, sizeof buf);
  } else if (n == 16) {
    inet_ntop(AF_INET6, d, buf, sizeof buf);
  }
  return buf;
}

// x509.HostnameError for `leaf` and `host`, or "" when the leaf is valid for the host. The
// match itself is OpenSSL's (SANs only, no partial wildcards, as Go); the text is Go's.
std::string hostname_error(X509* leaf, const std::string& host) {
  const bool ip = is_ip(host);
  if (ip) {
    if (X509_check_ip_asc(leaf, host.c_str(), 0) == 1) return "";
  } else {
    std::string name = host;
    if (!name.empty() && name.back() == '.') name.pop_back();
    if (X509_check_host(leaf, name.data(), name.size(),
                        X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                        nullptr) == 1) {
      return "";
    }
  }
  const bool has_san = X509_get_ext_by_NID(leaf, NID_subject_alt_name, -1) >= 0;
  const std::string cn = name_entry(X509_get_subject_name(leaf), NID_commonName, true);
  if (!has_san && match_hostnames(cn, host)) {
    return "x509: certificate relies on legacy Common Name field, use SANs instead";
  }
  std::vector<std::string> ips;
  std::vector<std::string> dns;
  if (auto* names = static_cast<GENERAL_NAMES*>(
          X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
      if (g->type == GEN_IPADD) ips.push_back(ip_text(g->d.iPAddress));
      if (g->type == GEN_DNS) {
        dns.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName)),
                         static_cast<std::size_t>(ASN1_STRING_length(g->d.dNSName)));
      }
    }
    GENERAL_NAMES_free(names);
  }
  if (ip && ips.empty()) {
    return "x509: cannot validate certificate for " + host +
           " because it doesn't contain any IP SANs";
  }
  std::string valid;
  for (const auto& v : ip ? ips : dns) valid += (valid.empty() ? "" : ", ") + v;
  if (valid.empty()) {
    return "x509: certificate is not valid for any names, but wanted to match " + host;
  }
  return "x509: certificate is valid for " + valid + ", not " + host;
}

// Go's names for a public key's algorithm: in signature errors ("ECDSA") and as a type
// ("*ecdsa.PublicKey").
std::pair<std::string, std::string> key_names(int pkey_type) {
  switch (pkey_type) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS: return {"RSA", "*rsa.PublicKey"};
    case EVP_PKEY_EC: return {"ECDSA", "*ecdsa.PublicKey"};
    case EVP_PKEY_ED25519: return {"Ed25519", "ed25519.PublicKey"};
    default: return {"", ""};
  }
}

// Go's Certificate.CheckSignatureFrom(parent) for `child`: "" when parent signed it.
std::string check_signature_from(X509* child, X509* parent) {
  const uint32_t flags = X509_get_extension_flags(parent);
  const bool bc_valid = (flags & EXFLAG_BCONS) != 0;
  const bool is_ca = (flags & EXFLAG_CA) != 0;
  const std::string constraint =
      "x509: invalid signature: parent certificate cannot sign this kind of certificate";
  if ((X509_get_version(parent) == X509_VERSION_3 && !bc_valid) || (bc_valid && !is_ca)) {
    return constraint;
  }
  if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(parent) & KU_KEY_CERT_SIGN) == 0) {
    return constraint;
  }
  EVP_PKEY* key = X509_get0_pubkey(parent);
  if (key == nullptr) return "x509: cannot verify signature: algorithm unimplemented";
  const auto have = key_names(EVP_PKEY_get_base_id(key));
  int md_nid = 0;
  int pk_nid = 0;
  OBJ_find_sigid_algs(X509_get_signature_nid(child), &md_nid, &pk_nid);
  std::string want;
  if (pk_nid == NID_rsaEncryption || pk_nid == NID_rsassaPss) want = "RSA";
  if (pk_nid == NID_X9_62_id_ecPublicKey) want = "ECDSA";
  if (pk_nid == NID_ED25519) want = "Ed25519";
  if (!want.empty() && !have.first.empty() && want != have.first) {
    return "x509: signature algorithm specifies an " + want +
           " public key, but have public key of type " + have.second;
  }
  if (X509_verify(child, key) == 1) return "";
  if (have.first == "RSA") return "crypto/rsa: verification error";
  if (have.first.empty()) return "x509: cannot verify signature: algorithm unimplemented";
  return "x509: " + have.first + " verification failure";
}

// The name Go's UnknownAuthorityError gives a candidate authority: CN, else the first O,
// else the serial number.
std::string authority_name(X509* cert) {
  const X509_NAME* subject = X509_get_subject_name(cert);
  std::string name = name_entry(subject, NID_commonName, true);
  if (name.empty()) name = name_entry(subject, NID_organizationName, false);
  if (!name.empty()) return name;
  std::string serial = "serial:";
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* dec = BN_bn2dec(bn)) {
      serial += dec;
      OPENSSL_free(dec);
    }
    BN_free(bn);
  }
  return serial;
}

// x509.UnknownAuthorityError for `cert`, whose issuer is not among the roots. As Go, it gives
// as a hint why the first root with the issuer's name (those whose key id matches first)
// did not sign it.
std::string unknown_authority(X509_STORE_CTX* store_ctx, X509* cert) {
  std::string text = "x509: certificate signed by unknown authority";
  STACK_OF(X509)* candidates = X509_STORE_CTX_get1_certs(store_ctx, X509_get_issuer_name(cert));
  if (candidates == nullptr) return text;
  const ASN1_OCTET_STRING* akid = X509_get0_authority_key_id(cert);
  std::vector<std::pair<int, X509*>> ordered;
  for (int i = 0; i < sk_X509_num(candidates); ++i) {
    X509* c = sk_X509_value(candidates, i);
    const ASN1_OCTET_STRING* skid = X509_get0_subject_key_id(c);
    int rank = 1;  // one of the two key ids missing
    if (akid != nullptr && skid != nullptr) rank = ASN1_OCTET_STRING_cmp(akid, skid) == 0 ? 0 : 2;
    ordered.emplace_back(rank, c);
  }
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [rank, candidate] : ordered) {
    std::string hint = check_signature_from(cert, candidate);
    if (!hint.empty()) {
      // Go prints the hint with %q; these texts need no escaping.
      text += " (possibly because of \"" + hint +
              "\" while trying to verify candidate authority certificate \"" +
              authority_name(candidate) + "\")";
      break;
    }
  }
  sk_X509_pop_free(candidates, X509_free);
  return text;
}

// Go's text for a chain that X509_verify_cert rejected.
std::string chain_error(X509_STORE_CTX* store_ctx, X509* leaf) {
  X509* current = X509_STORE_CTX_get_current_cert(store_ctx);
  if (current == nullptr) current = leaf;
  switch (const int err = X509_STORE_CTX_get_error(store_ctx)) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return unknown_authority(store_ctx, current);
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: {
      std::string text = validity_error(current);
      return text.empty() ? "x509: certificate has expired or is not yet valid: " : text;
    }
    case X509_V_ERR_INVALID_PURPOSE: return "x509: certificate specifies an incompatible key usage";
    case X509_V_ERR_INVALID_CA:
      return "x509: certificate is not authorized to sign other certificates";
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
      return "x509: too many intermediates for path length constraint";
    case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION: return "x509: unhandled critical extension";
    default:
      // No Go counterpart worth modelling: OpenSSL's own words.
      return std::string("x509: ") + X509_verify_cert_error_string(err);
  }
}

}  // namespace

int TlsSession::verify_callback(X509_STORE_CTX* store_ctx, void*) {
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* self = static_cast<TlsSession*>(SSL_get_app_data(ssl));
  X509* leaf = X509_STORE_CTX_get0_cert(store_ctx);
  std::string err = validity_error(leaf);
  if (err.empty()) err = hostname_error(leaf, self->host_);
  if (err.empty() && X509_verify_cert(store_ctx) != 1) err = chain_error(store_ctx, leaf);
  if (err.empty()) return 1;
  self->verify_error_ = err;
  // Go answers any verification failure with a bad_certificate alert; OpenSSL derives the
  // alert it sends from this error.
  X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_REJECTED);
  return 0;
}

void TlsSession::info_callback(const SSL* ssl, int where, int ret) {
  if ((where & SSL_CB_READ_ALERT) == 0) return;
  auto* self = static_cast<TlsSession*>(SSL_get_app_data(ssl));
  const int level = (ret >> 8) & 0xff;
  const int desc = ret & 0xff;
  // Go ignores warning alerts before TLS 1.3 and reads close_notify as the end of the stream.
  if (desc != 0 && (level == 2 || SSL_version(ssl) == TLS1_3_VERSION)) self->fatal_alert_ = desc;
}

void TlsSession::install_verification(SSL_CTX* ctx) {
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_cert_verify_callback(ctx, &TlsSession::verify_callback, nullptr);
  // Go ends a chain at any certificate of the root pool, self-signed or not.
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
}

TlsSession::TlsSession(const TlsClientConfig& config, std::string host) : host_(std::move(host)) {
  SSL_CTX* ctx = config.context();
  ssl_ = ctx == nullptr ? nullptr : SSL_new(ctx);
  if (ssl_ == nullptr) {
    error_ = "tls: cannot allocate a connection";
    return;
  }
  SSL_set_app_data(ssl_, this);
  SSL_set_info_callback(ssl_, &TlsSession::info_callback);
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in_, -1);  // empty means "more may come", not the end
  SSL_set_bio(ssl_, in_, out_);
  SSL_set_connect_state(ssl_);
  // Go sends SNI for names only, without a trailing dot.
  if (!is_ip(host_)) {
    std::string sni = host_;
    if (!sni.empty() && sni.back() == '.') sni.pop_back();
    SSL_set_tlsext_host_name(ssl_, sni.c_str());
  }
}

TlsSession::~TlsSession() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees both BIOs
}

TlsSession::Result TlsSession::fail() {
  if (bad_first_record_) {
    error_ = "tls: first record does not look like a TLS handshake";
  } else if (!verify_error_.empty()) {
    error_ = verify_error_;
  } else if (fatal_alert_ >= 0) {
    error_ = "remote error: tls: " + alert_text(fatal_alert_);
  } else if (error_.empty()) {
    // What Go would say here depends on the message it choked on; OpenSSL's reason is the
    // closest kvctl can give.
    const char* reason = ERR_reason_error_string(ERR_peek_last_error());
    error_ = std::string("tls: ") + (reason ? reason : "handshake failure");
  }
  ERR_clear_error();
  return Result::kFailed;
}

TlsSession::Result TlsSession::handshake() {
  if (ssl_ == nullptr || bad_first_record_) return fail();
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) return Result::kDone;
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ: return Result::kWantRead;
    case SSL_ERROR_ZERO_RETURN:
      error_ = "EOF";
      return Result::kFailed;
    default: return fail();
  }
}

TlsSession::Result TlsSession::write(std::string_view data) {
  while (!data.empty()) {
    ERR_clear_error();
    const int n =
        SSL_write(ssl_, data.data(), static_cast<int>(std::min<std::size_t>(data.size(), 1 << 30)));
    if (n <= 0) return fail();
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return Result::kDone;
}

TlsSession::Result TlsSession::read(std::string* out) {
  char buf[16384];
  bool got = false;
  for (;;) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      out->append(buf, static_cast<std::size_t>(n));
      got = true;
      continue;
    }
    // Data already decrypted is delivered first; what ended the reading shows on the next call.
    if (got) return Result::kDone;
    switch (SSL_get_error(ssl_, n)) {
      case SSL_ERROR_WANT_READ: return Result::kWantRead;
      case SSL_ERROR_ZERO_RETURN: return Result::kClosed;
      default: return fail();
    }
  }
}

void TlsSession::feed(std::string_view bytes) {
  std::string_view scan = bytes;
  while (!scan.empty() && !bad_first_record_) {
    if (record_body_left_ > 0) {
      const std::size_t k = std::min(record_body_left_, scan.size());
      record_body_left_ -= k;
      scan.remove_prefix(k);
      continue;
    }
    const std::size_t k = std::min<std::size_t>(5 - record_header_.size(), scan.size());
    record_header_.append(scan.substr(0, k));
    scan.remove_prefix(k);
    if (record_header_.size() < 5) break;
    const auto* h = reinterpret_cast<const unsigned char*>(record_header_.data());
    if (!first_record_seen_) {
      first_record_seen_ = true;
      // Go's check of the first record: an alert or a handshake of a plausible version, else
      // the server does not speak TLS (a plain HTTP server answers "HTTP/1.1 400 ...").
      const unsigned version = (h[1] << 8) | h[2];
      if ((h[0] != 21 && h[0] != 22) || version >= 0x1000) {
        bad_first_record_ = true;
        answered_plain_http_ = record_header_ == "HTTP/";
        return;
      }
    }
    record_body_left_ = (static_cast<std::size_t>(h[3]) << 8) | h[4];
    record_header_.clear();
  }
  if (ssl_ != nullptr && !bad_first_record_) {
    BIO_write(in_, bytes.data(), static_cast<int>(bytes.size()));
  }
}

std::string TlsSession::take_outgoing() {
  std::string out;
  if (ssl_ == nullptr) return out;
  char buf[16384];
  int n;
  while ((n = BIO_read(out_, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

std::string TlsSession::eof_error() const {
  return record_header_.empty() && record_body_left_ == 0 ? "EOF" : "unexpected EOF";
}

}  // namespace kvd::cli
