// kvd's command line: etcd 3.4's flags with Go's flag syntax (-flag v, --flag v, -flag=v, bare
// -flag for booleans) and ETCD_<FLAG> environment variables, with etcd's rules: a setting given
// both ways is fatal, an unknown ETCD_* variable only warns. Flags that mean nothing to kvd
// (gRPC, v3 tuning, --enable-v2) are accepted and validated like etcd does, then ignored.
// --config-file FILE (or ETCD_CONFIG_FILE) takes every setting from etcd 3.4's YAML file
// (server/config_file.h) and, as in etcd, ignores the other flags and variables.
//
// Pure but for reading the config file (through the caller's ReadFile when one is given); the
// caller prints what parse_flags() returns and exits when told to.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "server/proxy/proxy.h"

namespace kvd::server {

// One side's TLS flags (client: --cert-file ...; peer: --peer-cert-file ...).
struct TlsFlags {
  std::string cert_file;
  std::string key_file;
  std::string trusted_ca_file;
  std::string crl_file;
  std::string allowed_cn;        // peer side only (--peer-cert-allowed-cn)
  std::string allowed_hostname;  // --client-cert-allowed-hostname, --peer-cert-allowed-hostname
  bool client_cert_auth = false;
  bool auto_tls = false;
};

struct Flags {
  std::string name = "default";
  std::string data_dir;  // default "<name>.etcd"
  std::vector<std::string> listen_client_urls;
  std::vector<std::string> advertise_client_urls;
  std::vector<std::string> listen_peer_urls;
  std::vector<std::string> initial_advertise_peer_urls;
  // --listen-metrics-urls: extra listeners serving /metrics and /health only (https ones with
  // the client certificate, as etcd).
  std::vector<std::string> listen_metrics_urls;
  std::vector<std::pair<std::string, std::string>> initial_cluster;  // name=peerURL, flag order
  // Bootstrapping by discovery instead (server/discovery/): then initial_cluster is empty.
  std::string discovery;                 // --discovery URL
  bool discovery_fallback_proxy = true;  // --discovery-fallback proxy (else exit)
  std::string discovery_proxy;           // --discovery-proxy
  std::string discovery_srv;             // --discovery-srv DOMAIN
  std::string discovery_srv_name;        // --discovery-srv-name
  std::string initial_cluster_state = "new";
  std::string initial_cluster_token = "etcd-cluster";
  uint64_t snapshot_count = 100000;
  std::chrono::milliseconds heartbeat_interval{100};
  std::chrono::milliseconds election_timeout{1000};
  std::chrono::nanoseconds warning_apply_duration{std::chrono::milliseconds(100)};
  uint64_t max_request_bytes = 1572864;
  std::vector<std::string> cors = {"*"};
  // Hosts plain-HTTP clients may name (etcd's DNS-rebinding guard); "*": any.
  std::vector<std::string> host_whitelist = {"*"};
  std::string log_level = "info";
  std::string logger = "capnslog";                      // --logger: capnslog or zap
  std::vector<std::string> log_outputs = {"default"};   // --log-outputs
  bool strict_reconfig_check = true;
  bool force_new_cluster = false;
  bool pre_vote = false;
  bool initial_election_tick_advance = true;

  TlsFlags client_tls;
  TlsFlags peer_tls;
  std::string cipher_suites;  // Go names, comma-separated (checked by setup_tls)

  ProxyMode proxy = ProxyMode::kOff;
  std::chrono::milliseconds proxy_failure_wait{5000};
  std::chrono::milliseconds proxy_refresh_interval{30000};
  std::chrono::milliseconds proxy_dial_timeout{1000};
  std::chrono::milliseconds proxy_write_timeout{5000};
  std::chrono::milliseconds proxy_read_timeout{0};
};

struct FlagsResult {
  // -1: run with `flags`. Otherwise print `out` to stdout and `err` to stderr and exit with it.
  int exit_code = -1;
  std::string out;
  std::string err;
  Flags flags;
  // For the log once logging is set up: "recognized and used environment variable ETCD_X=v",
  // "unrecognized environment variable ETCD_Y=v", the config file loaded and what it ignores.
  std::vector<std::string> env_notices;
  std::vector<std::string> env_warnings;
};

// Reads a config file's text; "open FILE: reason" when it cannot.
using ReadFile = std::function<Result<std::string>(const std::string& path)>;

// args excludes argv[0]; env is "NAME=value" strings (e.g. from environ). Without read_file a
// config file is read from disk (read_config_file).
FlagsResult parse_flags(const std::vector<std::string>& args, const std::vector<std::string>& env,
                        const ReadFile& read_file = {});

std::string usage_text();
std::string version_text();


}  // namespace kvd::server
