// etcd 3.4's YAML config file: the keys and their YAML types (parse_config_yaml), and the file as
// the flags see it (parse_flags with --config-file): the same Flags as the same settings given as
// flags, the same validation, and etcd's precedence.
#include "server/config_file.h"

#include <gtest/gtest.h>

#include <map>

#include "server/flags.h"

namespace kvd::server {
namespace {

std::vector<ConfigSetting> settings(const std::string& yaml) {
  auto parsed = parse_config_yaml(yaml);
  if (const auto* e = std::get_if<ConfigFileError>(&parsed)) {
    ADD_FAILURE() << "line " << e->line << ": " << e->message;
    return {};
  }
  return std::get<std::vector<ConfigSetting>>(parsed);
}

// flag -> value
std::map<std::string, std::string> flags_of(const std::string& yaml) {
  std::map<std::string, std::string> out;
  for (const auto& s : settings(yaml)) out[s.flag] = s.value;
  return out;
}

ConfigFileError error_of(const std::string& yaml) {
  auto parsed = parse_config_yaml(yaml);
  if (const auto* e = std::get_if<ConfigFileError>(&parsed)) return *e;
  ADD_FAILURE() << "parsed without an error:\n" << yaml;
  return {};
}

TEST(ConfigFileTest, parse_keysBecomeFlagsWithLines) {
  auto s = settings(
      "# a member\n"
      "name: infra0\n"
      "data-dir: /var/lib/kvd\n"
      "listen-client-urls: http://10.0.0.1:2379,http://127.0.0.1:2379\n");
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].key, "name");
  EXPECT_EQ(s[0].flag, "name");
  EXPECT_EQ(s[0].value, "infra0");
  EXPECT_EQ(s[0].line, 2);
  EXPECT_EQ(s[2].value, "http://10.0.0.1:2379,http://127.0.0.1:2379");
  EXPECT_EQ(s[2].line, 4);
}

TEST(ConfigFileTest, parse_emptyOrCommentsOnlyIsAllDefaults) {
  EXPECT_TRUE(settings("").empty());
  EXPECT_TRUE(settings("# nothing here\n\n").empty());
  EXPECT_TRUE(settings("---\n").empty());
}

TEST(ConfigFileTest, parse_nullKeepsTheDefault) {
  auto f = flags_of("data-dir:\nwal-dir: ~\ninitial-cluster: null\nname: a\n");
  EXPECT_EQ(f, (std::map<std::string, std::string>{{"name", "a"}}));
}

TEST(ConfigFileTest, parse_emptyStringsUnsetWhereEtcdKeepsTheDefault) {
  auto f = flags_of("data-dir: ''\nlisten-client-urls: ''\ncors: ''\nproxy: ''\nname: ''\n");
  // etcd copies URLs, cors, proxy and an empty data-dir only when set; name '' is a name.
  EXPECT_EQ(f, (std::map<std::string, std::string>{{"name", ""}}));
}

TEST(ConfigFileTest, parse_scalarsTypedAsGoYamlTypesThem) {
  auto f = flags_of(
      "enable-v2: yes\n"
      "pre-vote: on\n"
      "strict-reconfig-check: False\n"
      "force-new-cluster: n\n"
      "snapshot-count: 1e3\n"           // a float, integral: Go's JSON takes it for a uint
      "max-request-bytes: 0x10\n"
      "quota-backend-bytes: -1\n"
      "grpc-keepalive-timeout: 20000000000\n"  // time.Duration: nanoseconds
      "initial-cluster-token: 'tok'\n"
      "name: \"quoted 123\"\n");
  EXPECT_EQ(f["enable-v2"], "true");
  EXPECT_EQ(f["pre-vote"], "true");
  EXPECT_EQ(f["strict-reconfig-check"], "false");
  EXPECT_EQ(f["force-new-cluster"], "false");
  EXPECT_EQ(f["snapshot-count"], "1000");
  EXPECT_EQ(f["max-request-bytes"], "0x10");
  EXPECT_EQ(f["quota-backend-bytes"], "-1");
  EXPECT_EQ(f["grpc-keepalive-timeout"], "20000000000ns");
  EXPECT_EQ(f["initial-cluster-token"], "tok");
  EXPECT_EQ(f["name"], "quoted 123");
}

TEST(ConfigFileTest, parse_wrongTypesRefusedNamingKeyAndLine) {
  auto e = error_of("name: a\nheartbeat-interval: \"100\"\n");
  EXPECT_EQ(e.line, 2);
  EXPECT_EQ(e.message, "heartbeat-interval must be an integer, not the string \"100\"");
  const std::pair<const char*, const char*> cases[] = {
      {"name: 123\n", "name must be a string, not the number 123 (quote it: \"123\")"},
      // YAML 1.1: a boolean, as etcd reads it too.
      {"proxy: on\n", "proxy must be a string, not the boolean on (quote it: \"on\")"},
      {"enable-v2: \"true\"\n",
       "enable-v2 must be a boolean (true or false), not the string \"true\""},
      {"snapshot-count: 1.5\n", "snapshot-count must be an integer, not the number 1.5"},
      {"backend-batch-interval: 10ms\n",
       "backend-batch-interval must be a duration in nanoseconds (an integer, as etcd reads it: "
       "100ms is 100000000), not the string \"10ms\""},
      {"log-outputs: stderr\n",
       "log-outputs must be a list of strings, not the string \"stderr\" (write [stderr])"},
      {"log-outputs: [stderr, 5]\n",
       "log-outputs must be a list of strings, not a list holding the number 5"},
      {"name: [a, b]\n", "name must be a string, not a list"},
      {"client-transport-security: true\n",
       "client-transport-security must be a map, not the boolean true"},
  };
  for (const auto& [yaml, message] : cases) {
    e = error_of(yaml);
    EXPECT_EQ(e.line, 1) << yaml;
    EXPECT_EQ(e.message, message);
  }
}

TEST(ConfigFileTest, parse_unknownKeyRefusedWhereEtcdIgnoresIt) {
  auto e = error_of("name: a\n\nheartbeat-intervall: 100\n");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.message, "unknown key \"heartbeat-intervall\"");
  // Flags with no key of their own in etcd 3.4's file.
  e = error_of("cert-file: /x.crt\n");
  EXPECT_EQ(e.message, "unknown key \"cert-file\" (in a config file it goes under "
                       "client-transport-security)");
  e = error_of("peer-auto-tls: true\n");
  EXPECT_EQ(e.message, "unknown key \"peer-auto-tls\" (in a config file it goes under "
                       "peer-transport-security as auto-tls)");
  e = error_of("config-file: other.yml\n");
  EXPECT_EQ(e.message, "unknown key \"config-file\"");
  e = error_of("client-transport-security:\n  cert-file: a\n  crl-file: b\n");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.message, "unknown key \"client-transport-security.crl-file\"");
}

TEST(ConfigFileTest, parse_keysMatchCaseInsensitivelyAsGoJson) {
  auto f = flags_of("Name: a\nENABLE-V2: true\n");
  EXPECT_EQ(f["name"], "a");
  EXPECT_EQ(f["enable-v2"], "true");
}

TEST(ConfigFileTest, parse_keyGivenTwiceRefused) {
  auto e = error_of("name: a\ndata-dir: d\nNAME: b\n");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.message, "key \"NAME\" given twice (first on line 1)");
}

TEST(ConfigFileTest, parse_notYamlOrNotAMap) {
  auto e = error_of("name: [unclosed\n");
  EXPECT_GT(e.line, 0);
  EXPECT_EQ(e.message.rfind("not YAML: line ", 0), 0u) << e.message;
  e = error_of("a: b\n  c: d\n");
  EXPECT_EQ(e.message.rfind("not YAML: line 2", 0), 0u) << e.message;
  e = error_of("hello\n");
  EXPECT_EQ(e.line, 0);
  EXPECT_EQ(e.message, "expected a map of settings (key: value), found the string \"hello\"");
  e = error_of("- a\n- b\n");
  EXPECT_EQ(e.message, "expected a map of settings (key: value), found a list");
}

TEST(ConfigFileTest, parse_transportSecurityMapsToTlsFlags) {
  auto f = flags_of(
      "client-transport-security:\n"
      "  cert-file: /c.crt\n"
      "  key-file: /c.key\n"
      "  client-cert-auth: true\n"
      "  trusted-ca-file: /ca.crt\n"
      "  auto-tls: false\n"
      "peer-transport-security:\n"
      "  cert-file: /p.crt\n"
      "  auto-tls: true\n"
      "  key-file:\n");
  EXPECT_EQ(f, (std::map<std::string, std::string>{{"cert-file", "/c.crt"},
                                                   {"key-file", "/c.key"},
                                                   {"client-cert-auth", "true"},
                                                   {"trusted-ca-file", "/ca.crt"},
                                                   {"auto-tls", "false"},
                                                   {"peer-cert-file", "/p.crt"},
                                                   {"peer-auto-tls", "true"}}));
  auto s = settings("peer-transport-security:\n  cert-file: /p.crt\n");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].key, "peer-transport-security.cert-file");
  EXPECT_EQ(s[0].line, 2);
}

TEST(ConfigFileTest, parse_listsJoinedAsTheFlagTakesThem) {
  auto f = flags_of("log-outputs: [stderr, /var/log/kvd.log]\ncipher-suites:\n"
                    "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n");
  EXPECT_EQ(f["log-outputs"], "stderr,/var/log/kvd.log");
  EXPECT_EQ(f["cipher-suites"],
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
  EXPECT_TRUE(flags_of("log-outputs: []\n").empty());
}

// --- The file through parse_flags ---

// A fake file system of config files.
struct Files {
  std::map<std::string, std::string> files;
  ReadFile reader() const {
    return [this](const std::string& path) -> Result<std::string> {
      auto it = files.find(path);
      if (it == files.end()) return Status::error("open " + path + ": No such file or directory");
      return it->second;
    };
  }
};

FlagsResult parse_with(const Files& fs, std::vector<std::string> args,
                       std::vector<std::string> env = {}) {
  return parse_flags(args, env, fs.reader());
}

// Every setting etcd's sample file shows, in the file and as flags: the same Flags.
TEST(ConfigFileFlagsTest, parseFlags_fileGivesWhatTheSameFlagsGive) {
  Files fs;
  fs.files["/etc/kvd.yml"] =
      "name: infra1\n"
      "data-dir: /var/lib/infra1\n"
      "wal-dir:\n"
      "snapshot-count: 10000\n"
      "heartbeat-interval: 50\n"
      "election-timeout: 500\n"
      "quota-backend-bytes: 0\n"
      "listen-peer-urls: http://10.0.0.2:2380\n"
      "listen-client-urls: http://10.0.0.2:2379,http://127.0.0.1:2379\n"
      "max-snapshots: 5\n"
      "max-wals: 5\n"
      "cors:\n"
      "initial-advertise-peer-urls: http://10.0.0.2:2380\n"
      "advertise-client-urls: http://10.0.0.2:2379\n"
      "discovery:\n"
      "discovery-fallback: 'proxy'\n"
      "initial-cluster: infra0=http://10.0.0.1:2380,infra1=http://10.0.0.2:2380\n"
      "initial-cluster-token: 'tok-1'\n"
      "initial-cluster-state: 'existing'\n"
      "strict-reconfig-check: false\n"
      "enable-v2: true\n"
      "enable-pprof: true\n"
      "proxy: 'off'\n"
      "proxy-failure-wait: 5000\n"
      "client-transport-security:\n"
      "  cert-file: /c.crt\n"
      "  key-file: /c.key\n"
      "  client-cert-auth: true\n"
      "  trusted-ca-file: /ca.crt\n"
      "  auto-tls: false\n"
      "peer-transport-security:\n"
      "  auto-tls: true\n"
      "debug: false\n"
      "log-level: warn\n"
      "logger: zap\n"
      "log-outputs: [stderr]\n"
      "pre-vote: true\n"
      "force-new-cluster: false\n"
      "auto-compaction-mode: periodic\n"
      "auto-compaction-retention: \"1\"\n";
  auto file = parse_with(fs, {"--config-file", "/etc/kvd.yml"});
  ASSERT_EQ(file.exit_code, -1) << file.err;
  auto flags = parse_with(
      fs, {"--name=infra1", "--data-dir=/var/lib/infra1", "--snapshot-count=10000",
           "--heartbeat-interval=50", "--election-timeout=500",
           "--listen-peer-urls=http://10.0.0.2:2380",
           "--listen-client-urls=http://10.0.0.2:2379,http://127.0.0.1:2379",
           "--initial-advertise-peer-urls=http://10.0.0.2:2380",
           "--advertise-client-urls=http://10.0.0.2:2379",
           "--initial-cluster=infra0=http://10.0.0.1:2380,infra1=http://10.0.0.2:2380",
           "--initial-cluster-token=tok-1", "--initial-cluster-state=existing",
           "--strict-reconfig-check=false", "--enable-v2", "--cert-file=/c.crt",
           "--key-file=/c.key", "--client-cert-auth", "--trusted-ca-file=/ca.crt",
           "--peer-auto-tls", "--log-level=warn", "--logger=zap", "--log-outputs=stderr",
           "--pre-vote"});
  ASSERT_EQ(flags.exit_code, -1) << flags.err;
  const Flags& a = file.flags;
  const Flags& b = flags.flags;
  EXPECT_EQ(a.name, "infra1");
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.data_dir, b.data_dir);
  EXPECT_EQ(a.listen_client_urls, b.listen_client_urls);
  EXPECT_EQ(a.advertise_client_urls, b.advertise_client_urls);
  EXPECT_EQ(a.listen_peer_urls, b.listen_peer_urls);
  EXPECT_EQ(a.initial_advertise_peer_urls, b.initial_advertise_peer_urls);
  EXPECT_EQ(a.initial_cluster, b.initial_cluster);
  EXPECT_EQ(a.initial_cluster_state, "existing");
  EXPECT_EQ(a.initial_cluster_token, b.initial_cluster_token);
  EXPECT_EQ(a.snapshot_count, 10000u);
  EXPECT_EQ(a.heartbeat_interval, b.heartbeat_interval);
  EXPECT_EQ(a.election_timeout, b.election_timeout);
  EXPECT_EQ(a.cors, b.cors);
  EXPECT_EQ(a.log_level, "warn");
  EXPECT_FALSE(a.strict_reconfig_check);
  EXPECT_TRUE(a.pre_vote);
  EXPECT_EQ(a.client_tls.cert_file, b.client_tls.cert_file);
  EXPECT_EQ(a.client_tls.key_file, b.client_tls.key_file);
  EXPECT_EQ(a.client_tls.trusted_ca_file, b.client_tls.trusted_ca_file);
  EXPECT_TRUE(a.client_tls.client_cert_auth);
  EXPECT_TRUE(a.peer_tls.auto_tls);
  EXPECT_EQ(a.proxy, ProxyMode::kOff);
  ASSERT_EQ(file.env_notices.size(), 1u);
  EXPECT_EQ(file.env_notices[0],
            "Loading server configuration from \"/etc/kvd.yml\". Other configuration command "
            "line flags and environment variables will be ignored if provided.");
}

TEST(ConfigFileFlagsTest, parseFlags_otherFlagsAndVariablesIgnoredAsEtcdIgnoresThem) {
  Files fs;
  fs.files["c.yml"] = "name: fromfile\n";
  auto r = parse_with(fs, {"--config-file", "c.yml", "--name", "fromflag", "--pre-vote"},
                      {"ETCD_NAME=fromenv", "ETCD_HEARTBEAT_INTERVAL=abc", "ETCD_BOGUS=1"});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.name, "fromfile");
  EXPECT_EQ(r.flags.data_dir, "fromfile.etcd");
  EXPECT_FALSE(r.flags.pre_vote);
  EXPECT_EQ(r.flags.heartbeat_interval.count(), 100);
  ASSERT_EQ(r.env_warnings.size(), 2u);
  EXPECT_EQ(r.env_warnings[0],
            "ignoring command-line flags given beside the config file: --name, --pre-vote");
  EXPECT_EQ(r.env_warnings[1], "ignoring environment variables given beside the config file: "
                               "ETCD_NAME, ETCD_HEARTBEAT_INTERVAL, ETCD_BOGUS");
  // A flag beside the file is still parsed first: a bad one stops kvd as it stops etcd.
  r = parse_with(fs, {"--config-file", "c.yml", "--heartbeat-interval", "abc"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "invalid value \"abc\" for flag -heartbeat-interval: parse error\n");
}

TEST(ConfigFileFlagsTest, parseFlags_configFileFromEnvironment) {
  Files fs;
  fs.files["env.yml"] = "name: e\n";
  fs.files["flag.yml"] = "name: f\n";
  auto r = parse_with(fs, {}, {"ETCD_CONFIG_FILE=env.yml", "ETCD_NAME=x"});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.name, "e");
  r = parse_with(fs, {"--config-file=flag.yml"}, {"ETCD_CONFIG_FILE=env.yml"});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.name, "f");  // the flag wins; no conflict, the variables are ignored
}

TEST(ConfigFileFlagsTest, parseFlags_badValuesGiveTheFlagsTextNamingFileLineAndKey) {
  struct Case {
    const char* yaml;
    const char* err;  // after `kvd: config file "c.yml", `
  };
  const Case cases[] = {
      {"name: a\nproxy: bogus\n", "line 2: invalid value \"bogus\" for proxy: invalid value"},
      {"listen-client-urls: foo\n",
       "line 1: invalid value \"foo\" for listen-client-urls: URL scheme must be http, https, "
       "unix, or unixs: foo"},
      {"initial-cluster-state: bogus\n",
       "line 1: invalid value \"bogus\" for initial-cluster-state: invalid value"},
      {"\nlog-level: loud\n", "line 2: invalid value \"loud\" for log-level: invalid value"},
      {"peer-transport-security:\n  client-cert-auth: 1\n",
       "line 2: peer-transport-security.client-cert-auth must be a boolean (true or false), not "
       "the number 1"},
      {"snapshot-count: -1\n", "line 1: invalid value \"-1\" for snapshot-count: parse error"},
      // Beyond 64 bits: Go's YAML decoder makes it a float.
      {"snapshot-count: 99999999999999999999\n",
       "line 1: snapshot-count must be an integer, not the number 99999999999999999999"},
  };
  for (const auto& c : cases) {
    Files fs;
    fs.files["c.yml"] = c.yaml;
    auto r = parse_with(fs, {"--config-file", "c.yml"});
    EXPECT_EQ(r.exit_code, 1) << c.yaml;
    EXPECT_EQ(r.err, std::string("kvd: config file \"c.yml\", ") + c.err + "\n");
  }
  // The same checks and texts as the flags'.
  Files none;
  EXPECT_EQ(parse_with(none, {"--proxy", "bogus"}).err,
            "invalid value \"bogus\" for flag -proxy: invalid value\n");
  EXPECT_EQ(parse_with(none, {"--snapshot-count", "-1"}).err,
            "invalid value \"-1\" for flag -snapshot-count: parse error\n");
}

TEST(ConfigFileFlagsTest, parseFlags_missingOrBrokenFileNamed) {
  Files fs;
  fs.files["bad.yml"] = "name: a\nfoo: 1\n";
  fs.files["notyaml.yml"] = "name: [a\n";
  auto r = parse_with(fs, {"--config-file", "/nonexistent.yml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "kvd: cannot load config file: open /nonexistent.yml: No such file or directory\n");
  r = parse_with(fs, {"--config-file", "bad.yml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "kvd: config file \"bad.yml\", line 2: unknown key \"foo\"\n");
  r = parse_with(fs, {"--config-file", "notyaml.yml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("kvd: config file \"notyaml.yml\", line ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("not YAML"), std::string::npos) << r.err;
  // --version still answers, as etcd's does, whatever the file.
  r = parse_with(fs, {"--config-file", "bad.yml", "--version"});
  EXPECT_EQ(r.exit_code, 0);
}

TEST(ConfigFileFlagsTest, parseFlags_defaultsAsEtcdsFileMode) {
  Files fs;
  // etcd's file mode advertises the default client URL when only listen-client-urls is set
  // (the flags refuse that), and derives initial-cluster from the name and advertised peer URLs.
  fs.files["m.yml"] = "name: m\nlisten-client-urls: http://127.0.0.1:4001\n"
                      "listen-peer-urls: http://127.0.0.1:4002\n"
                      "initial-advertise-peer-urls: http://127.0.0.1:4002\n";
  auto r = parse_with(fs, {"--config-file", "m.yml"});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.advertise_client_urls, std::vector<std::string>{"http://localhost:2379"});
  ASSERT_EQ(r.flags.initial_cluster.size(), 1u);
  EXPECT_EQ(r.flags.initial_cluster[0],
            (std::pair<std::string, std::string>{"m", "http://127.0.0.1:4002"}));
  EXPECT_EQ(r.flags.data_dir, "m.etcd");
  // The name must still be in the initial cluster.
  fs.files["z.yml"] = "name: z\ninitial-cluster: m=http://127.0.0.1:4002\n";
  r = parse_with(fs, {"--config-file", "z.yml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("couldn't find local name \"z\""), std::string::npos) << r.err;
  // YAML 1.1 makes n, y, no, on... booleans: etcd refuses such a name, and so does kvd.
  fs.files["n.yml"] = "name: n\n";
  EXPECT_EQ(parse_with(fs, {"--config-file", "n.yml"}).err,
            "kvd: config file \"n.yml\", line 1: name must be a string, not the boolean n "
            "(quote it: \"n\")\n");
}

TEST(ConfigFileFlagsTest, parseFlags_proxyFromFile) {
  Files fs;
  fs.files["p.yml"] =
      "proxy: readonly\nlisten-client-urls: http://127.0.0.1:8080\n"
      "initial-cluster: a=http://10.0.0.1:2380,b=http://10.0.0.2:2380\n"
      "proxy-refresh-interval: 1000\nproxy-read-timeout: 0\n";
  auto r = parse_with(fs, {"--config-file", "p.yml"});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.proxy, ProxyMode::kReadonly);
  EXPECT_EQ(r.flags.proxy_refresh_interval.count(), 1000);
  EXPECT_EQ(r.flags.initial_cluster.size(), 2u);
  EXPECT_EQ(r.flags.listen_client_urls, std::vector<std::string>{"http://127.0.0.1:8080"});
}

}  // namespace
}  // namespace kvd::server
