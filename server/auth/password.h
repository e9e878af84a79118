// Passwords of v2 auth users: bcrypt, as etcd (Go's bcrypt.GenerateFromPassword with its default
// cost 10, "$2a$" hashes), through libcrypt; a hash made by etcd verifies here and the reverse.
// Passwords are never logged. Slow on purpose (tens of milliseconds): call off the event loops
// (Authenticator does).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace kvd::server::auth {

inline constexpr int kBcryptCost = 10;

// A new salted hash of `password`. Fails on a password with a NUL byte (libcrypt reads C strings;
// such a password could not be checked faithfully) or when libcrypt fails.
Result<std::string> hash_password(std::string_view password);

// Whether `password` matches `hash` (compared in constant time). False for a malformed hash and
// for a password with a NUL byte.
bool check_password(std::string_view hash, std::string_view password);

}  // namespace kvd::server::auth
