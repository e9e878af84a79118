// Passwords and credentials (server/auth): bcrypt through libcrypt, compatible with etcd's Go
// hashes; Go's Basic auth parsing; the Authenticator's pool and its memory of checked
// credentials.
#include <future>
#include <vector>

#include <gtest/gtest.h>

#include "server/auth/authenticator.h"
#include "server/auth/password.h"

namespace kvd::server::auth {
namespace {

TEST(PasswordTest, hashAndCheck_roundTripWithEtcdsFormat) {
  auto h = hash_password("s3cret");
  ASSERT_TRUE(h.is_ok()) << h.status().message();
  EXPECT_EQ(h.value().substr(0, 7), "$2a$10$");  // Go's bcrypt.DefaultCost, $2a$
  EXPECT_EQ(h.value().size(), 60u);
  EXPECT_TRUE(check_password(h.value(), "s3cret"));
  EXPECT_FALSE(check_password(h.value(), "s3cre"));
  EXPECT_FALSE(check_password(h.value(), std::string("s3cret\0x", 8)));
  EXPECT_NE(hash_password("s3cret").value(), h.value());  // salted
}

TEST(PasswordTest, check_acceptsAHashMadeByEtcd) {
  // Made by etcd 3.4 (Go's bcrypt, cost 10) for user alice with password "etcd-password", read
  // from its write-ahead log: users migrated from etcd keep their passwords.
  const std::string etcd_hash = "$2a$10$44Q.R1eUZ9cML4XEivkBDeYV/5pfkY2Y5R1WbGzkIkN3YQGoTyqHe";
  EXPECT_TRUE(check_password(etcd_hash, "etcd-password"));
  EXPECT_FALSE(check_password(etcd_hash, "etcd-passwort"));
  EXPECT_FALSE(check_password("", "x"));
  EXPECT_FALSE(check_password("plain", "plain"));
  EXPECT_FALSE(check_password("$1$abc$def", "x"));  // not bcrypt
  EXPECT_FALSE(hash_password(std::string("a\0b", 3)).is_ok());
}

TEST(BasicAuthTest, parse_asGoDoes) {
  auto c = parse_basic_auth("Basic dXNlcjpwYTpzcw==");  // user:pa:ss
  ASSERT_TRUE(c);
  EXPECT_EQ(c->user, "user");
  EXPECT_EQ(c->password, "pa:ss");
  EXPECT_TRUE(parse_basic_auth("bAsIc dXNlcjpwYTpzcw=="));
  auto unpadded = parse_basic_auth("Basic cm9vdDpiZW5jaC1yb290LXB3");  // root:bench-root-pw
  ASSERT_TRUE(unpadded);
  EXPECT_EQ(unpadded->password, "bench-root-pw");
  EXPECT_FALSE(parse_basic_auth("Basic dXNl=cjpwYTpzcw=="));  // padding inside
  EXPECT_TRUE(parse_basic_auth("Basic dXNlcjpw\r\nYTpzcw=="));  // CR/LF skipped
  EXPECT_FALSE(parse_basic_auth("Basic  dXNlcjpwYTpzcw=="));    // two spaces
  EXPECT_FALSE(parse_basic_auth("Basic dXNlcjpwYTpzcw"));       // no padding
  EXPECT_FALSE(parse_basic_auth("Basic dXNlcg=="));             // "user": no colon
  EXPECT_FALSE(parse_basic_auth("Bearer dXNlcjpwYTpzcw=="));
  EXPECT_FALSE(parse_basic_auth("Basic"));
  auto empty = parse_basic_auth("Basic Og==");  // ":"
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->user, "");
  EXPECT_EQ(empty->password, "");
}

bool verify(Authenticator& a, const std::string& user, const std::string& pw, const std::string& hash) {
  std::promise<bool> p;
  auto f = p.get_future();
  a.verify(user, pw, hash, [&p](bool ok) { p.set_value(ok); });
  return f.get();
}

TEST(AuthenticatorTest, verify_remembersSuccessesOnly) {
  Authenticator a(1);
  std::string hash = hash_password("pw").value();
  EXPECT_FALSE(verify(a, "u", "bad", hash));
  EXPECT_FALSE(verify(a, "u", "bad", hash));
  EXPECT_EQ(a.bcrypt_checks(), 2u);  // failures are checked every time
  EXPECT_TRUE(verify(a, "u", "pw", hash));
  EXPECT_TRUE(verify(a, "u", "pw", hash));
  EXPECT_EQ(a.bcrypt_checks(), 3u);
  EXPECT_EQ(a.remembered_hits(), 1u);
  // Another user, or the same password against a new hash (a changed password), is checked again.
  EXPECT_TRUE(verify(a, "v", "pw", hash));
  std::string hash2 = hash_password("pw2").value();
  EXPECT_FALSE(verify(a, "u", "pw", hash2));
  EXPECT_EQ(a.bcrypt_checks(), 5u);
}

TEST(AuthenticatorTest, verify_sameCredentialsAtOnceShareOneCheck) {
  Authenticator a(2);
  std::string hash = hash_password("pw").value();
  constexpr int kRequests = 16;
  std::vector<std::promise<bool>> done(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    a.verify("u", i % 2 ? "pw" : "bad", hash, [&done, i](bool ok) { done[i].set_value(ok); });
  }
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(done[i].get_future().get(), i % 2 == 1) << i;
  // One check per distinct credentials in flight, not one per request: without sharing there
  // would be 16. (Normally exactly 2: the 16 arrive within microseconds and a check takes tens
  // of milliseconds; the bound leaves room for a loaded machine pausing this thread.)
  EXPECT_LT(a.bcrypt_checks(), 8u);
}

TEST(AuthenticatorTest, hash_runsOnThePool) {
  Authenticator a(1);
  std::promise<Result<std::string>> p;
  auto f = p.get_future();
  a.hash("x", [&p](Result<std::string> h) { p.set_value(std::move(h)); });
  auto h = f.get();
  ASSERT_TRUE(h.is_ok());
  EXPECT_TRUE(check_password(h.value(), "x"));
}

}  // namespace
}  // namespace kvd::server::auth
