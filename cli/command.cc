// Helpers every kvctl command uses: environment, client construction, keys requests.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/etcd_client.h"
#include "common/dns_srv.h"
#include "common/go.h"
#include "cli/flags.h"
#include "cli/help.h"
#include "cli/output.h"
#include "cli/password.h"

extern char** environ;

namespace kvd::cli {

std::string getenv_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

std::string base64(const std::string& in) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Endpoint precedence: --endpoints > ETCDCTL_ENDPOINTS > --endpoint > ETCDCTL_ENDPOINT >
// --peers/-C > ETCDCTL_PEERS > default.
std::vector<std::string> endpoint_flag_value(const Context& c) {
  std::string s = c.global.get_string("endpoints");
  if (s.empty()) s = getenv_str("ETCDCTL_ENDPOINTS");
  if (s.empty()) s = c.global.get_string("endpoint");
  if (s.empty()) s = getenv_str("ETCDCTL_ENDPOINT");
  if (s.empty()) s = c.global.get_string("peers");
  if (s.empty()) s = getenv_str("ETCDCTL_PEERS");
  if (s.empty()) s = "http://127.0.0.1:2379,http://127.0.0.1:4001";
  return split(s, ',');
}

std::variant<std::vector<std::string>, std::string> discovered_endpoints(const Context& c) {
  std::string domain = c.global.get_string("discovery-srv");
  if (domain.empty()) domain = getenv_str("ETCDCTL_DISCOVERY_SRV");
  if (domain.empty()) return std::vector<std::string>{};
  const bool insecure = c.global.get_bool("insecure-discovery") ||
                        !getenv_str("ETCDCTL_INSECURE_DISCOVERY").empty();
  std::string suffix = getenv_str("ETCDCTL_DISCOVERY_SRV_NAME");
  if (!suffix.empty()) suffix = "-" + suffix;
  std::vector<std::string> found;
  std::string errors[2];
  const char* schemes[2] = {"https", "http"};
  const std::string services[2] = {"etcd-client-ssl" + suffix, "etcd-client" + suffix};
  for (int i = 0; i < 2; ++i) {
    auto records = dns::lookup_srv(services[i], "tcp", domain);
    if (!records.is_ok()) {
      errors[i] = records.status().message();
      continue;
    }
    for (const auto& r : records.value()) {
      // The target as the record names it, trailing dot and all (as etcdctl's endpoints).
      found.push_back(std::string(schemes[i]) + "://" + r.target + ":" + std::to_string(r.port));
    }
  }
  if (!errors[0].empty() && !errors[1].empty())
    return "dns lookup errors: " + errors[0] + " and " + errors[1];
  if (insecure) return found;
  std::vector<std::string> secure;
  for (auto& ep : found) {
    if (ep.rfind("http://", 0) == 0) {
      write_stderr("ignoring discovered insecure endpoint \"" + ep + "\"\n");
      continue;
    }
    secure.push_back(std::move(ep));
  }
  return secure;
}

std::variant<std::shared_ptr<const TlsClientConfig>, std::string> tls_config(const Context& c) {
  auto flag_or_env = [&](const char* flag, const char* env) {
    std::string v = c.global.get_string(flag);
    return v.empty() ? getenv_str(env) : v;
  };
  return TlsClientConfig::load(flag_or_env("cert-file", "ETCDCTL_CERT_FILE"),
                               flag_or_env("key-file", "ETCDCTL_KEY_FILE"),
                               flag_or_env("ca-file", "ETCDCTL_CA_FILE"));
}

EtcdClient new_client(const Context& c, std::shared_ptr<const TlsClientConfig> tls) {
  std::vector<Endpoint> eps;
  // As etcdctl: endpoints from DNS when --discovery-srv finds any, else the flags'.
  auto discovered = discovered_endpoints(c);
  if (auto* err = std::get_if<std::string>(&discovered)) {
    write_stderr(*err + "\n");
    exit_now(kExitBadArgs);
  }
  auto raw_endpoints = std::get<std::vector<std::string>>(std::move(discovered));
  if (raw_endpoints.empty()) raw_endpoints = endpoint_flag_value(c);
  for (const auto& raw : raw_endpoints) {
    std::string err;
    auto ep = url::parse(raw, &err, /*default_http=*/true);
    if (!ep) {
      write_stderr(err + "\n");
      exit_now(kExitBadArgs);
    }
    eps.push_back(*ep);
  }
  if (tls == nullptr) {
    auto loaded = tls_config(c);
    if (auto* err = std::get_if<std::string>(&loaded)) {
      write_stderr(*err + "\n");
      exit_now(kExitBadArgs);
    }
    tls = std::get<std::shared_ptr<const TlsClientConfig>>(std::move(loaded));
  }
  ClientOptions opts;
  opts.tls = std::move(tls);
  opts.header_timeout = c.global.get_duration("timeout");
  opts.total_timeout = c.global.get_duration("total-timeout");
  opts.debug = c.global.get_bool("debug");
  // -u user[:password] (else ETCDCTL_USERNAME); without a colon the password is asked for.
  // As the Go client, credentials are sent only with a non-empty user name.
  std::string user = c.global.get_string("username");
  if (user.empty()) user = getenv_str("ETCDCTL_USERNAME");
  if (!user.empty()) {
    std::string password;
    if (auto colon = user.find(':'); colon != std::string::npos) {
      password = user.substr(colon + 1);
      user.resize(colon);
    } else {
      auto asked = ask_password("Password: ");
      if (auto* e = std::get_if<PasswordError>(&asked)) {
        write_stderr(e->message + "\n");
        exit_now(kExitBadArgs);
      }
      password = std::get<std::string>(asked);
    }
    if (!user.empty()) opts.authorization = "Basic " + base64(user + ":" + password);
  }
  return EtcdClient(std::move(eps), opts);
}

// etcdctl's mustNewClient: builds the client and syncs the member list unless --no-sync.
EtcdClient must_new_client(const Context& c) {
  EtcdClient client = new_client(c);
  bool debug = c.global.get_bool("debug");
  if (!c.global.get_bool("no-sync")) {
    if (debug) {
      write_stderr("start to sync cluster using endpoints(" + join(client.endpoint_texts(), ",") +
                   ")\n");
    }
    if (auto err = client.sync(client.command_deadline())) {
      if (err->message == "client: no endpoints available") {
        write_stderr("etcd cluster has no published client endpoints.\n");
        write_stderr("Try '--no-sync' if you want to access non-published client endpoints(" +
                     join(client.endpoint_texts(), ",") + ").\n");
        handle_error(kExitServerError, *err);
      }
      if (err->connection) handle_error(kExitBadConnection, *err);
    }
    if (debug) {
      write_stderr("got endpoints(" + join(client.endpoint_texts(), ",") + ") after sync\n");
    }
  }
  if (debug) write_stderr("Cluster-Endpoints: " + join(client.endpoint_texts(), ", ") + "\n");
  return client;
}

EtcdClient must_new_client_no_sync(const Context& c,
                                   std::shared_ptr<const TlsClientConfig> tls) {
  EtcdClient client = new_client(c, std::move(tls));
  if (c.global.get_bool("debug")) {
    write_stderr("Cluster-Endpoints: " + join(client.endpoint_texts(), ", ") + "\n");
  }
  return client;
}

// argOrStdin: the i-th argument, else all of stdin (which must not be empty).
std::optional<std::string> arg_or_stdin(const Context& c, std::size_t i) {
  if (i < c.args().size()) return c.args()[i];
  std::string data((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (data.empty() || std::cin.bad()) return std::nullopt;
  return data;
}

std::string require_key(const Context& c) {
  if (c.args().empty()) handle_error(kExitBadArgs, "key required");
  return c.args()[0];
}

std::string bool_str(bool b) { return b ? "true" : "false"; }

ApiRequest keys_request(const std::string& method, const std::string& key) {
  ApiRequest r;
  r.method = method;
  r.path = "/v2/keys" + (key.empty() || key[0] != '/' ? "/" + key : key);
  return r;
}

// SetOptions -> PUT request, as the Go client's setAction builds it.
ApiRequest set_request(const std::string& key, const std::string& value, std::int64_t ttl,
                       bool dir, const std::string& prev_exist, const std::string& prev_value,
                       std::uint64_t prev_index) {
  ApiRequest r = keys_request("PUT", key);
  r.form.emplace();
  if (dir) {
    r.query.emplace_back("dir", "true");
  } else {
    if (!prev_value.empty()) r.query.emplace_back("prevValue", prev_value);
    r.form->emplace_back("value", value);
  }
  if (prev_index != 0) r.query.emplace_back("prevIndex", std::to_string(prev_index));
  if (!prev_exist.empty()) r.query.emplace_back("prevExist", prev_exist);
  if (ttl > 0) r.form->emplace_back("ttl", std::to_string(ttl));
  return r;
}

KeysResponse must_keys(EtcdClient& client, const ApiRequest& req, bool one_shot) {
  auto r = client.keys(req, client.command_deadline(), one_shot, false);
  if (auto* e = std::get_if<ClientError>(&r)) handle_error(kExitServerError, *e);
  return std::get<KeysResponse>(r);
}

namespace {

void on_sigint(int) { std::_Exit(0); }

}  // namespace

void exit_on_sigint() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

}  // namespace kvd::cli
