#include "server/auth/authenticator.h"

#include <atomic>
#include <cstring>

#include <boost/asio/post.hpp>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "server/auth/password.h"

namespace kvd::server::auth {

std::optional<Credentials> parse_basic_auth(std::string_view header) {
  constexpr std::string_view kPrefix = "basic ";
  if (header.size() < kPrefix.size()) return std::nullopt;
  for (size_t i = 0; i < kPrefix.size(); ++i) {
    char c = header[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kPrefix[i]) return std::nullopt;
  }
  // Go's StdEncoding skips CR and LF anywhere and wants the padding; OpenSSL's decoder is
  // laxer (spaces, missing padding), so the shape is checked here first.
  std::string b64;
  for (char c : header.substr(kPrefix.size())) {
    if (c == '\r' || c == '\n') continue;
    bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || c == '=';
    if (!alpha) return std::nullopt;
    b64.push_back(c);
  }
  if (b64.size() % 4 != 0) return std::nullopt;
  size_t pad = 0;
  while (pad < b64.size() && b64[b64.size() - 1 - pad] == '=') ++pad;
  size_t first_pad = b64.find('=');
  if (pad > 2 || (first_pad != std::string::npos && first_pad != b64.size() - pad)) return std::nullopt;
  std::string out(b64.size() / 4 * 3, '\0');
  if (!b64.empty()) {
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(b64.data()),
                            static_cast<int>(b64.size()));
    if (n < 0) return std::nullopt;
    out.resize(static_cast<size_t>(n) - pad);
  }
  size_t colon = out.find(':');
  if (colon == std::string::npos) return std::nullopt;
  return Credentials{out.substr(0, colon), out.substr(colon + 1)};
}

namespace {

// One HMAC-SHA-256 context per thread, keyed for one Authenticator (by its id): OpenSSL 3's
// one-shot HMAC() looks the algorithm up on every call, which cost more than the rest of a
// request's credential check.
struct ThreadMac {
  uint64_t owner = 0;
  EVP_MAC_CTX* ctx = nullptr;
  ~ThreadMac() { EVP_MAC_CTX_free(ctx); }
};
thread_local ThreadMac t_mac;
std::atomic<uint64_t> next_authenticator_id{1};

}  // namespace

Authenticator::Authenticator(size_t threads)
    : id_(next_authenticator_id.fetch_add(1)), pool_(threads) {
  if (RAND_bytes(key_.data(), static_cast<int>(key_.size())) != 1) std::abort();
}

Authenticator::~Authenticator() {
  pool_.join();
  OPENSSL_cleanse(key_.data(), key_.size());
}

size_t Authenticator::DigestHash::operator()(const Digest& d) const {
  size_t h;
  std::memcpy(&h, d.data(), sizeof h);
  return h;
}

Authenticator::Digest Authenticator::digest(std::string_view user, std::string_view password,
                                            std::string_view hash) const {
  if (t_mac.owner != id_ || !t_mac.ctx) {
    EVP_MAC_CTX_free(t_mac.ctx);
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    t_mac.ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
    EVP_MAC_free(mac);
    char sha256[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", sha256, 0),
                           OSSL_PARAM_construct_end()};
    if (!t_mac.ctx || EVP_MAC_init(t_mac.ctx, key_.data(), key_.size(), params) != 1) std::abort();
    t_mac.owner = id_;
  } else if (EVP_MAC_init(t_mac.ctx, nullptr, 0, nullptr) != 1) {  // the same key again
    std::abort();
  }
  // Lengths first, so that no two triples share an input.
  for (std::string_view part : {user, password, hash}) {
    uint64_t n = part.size();
    EVP_MAC_update(t_mac.ctx, reinterpret_cast<const unsigned char*>(&n), sizeof n);
    EVP_MAC_update(t_mac.ctx, reinterpret_cast<const unsigned char*>(part.data()), part.size());
  }
  Digest d{};
  size_t len = 0;
  if (EVP_MAC_final(t_mac.ctx, d.data(), &len, d.size()) != 1 || len != d.size()) std::abort();
  return d;
}

void Authenticator::verify(std::string_view user, std::string_view password, std::string_view hash,
                           std::function<void(bool)> cb) {
  Digest d = digest(user, password, hash);
  {
    std::lock_guard lock(mu_);
    if (remembered_.count(d)) {
      ++remembered_hits_;
    } else {
      // The same credentials already being checked (a client opening many connections at
      // once): wait for that check instead of starting another.
      auto [it, first] = in_flight_.try_emplace(d);
      it->second.push_back(std::move(cb));
      if (!first) return;
      cb = nullptr;
    }
  }
  if (cb) return cb(true);
  boost::asio::post(pool_, [this, d, pw = std::string(password), h = std::string(hash)]() mutable {
    bool ok = check_password(h, pw);
    OPENSSL_cleanse(pw.data(), pw.size());
    std::vector<std::function<void(bool)>> waiting;
    {
      std::lock_guard lock(mu_);
      ++bcrypt_checks_;
      if (ok) {
        if (remembered_.size() >= kMaxRemembered) remembered_.clear();
        remembered_.insert(d);
      }
      auto it = in_flight_.find(d);
      waiting = std::move(it->second);
      in_flight_.erase(it);
    }
    for (auto& w : waiting) w(ok);
  });
}

void Authenticator::hash(std::string password, std::function<void(Result<std::string>)> cb) {
  boost::asio::post(pool_, [pw = std::move(password), cb = std::move(cb)]() mutable {
    auto h = hash_password(pw);
    OPENSSL_cleanse(pw.data(), pw.size());
    cb(std::move(h));
  });
}

uint64_t Authenticator::bcrypt_checks() const {
  std::lock_guard lock(mu_);
  return bcrypt_checks_;
}

uint64_t Authenticator::remembered_hits() const {
  std::lock_guard lock(mu_);
  return remembered_hits_;
}

}  // namespace kvd::server::auth
