#include "cli/auth_client.h"

#include <nlohmann/json.hpp>

#include "cli/go_json.h"
#include "common/go.h"

namespace kvd::cli {
namespace {

using json = nlohmann::json;

ClientError plain(std::string msg) {
  return ClientError{ClientError::Kind::kPlain, std::move(msg), {}, false};
}

// The Go types named by json type errors, as reflect prints them.
constexpr char kUserListType[] =
    "struct { Users []client.userListEntry \"json:\\\"users\\\"\" }";
constexpr char kRoleListType[] = "struct { Roles []client.Role \"json:\\\"roles\\\"\" }";

// v2AuthURL: path.Join(endpoint path, "/v2/auth", action[, name]).
ApiRequest auth_request(const std::string& method, const std::string& action,
                        const std::string& name, std::optional<std::string> body = {}) {
  ApiRequest r;
  r.method = method;
  r.path = "/v2/auth/" + action + (name.empty() ? "" : "/" + name);
  r.join_path = true;
  r.json_body = std::move(body);
  return r;
}

// One decoding step's outcome: the first error encoding/json reports, if any (later fields are
// still decoded, as Go does).
struct Decode {
  std::optional<std::string> error;
  void type_error(const json& v, const std::string& go_type, const std::string& field = "") {
    if (!error) error = go_json_type_error(v, go_type, field);
  }
};

// Parses a body Go would accept, or returns Go's syntax error text.
std::variant<json, std::string> parse(const std::string& body) {
  std::string syntax = go::json_syntax_error(body);
  if (!syntax.empty()) return syntax;
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return std::string("invalid character looking for beginning of value");
  return j;
}

// A JSON value decoded into a Go string: a string, else "" (and a type error unless null).
std::string decode_string(const json* v, Decode& d, const std::string& field) {
  if (v == nullptr || v->is_null()) return "";
  if (v->is_string()) return v->get<std::string>();
  d.type_error(*v, "string", field);
  return "";
}

// A JSON value decoded into a Go []string: nullopt for null or absent.
std::optional<std::vector<std::string>> decode_strings(const json* v, Decode& d,
                                                       const std::string& field) {
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (!v->is_array()) {
    d.type_error(*v, "[]string", field);
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const auto& e : *v) out.push_back(decode_string(&e, d, field));
  return out;
}

std::optional<KvPermissions> decode_permissions(const json* v, Decode& d,
                                                const std::string& field) {
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (!v->is_object()) {
    d.type_error(*v, "client.Permissions", field);
    return KvPermissions{};
  }
  KvPermissions p;
  const json* kv = go_json_field(*v, "kv");
  if (kv == nullptr || kv->is_null()) return p;
  if (!kv->is_object()) {
    d.type_error(*kv, "client.rwPermission", field + ".kv");
    return p;
  }
  p.read = decode_strings(go_json_field(*kv, "read"), d, field + ".kv.read");
  p.write = decode_strings(go_json_field(*kv, "write"), d, field + ".kv.write");
  return p;
}

// client.Role from a JSON value (`go_type` names it in a top-level type error).
AuthRole decode_role(const json& v, Decode& d, const std::string& go_type) {
  AuthRole r;
  if (v.is_null()) return r;
  if (!v.is_object()) {
    d.type_error(v, go_type);
    return r;
  }
  r.role = decode_string(go_json_field(v, "role"), d, "Role.role");
  if (auto p = decode_permissions(go_json_field(v, "permissions"), d, "Role.permissions")) {
    r.permissions = *p;
  }
  r.grant = decode_permissions(go_json_field(v, "grant"), d, "Role.grant");
  r.revoke = decode_permissions(go_json_field(v, "revoke"), d, "Role.revoke");
  return r;
}

// authError: the "message" of an error body, or Go's json error.
std::string auth_error(const std::string& body) {
  auto parsed = parse(body);
  if (auto* err = std::get_if<std::string>(&parsed)) return *err;
  const json& j = std::get<json>(parsed);
  if (j.is_null()) return "";
  if (!j.is_object()) return go_json_type_error(j, "client.authError");
  Decode d;
  std::string message = decode_string(go_json_field(j, "message"), d, "authError.message");
  return d.error ? *d.error : message;
}

// Sends and returns the response if its status is one of `ok_statuses`, else the error the Go
// client makes of it (the server's message when `message_errors`, else the status code).
Result<HttpResponse> call(EtcdClient& c, const ApiRequest& req, Deadline deadline,
                          std::initializer_list<int> ok_statuses, bool message_errors = true) {
  auto r = c.send(req, deadline, false, false);
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  auto& resp = std::get<HttpResponse>(r);
  for (int s : ok_statuses) {
    if (resp.status == s) return std::move(resp);
  }
  if (!message_errors) return plain("unexpected status code " + std::to_string(resp.status));
  return plain(auth_error(resp.body));
}

std::optional<ClientError> call_no_result(EtcdClient& c, const ApiRequest& req,
                                          Deadline deadline) {
  auto r = call(c, req, deadline, {200, 201});
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  return std::nullopt;
}

// modUser: a 200 answer decoded as client.User, falling back to client.UserRoles.
Result<AuthUser> mod_user(EtcdClient& c, const ApiRequest& req, Deadline deadline) {
  auto r = call(c, req, deadline, {200});
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  auto parsed = parse(std::get<HttpResponse>(r).body);
  if (auto* err = std::get_if<std::string>(&parsed)) return plain(*err);
  const json& j = std::get<json>(parsed);
  AuthUser user;
  if (j.is_null()) return user;
  Decode first;
  if (!j.is_object()) {
    first.type_error(j, "client.User");
  } else {
    user.user = decode_string(go_json_field(j, "user"), first, "User.user");
    if (auto roles = decode_strings(go_json_field(j, "roles"), first, "User.roles")) {
      user.roles = *roles;
    }
  }
  if (!first.error) return user;
  // The fallback: roles as objects.
  Decode second;
  if (!j.is_object()) return plain(*first.error);
  std::string name = decode_string(go_json_field(j, "user"), second, "UserRoles.user");
  std::vector<std::string> names;
  if (const json* roles = go_json_field(j, "roles"); roles && !roles->is_null()) {
    if (!roles->is_array()) {
      second.type_error(*roles, "[]client.Role", "UserRoles.roles");
    } else {
      for (const auto& e : *roles) names.push_back(decode_role(e, second, "client.Role").role);
    }
  }
  if (second.error) return plain(*first.error);
  user.user = name;
  user.roles.insert(user.roles.end(), names.begin(), names.end());
  return user;
}

// json.Marshal of client.User.
std::string user_body(const std::string& user, const std::string& password,
                      const std::vector<std::string>& grant,
                      const std::vector<std::string>& revoke) {
  auto list = [](const std::vector<std::string>& v) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i) out += ',';
      out += go::json_quote(v[i]);
    }
    return out + "]";
  };
  std::string out = "{\"user\":" + go::json_quote(user);
  if (!password.empty()) out += ",\"password\":" + go::json_quote(password);
  out += ",\"roles\":null";
  if (!grant.empty()) out += ",\"grant\":" + list(grant);
  if (!revoke.empty()) out += ",\"revoke\":" + list(revoke);
  return out + "}";
}

// json.Marshal of client.Permissions with at most one path per side.
std::string permissions_body(const std::string* read, const std::string* write) {
  auto side = [](const std::string* p) {
    return p ? "[" + go::json_quote(*p) + "]" : std::string("null");
  };
  return "{\"kv\":{\"read\":" + side(read) + ",\"write\":" + side(write) + "}}";
}

Result<AuthRole> mod_role(EtcdClient& c, const ApiRequest& req, Deadline deadline) {
  auto r = call(c, req, deadline, {200});
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  auto parsed = parse(std::get<HttpResponse>(r).body);
  if (auto* err = std::get_if<std::string>(&parsed)) return plain(*err);
  Decode d;
  AuthRole role = decode_role(std::get<json>(parsed), d, "client.Role");
  if (d.error) return plain(*d.error);
  return role;
}

}  // namespace

std::optional<ClientError> auth_enable(EtcdClient& c, bool enable, Deadline deadline) {
  return call_no_result(c, auth_request(enable ? "PUT" : "DELETE", "enable", ""), deadline);
}

Result<std::vector<std::string>> list_users(EtcdClient& c, Deadline deadline) {
  auto r = call(c, auth_request("GET", "users", ""), deadline, {200});
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  auto parsed = parse(std::get<HttpResponse>(r).body);
  if (auto* err = std::get_if<std::string>(&parsed)) return plain(*err);
  const json& j = std::get<json>(parsed);
  std::vector<std::string> out;
  if (j.is_null()) return out;
  if (!j.is_object()) return plain(go_json_type_error(j, kUserListType));
  Decode d;
  if (const json* users = go_json_field(j, "users"); users && !users->is_null()) {
    if (!users->is_array()) return plain(go_json_type_error(*users, "[]client.userListEntry",
                                                            ".users"));
    for (const auto& u : *users) {
      if (u.is_null()) {
        out.emplace_back();
        continue;
      }
      if (!u.is_object()) {
        d.type_error(u, "client.userListEntry", ".users");
        continue;
      }
      out.push_back(decode_string(go_json_field(u, "user"), d, ".users.user"));
      if (const json* roles = go_json_field(u, "roles"); roles && !roles->is_null()) {
        if (!roles->is_array()) {
          d.type_error(*roles, "[]client.Role", ".users.roles");
        } else {
          for (const auto& role : *roles) decode_role(role, d, "client.Role");
        }
      }
    }
  }
  if (d.error) return plain(*d.error);
  return out;
}

std::optional<ClientError> add_user(EtcdClient& c, const std::string& user,
                                    const std::string& password, Deadline deadline) {
  return call_no_result(c, auth_request("PUT", "users", user, user_body(user, password, {}, {})),
                        deadline);
}

std::optional<ClientError> remove_user(EtcdClient& c, const std::string& user,
                                       Deadline deadline) {
  return call_no_result(c, auth_request("DELETE", "users", user), deadline);
}

Result<AuthUser> get_user(EtcdClient& c, const std::string& user, Deadline deadline) {
  return mod_user(c, auth_request("GET", "users", user), deadline);
}

Result<AuthUser> grant_revoke_user(EtcdClient& c, const std::string& user,
                                   const std::vector<std::string>& roles, bool grant,
                                   Deadline deadline) {
  std::string body = grant ? user_body(user, "", roles, {}) : user_body(user, "", {}, roles);
  return mod_user(c, auth_request("PUT", "users", user, body), deadline);
}

Result<AuthUser> change_password(EtcdClient& c, const std::string& user,
                                 const std::string& password, Deadline deadline) {
  return mod_user(c, auth_request("PUT", "users", user, user_body(user, password, {}, {})),
                  deadline);
}

Result<std::vector<std::string>> list_roles(EtcdClient& c, Deadline deadline) {
  auto r = call(c, auth_request("GET", "roles", ""), deadline, {200}, /*message_errors=*/false);
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  auto parsed = parse(std::get<HttpResponse>(r).body);
  if (auto* err = std::get_if<std::string>(&parsed)) return plain(*err);
  const json& j = std::get<json>(parsed);
  std::vector<std::string> out;
  if (j.is_null()) return out;
  if (!j.is_object()) return plain(go_json_type_error(j, kRoleListType));
  Decode d;
  if (const json* roles = go_json_field(j, "roles"); roles && !roles->is_null()) {
    if (!roles->is_array()) return plain(go_json_type_error(*roles, "[]client.Role", ".roles"));
    for (const auto& role : *roles) out.push_back(decode_role(role, d, "client.Role").role);
  }
  if (d.error) return plain(*d.error);
  return out;
}

std::optional<ClientError> add_role(EtcdClient& c, const std::string& role, Deadline deadline) {
  std::string body = "{\"role\":" + go::json_quote(role) +
                     ",\"permissions\":" + permissions_body(nullptr, nullptr) + "}";
  return call_no_result(c, auth_request("PUT", "roles", role, body), deadline);
}

std::optional<ClientError> remove_role(EtcdClient& c, const std::string& role,
                                       Deadline deadline) {
  return call_no_result(c, auth_request("DELETE", "roles", role), deadline);
}

Result<AuthRole> get_role(EtcdClient& c, const std::string& role, Deadline deadline) {
  return mod_role(c, auth_request("GET", "roles", role), deadline);
}

Result<AuthRole> grant_revoke_role(EtcdClient& c, const std::string& role,
                                   const std::string& path, PermissionType type, bool grant,
                                   Deadline deadline) {
  const std::string* read = type != PermissionType::kWrite ? &path : nullptr;
  const std::string* write = type != PermissionType::kRead ? &path : nullptr;
  std::string body = "{\"role\":" + go::json_quote(role) +
                     ",\"permissions\":" + permissions_body(nullptr, nullptr) + "," +
                     (grant ? "\"grant\":" : "\"revoke\":") + permissions_body(read, write) + "}";
  return mod_role(c, auth_request("PUT", "roles", role, body), deadline);
}

}  // namespace kvd::cli
