// kvctl's user, role and auth commands, as etcdctl v2's: argument checks first (in etcdctl's
// order, before any request or prompt), then the client (which may prompt for the -u
// password), then the requests. Failures print the error alone (no "Error:  " prefix) and exit
// 1, whatever the error was (an HTTP 401 included).
#include <chrono>
#include <string>
#include <vector>

#include "cli/auth_client.h"
#include "cli/command.h"
#include "cli/etcd_client.h"
#include "cli/output.h"
#include "cli/password.h"

namespace kvd::cli {
namespace {

[[noreturn]] void fail(const std::string& message) {
  write_stderr(message + "\n");
  exit_now(kExitBadArgs);
}

void fail_if(const std::optional<ClientError>& err) {
  if (err) fail(err->message);
}

template <typename T>
T must(Result<T> r) {
  if (auto* e = std::get_if<ClientError>(&r)) fail(e->message);
  return std::get<T>(std::move(r));
}

// mustNewAuth*API: etcdctl prints the endpoints a second time under --debug here.
EtcdClient must_new_auth_client(const Context& c) {
  EtcdClient client = must_new_client(c);
  if (c.global.get_bool("debug")) {
    write_stderr("Cluster-Endpoints: " + join(client.endpoint_texts(), ", ") + "\n");
  }
  return client;
}

// The one argument of a user or role command; exits with `missing` otherwise.
std::string single_arg(const Context& c, const char* missing) {
  if (c.args().size() != 1) fail(missing);
  return c.args()[0];
}

constexpr char kNeedUser[] = "Please provide a username";
constexpr char kNeedRole[] = "Please provide a role name";

void require_no_args(const Context& c) {
  if (!c.args().empty()) fail("No arguments accepted");
}

std::string must_ask_password(const std::string& prompt) {
  auto r = ask_password(prompt);
  if (auto* e = std::get_if<PasswordError>(&r)) fail("Error reading password: " + e->message);
  return std::get<std::string>(r);
}

void print_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  write_stdout(out);
}

// contextWithTotalTimeout, for the one command whose time starts before its client exists.
Deadline total_timeout_deadline(const Context& c) {
  const auto total = c.global.get_duration("total-timeout");
  if (total.count() <= 0) return Clock::now();  // already expired, as Go's context
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(total);
}

void user_grant_revoke(const Context& c, bool grant) {
  const std::vector<std::string> roles = c.cmd.get_list("roles");
  if (roles.empty()) fail("No roles specified; please use `--roles`");
  const auto deadline = total_timeout_deadline(c);
  const std::string user = single_arg(c, kNeedUser);
  EtcdClient client = must_new_auth_client(c);
  must(grant_revoke_user(client, user, roles, grant, deadline));
  write_stdout("User " + user + " updated\n");
}

void role_grant_revoke(const Context& c, bool grant) {
  const std::string path = c.cmd.get_string("path");
  if (path.empty()) fail("No path specified; please use `--path`");
  if (const std::string canonical = canonical_url_path(path); canonical != path) {
    fail("Not canonical path; please use `--path=" + canonical + "`");
  }
  const bool read = c.cmd.get_bool("read");
  const bool write = c.cmd.get_bool("write");
  const bool rw = c.cmd.get_bool("readwrite");
  if (int(read) + int(write) + int(rw) != 1) {
    fail("Please specify exactly one of --read, --write or --readwrite");
  }
  const PermissionType type =
      read ? PermissionType::kRead : (write ? PermissionType::kWrite : PermissionType::kReadWrite);
  const std::string role = single_arg(c, kNeedRole);
  EtcdClient client = must_new_auth_client(c);
  const auto deadline = client.command_deadline();
  const AuthRole current = must(get_role(client, role, deadline));
  const AuthRole updated = must(grant_revoke_role(client, role, path, type, grant, deadline));
  std::string out;
  if (updated == current) {
    out = grant ? "Role unchanged; already granted" : "Role unchanged; already revoked";
  }
  write_stdout(out + "Role " + role + " updated\n");
}

void auth_enable_disable(const Context& c, bool enable) {
  require_no_args(c);
  EtcdClient client = must_new_auth_client(c);
  fail_if(auth_enable(client, enable, client.command_deadline()));
  write_stdout(enable ? "Authentication Enabled\n" : "Authentication Disabled\n");
}

}  // namespace

void cmd_user_list(const Context& c) {
  require_no_args(c);
  EtcdClient client = must_new_auth_client(c);
  print_lines(must(list_users(client, client.command_deadline())));
}

void cmd_user_add(const Context& c) {
  const std::string arg = single_arg(c, kNeedUser);
  EtcdClient client = must_new_auth_client(c);
  // As etcdctl, the command's time starts before the prompt.
  const auto deadline = client.command_deadline();
  std::string user = arg;
  std::string password;
  if (auto colon = arg.find(':'); colon != std::string::npos) {
    user = arg.substr(0, colon);
    password = arg.substr(colon + 1);
  } else {
    password = must_ask_password("New password: ");
  }
  fail_if(add_user(client, user, password, deadline));
  write_stdout("User " + user + " created\n");
}

void cmd_user_get(const Context& c) {
  const std::string name = single_arg(c, kNeedUser);
  EtcdClient client = must_new_auth_client(c);
  const AuthUser user = must(get_user(client, name, client.command_deadline()));
  write_stdout("User: " + user.user + "\nRoles: " + join(user.roles, " ") + "\n");
}

void cmd_user_remove(const Context& c) {
  const std::string user = single_arg(c, kNeedUser);
  EtcdClient client = must_new_auth_client(c);
  fail_if(remove_user(client, user, client.command_deadline()));
  write_stdout("User " + user + " removed\n");
}

void cmd_user_grant(const Context& c) { user_grant_revoke(c, true); }
void cmd_user_revoke(const Context& c) { user_grant_revoke(c, false); }

void cmd_user_passwd(const Context& c) {
  const std::string user = single_arg(c, kNeedUser);
  EtcdClient client = must_new_auth_client(c);
  const auto deadline = client.command_deadline();
  const std::string password = must_ask_password("New password: ");
  must(change_password(client, user, password, deadline));
  write_stdout("Password updated\n");
}

void cmd_role_list(const Context& c) {
  require_no_args(c);
  EtcdClient client = must_new_auth_client(c);
  print_lines(must(list_roles(client, client.command_deadline())));
}

void cmd_role_add(const Context& c) {
  const std::string role = single_arg(c, kNeedRole);
  EtcdClient client = must_new_auth_client(c);
  const auto deadline = client.command_deadline();
  // Any error of the lookup is ignored: the add reports it.
  if (std::holds_alternative<AuthRole>(get_role(client, role, deadline))) {
    fail("Role " + role + " already exists");
  }
  fail_if(add_role(client, role, deadline));
  write_stdout("Role " + role + " created\n");
}

void cmd_role_get(const Context& c) {
  const std::string name = single_arg(c, kNeedRole);
  EtcdClient client = must_new_auth_client(c);
  const AuthRole role = must(get_role(client, name, client.command_deadline()));
  std::string out = "Role: " + role.role + "\nKV Read:\n";
  for (const auto& p : role.permissions.read.value_or(std::vector<std::string>{})) {
    out += "\t" + p + "\n";
  }
  out += "KV Write:\n";
  for (const auto& p : role.permissions.write.value_or(std::vector<std::string>{})) {
    out += "\t" + p + "\n";
  }
  write_stdout(out);
}

void cmd_role_remove(const Context& c) {
  const std::string role = single_arg(c, kNeedRole);
  EtcdClient client = must_new_auth_client(c);
  fail_if(remove_role(client, role, client.command_deadline()));
  write_stdout("Role " + role + " removed\n");
}

void cmd_role_grant(const Context& c) { role_grant_revoke(c, true); }
void cmd_role_revoke(const Context& c) { role_grant_revoke(c, false); }

void cmd_auth_enable(const Context& c) { auth_enable_disable(c, true); }
void cmd_auth_disable(const Context& c) { auth_enable_disable(c, false); }

}  // namespace kvd::cli
