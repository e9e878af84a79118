// etcd 3.4's v2 auth (etcdserver/api/v2auth) as a pure model: users, roles and the enabled flag,
// kept as cluster-internal records of the Store so that they are replicated, saved in snapshots
// and recovered like every other record; the rules of each change decided in one place
// (decide()) when the change is applied, so that every member reaches the same state and answer.
//
// Records (Store::internal(), written only through Op::kAuth commands):
//   auth/enabled        "true" or "false" (JSON); present once anything was written (see below)
//   auth/users/<name>   {"user":..,"password":<bcrypt hash>,"roles":[..]|null}
//   auth/roles/<name>   {"role":..,"permissions":{"kv":{"read":[..]|null,"write":[..]|null}}}
// The JSON is what etcd stores under /2/users and /2/roles, so a tree migrated from etcd keeps
// its users. The root role is built in and never stored; the root user always has it.
//
// The etcd index: etcd keeps these as v2 store nodes, so each write bumps the index a client
// sees. Its first write in a cluster also creates /2, /2/users/, /2/roles/ and /2/enabled
// (four more bumps). decide() returns the same sequence of writes, each one index.
//
// Differences from etcd, on purpose: etcd reads a record, merges and writes it back in separate
// steps, so two concurrent grants can lose one; here the merge happens at apply time, atomically.
//
// Threads: pure functions and immutable AuthState snapshots; safe from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvd::v2::auth {

inline constexpr std::string_view kRecordPrefix = "auth/";
inline constexpr std::string_view kEnabledKey = "auth/enabled";
inline constexpr std::string_view kUsersPrefix = "auth/users/";
inline constexpr std::string_view kRolesPrefix = "auth/roles/";
inline constexpr std::string_view kRootName = "root";
inline constexpr std::string_view kGuestName = "guest";

// A JSON array of strings that may be null: Go keeps the difference (a nil slice renders as
// null), and etcd's answers show it.
using Names = std::optional<std::vector<std::string>>;

struct Permissions {
  Names read, write;  // patterns: a key, or a prefix ending in '*'
  bool empty() const;  // etcd's IsEmpty: no read and no write pattern
  bool operator==(const Permissions&) const = default;
};

struct Role {
  std::string name;
  Permissions kv;
  std::optional<Permissions> grant, revoke;  // requests only (omitted when absent)
  bool operator==(const Role&) const = default;

  // etcd's HasKeyAccess (a pattern "p*" matches keys starting with p, any other only itself)
  // and HasRecursiveAccess (only "p*" patterns, matching keys starting with p). Root: all.
  bool has_key_access(std::string_view key, bool write) const;
  bool has_recursive_access(std::string_view key, bool write) const;
};

struct User {
  std::string name;
  std::string password;  // a bcrypt hash once stored; in a request, the hash of the new one
  Names roles;
  std::vector<std::string> grant, revoke;  // requests only (omitted when empty)
  bool operator==(const User&) const = default;
};

// The built-in roles: root (read and write "/*", never stored) and guest's default, created
// when auth is first enabled without a guest role.
Role root_role();
Role guest_role();

// Request bodies, read as Go's encoding/json reads them into etcd's types: the first JSON value
// of the body (anything after it is ignored), member names matched exactly or else
// case-insensitively, unknown members ignored, null leaving a field unset. nullopt when Go would
// fail (not JSON, a member of the wrong type, an empty body).
std::optional<User> parse_user(std::string_view body);
std::optional<Role> parse_role(std::string_view body);

// JSON as Go's encoding/json writes etcd's types (no trailing newline). with_password: the
// stored form; answers never carry it.
std::string user_json(const User& u, bool with_password);
std::string role_json(const Role& r);

// A replicated change, proposed by the client handler and decided when applied.
struct Request {
  enum class Kind : uint8_t {
    kPutUser = 1,  // PUT /v2/auth/users/NAME: create, or update (password, grant, revoke)
    kDeleteUser = 2,
    kPutRole = 3,  // PUT /v2/auth/roles/NAME: create, or grant/revoke permissions
    kDeleteRole = 4,
    kEnable = 5,
    kDisable = 6,
  };
  Kind kind = Kind::kEnable;
  std::string name;  // user or role
  User user;         // kPutUser; user.password: "" or the bcrypt hash of the new password
  Role role;         // kPutRole
  bool operator==(const Request&) const = default;
};
// Serialization into a Command's value: JSON {"kind":N,"name":..,"user":{..}|"role":{..}}.
std::string encode_request(const Request& r);
[[nodiscard]] std::optional<Request> decode_request(std::string_view s);

// One step on the records: each bumps the etcd index (a failed create or delete only counts in
// the store's statistics, as etcd's failed v2 writes). key "" is one of /2's directories, which
// have no record here.
struct RecordWrite {
  enum class Kind : uint8_t { kCreate, kUpdate, kDelete };
  Kind kind = Kind::kCreate;
  std::string key;
  std::string value;
  bool failed = false;  // the write etcd attempted and the store refused: no index, a fail count
};

// An answer in etcd's words: the HTTP status and the body (JSON, with the trailing newline of
// Go's json.Encoder for successes; errors as {"message":"auth: ..."} without one).
struct Answer {
  int status = 200;
  std::string body;
};

struct Decision {
  std::vector<RecordWrite> writes;
  Answer answer;
};

// etcd's rules for `req` against the current records (Store::internal()).
Decision decide(const std::map<std::string, std::string>& records, const Request& req);

// {"message":M} as etcd's httptypes.HTTPError renders it.
std::string error_body(std::string_view message);

// What the client handlers check requests against: a parsed snapshot of the records, made
// again whenever they change. Immutable.
class AuthState {
 public:
  static std::shared_ptr<const AuthState> from_records(
      const std::map<std::string, std::string>& records);

  bool enabled() const { return enabled_; }
  // The user (root with the root role attached, as etcd's getUser), or null.
  const User* user(std::string_view name) const;
  // The role (root built in), or null.
  const Role* role(std::string_view name) const;
  // Sorted names, as etcd lists them (roles include root).
  std::vector<std::string> user_names() const;
  std::vector<std::string> role_names() const;

  // etcd's checks once a user is authenticated: the root role; a key (or with `recursive`, a
  // subtree) for reading or writing through any of the user's roles (unknown roles skipped).
  bool has_root(const User& u) const;
  bool has_key_access(const User& u, std::string_view key, bool write, bool recursive) const;
  // An unauthenticated request: the guest role's HasKeyAccess (recursive or not).
  bool guest_has_access(std::string_view key, bool write) const;

 private:
  bool enabled_ = false;
  std::map<std::string, User, std::less<>> users_;
  std::map<std::string, Role, std::less<>> roles_;  // root included
};

}  // namespace kvd::v2::auth
