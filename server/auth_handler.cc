// v2 auth as etcd 3.4 serves it (v2http's client_auth.go over v2auth): /v2/auth/enable,
// /v2/auth/users[/NAME], /v2/auth/roles[/NAME], and the access checks the other endpoints make
// once auth is enabled. Reads answer from the member's auth snapshot; changes go through raft as
// Op::kAuth commands and are decided when applied (api_v2/auth.h), so every member agrees.
// Passwords: hashed and checked on the Authenticator's pool, never on an event loop, never logged.
#include <spdlog/spdlog.h>

#include "api_v2/auth.h"
#include "common/go.h"
#include "server/client_api.h"
#include "server/responses.h"

namespace kvd::server {
namespace {

namespace va = v2::auth;

constexpr std::string_view kAuthPrefix = "/v2/auth";

HttpResponse answer(va::Answer a, uint64_t cid) {
  HttpResponse resp;
  resp.status = a.status;
  resp.content_type = kJson;
  resp.cluster_id = cid;
  resp.body = std::move(a.body);
  return resp;
}

bool is_read(std::string_view m) { return m == "GET" || m == "HEAD"; }

// {"user":..,"roles":[role..]} (roles omitted when none), as etcd's userWithRoles.
void append_user_with_roles(std::string& out, const va::AuthState& st, const va::User& u,
                            bool skip_missing, bool* missing, std::string* missing_role) {
  out += "{\"user\":";
  go::append_json_string(out, u.name);
  std::string roles;
  if (u.roles) {
    for (const auto& name : *u.roles) {
      const va::Role* r = st.role(name);
      if (!r) {
        if (skip_missing) continue;
        *missing = true;
        *missing_role = name;
        return;
      }
      roles += roles.empty() ? "" : ",";
      roles += va::role_json(*r);
    }
  }
  if (!roles.empty()) out += ",\"roles\":[" + roles + "]";
  out += '}';
}

}  // namespace

void ClientApi::basic_user(const HttpRequest& r, std::shared_ptr<const va::AuthState> st,
                           std::function<void(const va::User*)> cb) {
  auto creds = auth::parse_basic_auth(r.authorization);
  if (!creds) {
    SPDLOG_WARN("auth: malformed basic auth encoding");
    return cb(nullptr);
  }
  const va::User* u = st->user(creds->user);
  if (!u) return cb(nullptr);
  std::string name = creds->user;
  options_.authenticator->verify(creds->user, creds->password, u->password,
                                 [u, st, name, cb = std::move(cb)](bool ok) {
                                   if (!ok) SPDLOG_WARN("auth: incorrect password for user: {}", name);
                                   cb(ok ? u : nullptr);
                                 });
}

void ClientApi::check_root(const HttpRequest& r, std::shared_ptr<const va::AuthState> st, Allowed cb) {
  auto decide = [st, cb](const va::User* u) {
    if (!u) return cb(false);
    if (st->has_root(*u)) return cb(true);
    SPDLOG_WARN("auth: user {} does not have the root role", u->name);
    cb(false);
  };
  if (r.authorization.empty() && options_.client_cert_auth) {
    return decide(r.client_cert_cn.empty() ? nullptr : st->user(r.client_cert_cn));
  }
  basic_user(r, st, std::move(decide));
}

void ClientApi::check_key(const HttpRequest& r, std::shared_ptr<const va::AuthState> st,
                          std::string_view key, bool recursive, Allowed cb) {
  const bool write = !is_read(r.method);
  if (r.authorization.empty()) {
    const va::User* u = nullptr;
    if (options_.client_cert_auth && !r.client_cert_cn.empty()) u = st->user(r.client_cert_cn);
    if (!u) {
      bool ok = st->guest_has_access(key, write);
      if (!ok) SPDLOG_WARN("auth: invalid access for unauthenticated user on resource {}", key);
      return cb(ok);
    }
    return cb(st->has_key_access(*u, key, write, recursive));
  }
  basic_user(r, st, [st, key = std::string(key), write, recursive, cb](const va::User* u) {
    if (!u) return cb(false);
    bool ok = st->has_key_access(*u, key, write, recursive);
    if (!ok) SPDLOG_WARN("auth: invalid access for user {} on key {}", u->name, key);
    cb(ok);
  });
}

// Go's ServeMux patterns "/v2/auth/enable", "/v2/auth/users", "/v2/auth/users/",
// "/v2/auth/roles", "/v2/auth/roles/"; below the latter two, etcd splits the cleaned path.
void ClientApi::handle_auth(const HttpRequest& r, std::string_view path, const ExchangePtr& ex) {
  std::string_view sub = path.substr(kAuthPrefix.size());
  if (sub == "/enable") return handle_auth_enable(r, ex);
  for (std::string_view kind : {std::string_view("/users"), std::string_view("/roles")}) {
    if (sub != kind && sub.substr(0, kind.size() + 1) != std::string(kind) + "/") continue;
    std::string_view rest = sub.substr(kind.size());
    while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);  // path.Clean
    if (!rest.empty()) rest.remove_prefix(1);
    if (rest.find('/') != std::string_view::npos) {
      // Before the handler sets the cluster id, as etcd's.
      HttpResponse resp;
      resp.status = 400;
      resp.content_type = kJson;
      resp.body = va::error_body("Invalid path");
      return ex->reply(std::move(resp));
    }
    // allowMethod, then hasRootAccess, then the handler.
    const std::string_view m = r.method;
    if (rest.empty() ? m != "GET" : (m != "GET" && m != "PUT" && m != "DELETE"))
      return ex->reply(method_not_allowed(rest.empty() ? "GET" : "GET,PUT,DELETE"));
    auto st = node_.auth_state();
    const bool users = kind == "/users";
    auto serve = [this, ex, st, users, m, name = std::string(rest), body = r.body](bool allowed) {
      if (!allowed) return ex->reply(insufficient_credentials());
      if (users) return serve_auth_users(*st, m, name, body, ex);
      serve_auth_roles(*st, m, name, body, ex);
    };
    if (!st->enabled()) return serve(true);
    return check_root(r, st, std::move(serve));
  }
  ex->reply(not_found());
}

void ClientApi::propose_auth(va::Request req, const ExchangePtr& ex) {
  const uint64_t cid = cluster_id_;
  node_.propose_auth(std::move(req), [ex, cid](std::variant<va::Answer, v2::Error> res) {
    if (auto* a = std::get_if<va::Answer>(&res)) return ex->reply(answer(std::move(*a), cid));
    // etcd answers a failed raft request of its auth store as any unexpected error.
    ex->reply(message_error(500, "Internal Server Error", cid));
  });
}

void ClientApi::handle_auth_enable(const HttpRequest& r, const ExchangePtr& ex) {
  const std::string_view m = r.method;
  if (m != "GET" && m != "PUT" && m != "DELETE") return ex->reply(method_not_allowed("GET,PUT,DELETE"));
  auto st = node_.auth_state();
  auto serve = [this, ex, st, m](bool allowed) {
    if (!allowed) return ex->reply(insufficient_credentials());
    if (m == "GET") {
      return ex->reply(answer({200, st->enabled() ? "{\"enabled\":true}\n" : "{\"enabled\":false}\n"},
                              cluster_id_));
    }
    va::Request req;
    req.kind = m == "PUT" ? va::Request::Kind::kEnable : va::Request::Kind::kDisable;
    propose_auth(std::move(req), ex);
  };
  // hasWriteRootAccess: reading the flag needs nothing.
  if (m == "GET" || !st->enabled()) return serve(true);
  check_root(r, st, std::move(serve));
}

void ClientApi::serve_auth_users(const va::AuthState& st, std::string_view m, const std::string& name,
                                 std::string_view body, const ExchangePtr& ex) {
  const uint64_t cid = cluster_id_;
  if (name.empty()) {
    std::string out = "{\"users\":";
    auto names = st.user_names();
    if (names.empty()) out += "null";
    for (size_t i = 0; i < names.size(); ++i) {
      out += i ? "," : "[";
      bool missing = false;
      std::string role;
      append_user_with_roles(out, st, *st.user(names[i]), true, &missing, &role);
    }
    if (!names.empty()) out += ']';
    return ex->reply(answer({200, out + "}\n"}, cid));
  }
  if (m == "GET") {
    const va::User* u = st.user(name);
    if (!u) return ex->reply(answer({404, va::error_body("auth: User " + name + " does not exist.")}, cid));
    std::string out;
    bool missing = false;
    std::string role;
    append_user_with_roles(out, st, *u, false, &missing, &role);
    if (missing) return ex->reply(answer({404, va::error_body("auth: Role " + role + " does not exist.")}, cid));
    return ex->reply(answer({200, out + "\n"}, cid));
  }
  va::Request req;
  req.name = name;
  if (m == "DELETE") {
    req.kind = va::Request::Kind::kDeleteUser;
    return propose_auth(std::move(req), ex);
  }
  auto u = va::parse_user(body);
  if (!u) return ex->reply(message_error(400, "Invalid JSON in request body.", cid));
  if (u->name != name)
    return ex->reply(message_error(400, "User JSON name does not match the name in the URL", cid));
  if ((!u->grant.empty() || !u->revoke.empty()) && u->roles && !u->roles->empty())
    return ex->reply(message_error(400, "User JSON contains both roles and grant/revoke", cid));
  req.kind = va::Request::Kind::kPutUser;
  req.user = std::move(*u);
  if (req.user.password.empty()) return propose_auth(std::move(req), ex);
  // The hash is made here, once: the command carries it, so every member stores the same.
  std::string password = std::move(req.user.password);
  options_.authenticator->hash(std::move(password), [this, ex, cid, req = std::move(req)](
                                                         Result<std::string> h) mutable {
    if (!h.is_ok()) {
      SPDLOG_WARN("auth: cannot hash the password of user {}: {}", req.name, h.status().message());
      return ex->reply(message_error(500, "Internal Server Error", cid));
    }
    req.user.password = std::move(h.value());
    propose_auth(std::move(req), ex);
  });
}

void ClientApi::serve_auth_roles(const va::AuthState& st, std::string_view m, const std::string& name,
                                 std::string_view body, const ExchangePtr& ex) {
  const uint64_t cid = cluster_id_;
  if (name.empty()) {
    std::string out = "{\"roles\":[";
    auto names = st.role_names();
    for (size_t i = 0; i < names.size(); ++i) {
      if (i) out += ',';
      out += va::role_json(*st.role(names[i]));
    }
    return ex->reply(answer({200, out + "]}\n"}, cid));
  }
  if (m == "GET") {
    const va::Role* role = st.role(name);
    if (!role) return ex->reply(answer({404, va::error_body("auth: Role " + name + " does not exist.")}, cid));
    return ex->reply(answer({200, va::role_json(*role) + "\n"}, cid));
  }
  va::Request req;
  req.name = name;
  if (m == "DELETE") {
    req.kind = va::Request::Kind::kDeleteRole;
    return propose_auth(std::move(req), ex);
  }
  auto role = va::parse_role(body);
  if (!role) return ex->reply(message_error(400, "Invalid JSON in request body.", cid));
  if (role->name != name)
    return ex->reply(message_error(400, "Role JSON name does not match the name in the URL", cid));
  bool grant_empty = !role->grant || role->grant->empty();
  bool revoke_empty = !role->revoke || role->revoke->empty();
  if (!(grant_empty && revoke_empty) && !role->kv.empty())
    return ex->reply(message_error(400, "Role JSON contains both permissions and grant/revoke", cid));
  req.kind = va::Request::Kind::kPutRole;
  req.role = std::move(*role);
  propose_auth(std::move(req), ex);
}

}  // namespace kvd::server
