// etcd 3.4's configuration file (--config-file FILE or ETCD_CONFIG_FILE): a YAML map whose keys are
// the flags' names, with the types of etcd's configYAML (embed/config.go) and configProxy
// (etcdmain/config.go). Parsed with yaml-cpp; YAML 1.1's plain scalars are typed as Go's YAML
// decoder types them (yes/no/on/off are booleans, 0x10 is a number, ~ is null), and a value of
// the wrong type is refused as etcd refuses it:
//
//   name: infra0                          strings: a plain or quoted scalar, never a number or
//   listen-client-urls: http://a:2379,... boolean; null (an empty value, ~) keeps the default
//   snapshot-count: 10000                 unsigned integers and integers: an unquoted number
//   enable-v2: true                       booleans: true/false, yes/no, on/off (unquoted)
//   grpc-keepalive-timeout: 20000000000   durations: an integer, in nanoseconds (Go's JSON)
//   log-outputs: [stderr]                 lists of strings: log-outputs, log-output, cipher-suites
//   client-transport-security:            the client TLS flags, and peer-transport-security the
//     cert-file: /etc/kvd/server.crt      --peer-* ones: cert-file, key-file, client-cert-auth,
//     client-cert-auth: true              trusted-ca-file, auto-tls
//
// Keys match case-insensitively (Go's JSON decoder does). Where etcd ignores a key it does not
// know, kvd refuses it, and a key given twice (etcd keeps the last), naming the key and its line.
//
// Pure: parse_config_yaml() does no I/O; read_config_file() is the one function that reads.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "common/status.h"

namespace kvd::server {

// One setting of the file, as the flag it stands for would be given on the command line.
struct ConfigSetting {
  std::string key;    // as written, nested keys with their map: "client-transport-security.cert-file"
  std::string flag;   // the flag it sets: "name", "cert-file", "peer-auto-tls"
  std::string value;  // the flag's syntax: "true", "1500000000ns", lists joined with ','
  int line = 0;       // 1-based, in the file
};

struct ConfigFileError {
  int line = 0;  // 1-based; 0 when the error is about the whole file
  std::string message;
};

// The settings in file order, or the first problem: not YAML, not a map, an unknown or repeated
// key, a value of the wrong type. Keys whose value is null are left out (the default stays), and
// so are empty strings and lists where etcd treats them as unset (URLs, cors, host-whitelist,
// data-dir, proxy, discovery-fallback, initial-cluster-state, the lists).
std::variant<std::vector<ConfigSetting>, ConfigFileError> parse_config_yaml(const std::string& text);

// The file's contents; fails with "open FILE: <reason>".
Result<std::string> read_config_file(const std::string& path);

}  // namespace kvd::server
