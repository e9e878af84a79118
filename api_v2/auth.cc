// The v2 auth model (auth.h): Go-compatible JSON for etcd's User and Role, the rules of every
// change as etcd 3.4's v2auth store and authHandler apply them, and the permission checks of
// v2http's client_auth.
#include "api_v2/auth.h"

#include <algorithm>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/go.h"

namespace kvd::v2::auth {
namespace {

using Json = nlohmann::ordered_json;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// The first JSON value of `body`, as Go's json.Decoder.Decode reads it; nullopt for an empty
// body or a syntax error.
std::optional<Json> first_value(std::string_view body) {
  std::istringstream in{std::string(body)};
  Json j;
  try {
    in >> j;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
  return j;
}

// Field decoders: false when Go's decoder would report a type error. null leaves the field as it
// was, except for slices and pointers, which it sets to nil.
bool get_string(const Json& v, std::string* out) {
  if (v.is_null()) return true;
  if (!v.is_string()) return false;
  *out = v.get<std::string>();
  return true;
}

bool get_names(const Json& v, Names* out) {
  if (v.is_null()) {
    out->reset();
    return true;
  }
  if (!v.is_array()) return false;
  std::vector<std::string> names;
  for (const auto& e : v) {
    std::string s;
    if (!get_string(e, &s)) return false;
    names.push_back(std::move(s));
  }
  *out = std::move(names);
  return true;
}

bool get_list(const Json& v, std::vector<std::string>* out) {
  Names n;
  if (!get_names(v, &n)) return false;
  *out = n ? std::move(*n) : std::vector<std::string>{};
  return true;
}

bool get_kv(const Json& v, Permissions* out) {
  if (v.is_null()) return true;
  if (!v.is_object()) return false;
  for (const auto& [k, e] : v.items()) {
    if (iequals(k, "read")) {
      if (!get_names(e, &out->read)) return false;
    } else if (iequals(k, "write")) {
      if (!get_names(e, &out->write)) return false;
    }
  }
  return true;
}

// Permissions{KV RWPermission `json:"kv"`}.
bool get_permissions(const Json& v, Permissions* out) {
  if (v.is_null()) return true;
  if (!v.is_object()) return false;
  for (const auto& [k, e] : v.items()) {
    if (iequals(k, "kv") && !get_kv(e, out)) return false;
  }
  return true;
}

bool get_permissions_ptr(const Json& v, std::optional<Permissions>* out) {
  if (v.is_null()) {
    out->reset();
    return true;
  }
  if (!v.is_object()) return false;
  if (!*out) out->emplace();
  return get_permissions(v, &**out);
}

void append_names(std::string& out, const Names& n) {
  if (!n) {
    out += "null";
    return;
  }
  out += '[';
  for (size_t i = 0; i < n->size(); ++i) {
    if (i) out += ',';
    go::append_json_string(out, (*n)[i]);
  }
  out += ']';
}

void append_permissions(std::string& out, const Permissions& p) {
  out += "{\"kv\":{\"read\":";
  append_names(out, p.read);
  out += ",\"write\":";
  append_names(out, p.write);
  out += "}}";
}

std::string record_key(std::string_view prefix, std::string_view name) {
  std::string k(prefix);
  k += name;
  return k;
}

// Go's types.unsafeSet.Values() sorted: a new, non-nil slice.
std::vector<std::string> sorted(const std::set<std::string>& s) { return {s.begin(), s.end()}; }

std::string authf(std::string_view a, std::string_view name = {}, std::string_view b = {},
                  std::string_view name2 = {}, std::string_view c = {}) {
  std::string m = "auth: ";
  m += a;
  m += name;
  m += b;
  m += name2;
  m += c;
  return m;
}

Answer error_answer(int status, const std::string& message) { return {status, error_body(message)}; }

// The records as etcd's store functions see them, changed as the decision goes, every write
// recorded in order.
class Decider {
 public:
  explicit Decider(const std::map<std::string, std::string>& records) {
    for (auto it = records.lower_bound(std::string(kRecordPrefix));
         it != records.end() && it->first.compare(0, kRecordPrefix.size(), kRecordPrefix) == 0; ++it) {
      recs_.insert(*it);
    }
  }

  Decision decide(const Request& req) {
    Answer a;
    switch (req.kind) {
      case Request::Kind::kPutUser: a = put_user(req.user); break;
      case Request::Kind::kDeleteUser: a = delete_user(req.name); break;
      case Request::Kind::kPutRole: a = put_role(req.role); break;
      case Request::Kind::kDeleteRole: a = delete_role(req.name); break;
      case Request::Kind::kEnable: a = enable(); break;
      case Request::Kind::kDisable: a = disable(); break;
    }
    return Decision{std::move(writes_), std::move(a)};
  }

 private:
  bool enabled() const {
    auto it = recs_.find(std::string(kEnabledKey));
    return it != recs_.end() && it->second == "true";
  }

  std::optional<User> get_user(std::string_view name) const {
    auto it = recs_.find(record_key(kUsersPrefix, name));
    if (it == recs_.end()) return std::nullopt;
    auto u = parse_user(it->second);
    if (!u) return std::nullopt;
    if (u->name == kRootName) attach_root_role(*u);
    return u;
  }

  std::optional<Role> get_role(std::string_view name) const {
    if (name == kRootName) return root_role();
    auto it = recs_.find(record_key(kRolesPrefix, name));
    if (it == recs_.end()) return std::nullopt;
    return parse_role(it->second);
  }

  static void attach_root_role(User& u) {
    if (!u.roles) u.roles.emplace();
    if (std::find(u.roles->begin(), u.roles->end(), kRootName) == u.roles->end())
      u.roles->emplace_back(kRootName);
  }

  // etcd's ensureAuthDirectories: /2, /2/users/, /2/roles/ and /2/enabled=false, created before
  // the first write of a cluster.
  void ensure() {
    if (recs_.count(std::string(kEnabledKey))) return;
    for (int i = 0; i < 3; ++i) writes_.push_back({RecordWrite::Kind::kCreate, "", "", false});
    write(RecordWrite::Kind::kCreate, std::string(kEnabledKey), "false");
  }

  void write(RecordWrite::Kind kind, std::string key, std::string value) {
    if (kind == RecordWrite::Kind::kDelete) {
      recs_.erase(key);
    } else {
      recs_[key] = value;
    }
    writes_.push_back({kind, std::move(key), std::move(value), false});
  }
  void refused(RecordWrite::Kind kind, std::string key) {
    writes_.push_back({kind, std::move(key), "", true});
  }

  // etcd's createUserInternal after CreateUser attached root's role.
  Answer create_user(User u, bool created) {
    if (u.name == kRootName) attach_root_role(u);
    if (u.password.empty())
      return error_answer(400, authf("Cannot create user ", u.name, " with an empty password"));
    ensure();
    std::string key = record_key(kUsersPrefix, u.name);
    if (recs_.count(key)) {
      refused(RecordWrite::Kind::kCreate, key);
      return error_answer(409, authf("User ", u.name, " already exists."));
    }
    write(RecordWrite::Kind::kCreate, key, user_json(u, true));
    return Answer{created ? 201 : 200, user_json(u, false) + "\n"};
  }

  // etcd's UpdateUser: merge into the stored user and write it back.
  Answer update_user(const User& nu) {
    auto old = get_user(nu.name);
    if (!old) return error_answer(404, authf("User ", nu.name, " does not exist."));
    User out;
    out.name = old->name;
    out.password = nu.password.empty() ? old->password : nu.password;
    std::set<std::string> roles;
    if (old->roles) roles.insert(old->roles->begin(), old->roles->end());
    for (const auto& g : nu.grant) {
      if (!roles.insert(g).second)
        return error_answer(409, authf("Granting duplicate role ", g, " for user ", nu.name));
    }
    for (const auto& r : nu.revoke) {
      if (!roles.erase(r))
        return error_answer(409, authf("Revoking ungranted role ", r, " for user ", nu.name));
    }
    out.roles = sorted(roles);
    if (out == *old)
      return error_answer(400, "auth: User not updated. Use grant/revoke/password to update the user.");
    ensure();
    write(RecordWrite::Kind::kUpdate, record_key(kUsersPrefix, out.name), user_json(out, true));
    return Answer{200, user_json(out, false) + "\n"};
  }

  Answer put_user(const User& u) {
    if (!u.grant.empty() || !u.revoke.empty()) return update_user(u);
    if (u.roles && !u.roles->empty()) return create_user(u, false);
    if (get_user(u.name)) return update_user(u);
    return create_user(u, true);
  }

  Answer delete_user(const std::string& name) {
    if (enabled() && name == kRootName)
      return error_answer(403, "auth: Cannot delete root user while auth is enabled.");
    ensure();
    std::string key = record_key(kUsersPrefix, name);
    if (!recs_.count(key)) {
      refused(RecordWrite::Kind::kDelete, key);
      return error_answer(404, authf("User ", name, " does not exist"));
    }
    write(RecordWrite::Kind::kDelete, key, "");
    return Answer{200, ""};
  }

  Answer create_role(const Role& r) {
    if (r.name == kRootName)
      return error_answer(403, authf("Cannot modify role ", r.name, ": is root role."));
    ensure();
    std::string key = record_key(kRolesPrefix, r.name);
    if (recs_.count(key)) {
      refused(RecordWrite::Kind::kCreate, key);
      return error_answer(409, authf("Role ", r.name, " already exists."));
    }
    write(RecordWrite::Kind::kCreate, key, role_json(r));
    return Answer{201, role_json(r) + "\n"};
  }

  Answer put_role(const Role& in) {
    bool grant_empty = !in.grant || in.grant->empty();
    bool revoke_empty = !in.revoke || in.revoke->empty();
    if (grant_empty && revoke_empty) return create_role(in);
    if (in.name == kRootName)
      return error_answer(403, authf("Cannot modify role ", in.name, ": is root role."));
    auto old = get_role(in.name);
    if (!old) return error_answer(404, authf("Role ", in.name, " does not exist."));
    Role out;
    out.name = old->name;
    out.kv = old->kv;
    if (in.grant) {
      std::set<std::string> read, write;
      if (old->kv.read) read.insert(old->kv.read->begin(), old->kv.read->end());
      if (old->kv.write) write.insert(old->kv.write->begin(), old->kv.write->end());
      for (const auto& p : in.grant->read.value_or(std::vector<std::string>{})) {
        if (!read.insert(p).second) return error_answer(409, authf("Granting duplicate read permission ", p));
      }
      for (const auto& p : in.grant->write.value_or(std::vector<std::string>{})) {
        if (!write.insert(p).second) return error_answer(409, authf("Granting duplicate write permission ", p));
      }
      out.kv.read = sorted(read);
      out.kv.write = sorted(write);
    }
    if (in.revoke) {
      std::set<std::string> read, write;
      if (out.kv.read) read.insert(out.kv.read->begin(), out.kv.read->end());
      if (out.kv.write) write.insert(out.kv.write->begin(), out.kv.write->end());
      for (const auto& p : in.revoke->read.value_or(std::vector<std::string>{})) read.erase(p);
      for (const auto& p : in.revoke->write.value_or(std::vector<std::string>{})) write.erase(p);
      out.kv.read = sorted(read);
      out.kv.write = sorted(write);
    }
    if (out == *old) return error_answer(400, "auth: Role not updated. Use grant/revoke to update the role.");
    ensure();
    write(RecordWrite::Kind::kUpdate, record_key(kRolesPrefix, out.name), role_json(out));
    return Answer{200, role_json(out) + "\n"};
  }

  Answer delete_role(const std::string& name) {
    if (name == kRootName)
      return error_answer(403, authf("Cannot modify role ", name, ": is root role."));
    ensure();
    std::string key = record_key(kRolesPrefix, name);
    if (!recs_.count(key)) {
      refused(RecordWrite::Kind::kDelete, key);
      return error_answer(404, authf("Role ", name, " doesn't exist."));
    }
    write(RecordWrite::Kind::kDelete, key, "");
    return Answer{200, ""};
  }

  Answer enable() {
    if (enabled()) return error_answer(409, "auth: already enabled");
    if (!get_user(kRootName)) return error_answer(409, "auth: No root user available, please create one");
    if (!get_role(kGuestName)) {
      Answer a = create_role(guest_role());
      if (a.status != 201) return a;
    }
    ensure();
    write(RecordWrite::Kind::kUpdate, std::string(kEnabledKey), "true");
    return Answer{200, ""};
  }

  Answer disable() {
    if (!enabled()) return error_answer(409, "auth: already disabled");
    ensure();
    write(RecordWrite::Kind::kUpdate, std::string(kEnabledKey), "false");
    return Answer{200, ""};
  }

  std::map<std::string, std::string> recs_;
  std::vector<RecordWrite> writes_;
};

bool pattern_matches(std::string_view pattern, std::string_view key, bool prefix_only) {
  // etcd indexes the last byte of the pattern; an empty pattern (which its API lets one grant)
  // crashes the request there. Here it matches nothing.
  if (pattern.empty()) return false;
  if (pattern.back() == '*') {
    pattern.remove_suffix(1);
    return key.substr(0, pattern.size()) == pattern;
  }
  return !prefix_only && key == pattern;
}

bool any_matches(const Names& list, std::string_view key, bool prefix_only) {
  if (!list) return false;
  for (const auto& p : *list) {
    if (pattern_matches(p, key, prefix_only)) return true;
  }
  return false;
}

}  // namespace

bool Permissions::empty() const {
  return (!read || read->empty()) && (!write || write->empty());
}

bool Role::has_key_access(std::string_view key, bool write_access) const {
  if (name == kRootName) return true;
  return any_matches(write_access ? kv.write : kv.read, key, false);
}

bool Role::has_recursive_access(std::string_view key, bool write_access) const {
  if (name == kRootName) return true;
  return any_matches(write_access ? kv.write : kv.read, key, true);
}

Role root_role() {
  Role r;
  r.name = std::string(kRootName);
  r.kv.read = std::vector<std::string>{"/*"};
  r.kv.write = std::vector<std::string>{"/*"};
  return r;
}

Role guest_role() {
  Role r = root_role();
  r.name = std::string(kGuestName);
  return r;
}

std::optional<User> parse_user(std::string_view body) {
  auto j = first_value(body);
  if (!j) return std::nullopt;
  User u;
  if (j->is_null()) return u;
  if (!j->is_object()) return std::nullopt;
  for (const auto& [k, v] : j->items()) {
    bool ok = true;
    if (iequals(k, "user")) ok = get_string(v, &u.name);
    else if (iequals(k, "password")) ok = get_string(v, &u.password);
    else if (iequals(k, "roles")) ok = get_names(v, &u.roles);
    else if (iequals(k, "grant")) ok = get_list(v, &u.grant);
    else if (iequals(k, "revoke")) ok = get_list(v, &u.revoke);
    if (!ok) return std::nullopt;
  }
  return u;
}

std::optional<Role> parse_role(std::string_view body) {
  auto j = first_value(body);
  if (!j) return std::nullopt;
  Role r;
  if (j->is_null()) return r;
  if (!j->is_object()) return std::nullopt;
  for (const auto& [k, v] : j->items()) {
    bool ok = true;
    if (iequals(k, "role")) ok = get_string(v, &r.name);
    else if (iequals(k, "permissions")) ok = get_permissions(v, &r.kv);
    else if (iequals(k, "grant")) ok = get_permissions_ptr(v, &r.grant);
    else if (iequals(k, "revoke")) ok = get_permissions_ptr(v, &r.revoke);
    if (!ok) return std::nullopt;
  }
  return r;
}

std::string user_json(const User& u, bool with_password) {
  std::string out = "{\"user\":";
  go::append_json_string(out, u.name);
  if (with_password && !u.password.empty()) {
    out += ",\"password\":";
    go::append_json_string(out, u.password);
  }
  out += ",\"roles\":";
  append_names(out, u.roles);
  if (!u.grant.empty()) {
    out += ",\"grant\":";
    append_names(out, u.grant);
  }
  if (!u.revoke.empty()) {
    out += ",\"revoke\":";
    append_names(out, u.revoke);
  }
  out += '}';
  return out;
}

std::string role_json(const Role& r) {
  std::string out = "{\"role\":";
  go::append_json_string(out, r.name);
  out += ",\"permissions\":";
  append_permissions(out, r.kv);
  if (r.grant) {
    out += ",\"grant\":";
    append_permissions(out, *r.grant);
  }
  if (r.revoke) {
    out += ",\"revoke\":";
    append_permissions(out, *r.revoke);
  }
  out += '}';
  return out;
}

std::string error_body(std::string_view message) {
  std::string out = "{\"message\":";
  go::append_json_string(out, message);
  out += '}';
  return out;
}

std::string encode_request(const Request& r) {
  std::string out = "{\"kind\":" + std::to_string(static_cast<int>(r.kind)) + ",\"name\":";
  go::append_json_string(out, r.name);
  if (r.kind == Request::Kind::kPutUser) {
    out += ",\"user\":";
    out += user_json(r.user, true);
  } else if (r.kind == Request::Kind::kPutRole) {
    out += ",\"role\":";
    out += role_json(r.role);
  }
  out += '}';
  return out;
}

std::optional<Request> decode_request(std::string_view s) {
  auto j = first_value(s);
  if (!j || !j->is_object()) return std::nullopt;
  auto kind = j->find("kind");
  auto name = j->find("name");
  if (kind == j->end() || !kind->is_number_unsigned() || name == j->end() || !name->is_string())
    return std::nullopt;
  Request r;
  unsigned k = kind->get<unsigned>();
  if (k < 1 || k > 6) return std::nullopt;
  r.kind = static_cast<Request::Kind>(k);
  r.name = name->get<std::string>();
  if (r.kind == Request::Kind::kPutUser) {
    auto u = j->find("user");
    if (u == j->end()) return std::nullopt;
    auto user = parse_user(u->dump());
    if (!user) return std::nullopt;
    r.user = std::move(*user);
  } else if (r.kind == Request::Kind::kPutRole) {
    auto ro = j->find("role");
    if (ro == j->end()) return std::nullopt;
    auto role = parse_role(ro->dump());
    if (!role) return std::nullopt;
    r.role = std::move(*role);
  }
  return r;
}

Decision decide(const std::map<std::string, std::string>& records, const Request& req) {
  return Decider(records).decide(req);
}

std::shared_ptr<const AuthState> AuthState::from_records(
    const std::map<std::string, std::string>& records) {
  auto s = std::make_shared<AuthState>();
  for (auto it = records.lower_bound(std::string(kRecordPrefix));
       it != records.end() && it->first.compare(0, kRecordPrefix.size(), kRecordPrefix) == 0; ++it) {
    std::string_view key = it->first;
    if (key == kEnabledKey) {
      s->enabled_ = it->second == "true";
    } else if (key.substr(0, kUsersPrefix.size()) == kUsersPrefix) {
      auto u = parse_user(it->second);
      if (!u) continue;
      if (u->name == kRootName) {
        if (!u->roles) u->roles.emplace();
        if (std::find(u->roles->begin(), u->roles->end(), kRootName) == u->roles->end())
          u->roles->emplace_back(kRootName);
      }
      s->users_.emplace(std::string(key.substr(kUsersPrefix.size())), std::move(*u));
    } else if (key.substr(0, kRolesPrefix.size()) == kRolesPrefix) {
      auto r = parse_role(it->second);
      if (r) s->roles_.emplace(std::string(key.substr(kRolesPrefix.size())), std::move(*r));
    }
  }
  s->roles_.insert_or_assign(std::string(kRootName), root_role());
  return s;
}

const User* AuthState::user(std::string_view name) const {
  auto it = users_.find(name);
  return it == users_.end() ? nullptr : &it->second;
}

const Role* AuthState::role(std::string_view name) const {
  auto it = roles_.find(name);
  return it == roles_.end() ? nullptr : &it->second;
}

std::vector<std::string> AuthState::user_names() const {
  std::vector<std::string> out;
  for (const auto& [name, u] : users_) out.push_back(name);
  return out;
}

std::vector<std::string> AuthState::role_names() const {
  std::vector<std::string> out;
  for (const auto& [name, r] : roles_) out.push_back(name);
  return out;
}

bool AuthState::has_root(const User& u) const {
  return u.roles && std::find(u.roles->begin(), u.roles->end(), kRootName) != u.roles->end();
}

bool AuthState::has_key_access(const User& u, std::string_view key, bool write, bool recursive) const {
  if (!u.roles) return false;
  for (const auto& name : *u.roles) {
    const Role* r = role(name);
    if (!r) continue;
    if (recursive ? r->has_recursive_access(key, write) : r->has_key_access(key, write)) return true;
  }
  return false;
}

bool AuthState::guest_has_access(std::string_view key, bool write) const {
  const Role* g = role(kGuestName);
  return g && g->has_key_access(key, write);
}

}  // namespace kvd::v2::auth
