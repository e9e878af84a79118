#include "server/flags.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <optional>
#include <set>
#include <variant>

#include "common/go.h"
#include "common/url.h"
#include "common/version.h"
#include "server/config_file.h"

namespace kvd::server {
namespace {

enum class Kind { kString, kUint, kInt, kBool, kUrls, kOptionalUrls, kEnum, kDuration, kOriginList };

struct FlagDef {
  const char* name;
  Kind kind;
  const char* default_value;
  const char* help;
  std::vector<std::string> choices = {};  // kEnum
};

// Every flag etcd 3.4 accepts. Those kvd does not use are validated and ignored.
const std::vector<FlagDef>& flag_defs() {
  static const std::vector<FlagDef> defs = {
      {"name", Kind::kString, "default", "Human-readable name for this member."},
      {"data-dir", Kind::kString, "${name}.etcd", "Path to the data directory."},
      {"wal-dir", Kind::kString, "", "Accepted for compatibility; kvd keeps its log in data-dir."},
      {"snapshot-count", Kind::kUint, "100000",
       "Number of committed transactions to trigger a snapshot to disk."},
      {"heartbeat-interval", Kind::kUint, "100", "Time (in milliseconds) of a heartbeat interval."},
      {"election-timeout", Kind::kUint, "1000", "Time (in milliseconds) for an election to timeout."},
      {"initial-election-tick-advance", Kind::kBool, "true",
       "Whether to fast-forward initial election ticks on boot for faster election."},
      {"listen-peer-urls", Kind::kUrls, "http://localhost:2380", "List of URLs to listen on for peer traffic."},
      {"listen-client-urls", Kind::kUrls, "http://localhost:2379", "List of URLs to listen on for client traffic."},
      {"max-snapshots", Kind::kUint, "5", "Accepted for compatibility."},
      {"max-wals", Kind::kUint, "5", "Accepted for compatibility."},
      {"quota-backend-bytes", Kind::kInt, "0", "Accepted for compatibility."},
      {"backend-batch-interval", Kind::kDuration, "0s", "Accepted for compatibility."},
      {"backend-batch-limit", Kind::kUint, "0", "Accepted for compatibility."},
      {"max-txn-ops", Kind::kUint, "128", "Accepted for compatibility."},
      {"max-request-bytes", Kind::kUint, "1572864", "Accepted for compatibility (v2 bodies are limited separately)."},
      {"max-concurrent-streams", Kind::kUint, "4294967295", "Accepted for compatibility."},
      {"grpc-keepalive-min-time", Kind::kDuration, "5s", "Accepted for compatibility."},
      {"grpc-keepalive-interval", Kind::kDuration, "2h", "Accepted for compatibility."},
      {"grpc-keepalive-timeout", Kind::kDuration, "20s", "Accepted for compatibility."},
      {"initial-advertise-peer-urls", Kind::kUrls, "http://localhost:2380",
       "List of this member's peer URLs to advertise to the rest of the cluster."},
      {"initial-cluster", Kind::kString, "default=http://localhost:2380",
       "Initial cluster configuration for bootstrapping."},
      {"initial-cluster-state", Kind::kEnum, "new",
       "Initial cluster state ('new' or 'existing').", {"new", "existing"}},
      {"initial-cluster-token", Kind::kString, "etcd-cluster",
       "Initial cluster token for the etcd cluster during bootstrap."},
      {"advertise-client-urls", Kind::kUrls, "http://localhost:2379",
       "List of this member's client URLs to advertise to the public."},
      {"discovery", Kind::kString, "", "Discovery URL used to bootstrap the cluster."},
      {"discovery-fallback", Kind::kEnum, "proxy",
       "Expected behavior ('exit' or 'proxy') when discovery services fails.", {"exit", "proxy"}},
      {"discovery-proxy", Kind::kString, "", "HTTP proxy to use for traffic to discovery service."},
      {"discovery-srv", Kind::kString, "", "DNS srv domain used to bootstrap the cluster."},
      {"discovery-srv-name", Kind::kString, "",
       "Suffix to the dns srv name queried when bootstrapping."},
      {"strict-reconfig-check", Kind::kBool, "true",
       "Reject reconfiguration requests that would cause quorum loss."},
      {"pre-vote", Kind::kBool, "false", "Enable to run an additional Raft election phase."},
      {"auto-compaction-retention", Kind::kString, "0", "Accepted for compatibility."},
      {"auto-compaction-mode", Kind::kString, "periodic", "Accepted for compatibility."},
      {"enable-v2", Kind::kBool, "false", "Accepted for compatibility; kvd always serves the v2 API."},
      {"cert-file", Kind::kString, "", "Path to the client server TLS cert file."},
      {"key-file", Kind::kString, "", "Path to the client server TLS key file."},
      {"client-cert-auth", Kind::kBool, "false", "Enable client cert authentication."},
      {"client-crl-file", Kind::kString, "", "Path to the client certificate revocation list file."},
      {"client-cert-allowed-hostname", Kind::kString, "", "Allowed TLS hostname for client cert authentication."},
      {"trusted-ca-file", Kind::kString, "", "Path to the client server TLS trusted CA cert file."},
      {"auto-tls", Kind::kBool, "false", "Client TLS using generated certificates."},
      {"peer-cert-file", Kind::kString, "", "Path to the peer server TLS cert file."},
      {"peer-key-file", Kind::kString, "", "Path to the peer server TLS key file."},
      {"peer-client-cert-auth", Kind::kBool, "false", "Enable peer client cert authentication."},
      {"peer-trusted-ca-file", Kind::kString, "", "Path to the peer server TLS trusted CA file."},
      {"peer-cert-allowed-cn", Kind::kString, "", "Allowed CN for inter peer authentication."},
      {"peer-cert-allowed-hostname", Kind::kString, "", "Allowed TLS hostname for inter peer authentication."},
      {"peer-auto-tls", Kind::kBool, "false", "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided."},
      {"peer-crl-file", Kind::kString, "", "Path to the peer certificate revocation list file."},
      {"cipher-suites", Kind::kString, "", "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go)."},
      {"cors", Kind::kOriginList, "*", "Comma-separated whitelist of origins for CORS."},
      {"host-whitelist", Kind::kString, "*",
       "Comma-separated acceptable hostnames from HTTP client requests, if server is not secure (empty means allow all)."},
      {"auth-token", Kind::kString, "simple", "Accepted for compatibility."},
      {"bcrypt-cost", Kind::kUint, "10", "Accepted for compatibility."},
      {"auth-token-ttl", Kind::kUint, "300", "Accepted for compatibility."},
      {"enable-pprof", Kind::kBool, "false", "Accepted for compatibility."},
      {"metrics", Kind::kString, "basic", "Accepted for compatibility."},
      {"listen-metrics-urls", Kind::kOptionalUrls, "", "List of URLs to listen on for the metrics and health endpoints."},
      {"logger", Kind::kString, "capnslog", "Log format: capnslog (a text line per event) or zap (a JSON object per line)."},
      {"log-outputs", Kind::kString, "default", "Where logs go, comma-separated: default (stderr), stderr, stdout, or file paths."},
      {"log-level", Kind::kEnum, "info", "Log level: debug, info, warn, error, panic or fatal.",
       {"debug", "info", "warn", "error", "panic", "fatal"}},
      {"debug", Kind::kBool, "false", "Enable debug-level logging."},
      {"log-package-levels", Kind::kString, "", "Accepted for compatibility."},
      {"log-output", Kind::kString, "default", "Accepted for compatibility (deprecated in etcd for --log-outputs)."},
      {"enable-grpc-gateway", Kind::kBool, "true", "Accepted for compatibility."},
      {"unsafe-no-fsync", Kind::kBool, "false", "Accepted for compatibility; kvd always syncs."},
      {"proxy", Kind::kEnum, "off", "Proxy mode setting ('off', 'readonly' or 'on').",
       {"off", "readonly", "on"}},
      {"proxy-failure-wait", Kind::kUint, "5000",
       "Time (in milliseconds) an endpoint will be held in a failed state."},
      {"proxy-refresh-interval", Kind::kUint, "30000", "Time (in milliseconds) of the endpoints refresh interval."},
      {"proxy-dial-timeout", Kind::kUint, "1000", "Time (in milliseconds) for a dial to timeout."},
      {"proxy-write-timeout", Kind::kUint, "5000", "Time (in milliseconds) for a write to timeout."},
      {"proxy-read-timeout", Kind::kUint, "0", "Time (in milliseconds) for a read to timeout."},
      {"experimental-initial-corrupt-check", Kind::kBool, "false", "Accepted for compatibility."},
      {"experimental-corrupt-check-time", Kind::kDuration, "0s", "Accepted for compatibility."},
      {"experimental-enable-v2v3", Kind::kString, "", "Accepted for compatibility."},
      {"experimental-backend-bbolt-freelist-type", Kind::kString, "array", "Accepted for compatibility."},
      {"experimental-enable-lease-checkpoint", Kind::kBool, "false", "Accepted for compatibility."},
      {"experimental-enable-lease-checkpoint-persist", Kind::kBool, "false", "Accepted for compatibility."},
      {"experimental-compaction-batch-limit", Kind::kUint, "1000", "Accepted for compatibility."},
      {"experimental-peer-skip-client-san-verification", Kind::kBool, "false", "Accepted for compatibility."},
      {"experimental-watch-progress-notify-interval", Kind::kDuration, "10m", "Accepted for compatibility."},
      {"experimental-warning-apply-duration", Kind::kDuration, "100ms", "Time duration after which a warning is generated if applying a request takes more time."},
      {"force-new-cluster", Kind::kBool, "false", "Force to create a new one member cluster."},
      {"version", Kind::kBool, "false", "Print the version and exit."},
      {"config-file", Kind::kString, "",
       "Path to the server configuration file (etcd 3.4's YAML). Note that if a configuration "
       "file is provided, other command line flags and environment variables will be ignored."},
  };
  return defs;
}

const FlagDef* find_flag(const std::string& name) {
  for (const auto& d : flag_defs())
    if (name == d.name) return &d;
  return nullptr;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string::npos ? std::string::npos : pos - start));
    if (pos == std::string::npos) break;
    start = pos + 1;
  }
  return out;
}

std::string validate(const FlagDef& d, const std::string& value) {
  switch (d.kind) {
    case Kind::kString: return "";
    case Kind::kUint: return go::parse_uint(value) ? "" : "parse error";
    case Kind::kInt: return go::parse_int(value) ? "" : "parse error";
    case Kind::kBool: return go::parse_bool(value) ? "" : "parse error";
    case Kind::kDuration: return go::parse_duration(value).has_value() ? "" : "parse error";
    case Kind::kEnum:
      return std::find(d.choices.begin(), d.choices.end(), value) != d.choices.end()
                 ? ""
                 : "invalid value";
    case Kind::kOptionalUrls:
      if (value.empty()) return "";
      [[fallthrough]];
    case Kind::kUrls:
      for (const auto& u : split(value, ',')) {
        std::string err = url::check(u);
        if (!err.empty()) return err;
      }
      return "";
    case Kind::kOriginList:
      for (const auto& u : split(value, ',')) {
        if (u == "*") continue;
        std::string err = url::check(u);
        if (!err.empty()) return err;
      }
      return "";
  }
  return "";
}

std::string env_name(const std::string& flag) {
  std::string out = "ETCD_";
  for (char c : flag) out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::chrono::milliseconds ms(const std::string& v) {
  return std::chrono::milliseconds(static_cast<int64_t>(*go::parse_uint(v)));
}

std::string env_value(const std::vector<std::string>& env, const std::string& name) {
  for (const auto& kv : env)
    if (kv.size() > name.size() && kv.compare(0, name.size(), name) == 0 && kv[name.size()] == '=')
      return kv.substr(name.size() + 1);
  return "";
}

// ETCD_* variables fill in flags not given on the command line (etcd's SetFlagsFromEnv).
std::optional<std::string> apply_environment(const std::vector<std::string>& env,
                                             const std::map<std::string, std::string>& set,
                                             std::map<std::string, std::string>& values,
                                             FlagsResult& r) {
  std::set<std::string> known_env;
  for (const auto& d : flag_defs()) known_env.insert(env_name(d.name));
  for (const auto& kv : env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    if (key.rfind("ETCD_", 0) != 0) continue;
    if (!known_env.count(key)) {
      r.env_warnings.push_back("unrecognized environment variable " + kv);
      continue;
    }
    for (const auto& d : flag_defs()) {
      if (env_name(d.name) != key) continue;
      if (set.count(d.name))
        return "conflicting environment variable \"" + key +
               "\" is shadowed by corresponding command-line flag (either unset "
               "environment variable or disable flag)";
      if (std::string err = validate(d, value); !err.empty())
        return "kvd: error verifying flags, invalid value \"" + value + "\" for " + key + ": " +
               err + ". See 'kvd --help'.";
      values[d.name] = value;
      r.env_notices.push_back("recognized and used environment variable " + kv);
    }
  }
  return std::nullopt;
}

// The file's settings alone (etcd's configFromFile), each checked as its flag is checked; errors
// name the file, the line and the key.
std::optional<std::string> load_config_file(const std::string& path, const ReadFile& read_file,
                                            std::map<std::string, std::string>& values) {
  auto text = read_file ? read_file(path) : read_config_file(path);
  if (!text.is_ok()) return "kvd: cannot load config file: " + text.status().message();
  auto parsed = parse_config_yaml(text.value());
  const std::string where = "kvd: config file " + go::json_quote(path);
  auto at = [&](int line) { return line > 0 ? where + ", line " + std::to_string(line) : where; };
  if (const auto* e = std::get_if<ConfigFileError>(&parsed)) return at(e->line) + ": " + e->message;
  for (const auto& setting : std::get<std::vector<ConfigSetting>>(parsed)) {
    const FlagDef* d = find_flag(setting.flag);
    if (!d) return at(setting.line) + ": " + setting.key + " is not supported";
    if (std::string err = validate(*d, setting.value); !err.empty())
      return at(setting.line) + ": invalid value \"" + setting.value + "\" for " + setting.key +
             ": " + err;
    values[setting.flag] = setting.value;
  }
  return std::nullopt;
}

// Flags kvd accepts for etcd's sake and does not act on (their help says "Accepted for
// compatibility"), when given with a value other than their default: one warning at start, so
// that an operator does not believe a quota, a compaction or a discovery is in force.
void note_no_effect(const std::map<std::string, std::string>& values,
                    std::vector<std::string>& warnings) {
  std::string names;
  for (const auto& d : flag_defs()) {
    auto it = values.find(d.name);
    if (it == values.end() || it->second == d.default_value) continue;
    if (std::string_view(d.help).rfind("Accepted for compatibility", 0) != 0) continue;
    // kvd always serves the v2 API: what --enable-v2 asks for is what it does.
    if (std::string_view(d.name) == "enable-v2" && go::parse_bool(it->second) == true) continue;
    names += (names.empty() ? "--" : ", --") + std::string(d.name);
  }
  if (!names.empty()) {
    warnings.push_back("accepted for compatibility with etcd, without effect in kvd: " + names);
  }
}

// What a config file makes kvd ignore, said once in the log (etcd says only that it may).
void note_ignored(const std::map<std::string, std::string>& set,
                  const std::vector<std::string>& env, std::vector<std::string>& warnings) {
  std::string flags, vars;
  for (const auto& [name, value] : set)
    if (name != "config-file") flags += (flags.empty() ? "--" : ", --") + name;
  for (const auto& kv : env) {
    std::string key = kv.substr(0, kv.find('='));
    if (key.rfind("ETCD_", 0) == 0 && key != "ETCD_CONFIG_FILE")
      vars += (vars.empty() ? "" : ", ") + key;
  }
  if (!flags.empty())
    warnings.push_back("ignoring command-line flags given beside the config file: " + flags);
  if (!vars.empty())
    warnings.push_back("ignoring environment variables given beside the config file: " + vars);
}

}  // namespace

// etcd's four lines, which scripts read (the first above all), with kvd's revision as the Git
// SHA, then kvd's own version.
std::string version_text() {
#if defined(__x86_64__)
  constexpr const char* kArch = "amd64";
#elif defined(__aarch64__)
  constexpr const char* kArch = "arm64";
#else
  constexpr const char* kArch = "unknown";
#endif
  return "etcd Version: " + std::string(version::kServer) + "\n" +
         "Git SHA: " + std::string(version::git_revision()) + "\n" +
         "Go Version: kvd (C++20)\n"
         "Go OS/Arch: linux/" + kArch + "\n" +
         "kvd Version: " + std::string(version::kKvd) + "\n";
}

std::string usage_text() {
  std::string out =
      "Usage:\n\n"
      "  kvd [flags]\n"
      "    Start a kvd member (an etcd v2 compatible server).\n\n"
      "  kvd --version\n"
      "    Show the version of kvd.\n\n"
      "  kvd -h | --help\n"
      "    Show this help.\n\n"
      "Flags (etcd's names; each may also be given as ETCD_<FLAG> in the environment):\n\n";
  for (const auto& d : flag_defs()) {
    out += "  --";
    out += d.name;
    if (d.kind != Kind::kBool) out += " <value>";
    out += "\n      ";
    out += d.help;
    out += " (default: '";
    out += d.default_value;
    out += "')\n";
  }
  return out;
}

FlagsResult parse_flags(const std::vector<std::string>& args, const std::vector<std::string>& env,
                        const ReadFile& read_file) {
  FlagsResult r;
  std::map<std::string, std::string> set;  // flag name -> value from the command line
  auto fail = [&](int code, std::string msg) {
    r.exit_code = code;
    r.err = std::move(msg) + "\n";
    return r;
  };

  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-') break;  // first non-flag argument
    size_t dashes = a[1] == '-' ? 2 : 1;
    if (dashes == 2 && a.size() == 2) {
      ++i;  // "--" ends the flags
      break;
    }
    std::string body = a.substr(dashes);
    if (body.empty() || body[0] == '-' || body[0] == '=') return fail(2, "bad flag syntax: " + a);
    std::string name = body, value;
    bool has_value = false;
    if (auto eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    if (name == "h" || name == "help") {
      r.exit_code = 0;
      r.out = usage_text();
      return r;
    }
    const FlagDef* d = find_flag(name);
    if (!d) return fail(2, "flag provided but not defined: -" + name);
    if (d->kind == Kind::kBool) {
      if (!has_value) value = "true";
      if (!go::parse_bool(value))
        return fail(2, "invalid boolean value \"" + value + "\" for -" + name + ": parse error");
    } else if (!has_value) {
      if (i + 1 >= args.size()) return fail(2, "flag needs an argument: -" + name);
      value = args[++i];
    }
    if (std::string err = validate(*d, value); !err.empty())
      return fail(2, "invalid value \"" + value + "\" for flag -" + name + ": " + err);
    set[name] = value;
  }
  if (i < args.size())
    return fail(1, "kvd: error verifying flags, '" + args[i] + "' is not a valid flag. See 'kvd --help'.");

  if (set.count("version") && *go::parse_bool(set["version"])) {
    r.exit_code = 0;
    r.out = version_text();
    return r;
  }

  // The config file: the flag, else ETCD_CONFIG_FILE, read on its own as etcd does, since with a
  // file every other flag and variable is ignored (etcdmain's config.parse).
  std::string config_file = set.count("config-file") ? set["config-file"] : "";
  if (config_file.empty()) config_file = env_value(env, "ETCD_CONFIG_FILE");
  const bool from_file = !config_file.empty();
  std::map<std::string, std::string> values;
  if (from_file) {
    if (auto err = load_config_file(config_file, read_file, values)) return fail(1, *err);
    r.env_notices.push_back("Loading server configuration from " + go::json_quote(config_file) +
                            ". Other configuration command line flags and environment variables "
                            "will be ignored if provided.");
    note_ignored(set, env, r.env_warnings);
  } else {
    values = set;
    if (auto err = apply_environment(env, set, values, r)) return fail(1, *err);
  }
  auto get = [&](const char* name) {
    auto it = values.find(name);
    return it != values.end() ? it->second : std::string(find_flag(name)->default_value);
  };
  auto given = [&](const char* name) { return values.count(name) > 0; };
  note_no_effect(values, r.env_warnings);

  Flags& f = r.flags;
  f.name = get("name");
  f.data_dir = given("data-dir") ? get("data-dir") : f.name + ".etcd";
  f.listen_client_urls = split(get("listen-client-urls"), ',');
  f.advertise_client_urls = split(get("advertise-client-urls"), ',');
  f.listen_peer_urls = split(get("listen-peer-urls"), ',');
  if (!get("listen-metrics-urls").empty())
    f.listen_metrics_urls = split(get("listen-metrics-urls"), ',');
  f.initial_advertise_peer_urls = split(get("initial-advertise-peer-urls"), ',');
  f.initial_cluster_state = get("initial-cluster-state");
  f.initial_cluster_token = get("initial-cluster-token");
  f.snapshot_count = *go::parse_uint(get("snapshot-count"));
  f.heartbeat_interval = ms(get("heartbeat-interval"));
  f.election_timeout = ms(get("election-timeout"));
  f.warning_apply_duration = *go::parse_duration(get("experimental-warning-apply-duration"));
  f.max_request_bytes = *go::parse_uint(get("max-request-bytes"));
  f.cors = split(get("cors"), ',');
  f.host_whitelist = split(get("host-whitelist"), ',');
  f.log_level = *go::parse_bool(get("debug")) ? "debug" : get("log-level");
  f.logger = get("logger");
  f.log_outputs = split(get("log-outputs"), ',');
  f.strict_reconfig_check = *go::parse_bool(get("strict-reconfig-check"));
  f.force_new_cluster = *go::parse_bool(get("force-new-cluster"));
  f.pre_vote = *go::parse_bool(get("pre-vote"));
  f.initial_election_tick_advance = *go::parse_bool(get("initial-election-tick-advance"));
  auto tls_flags = [&](const std::string& prefix, TlsFlags& t) {
    t.cert_file = get((prefix + "cert-file").c_str());
    t.key_file = get((prefix + "key-file").c_str());
    t.trusted_ca_file = get((prefix + "trusted-ca-file").c_str());
    t.crl_file = get((prefix + (prefix.empty() ? "client-crl-file" : "crl-file")).c_str());
    t.allowed_hostname = get((prefix.empty() ? "client-cert-allowed-hostname"
                                             : "peer-cert-allowed-hostname"));
    t.client_cert_auth = *go::parse_bool(get((prefix + "client-cert-auth").c_str()));
    t.auto_tls = *go::parse_bool(get((prefix + "auto-tls").c_str()));
  };
  tls_flags("", f.client_tls);
  tls_flags("peer-", f.peer_tls);
  f.peer_tls.allowed_cn = get("peer-cert-allowed-cn");
  f.cipher_suites = get("cipher-suites");
  std::string proxy = get("proxy");
  f.proxy = proxy == "on" ? ProxyMode::kOn : proxy == "readonly" ? ProxyMode::kReadonly : ProxyMode::kOff;
  f.proxy_failure_wait = ms(get("proxy-failure-wait"));
  f.proxy_refresh_interval = ms(get("proxy-refresh-interval"));
  f.proxy_dial_timeout = ms(get("proxy-dial-timeout"));
  f.proxy_write_timeout = ms(get("proxy-write-timeout"));
  f.proxy_read_timeout = ms(get("proxy-read-timeout"));

  // --initial-cluster: name=url pairs. Without the flag, etcd derives it from the name and the
  // advertised peer URLs.
  if (given("initial-cluster")) {
    for (const auto& part : split(get("initial-cluster"), ',')) {
      auto eq = part.find('=');
      std::string n = eq == std::string::npos ? part : part.substr(0, eq);
      std::string u = eq == std::string::npos ? "" : part.substr(eq + 1);
      if (std::string err = url::check(u); !err.empty())
        return fail(1, "kvd: error setting up initial cluster: " + err);
      f.initial_cluster.emplace_back(n, u);
    }
  } else {
    for (const auto& u : f.initial_advertise_peer_urls) f.initial_cluster.emplace_back(f.name, u);
  }

  f.discovery = get("discovery");
  f.discovery_fallback_proxy = get("discovery-fallback") == "proxy";
  f.discovery_proxy = get("discovery-proxy");
  f.discovery_srv = get("discovery-srv");
  f.discovery_srv_name = get("discovery-srv-name");
  // As etcd: a discovery setting replaces the default --initial-cluster, and only one of the
  // three ways to bootstrap may be given.
  const bool discovers = !f.discovery.empty() || !f.discovery_srv.empty() ||
                         !f.discovery_srv_name.empty();
  if (discovers && !given("initial-cluster")) f.initial_cluster.clear();
  if ((!f.discovery.empty()) + (!f.initial_cluster.empty()) + (!f.discovery_srv.empty()) > 1)
    return fail(1, "kvd: error verifying flags, multiple discovery or bootstrap flags are set. "
                   "Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\". "
                   "See 'kvd --help'.");
  // A member that may fall back to a proxy needs no advertised client URL (etcd's mayBeProxy).
  const bool may_be_proxy = f.proxy != ProxyMode::kOff ||
                            (!f.discovery.empty() && f.discovery_fallback_proxy);
  if (f.proxy == ProxyMode::kOff) {
    // A config file without advertise-client-urls advertises the default, as etcd's does.
    if (!from_file && !may_be_proxy && given("listen-client-urls") &&
        !given("advertise-client-urls"))
      return fail(1, "kvd: error verifying flags, --advertise-client-urls is required when "
                     "--listen-client-urls is set explicitly. See 'kvd --help'.");
    if (given("listen-peer-urls") && !given("initial-advertise-peer-urls") &&
        given("initial-cluster"))
      return fail(1, "kvd: error verifying flags, --initial-advertise-peer-urls is required "
                     "when --listen-peer-urls is set explicitly. See 'kvd --help'.");
    bool found = std::any_of(f.initial_cluster.begin(), f.initial_cluster.end(),
                             [&](const auto& p) { return p.first == f.name; });
    if (!found && !discovers)
      return fail(1, "kvd: couldn't find local name \"" + f.name +
                         "\" in the initial cluster configuration");
  }
  return r;
}

}  // namespace kvd::server
