// EndpointSet's selection and failure-wait rules, URL parsing, and the formats the proxy reads
// (spec v2-proxy.md §2-§3).
#include "server/proxy/endpoints.h"

#include <gtest/gtest.h>

namespace kvd::server::proxy {
namespace {

using std::chrono::milliseconds;

std::shared_ptr<Endpoint> make(const std::string& url) {
  auto ep = std::make_shared<Endpoint>();
  ep->url = url;
  return ep;
}

std::vector<std::string> urls_of(const std::vector<std::shared_ptr<Endpoint>>& eps) {
  std::vector<std::string> out;
  for (const auto& e : eps) out.push_back(e->url);
  return out;
}

TEST(EndpointSetTest, available_keepsListOrder) {
  EndpointSet set(milliseconds(5000));
  set.replace({"http://b:2", "http://a:1", "http://c:3"}, make);
  EXPECT_EQ(urls_of(set.available(Clock::now())),
            (std::vector<std::string>{"http://b:2", "http://a:1", "http://c:3"}));
}

TEST(EndpointSetTest, markFailed_skippedForFailureWaitThenBack) {
  EndpointSet set(milliseconds(5000));
  set.replace({"http://a:1", "http://b:2"}, make);
  const auto t0 = Clock::now();
  auto eps = set.available(t0);
  set.mark_failed(*eps[0], t0);
  EXPECT_EQ(urls_of(set.available(t0)), std::vector<std::string>{"http://b:2"});
  EXPECT_EQ(urls_of(set.available(t0 + milliseconds(4999))), std::vector<std::string>{"http://b:2"});
  EXPECT_EQ(urls_of(set.available(t0 + milliseconds(5000))),
            (std::vector<std::string>{"http://a:1", "http://b:2"}));
  // Failure does not reorder: the first endpoint is first again once it is back.
  EXPECT_EQ(set.urls(), (std::vector<std::string>{"http://a:1", "http://b:2"}));
}

TEST(EndpointSetTest, markFailed_allFailedMeansNoneAvailable) {
  EndpointSet set(milliseconds(1000));
  set.replace({"http://a:1", "http://b:2"}, make);
  const auto t0 = Clock::now();
  for (const auto& ep : set.available(t0)) set.mark_failed(*ep, t0);
  EXPECT_TRUE(set.available(t0).empty());
  EXPECT_EQ(set.size(), 2u);
}

TEST(EndpointSetTest, replace_keepsObjectsOfKeptUrlsAndResetsFailures) {
  EndpointSet set(milliseconds(5000));
  int made = 0;
  auto counting = [&](const std::string& url) {
    ++made;
    return make(url);
  };
  set.replace({"http://a:1", "http://b:2"}, counting);
  const auto t0 = Clock::now();
  auto before = set.available(t0);
  set.mark_failed(*before[0], t0);
  set.replace({"http://c:3", "http://a:1"}, counting);
  EXPECT_EQ(made, 3);
  auto after = set.available(t0);
  ASSERT_EQ(after.size(), 2u);  // a refresh makes every endpoint available again, as etcd's
  EXPECT_EQ(after[1].get(), before[0].get());  // same object: its pool survives
  EXPECT_EQ(after[0]->url, "http://c:3");
}

TEST(EndpointSetTest, replace_dropsDuplicatesAndUnusable) {
  EndpointSet set(milliseconds(5000));
  set.replace({"http://a:1", "http://a:1", "bad"}, [](const std::string& url) {
    return url == "bad" ? nullptr : make(url);
  });
  EXPECT_EQ(set.urls(), std::vector<std::string>{"http://a:1"});
  set.replace({}, make);
  EXPECT_TRUE(set.available(Clock::now()).empty());
}

TEST(EndpointSetTest, markFailed_ofRemovedEndpointIsNoop) {
  EndpointSet set(milliseconds(5000));
  set.replace({"http://a:1"}, make);
  auto old = set.available(Clock::now());
  set.replace({"http://b:2"}, make);
  set.mark_failed(*old[0], Clock::now());
  EXPECT_EQ(set.available(Clock::now()).size(), 1u);
}

TEST(EndpointSetTest, setSilent_leftOutUntilAnsweringAgainAcrossRefreshes) {
  EndpointSet set(milliseconds(5000));
  set.replace({"http://a:1", "http://b:2", "http://c:3"}, make);
  const auto now = Clock::now();
  EXPECT_TRUE(set.set_silent("http://a:1", true));
  EXPECT_FALSE(set.set_silent("http://a:1", true));  // no change
  EXPECT_EQ(urls_of(set.available(now)), (std::vector<std::string>{"http://b:2", "http://c:3"}));
  EXPECT_FALSE(set.is_silent(*make("http://a:1")));  // another object, not in the set
  // A refresh keeps what the prober learnt (unlike failures, which it resets).
  set.replace({"http://c:3", "http://a:1", "http://b:2"}, make);
  EXPECT_EQ(urls_of(set.available(now)), (std::vector<std::string>{"http://c:3", "http://b:2"}));
  EXPECT_TRUE(set.set_silent("http://a:1", false));
  EXPECT_EQ(urls_of(set.available(now)),
            (std::vector<std::string>{"http://c:3", "http://a:1", "http://b:2"}));
}

TEST(EndpointSetTest, setSilent_allSilentStillOffered) {
  EndpointSet set(milliseconds(5000));
  set.replace({"http://a:1", "http://b:2"}, make);
  const auto now = Clock::now();
  set.set_silent("http://a:1", true);
  set.set_silent("http://b:2", true);
  // A prober wrong about every member must not refuse every request.
  EXPECT_EQ(urls_of(set.available(now)), (std::vector<std::string>{"http://a:1", "http://b:2"}));
  auto eps = set.available(now);
  EXPECT_TRUE(set.is_silent(*eps[0]));
  set.mark_failed(*eps[0], now);  // failed ones stay out even then
  EXPECT_EQ(urls_of(set.available(now)), std::vector<std::string>{"http://b:2"});
}

TEST(ParseHttpUrlTest, forms) {
  auto a = parse_http_url("http://127.0.0.1:2379");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 2379);
  auto b = parse_http_url("http://example.com/");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->port, 80);
  auto c = parse_http_url("http://[::1]:80");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "::1");
  EXPECT_FALSE(c->tls);
  auto d = parse_http_url("https://a:1");
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->tls);
  EXPECT_EQ(d->port, 1);
  auto e = parse_http_url("https://a");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->port, 443);
  EXPECT_FALSE(parse_http_url("http://a:1/path"));
  EXPECT_FALSE(parse_http_url("http://a:99999"));
  EXPECT_FALSE(parse_http_url("http://:1"));
}

TEST(MembersJsonTest, parse_sortedUrls) {
  auto m = parse_members_json(
      R"([{"id":1,"name":"b","peerURLs":["http://b:2380"],"clientURLs":["http://b:2379"]},)"
      R"({"id":2,"name":"a","peerURLs":["http://a:2380"],"clientURLs":["http://a:2379","http://b:2379"]},)"
      R"({"id":3,"name":"","peerURLs":["http://c:2380"],"clientURLs":[]}])");
  ASSERT_TRUE(m);
  EXPECT_EQ(all_client_urls(*m), (std::vector<std::string>{"http://a:2379", "http://b:2379"}));
  EXPECT_EQ(all_peer_urls(*m),
            (std::vector<std::string>{"http://a:2380", "http://b:2380", "http://c:2380"}));
  EXPECT_FALSE(parse_members_json("{}"));
  EXPECT_FALSE(parse_members_json("[{\"peerURLs\":\"x\"}]"));
  EXPECT_FALSE(parse_members_json("not json"));
}

TEST(ClusterFileTest, roundTrip_etcdFormat) {
  std::string f = format_cluster_file({"http://127.0.0.1:2380", "http://127.0.0.1:2480"});
  EXPECT_EQ(f, R"({"PeerURLs":["http://127.0.0.1:2380","http://127.0.0.1:2480"]})");
  auto back = parse_cluster_file(f);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->size(), 2u);
}

TEST(ClusterFileTest, parse_corrupt) {
  EXPECT_FALSE(parse_cluster_file(""));
  EXPECT_FALSE(parse_cluster_file(R"({"PeerURLs":["http://a:1")"));
  EXPECT_FALSE(parse_cluster_file(R"({"peers":[]})"));
  EXPECT_FALSE(parse_cluster_file(R"({"PeerURLs":[1]})"));
  EXPECT_FALSE(parse_cluster_file("[]"));
}

}  // namespace
}  // namespace kvd::server::proxy
