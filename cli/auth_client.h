// The v2 auth API of etcd's Go client (AuthAPI, AuthUserAPI, AuthRoleAPI) as etcdctl uses it:
// requests under /v2/auth (path.Join semantics, JSON bodies marshalled as Go marshals the
// client's User and Role structs), the status codes each call accepts, and the errors it
// returns: the server's {"message": ...} text, "unexpected status code N", or Go's json error.
// Free functions over an EtcdClient, which sends them with its failover and credentials.
// Single-threaded, as the client.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/etcd_client.h"

namespace kvd::cli {

// client.User as a GET of a user decodes it (roles as etcdctl ends up with them, see
// get_user).
struct AuthUser {
  std::string user;
  std::vector<std::string> roles;
};

// One side of a role's permissions (client.rwPermission). nullopt: JSON null or absent, which
// etcdctl's reflect.DeepEqual tells apart from an empty list.
struct KvPermissions {
  std::optional<std::vector<std::string>> read;
  std::optional<std::vector<std::string>> write;
  bool operator==(const KvPermissions&) const = default;
};

// client.Role.
struct AuthRole {
  std::string role;
  KvPermissions permissions;
  std::optional<KvPermissions> grant;
  std::optional<KvPermissions> revoke;
  bool operator==(const AuthRole&) const = default;
};

enum class PermissionType { kRead, kWrite, kReadWrite };

using Deadline = std::optional<Clock::time_point>;

// PUT (enable) or DELETE (disable) /v2/auth/enable.
std::optional<ClientError> auth_enable(EtcdClient& c, bool enable, Deadline deadline);

Result<std::vector<std::string>> list_users(EtcdClient& c, Deadline deadline);
std::optional<ClientError> add_user(EtcdClient& c, const std::string& user,
                                    const std::string& password, Deadline deadline);
std::optional<ClientError> remove_user(EtcdClient& c, const std::string& user,
                                       Deadline deadline);
// GET /v2/auth/users/<user>. The server lists a user's roles as objects, which the Go client
// first decodes into strings (each object leaving an empty string behind) and then appends the
// role names: a user with roles a, b has the roles ["", "", "a", "b"].
Result<AuthUser> get_user(EtcdClient& c, const std::string& user, Deadline deadline);
// PUT {"user", "grant" | "revoke": roles}.
Result<AuthUser> grant_revoke_user(EtcdClient& c, const std::string& user,
                                   const std::vector<std::string>& roles, bool grant,
                                   Deadline deadline);
Result<AuthUser> change_password(EtcdClient& c, const std::string& user,
                                 const std::string& password, Deadline deadline);

Result<std::vector<std::string>> list_roles(EtcdClient& c, Deadline deadline);
std::optional<ClientError> add_role(EtcdClient& c, const std::string& role, Deadline deadline);
std::optional<ClientError> remove_role(EtcdClient& c, const std::string& role,
                                       Deadline deadline);
Result<AuthRole> get_role(EtcdClient& c, const std::string& role, Deadline deadline);
// PUT {"role", "permissions", "grant" | "revoke": {"kv": ...}} for one path.
Result<AuthRole> grant_revoke_role(EtcdClient& c, const std::string& role,
                                   const std::string& path, PermissionType type, bool grant,
                                   Deadline deadline);

}  // namespace kvd::cli
