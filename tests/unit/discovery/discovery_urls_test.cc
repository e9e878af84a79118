// The pure parts of server/discovery/: etcd's URLsMap parsing of the discovered cluster and the
// service URL taken from a discovery URL. The protocol itself runs against real kvd and etcd
// processes in tests/e2e/test_discovery.py.
#include <gtest/gtest.h>

#include "server/discovery/v2_discovery.h"

namespace kvd::server::discovery {
namespace {

TEST(DiscoveryUrlsTest, parse_urls_map_keeps_order_and_repeated_names) {
  auto m = parse_urls_map("b=http://10.0.0.2:2380,a=http://10.0.0.1:2380,a=https://10.0.0.1:2381");
  ASSERT_TRUE(m.has_value());
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[0], (std::pair<std::string, std::string>{"b", "http://10.0.0.2:2380"}));
  EXPECT_EQ((*m)[2].second, "https://10.0.0.1:2381");
  EXPECT_EQ(distinct_names(*m), 2u);
}

TEST(DiscoveryUrlsTest, parse_urls_map_rejects_what_etcd_rejects) {
  EXPECT_FALSE(parse_urls_map("a").has_value());                           // no '='
  EXPECT_FALSE(parse_urls_map("a=10.0.0.1:2380").has_value());             // no scheme
  EXPECT_FALSE(parse_urls_map("a=http://10.0.0.1:2380/x").has_value());    // a path
  EXPECT_FALSE(parse_urls_map("a=http://10.0.0.1").has_value());           // no port
  EXPECT_FALSE(parse_urls_map("a=http://10.0.0.1:2380,").has_value());     // empty entry
}

TEST(DiscoveryUrlsTest, service_url_is_scheme_host_and_port) {
  EXPECT_EQ(service_url("http://127.0.0.1:2379/v2/keys/discovery/abc"), "http://127.0.0.1:2379");
  EXPECT_EQ(service_url("https://discovery.example.com/v2/keys/d/t"),
            "https://discovery.example.com:443");
  EXPECT_EQ(service_url("http://[::1]:4001/v2/keys/d/t"), "http://[::1]:4001");
  EXPECT_EQ(service_url("http://127.0.0.1:2379"), "");  // no token
  EXPECT_EQ(service_url("127.0.0.1:2379/v2/keys/d"), "");
  EXPECT_EQ(service_url("ftp://h:1/v2/keys/d"), "");
}

}  // namespace
}  // namespace kvd::server::discovery
