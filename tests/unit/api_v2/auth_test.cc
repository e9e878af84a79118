// The v2 auth model (api_v2/auth.h): etcd 3.4's rules for each change, the index bumps they
// cost, Go-compatible JSON, and the permission checks. The etcd behaviour each test pins is in
// the shared spec v2-auth.md (observed on etcd 3.4.23).
#include "api_v2/auth.h"

#include <gtest/gtest.h>

#include "api_v2/command.h"
#include "api_v2/store.h"

namespace kvd::v2::auth {
namespace {

using Kind = Request::Kind;

// A Store driven only by auth commands; checks the answer and the index after each.
class AuthTest : public ::testing::Test {
 protected:
  Answer run(Request req) {
    Command cmd;
    cmd.op = Op::kAuth;
    cmd.request_id = ++id_;
    cmd.value = encode_request(req);
    return store_.apply_auth(cmd);
  }
  Answer put_user(const std::string& name, const std::string& hash, Names roles = std::nullopt,
                  std::vector<std::string> grant = {}, std::vector<std::string> revoke = {}) {
    Request r;
    r.kind = Kind::kPutUser;
    r.name = name;
    r.user = User{name, hash, std::move(roles), std::move(grant), std::move(revoke)};
    return run(r);
  }
  Answer put_role(const std::string& body) {
    auto role = parse_role(body);
    EXPECT_TRUE(role) << body;
    Request r;
    r.kind = Kind::kPutRole;
    r.name = role->name;
    r.role = *role;
    return run(r);
  }
  Answer simple(Kind k, const std::string& name = "") {
    Request r;
    r.kind = k;
    r.name = name;
    return run(r);
  }
  std::shared_ptr<const AuthState> state() const { return AuthState::from_records(store_.internal()); }

  void TearDown() override { EXPECT_EQ(store_.check_invariants(), ""); }

  Store store_;
  uint64_t id_ = 0;
};

TEST_F(AuthTest, apply_firstWriteCreatesTheAuthDirectoriesFirst) {
  // etcd: /2, /2/users/, /2/roles/ and /2/enabled, then the user: +5.
  Answer a = put_user("alice", "$2a$10$h");
  EXPECT_EQ(a.status, 201);
  EXPECT_EQ(a.body, "{\"user\":\"alice\",\"roles\":null}\n");
  EXPECT_EQ(store_.index(), 5u);
  EXPECT_EQ(put_user("bob", "$2a$10$h").status, 201);
  EXPECT_EQ(store_.index(), 6u);
}

TEST_F(AuthTest, apply_failedDeleteStillCreatesTheDirectories) {
  Answer a = simple(Kind::kDeleteRole, "nosuch");
  EXPECT_EQ(a.status, 404);
  EXPECT_EQ(a.body, "{\"message\":\"auth: Role nosuch doesn't exist.\"}");
  EXPECT_EQ(store_.index(), 4u);
  EXPECT_EQ(store_.stats().delete_fail, 1u);
}

TEST_F(AuthTest, apply_refusalsBeforeAnyWriteCostNoIndex) {
  EXPECT_EQ(put_user("alice", "").body,
            "{\"message\":\"auth: Cannot create user alice with an empty password\"}");
  EXPECT_EQ(put_role("{\"role\":\"root\"}").status, 403);
  EXPECT_EQ(simple(Kind::kEnable).body,
            "{\"message\":\"auth: No root user available, please create one\"}");
  EXPECT_EQ(simple(Kind::kDisable).body, "{\"message\":\"auth: already disabled\"}");
  EXPECT_EQ(store_.index(), 0u);
}

TEST_F(AuthTest, putUser_withRolesCreatesWith200AndRootGetsTheRootRole) {
  Answer a = put_user("root", "$2a$10$h", std::vector<std::string>{"r1"});
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "{\"user\":\"root\",\"roles\":[\"r1\",\"root\"]}\n");
  EXPECT_EQ(put_user("root", "$2a$10$x", std::vector<std::string>{"r1"}).body,
            "{\"message\":\"auth: User root already exists.\"}");
}

TEST_F(AuthTest, putUser_nullRolesDifferFromEmptyOnce) {
  // Created without roles (null); an update without a password writes [] the first time
  // (Go's DeepEqual tells nil from empty) and is "not updated" the second.
  ASSERT_EQ(put_user("u", "$2a$10$h").status, 201);
  Answer first = put_user("u", "");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, "{\"user\":\"u\",\"roles\":[]}\n");
  Answer second = put_user("u", "");
  EXPECT_EQ(second.status, 400);
  EXPECT_EQ(second.body,
            "{\"message\":\"auth: User not updated. Use grant/revoke/password to update the user.\"}");
}

TEST_F(AuthTest, putUser_grantRevokeRules) {
  ASSERT_EQ(put_user("u", "$2a$10$h").status, 201);
  EXPECT_EQ(put_user("u", "", std::nullopt, {"b", "a"}).body, "{\"user\":\"u\",\"roles\":[\"a\",\"b\"]}\n");
  EXPECT_EQ(put_user("u", "", std::nullopt, {"a"}).body,
            "{\"message\":\"auth: Granting duplicate role a for user u\"}");
  EXPECT_EQ(put_user("u", "", std::nullopt, {}, {"zz"}).body,
            "{\"message\":\"auth: Revoking ungranted role zz for user u\"}");
  EXPECT_EQ(put_user("nobody", "", std::nullopt, {"a"}).body,
            "{\"message\":\"auth: User nobody does not exist.\"}");
  // A grant of a role that does not exist is accepted, as in etcd.
  EXPECT_EQ(put_user("u", "", std::nullopt, {}, {"a", "b"}).body, "{\"user\":\"u\",\"roles\":[]}\n");
}

TEST_F(AuthTest, putUser_newPasswordReplacesTheHash) {
  ASSERT_EQ(put_user("u", "$2a$10$old").status, 201);
  EXPECT_EQ(put_user("u", "$2a$10$new").status, 200);
  EXPECT_EQ(state()->user("u")->password, "$2a$10$new");
}

TEST_F(AuthTest, putRole_createEchoesTheInputAndUpdatesSort) {
  Answer a = put_role("{\"role\":\"r\",\"permissions\":{\"kv\":{\"read\":[\"/b\",\"/a\",\"/a\"]}}}");
  EXPECT_EQ(a.status, 201);
  EXPECT_EQ(a.body, "{\"role\":\"r\",\"permissions\":{\"kv\":{\"read\":[\"/b\",\"/a\",\"/a\"],\"write\":null}}}\n");
  Answer g = put_role("{\"role\":\"r\",\"grant\":{\"kv\":{\"write\":[\"/w\"]}}}");
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(g.body, "{\"role\":\"r\",\"permissions\":{\"kv\":{\"read\":[\"/a\",\"/b\"],\"write\":[\"/w\"]}}}\n");
  EXPECT_EQ(put_role("{\"role\":\"r\",\"grant\":{\"kv\":{\"read\":[\"/a\"]}}}").body,
            "{\"message\":\"auth: Granting duplicate read permission /a\"}");
  // Revoking what is not granted is ignored; a change that changes nothing is refused.
  EXPECT_EQ(put_role("{\"role\":\"r\",\"revoke\":{\"kv\":{\"read\":[\"/zz\"]}}}").body,
            "{\"message\":\"auth: Role not updated. Use grant/revoke to update the role.\"}");
  EXPECT_EQ(put_role("{\"role\":\"nosuch\",\"grant\":{\"kv\":{\"read\":[\"/a\"]}}}").body,
            "{\"message\":\"auth: Role nosuch does not exist.\"}");
  EXPECT_EQ(put_role("{\"role\":\"r\"}").body, "{\"message\":\"auth: Role r already exists.\"}");
}

TEST_F(AuthTest, enable_createsTheGuestRoleOnceAndDisableFlips) {
  ASSERT_EQ(put_user("root", "$2a$10$h").status, 201);  // +5
  Answer e = simple(Kind::kEnable);
  EXPECT_EQ(e.status, 200);
  EXPECT_EQ(e.body, "");
  EXPECT_EQ(store_.index(), 7u);  // guest role, then enabled
  EXPECT_TRUE(state()->enabled());
  EXPECT_EQ(simple(Kind::kEnable).body, "{\"message\":\"auth: already enabled\"}");
  EXPECT_EQ(simple(Kind::kDeleteUser, "root").status, 403);
  EXPECT_EQ(simple(Kind::kDisable).status, 200);
  EXPECT_EQ(store_.index(), 8u);
  EXPECT_EQ(simple(Kind::kEnable).status, 200);  // guest exists: +1
  EXPECT_EQ(store_.index(), 9u);
}

TEST_F(AuthTest, state_survivesSaveAndRecover) {
  ASSERT_EQ(put_user("root", "$2a$10$h").status, 201);
  ASSERT_EQ(put_role("{\"role\":\"r\",\"permissions\":{\"kv\":{\"read\":[\"/a/*\"],\"write\":[]}}}").status, 201);
  ASSERT_EQ(simple(Kind::kEnable).status, 200);
  Store copy;
  ASSERT_TRUE(copy.recover(store_.save()));
  auto st = AuthState::from_records(copy.internal());
  EXPECT_TRUE(st->enabled());
  ASSERT_NE(st->role("r"), nullptr);
  EXPECT_EQ(st->role_names(), (std::vector<std::string>{"guest", "r", "root"}));
  EXPECT_EQ(copy.index(), store_.index());
}

TEST(AuthRoleTest, patterns_exactPrefixAndRecursive) {
  Role r;
  r.name = "r";
  r.kv.read = std::vector<std::string>{"/foo", "/bar/*", "/baz*", ""};
  EXPECT_TRUE(r.has_key_access("/foo", false));
  EXPECT_FALSE(r.has_key_access("/foo/x", false));
  EXPECT_FALSE(r.has_key_access("/foo", true));  // no write patterns
  EXPECT_TRUE(r.has_key_access("/bar/x", false));
  EXPECT_FALSE(r.has_key_access("/bar", false));
  EXPECT_TRUE(r.has_key_access("/bazooka", false));
  EXPECT_FALSE(r.has_recursive_access("/foo", false));  // only '*' patterns count
  EXPECT_TRUE(r.has_recursive_access("/bar/", false));
  EXPECT_FALSE(r.has_key_access("", false));  // an empty pattern matches nothing
  EXPECT_TRUE(root_role().has_recursive_access("anything", true));
}

TEST(AuthStateTest, guestAndUsersChecks) {
  std::map<std::string, std::string> recs{
      {"auth/enabled", "true"},
      {"auth/users/root", "{\"user\":\"root\",\"password\":\"h\",\"roles\":null}"},
      {"auth/users/u", "{\"user\":\"u\",\"password\":\"h\",\"roles\":[\"r\",\"gone\"]}"},
      {"auth/roles/r", "{\"role\":\"r\",\"permissions\":{\"kv\":{\"read\":[\"/a*\"],\"write\":[\"/a/b\"]}}}"},
  };
  auto st = AuthState::from_records(recs);
  ASSERT_TRUE(st->enabled());
  EXPECT_FALSE(st->guest_has_access("/x", false));  // no guest role: nothing
  const User* root = st->user("root");
  ASSERT_NE(root, nullptr);
  EXPECT_TRUE(st->has_root(*root));  // attached even though not stored
  const User* u = st->user("u");
  EXPECT_FALSE(st->has_root(*u));
  EXPECT_TRUE(st->has_key_access(*u, "/a/c", false, true));
  EXPECT_TRUE(st->has_key_access(*u, "/a/b", true, false));
  EXPECT_FALSE(st->has_key_access(*u, "/a/b", true, true));  // recursive write: no '*' pattern
  EXPECT_FALSE(st->has_key_access(*u, "/b", false, false));
}

TEST(AuthJsonTest, parse_goRules) {
  // Case-insensitive names, unknown members ignored, trailing data after the value ignored.
  auto u = parse_user("{\"User\":\"a\",\"PASSWORD\":\"p\",\"x\":1,\"roles\":[\"r\",null]} trailing");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->name, "a");
  EXPECT_EQ(u->password, "p");
  EXPECT_EQ(*u->roles, (std::vector<std::string>{"r", ""}));
  EXPECT_FALSE(parse_user(""));
  EXPECT_FALSE(parse_user("{\"user\":5}"));
  EXPECT_FALSE(parse_user("[]"));
  auto null_user = parse_user("null");
  ASSERT_TRUE(null_user);
  EXPECT_EQ(null_user->name, "");
  auto r = parse_role("{\"role\":\"r\",\"grant\":{}}");
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->grant);
  EXPECT_TRUE(r->grant->empty());
  EXPECT_EQ(role_json(*r), "{\"role\":\"r\",\"permissions\":{\"kv\":{\"read\":null,\"write\":null}},"
                           "\"grant\":{\"kv\":{\"read\":null,\"write\":null}}}");
  EXPECT_EQ(user_json(User{"<a>", "h", std::nullopt, {}, {}}, false), "{\"user\":\"\\u003ca\\u003e\",\"roles\":null}");
}

TEST(AuthJsonTest, requestsRoundTrip) {
  Request r;
  r.kind = Kind::kPutUser;
  r.name = "u";
  r.user = User{"u", "$2a$10$h", std::vector<std::string>{}, {"g"}, {"v"}};
  auto back = decode_request(encode_request(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, r);
  Request role;
  role.kind = Kind::kPutRole;
  role.name = "r";
  role.role = *parse_role("{\"role\":\"r\",\"revoke\":{\"kv\":{\"read\":[\"/a\"]}}}");
  EXPECT_EQ(*decode_request(encode_request(role)), role);
  EXPECT_FALSE(decode_request("{\"kind\":9,\"name\":\"x\"}"));
  EXPECT_FALSE(decode_request("garbage"));
}

}  // namespace
}  // namespace kvd::v2::auth
