#include "server/config_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>

#include "common/go.h"

namespace kvd::server {
namespace {

// The Go type of a key in etcd's configYAML, which decides which YAML values it takes.
enum class Type { kString, kUint, kInt, kBool, kDuration, kStringList, kTls };

struct Key {
  const char* name;
  Type type;
  // etcd copies these from the file only when non-empty (configFromFile's *JSON fields, the
  // proxy and cluster-state strings, and data-dir, which etcdmain fills when empty).
  bool empty_is_unset = false;
};

// Every key etcd 3.4 reads from the file; the flag of the same name takes the value.
const std::vector<Key>& top_keys() {
  static const std::vector<Key> keys = {
      {"name", Type::kString},
      {"data-dir", Type::kString, true},
      {"wal-dir", Type::kString},
      {"snapshot-count", Type::kUint},
      {"max-snapshots", Type::kUint},
      {"max-wals", Type::kUint},
      {"heartbeat-interval", Type::kUint},
      {"election-timeout", Type::kUint},
      {"initial-election-tick-advance", Type::kBool},
      {"backend-batch-interval", Type::kDuration},
      {"backend-batch-limit", Type::kInt},
      {"quota-backend-bytes", Type::kInt},
      {"max-txn-ops", Type::kUint},
      {"max-request-bytes", Type::kUint},
      {"max-concurrent-streams", Type::kUint},
      {"cipher-suites", Type::kStringList},
      {"initial-cluster-state", Type::kString, true},
      {"discovery-srv", Type::kString},
      {"discovery-srv-name", Type::kString},
      {"discovery-proxy", Type::kString},
      {"discovery", Type::kString},
      {"initial-cluster", Type::kString},
      {"initial-cluster-token", Type::kString},
      {"strict-reconfig-check", Type::kBool},
      {"enable-v2", Type::kBool},
      {"auto-compaction-mode", Type::kString},
      {"auto-compaction-retention", Type::kString},
      {"grpc-keepalive-min-time", Type::kDuration},
      {"grpc-keepalive-interval", Type::kDuration},
      {"grpc-keepalive-timeout", Type::kDuration},
      {"pre-vote", Type::kBool},
      {"auth-token", Type::kString},
      {"bcrypt-cost", Type::kUint},
      {"auth-token-ttl", Type::kUint},
      {"experimental-initial-corrupt-check", Type::kBool},
      {"experimental-corrupt-check-time", Type::kDuration},
      {"experimental-enable-v2v3", Type::kString},
      {"experimental-backend-bbolt-freelist-type", Type::kString},
      {"experimental-enable-lease-checkpoint", Type::kBool},
      {"experimental-enable-lease-checkpoint-persist", Type::kBool},
      {"experimental-compaction-batch-limit", Type::kInt},
      {"experimental-watch-progress-notify-interval", Type::kDuration},
      {"experimental-warning-apply-duration", Type::kDuration},
      {"force-new-cluster", Type::kBool},
      {"enable-pprof", Type::kBool},
      {"metrics", Type::kString},
      {"listen-metrics-urls", Type::kString, true},
      {"logger", Type::kString},
      {"log-level", Type::kString},
      {"log-outputs", Type::kStringList},
      {"enable-grpc-gateway", Type::kBool},
      {"log-output", Type::kStringList},
      {"debug", Type::kBool},
      {"log-package-levels", Type::kString},
      {"unsafe-no-fsync", Type::kBool},
      {"listen-peer-urls", Type::kString, true},
      {"listen-client-urls", Type::kString, true},
      {"initial-advertise-peer-urls", Type::kString, true},
      {"advertise-client-urls", Type::kString, true},
      {"cors", Type::kString, true},
      {"host-whitelist", Type::kString, true},
      {"client-transport-security", Type::kTls},
      {"peer-transport-security", Type::kTls},
      {"proxy-failure-wait", Type::kUint},
      {"proxy-refresh-interval", Type::kUint},
      {"proxy-dial-timeout", Type::kUint},
      {"proxy-write-timeout", Type::kUint},
      {"proxy-read-timeout", Type::kUint},
      {"proxy", Type::kString, true},
      {"discovery-fallback", Type::kString, true},
  };
  return keys;
}

// The keys of client-transport-security and peer-transport-security (etcd's securityConfig).
const std::vector<Key>& tls_keys() {
  static const std::vector<Key> keys = {
      {"cert-file", Type::kString},       {"key-file", Type::kString},
      {"client-cert-auth", Type::kBool},  {"trusted-ca-file", Type::kString},
      {"auto-tls", Type::kBool},
  };
  return keys;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const Key* find_key(const std::vector<Key>& keys, const std::string& name) {
  std::string l = lower(name);
  for (const auto& k : keys)
    if (l == k.name) return &k;
  return nullptr;
}

// What a scalar is, typed as YAML 1.1 plain scalars are by Go's YAML decoder (gopkg.in/yaml.v2's
// resolve): quoted scalars are always strings.
enum class Kind { kString, kBool, kInt, kFloat };

bool is_float(const std::string& s) {
  static const char* const kSpecial[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
                                         "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"};
  for (const char* sp : kSpecial)
    if (s == sp) return true;
  // [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
  size_t i = 0, n = s.size();
  auto digits = [&] {
    size_t start = i;
    while (i < n && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    return i - start;
  };
  if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
  if (i < n && s[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  } else {
    if (digits() == 0) return false;
    if (i < n && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == n;
}

struct Scalar {
  Kind kind = Kind::kString;
  std::string text;   // as written (quotes removed); for kInt without underscores
  bool truth = false;  // kBool
};

Scalar classify(const YAML::Node& node) {
  Scalar s;
  s.text = node.Scalar();
  const std::string& tag = node.Tag();
  bool plain = tag == "?";
  for (const char* core : {":int", ":bool", ":float"})
    if (tag.size() > std::strlen(core) && tag.rfind("tag:yaml.org,2002", 0) == 0 &&
        tag.compare(tag.size() - std::strlen(core), std::string::npos, core) == 0)
      plain = true;  // !!int 5 and the like: typed as the plain scalar would be
  if (!plain) return s;
  static const char* const kTrue[] = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE",
                                      "on", "On", "ON"};
  static const char* const kFalse[] = {"n", "N", "no", "No", "NO", "false", "False", "FALSE",
                                       "off", "Off", "OFF"};
  for (const char* t : kTrue)
    if (s.text == t) return {Kind::kBool, s.text, true};
  for (const char* f : kFalse)
    if (s.text == f) return {Kind::kBool, s.text, false};
  std::string digits = s.text;
  digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
  if (!digits.empty() && (go::parse_int(digits) || go::parse_uint(digits)))
    return {Kind::kInt, digits, false};
  if (is_float(digits)) return {Kind::kFloat, s.text, false};
  return s;
}

std::string describe(const YAML::Node& node) {
  if (node.IsMap()) return "a map";
  if (node.IsSequence()) return "a list";
  Scalar s = classify(node);
  switch (s.kind) {
    case Kind::kString: return "the string " + go::json_quote(s.text);
    case Kind::kBool: return "the boolean " + s.text;
    case Kind::kInt:
    case Kind::kFloat: return "the number " + s.text;
  }
  return "";
}

// A number where an integer is expected: integers as written, floats only when integral (Go's
// JSON takes 1e3 for a uint).
std::optional<std::string> integer_text(const YAML::Node& node) {
  if (!node.IsScalar()) return std::nullopt;
  Scalar s = classify(node);
  if (s.kind == Kind::kInt) return s.text;
  if (s.kind != Kind::kFloat) return std::nullopt;
  double v = std::strtod(s.text.c_str(), nullptr);
  if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9.0e15) return std::nullopt;
  return std::to_string(static_cast<int64_t>(v));
}

class Parser {
 public:
  std::optional<ConfigFileError> parse_map(const YAML::Node& map, const std::vector<Key>& keys,
                                           const std::string& parent, const std::string& flag_prefix) {
    std::map<std::string, int> seen;  // lower-cased key -> line
    for (const auto& kv : map) {
      int line = kv.first.Mark().line + 1;
      std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "";
      std::string path = parent.empty() ? name : parent + "." + name;
      const Key* key = kv.first.IsScalar() ? find_key(keys, name) : nullptr;
      if (!key) return ConfigFileError{line, unknown_key_message(path, parent)};
      auto [it, fresh] = seen.emplace(lower(name), line);
      if (!fresh)
        return ConfigFileError{line, "key " + go::json_quote(path) + " given twice (first on line " +
                                         std::to_string(it->second) + ")"};
      if (auto err = parse_value(*key, kv.second, path, flag_prefix + key->name, line)) return err;
    }
    return std::nullopt;
  }

  std::vector<ConfigSetting> settings;

 private:
  static std::string unknown_key_message(const std::string& path, const std::string& parent) {
    std::string msg = "unknown key " + go::json_quote(path);
    if (parent.empty() && find_key(tls_keys(), path))
      msg += " (in a config file it goes under client-transport-security)";
    else if (parent.empty() && path.rfind("peer-", 0) == 0 && find_key(tls_keys(), path.substr(5)))
      msg += " (in a config file it goes under peer-transport-security as " + path.substr(5) + ")";
    return msg;
  }

  std::optional<ConfigFileError> parse_value(const Key& key, const YAML::Node& v,
                                             const std::string& path, const std::string& flag,
                                             int line) {
    if (v.IsNull()) return std::nullopt;  // the default stays
    auto wrong = [&](const std::string& expected, const std::string& hint = "") {
      return ConfigFileError{line, path + " must be " + expected + ", not " + describe(v) + hint};
    };
    auto add = [&](std::string value) {
      if (value.empty() && key.empty_is_unset) return;
      settings.push_back({path, flag, std::move(value), line});
    };
    switch (key.type) {
      case Type::kString: {
        if (!v.IsScalar()) return wrong("a string");
        Scalar s = classify(v);
        if (s.kind != Kind::kString)
          return wrong("a string", " (quote it: " + go::json_quote(s.text) + ")");
        add(s.text);
        return std::nullopt;
      }
      case Type::kUint:
      case Type::kInt: {
        auto text = integer_text(v);
        if (!text) return wrong("an integer");
        add(*text);
        return std::nullopt;
      }
      case Type::kDuration: {
        auto text = integer_text(v);
        auto ns = text ? go::parse_int(*text) : std::nullopt;
        if (!ns)
          return wrong("a duration in nanoseconds (an integer, as etcd reads it: 100ms is 100000000)");
        add(std::to_string(*ns) + "ns");
        return std::nullopt;
      }
      case Type::kBool: {
        Scalar s = v.IsScalar() ? classify(v) : Scalar{};
        if (!v.IsScalar() || s.kind != Kind::kBool) return wrong("a boolean (true or false)");
        add(s.truth ? "true" : "false");
        return std::nullopt;
      }
      case Type::kStringList: {
        if (!v.IsSequence()) {
          std::string hint = v.IsScalar() ? " (write [" + v.Scalar() + "])" : "";
          return wrong("a list of strings", hint);
        }
        std::string joined;
        for (const auto& item : v) {
          if (!item.IsScalar() || classify(item).kind != Kind::kString)
            return ConfigFileError{line, path + " must be a list of strings, not a list holding " +
                                             describe(item)};
          joined += (joined.empty() ? "" : ",") + item.Scalar();
        }
        if (!joined.empty()) settings.push_back({path, flag, joined, line});
        return std::nullopt;
      }
      case Type::kTls: {
        if (!v.IsMap()) return wrong("a map");
        std::string prefix = std::string(key.name) == "peer-transport-security" ? "peer-" : "";
        return parse_map(v, tls_keys(), path, prefix);
      }
    }
    return std::nullopt;
  }
};

}  // namespace

std::variant<std::vector<ConfigSetting>, ConfigFileError> parse_config_yaml(const std::string& text) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return ConfigFileError{e.mark.line + 1, "not YAML: line " + std::to_string(e.mark.line + 1) +
                                                ", column " + std::to_string(e.mark.column + 1) +
                                                ": " + e.msg};
  }
  if (!root.IsDefined() || root.IsNull()) return std::vector<ConfigSetting>{};  // empty: defaults
  if (!root.IsMap())
    return ConfigFileError{0, "expected a map of settings (key: value), found " + describe(root)};
  Parser parser;
  try {
    if (auto err = parser.parse_map(root, top_keys(), "", "")) return *err;
  } catch (const YAML::Exception& e) {
    return ConfigFileError{e.mark.line + 1, e.msg};
  }
  return std::move(parser.settings);
}

Result<std::string> read_config_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::error("open " + path + ": " + std::strerror(errno));
  std::string out;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::error("read " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace kvd::server
