#include "server/auth/password.h"

#include <crypt.h>

#include <cstring>
#include <memory>

#include <openssl/crypto.h>

namespace kvd::server::auth {

Result<std::string> hash_password(std::string_view password) {
  if (password.find('\0') != std::string_view::npos)
    return Status::error("a password must not contain a NUL byte");
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn("$2a$", kBcryptCost, nullptr, 0, setting, sizeof setting))
    return Status::error(std::string("cannot make a bcrypt salt: ") + std::strerror(errno));
  auto data = std::make_unique<crypt_data>();
  std::string pw(password);
  const char* h = crypt_rn(pw.c_str(), setting, data.get(), sizeof *data);
  OPENSSL_cleanse(pw.data(), pw.size());
  if (!h || h[0] == '*') return Status::error("bcrypt failed");
  std::string out(h);
  OPENSSL_cleanse(data.get(), sizeof *data);
  return out;
}

bool check_password(std::string_view hash, std::string_view password) {
  if (password.find('\0') != std::string_view::npos) return false;
  if (hash.size() < 7 || hash[0] != '$' || hash[1] != '2') return false;  // bcrypt only
  auto data = std::make_unique<crypt_data>();
  std::string pw(password);
  std::string setting(hash);
  const char* h = crypt_rn(pw.c_str(), setting.c_str(), data.get(), sizeof *data);
  OPENSSL_cleanse(pw.data(), pw.size());
  bool ok = h && h[0] != '*' && std::strlen(h) == hash.size() &&
            CRYPTO_memcmp(h, hash.data(), hash.size()) == 0;
  OPENSSL_cleanse(data.get(), sizeof *data);
  return ok;
}

}  // namespace kvd::server::auth
