// What kvctl's commands share: etcdctl's exit codes, the parsed command line (Context), error
// exits, client construction from the global flags, and the commands themselves (keys_commands.cc,
// member_commands.cc, auth_commands.cc, export_import.cc). Single-threaded.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cli/etcd_client.h"
#include "cli/flags.h"
#include "cli/output.h"
#include "cli/tls_client_config.h"

namespace kvd::cli {

// etcdctl's exit codes (ctlv2/command/error.go).
inline constexpr int kExitSuccess = 0;
inline constexpr int kExitBadArgs = 1;
inline constexpr int kExitBadConnection = 2;
inline constexpr int kExitUnknownCommand = 3;
inline constexpr int kExitServerError = 4;
inline constexpr int kExitClusterNotHealthy = 5;

struct Context {
  ParsedFlags global;
  ParsedFlags cmd;
  std::string output() const { return global.get_string("output"); }
  const std::vector<std::string>& args() const { return cmd.args; }
};

[[noreturn]] inline void exit_now(int code) {
  std::fflush(stdout);
  std::_Exit(code);
}

// etcdctl's handleError: "Error:  <err>" plus, for cluster errors, the per-endpoint detail.
[[noreturn]] inline void handle_error(int code, const ClientError& err) {
  std::string out = "Error:  " + err.message + "\n";
  if (err.kind == ClientError::Kind::kCluster) {
    for (std::size_t i = 0; i < err.errors.size(); ++i) {
      out += "error #" + std::to_string(i) + ": " + err.errors[i] + "\n";
    }
    out += "\n";
  }
  write_stderr(out);
  exit_now(code);
}

[[noreturn]] inline void handle_error(int code, const std::string& msg) {
  handle_error(code, ClientError{ClientError::Kind::kPlain, msg, {}, false});
}

std::string getenv_str(const char* name);
std::vector<std::string> split(const std::string& s, char sep);
std::string join(const std::vector<std::string>& v, const std::string& sep);
std::string base64(const std::string& in);
// Endpoint precedence: --endpoints > ETCDCTL_ENDPOINTS > --endpoint > ETCDCTL_ENDPOINT >
// --peers/-C > ETCDCTL_PEERS > default.
std::vector<std::string> endpoint_flag_value(const Context& c);
// --discovery-srv DOMAIN (or ETCDCTL_DISCOVERY_SRV): etcdctl's endpoints from the SRV records of
// _etcd-client-ssl._tcp and _etcd-client._tcp (suffixed "-NAME" by ETCDCTL_DISCOVERY_SRV_NAME);
// http ones are dropped with a note unless --insecure-discovery. Empty without the flag; the
// error text when both lookups fail.
std::variant<std::vector<std::string>, std::string> discovered_endpoints(const Context& c);
// etcdctl's getTransport: the TLS settings of --cert-file, --key-file and --ca-file (each, when
// not given, from ETCDCTL_CERT_FILE, ETCDCTL_KEY_FILE, ETCDCTL_CA_FILE), or Go's error text for
// a file that is missing or bad. etcdctl v2 has no flag to skip verification.
std::variant<std::shared_ptr<const TlsClientConfig>, std::string> tls_config(const Context& c);
// etcdctl's newClient: endpoints, then the TLS settings (a bad file exits 1 with its error
// text), unless `tls` was loaded already.
EtcdClient new_client(const Context& c, std::shared_ptr<const TlsClientConfig> tls = nullptr);
// etcdctl's mustNewClient: builds the client and syncs the member list unless --no-sync.
EtcdClient must_new_client(const Context& c);
EtcdClient must_new_client_no_sync(const Context& c,
                                   std::shared_ptr<const TlsClientConfig> tls = nullptr);
// argOrStdin: the i-th argument, else all of stdin (which must not be empty).
std::optional<std::string> arg_or_stdin(const Context& c, std::size_t i);
std::string require_key(const Context& c);
std::string bool_str(bool b);
ApiRequest keys_request(const std::string& method, const std::string& key);
// SetOptions -> PUT request, as the Go client's setAction builds it.
ApiRequest set_request(const std::string& key, const std::string& value, std::int64_t ttl,
                       bool dir, const std::string& prev_exist, const std::string& prev_value,
                       std::uint64_t prev_index);
KeysResponse must_keys(EtcdClient& client, const ApiRequest& req, bool one_shot);
// Ctrl-C ends a long-running command (watch, cluster-health --forever) with status 0, as
// etcdctl does.
void exit_on_sigint();

// The commands (etcdctl's ctlv2/command), each run with its parsed flags.
void cmd_set(const Context& c);
void cmd_mk(const Context& c);
void cmd_mkdir(const Context& c);
void cmd_setdir(const Context& c);
void cmd_updatedir(const Context& c);
void cmd_update(const Context& c);
void cmd_rm(const Context& c);
void cmd_rmdir(const Context& c);
void cmd_get(const Context& c);
void cmd_ls(const Context& c);
void cmd_watch(const Context& c);
void cmd_exec_watch(const Context& c);
// kvctl's own: the v2 tree to and from a JSON file (export_import.cc).
void cmd_backup(const Context& c);
void cmd_export(const Context& c);
void cmd_migrate(const Context& c);
void cmd_import(const Context& c);
void cmd_member_list(const Context& c);
void cmd_member_add(const Context& c);
void cmd_member_remove(const Context& c);
void cmd_member_update(const Context& c);
void cmd_cluster_health(const Context& c);
void cmd_user_list(const Context& c);
void cmd_user_add(const Context& c);
void cmd_user_get(const Context& c);
void cmd_user_remove(const Context& c);
void cmd_user_grant(const Context& c);
void cmd_user_revoke(const Context& c);
void cmd_user_passwd(const Context& c);
void cmd_role_list(const Context& c);
void cmd_role_add(const Context& c);
void cmd_role_get(const Context& c);
void cmd_role_remove(const Context& c);
void cmd_role_grant(const Context& c);
void cmd_role_revoke(const Context& c);
void cmd_auth_enable(const Context& c);
void cmd_auth_disable(const Context& c);

}  // namespace kvd::cli
