#include "server/flags.h"

#include <gtest/gtest.h>

namespace kvd::server {
namespace {

FlagsResult parse(std::vector<std::string> args, std::vector<std::string> env = {}) {
  return parse_flags(args, env);
}

TEST(FlagsTest, parse_defaultsMatchEtcd) {
  auto r = parse({});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.name, "default");
  EXPECT_EQ(r.flags.data_dir, "default.etcd");
  EXPECT_EQ(r.flags.listen_client_urls, std::vector<std::string>{"http://localhost:2379"});
  EXPECT_EQ(r.flags.snapshot_count, 100000u);
  EXPECT_EQ(r.flags.heartbeat_interval.count(), 100);
  EXPECT_EQ(r.flags.election_timeout.count(), 1000);
  EXPECT_EQ(r.flags.initial_cluster_token, "etcd-cluster");
  ASSERT_EQ(r.flags.initial_cluster.size(), 1u);
  EXPECT_EQ(r.flags.initial_cluster[0].first, "default");
  EXPECT_EQ(r.flags.initial_cluster[0].second, "http://localhost:2380");
}

TEST(FlagsTest, parse_allGoSpellings) {
  auto r = parse({"-name", "etcd0", "--data-dir=/d", "--initial-cluster",
                  "etcd0=http://10.0.0.1:2380,etcd1=http://10.0.0.2:2380",
                  "-initial-advertise-peer-urls=http://10.0.0.1:2380",
                  "--listen-client-urls", "http://0.0.0.0:2379,http://127.0.0.1:4001",
                  "-advertise-client-urls", "http://10.0.0.1:2379", "--enable-v2"});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.name, "etcd0");
  EXPECT_EQ(r.flags.data_dir, "/d");
  EXPECT_EQ(r.flags.listen_client_urls.size(), 2u);
  ASSERT_EQ(r.flags.initial_cluster.size(), 2u);
  EXPECT_EQ(r.flags.initial_cluster[1].first, "etcd1");
}

TEST(FlagsTest, parse_dataDirDefaultsFromName) {
  auto r = parse({"--name", "etcd1", "--initial-cluster", "etcd1=http://127.0.0.1:2380"});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.data_dir, "etcd1.etcd");
}

TEST(FlagsTest, parse_unknownFlagExits2NamingIt) {
  auto r = parse({"--bogus-flag"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "flag provided but not defined: -bogus-flag\n");
}

TEST(FlagsTest, parse_badValuesExit2) {
  auto r = parse({"--initial-cluster-state", "bogus"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "invalid value \"bogus\" for flag -initial-cluster-state: invalid value\n");
  r = parse({"--snapshot-count", "abc"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "invalid value \"abc\" for flag -snapshot-count: parse error\n");
  r = parse({"--enable-v2=maybe"});
  EXPECT_EQ(r.err, "invalid boolean value \"maybe\" for -enable-v2: parse error\n");
  r = parse({"--listen-client-urls", "foo"});
  EXPECT_EQ(r.err,
            "invalid value \"foo\" for flag -listen-client-urls: URL scheme must be http, "
            "https, unix, or unixs: foo\n");
  r = parse({"--listen-client-urls", "http://127.0.0.1"});
  EXPECT_EQ(r.exit_code, 2);
  r = parse({"--listen-client-urls", "http://127.0.0.1:1/path"});
  EXPECT_EQ(r.exit_code, 2);
  r = parse({"-name"});
  EXPECT_EQ(r.err, "flag needs an argument: -name\n");
  r = parse({"---name", "x"});
  EXPECT_EQ(r.err, "bad flag syntax: ---name\n");
}

TEST(FlagsTest, parse_positionalArgumentRejected) {
  auto r = parse({"extra"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("'extra' is not a valid flag"), std::string::npos);
  r = parse({"--enable-v2", "false"});  // Go bools never take a separate value
  EXPECT_EQ(r.exit_code, 1);
}

TEST(FlagsTest, parse_environmentVariables) {
  auto r = parse({}, {"ETCD_NAME=envname", "ETCD_INITIAL_CLUSTER=envname=http://127.0.0.1:2380",
                      "ETCD_BOGUS=1", "PATH=/bin"});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.name, "envname");
  EXPECT_EQ(r.env_notices.size(), 2u);
  ASSERT_EQ(r.env_warnings.size(), 1u);
  EXPECT_EQ(r.env_warnings[0], "unrecognized environment variable ETCD_BOGUS=1");
}

TEST(FlagsTest, parse_flagAndEnvConflictIsFatal) {
  auto r = parse({"--name", "y"}, {"ETCD_NAME=x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("conflicting environment variable \"ETCD_NAME\""), std::string::npos);
}

TEST(FlagsTest, parse_nameMustBeInInitialCluster) {
  auto r = parse({"--name", "a", "--initial-cluster", "b=http://127.0.0.1:2380"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("couldn't find local name \"a\""), std::string::npos);
}

TEST(FlagsTest, parse_advertiseRequiredWithListen) {
  auto r = parse({"--listen-client-urls", "http://127.0.0.1:2379"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--advertise-client-urls is required"), std::string::npos);
}

TEST(FlagsTest, parse_versionAndHelp) {
  auto r = parse({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("etcd Version: 3.4.23\n", 0), 0u);
  r = parse({"-h"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--listen-client-urls"), std::string::npos);
}

TEST(FlagsTest, parse_proxyModes) {
  auto r = parse({"--proxy", "on", "--listen-client-urls", "http://127.0.0.1:8080"});
  ASSERT_EQ(r.exit_code, -1) << r.err;
  EXPECT_EQ(r.flags.proxy, ProxyMode::kOn);
  r = parse({"--proxy=readonly", "--proxy-failure-wait", "100"});
  EXPECT_EQ(r.flags.proxy, ProxyMode::kReadonly);
  EXPECT_EQ(r.flags.proxy_failure_wait.count(), 100);
}

}  // namespace
}  // namespace kvd::server
