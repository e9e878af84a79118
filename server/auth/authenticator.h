// Checks HTTP Basic credentials against bcrypt hashes without blocking the event loops, and fast
// for a client that sends the same credentials with every request (etcd's v2 clients do: etcd
// pays a bcrypt check, tens of milliseconds of CPU, on each one).
//
// A successful check is remembered as an HMAC-SHA-256, under a random key made at start, of
// (user, password, stored hash): a later request with the same credentials is answered at once,
// and a changed password (a new hash) or a removed user never matches an old entry. Failed
// checks are never remembered, so guessing costs a bcrypt check per guess as in etcd. At most
// kMaxRemembered entries; when full, the memory is cleared. Requests with the same credentials
// that arrive while those are being checked wait for that one check.
//
// Threads: any. Callbacks run on the calling thread (remembered) or on a pool thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/thread_pool.hpp>

#include "common/status.h"

namespace kvd::server::auth {

// Go's Request.BasicAuth: "Basic " (any case) + standard base64 (padded; CR and LF skipped) of
// "user:password" (split at the first colon). nullopt when Go's would fail.
struct Credentials {
  std::string user;
  std::string password;
};
std::optional<Credentials> parse_basic_auth(std::string_view header);

class Authenticator {
 public:
  static constexpr size_t kMaxRemembered = 4096;

  explicit Authenticator(size_t threads = 2);
  ~Authenticator();
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // cb(true) when `password` is `user`'s, whose stored bcrypt hash is `hash`.
  void verify(std::string_view user, std::string_view password, std::string_view hash,
              std::function<void(bool)> cb);
  // cb(hash) of a new password, or the error, on a pool thread.
  void hash(std::string password, std::function<void(Result<std::string>)> cb);

  // Checks done by bcrypt and answered from memory since start (for tests and statistics).
  uint64_t bcrypt_checks() const;
  uint64_t remembered_hits() const;

 private:
  using Digest = std::array<unsigned char, 32>;
  struct DigestHash {
    size_t operator()(const Digest& d) const;
  };
  Digest digest(std::string_view user, std::string_view password, std::string_view hash) const;

  const uint64_t id_;  // unique per Authenticator of this process
  std::array<unsigned char, 32> key_;
  boost::asio::thread_pool pool_;
  mutable std::mutex mu_;
  std::unordered_set<Digest, DigestHash> remembered_;  // guarded by mu_
  // Checks running, with everyone waiting for each. Guarded by mu_.
  std::unordered_map<Digest, std::vector<std::function<void(bool)>>, DigestHash> in_flight_;
  uint64_t bcrypt_checks_ = 0;                          // guarded by mu_
  uint64_t remembered_hits_ = 0;                        // guarded by mu_
};

}  // namespace kvd::server::auth
