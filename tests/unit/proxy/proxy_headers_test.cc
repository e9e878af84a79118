// Header filtering between client, proxy and member (spec v2-proxy.md §5).
#include "server/proxy/headers.h"

#include <gtest/gtest.h>

namespace kvd::server::proxy {
namespace {

TEST(ProxyHeadersTest, isHopByHop_caseInsensitive) {
  for (auto n : {"Connection", "keep-alive", "Proxy-Authenticate", "proxy-authorization", "TE",
                 "Trailers", "transfer-encoding", "Upgrade"})
    EXPECT_TRUE(is_hop_by_hop(n)) << n;
  for (auto n : {"Host", "Authorization", "Content-Type", "X-Etcd-Index", "Trailer"})
    EXPECT_FALSE(is_hop_by_hop(n)) << n;
}

TEST(ProxyHeadersTest, passResponseHeader_dropsFramingAndMemberCors) {
  EXPECT_TRUE(pass_response_header("Content-Type"));
  EXPECT_TRUE(pass_response_header("X-Etcd-Cluster-Id"));
  EXPECT_TRUE(pass_response_header("Date"));
  EXPECT_TRUE(pass_response_header("Access-Control-Expose-Headers"));
  EXPECT_FALSE(pass_response_header("Content-Length"));
  EXPECT_FALSE(pass_response_header("Transfer-Encoding"));
  EXPECT_FALSE(pass_response_header("Connection"));
  EXPECT_FALSE(pass_response_header("access-control-allow-origin"));
  EXPECT_FALSE(pass_response_header("Access-Control-Allow-Methods"));
}

TEST(ProxyHeadersTest, buildUpstreamRequest_filtersAndForwards) {
  std::string raw =
      "PUT /v2/keys/a?ttl=5 HTTP/1.0\r\n"
      "Host: proxy:8080\r\n"
      "Connection: keep-alive, X-Private\r\n"
      "X-Private: 1\r\n"
      "Keep-Alive: timeout=5\r\n"
      "Authorization: Basic eA==\r\n"
      "X-Forwarded-For: 1.2.3.4\r\n"
      "X-Forwarded-For: 5.6.7.8\r\n"
      "Content-Length: 7\r\n"
      "Expect: 100-continue\r\n"
      "Content-Type: application/x-www-form-urlencoded\r\n"
      "\r\n";
  std::string out = build_upstream_request("PUT", "/v2/keys/a?ttl=5", raw, "value=1", "127.0.0.1");
  EXPECT_EQ(out,
            "PUT /v2/keys/a?ttl=5 HTTP/1.1\r\n"
            "Host: proxy:8080\r\n"
            "Authorization: Basic eA==\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "X-Forwarded-For: 1.2.3.4, 5.6.7.8, 127.0.0.1\r\n"
            "Content-Length: 7\r\n"
            "\r\n"
            "value=1");
}

TEST(ProxyHeadersTest, buildUpstreamRequest_noBodyNoLength) {
  std::string out = build_upstream_request("GET", "/version", "GET /version HTTP/1.1\r\nHost: h\r\n\r\n",
                                           "", "10.0.0.1");
  EXPECT_EQ(out, "GET /version HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n");
}

TEST(ProxyHeadersTest, buildUpstreamRequest_chunkedBodyGetsLength) {
  std::string out = build_upstream_request(
      "POST", "/v2/keys/q", "POST /v2/keys/q HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
      "", "");
  EXPECT_EQ(out, "POST /v2/keys/q HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
}

TEST(ProxyHeadersTest, queryFlag_goParseBool) {
  EXPECT_TRUE(query_flag("/v2/keys/a?wait=true", "wait"));
  EXPECT_TRUE(query_flag("/v2/keys/a?recursive=true&wait=1", "wait"));
  EXPECT_TRUE(query_flag("/v2/keys/a?wait=T&wait=false", "wait"));
  EXPECT_FALSE(query_flag("/v2/keys/a?wait=false&wait=true", "wait"));
  EXPECT_FALSE(query_flag("/v2/keys/a?waitIndex=3", "wait"));
  EXPECT_FALSE(query_flag("/v2/keys/a", "wait"));
  EXPECT_FALSE(query_flag("/v2/keys/a?wait=yes", "wait"));
}

TEST(ProxyHeadersTest, queryUint_firstDecimalValue) {
  EXPECT_EQ(query_uint("/v2/keys/a?wait=true&waitIndex=42", "waitIndex"), 42u);
  EXPECT_EQ(query_uint("/v2/keys/a?waitIndex=7&waitIndex=9", "waitIndex"), 7u);
  EXPECT_EQ(query_uint("/v2/keys/a?waitIndex=", "waitIndex"), std::nullopt);
  EXPECT_EQ(query_uint("/v2/keys/a?waitIndex=-1", "waitIndex"), std::nullopt);
  EXPECT_EQ(query_uint("/v2/keys/a?waitIndex=1x", "waitIndex"), std::nullopt);
  EXPECT_EQ(query_uint("/v2/keys/a", "waitIndex"), std::nullopt);
}

TEST(ProxyHeadersTest, withQueryParam_replacesEveryOccurrence) {
  EXPECT_EQ(with_query_param("/v2/keys/a?wait=true", "waitIndex", "5"),
            "/v2/keys/a?wait=true&waitIndex=5");
  EXPECT_EQ(with_query_param("/v2/keys/a?waitIndex=1&wait=true&waitIndex=2", "waitIndex", "5"),
            "/v2/keys/a?wait=true&waitIndex=5");
  EXPECT_EQ(with_query_param("/v2/keys/a", "waitIndex", "5"), "/v2/keys/a?waitIndex=5");
}

}  // namespace
}  // namespace kvd::server::proxy
