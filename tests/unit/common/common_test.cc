// The shared helpers of common/: the codec, the Go-compatible functions (against values Go
// gives), URLs, ids, the GET /members format and the version strings.
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "common/codec.h"
#include "common/go.h"
#include "common/ids.h"
#include "common/members.h"
#include "common/url.h"
#include "common/version.h"

namespace kvd {
namespace {

TEST(CodecTest, roundTripsEveryFieldAndFailsPastTheEnd) {
  std::string b;
  codec::put_u8(b, 7);
  codec::put_u16(b, 0xBEEF);
  codec::put_u32(b, 0xDEADBEEF);
  codec::put_u64(b, 0x0102030405060708ULL);
  codec::put_i64(b, -5);
  codec::put_bool(b, true);
  codec::put_bytes(b, std::string("ab\0c", 4));
  codec::put_u64_be(b, 0x0102030405060708ULL);
  EXPECT_EQ(b.substr(1, 2), "\xEF\xBE");  // little-endian
  EXPECT_EQ(b.substr(b.size() - 8), std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  codec::Reader r(b);
  uint8_t u8 = 0;
  uint16_t u16 = 0;
  uint32_t u32 = 0;
  uint64_t u64 = 0, be = 0;
  int64_t i64 = 0;
  bool flag = false;
  std::string bytes;
  ASSERT_TRUE(r.u8(&u8) && r.u16(&u16) && r.u32(&u32) && r.u64(&u64) && r.i64(&i64) &&
              r.boolean(&flag) && r.bytes(&bytes) && r.u64_be(&be));
  EXPECT_TRUE(r.done());
  EXPECT_EQ(u8, 7);
  EXPECT_EQ(u16, 0xBEEF);
  EXPECT_EQ(u32, 0xDEADBEEFu);
  EXPECT_EQ(u64, 0x0102030405060708ULL);
  EXPECT_EQ(i64, -5);
  EXPECT_TRUE(flag);
  EXPECT_EQ(bytes, std::string("ab\0c", 4));
  EXPECT_EQ(be, 0x0102030405060708ULL);
  EXPECT_FALSE(r.u8(&u8));
  EXPECT_FALSE(r.ok());
}

TEST(CodecTest, truncatedLengthAndBadBooleanFailAndStayFailed) {
  std::string b;
  codec::put_u32(b, 100);  // a length with only 2 bytes behind it
  b += "xy";
  codec::Reader r(b);
  std::string s;
  EXPECT_FALSE(r.bytes(&s));
  uint8_t x = 0;
  EXPECT_FALSE(r.u8(&x));  // failed readers stay failed
  const std::string two(1, '\x02');
  codec::Reader r2(two);
  bool v = false;
  EXPECT_FALSE(r2.boolean(&v));
  EXPECT_FALSE(r2.done());
}

TEST(GoTest, quoteAsStrconvQuote) {
  EXPECT_EQ(go::quote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(go::quote("\n\t\x01\x7f"), R"("\n\t\x01\x7f")");
  EXPECT_EQ(go::quote("\xff"), R"("\xff")");
  EXPECT_EQ(go::quote("\xc2\x85"), R"("\u0085")");  // U+0085 is not printable
  EXPECT_EQ(go::quote("\xc3\xa9"), "\"\xc3\xa9\"");  // é is
}

TEST(GoTest, jsonStringsAsEncodingJson) {
  EXPECT_EQ(go::json_quote("<a&b>"), R"("\u003ca\u0026b\u003e")");
  EXPECT_EQ(go::json_quote("\xe2\x80\xa8\xff"), R"("\u2028\ufffd")");
  EXPECT_EQ(go::json_quote("q\"\\\n"), R"("q\"\\\n")");
}

TEST(GoTest, parseBoolUintIntAsStrconv) {
  EXPECT_EQ(go::parse_bool("T"), true);
  EXPECT_EQ(go::parse_bool("False"), false);
  EXPECT_FALSE(go::parse_bool("yes"));
  EXPECT_EQ(go::parse_uint("0x1F"), 31u);
  EXPECT_EQ(go::parse_uint("017"), 15u);
  EXPECT_EQ(go::parse_uint("0b101"), 5u);
  EXPECT_EQ(go::parse_uint("1_000"), 1000u);
  EXPECT_FALSE(go::parse_uint("_1"));
  EXPECT_FALSE(go::parse_uint("1__0"));
  EXPECT_FALSE(go::parse_uint(""));
  EXPECT_FALSE(go::parse_uint("0x"));
  EXPECT_FALSE(go::parse_uint("18446744073709551616"));
  EXPECT_EQ(go::parse_uint("18446744073709551615"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(go::parse_int("-9223372036854775808"), std::numeric_limits<int64_t>::min());
  EXPECT_FALSE(go::parse_int("9223372036854775808"));
  EXPECT_EQ(go::parse_int("+12"), 12);
}

TEST(GoTest, durationsAsTimePackage) {
  EXPECT_EQ(go::parse_duration("1m30s"), std::chrono::seconds(90));
  EXPECT_EQ(go::parse_duration("1.5ms"), std::chrono::microseconds(1500));
  EXPECT_EQ(go::parse_duration("0"), std::chrono::nanoseconds(0));
  EXPECT_FALSE(go::parse_duration("5"));
  EXPECT_FALSE(go::parse_duration("1.2.3s"));
  EXPECT_EQ(go::format_duration(0), "0s");
  EXPECT_EQ(go::format_duration(1500000), "1.5ms");
  EXPECT_EQ(go::format_duration(3723500000000LL), "1h2m3.5s");
  EXPECT_EQ(go::format_duration(-1000), "-1µs");
}

TEST(GoTest, timesAsRfc3339NanoAndHttpDates) {
  std::string out;
  go::append_rfc3339_nano(out, 1763895030130989120LL);
  EXPECT_EQ(out, "2025-11-23T10:50:30.13098912Z");
  EXPECT_EQ(go::format_rfc3339_nano(std::chrono::system_clock::time_point{}),
            "1970-01-01T00:00:00Z");
  EXPECT_EQ(go::format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(go::format_float(1.5), "1.5");
  EXPECT_EQ(go::format_float(0.000123), "0.000123");
  EXPECT_EQ(go::escape_path("/a b/%c"), "/a%20b/%25c");
  EXPECT_EQ(go::query_escape("a b&c"), "a+b%26c");
}

TEST(UrlTest, parseAsGoUrlParse) {
  std::string err;
  auto u = url::parse("http://[::1]:2379/v2", &err);
  ASSERT_TRUE(u) << err;
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "2379");
  EXPECT_EQ(u->path, "/v2");
  EXPECT_FALSE(url::parse("127.0.0.1:22379", &err));
  EXPECT_EQ(err, R"(parse "127.0.0.1:22379": first path segment in URL cannot contain colon)");
  auto d = url::parse("//h:1", &err, /*default_http=*/true);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->text, "http://h:1");
}

TEST(UrlTest, checkAsEtcdFlags) {
  EXPECT_EQ(url::check("http://127.0.0.1:2379"), "");
  EXPECT_EQ(url::check("ftp://a:1"), "URL scheme must be http, https, unix, or unixs: ftp://a:1");
  EXPECT_EQ(url::check("http://a:1/x"), "URL must not contain a path: http://a:1/x");
  EXPECT_EQ(url::check("http://a"), "URL address does not have the form \"host:port\": http://a");
}

TEST(UrlTest, parseAddressForBindingAndDialing) {
  std::string why;
  auto a = url::parse_address("http://[::1]:2380/x", &why);
  ASSERT_TRUE(a) << why;
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port_number, 2380);
  EXPECT_EQ(a->path, "/x");
  auto b = url::parse_address("http://h", &why);
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->port.empty());
  EXPECT_FALSE(a->tls);
  auto c = url::parse_address("https://h:1", &why);
  ASSERT_TRUE(c) << why;
  EXPECT_TRUE(c->tls);
  EXPECT_EQ(c->host, "h");
  EXPECT_EQ(c->port_number, 1);
  EXPECT_FALSE(url::parse_address("unixs://h:1", &why));
  EXPECT_EQ(why, "unix sockets are not supported by kvd");
  EXPECT_FALSE(url::parse_address("http://h:99999", &why));
  EXPECT_EQ(why, "invalid port in URL");
}

TEST(IdsTest, hexIdsAsEtcdWritesAndReadsThem) {
  EXPECT_EQ(hex_id(0), "0");
  EXPECT_EQ(hex_id(0x8e9e05c52164694dULL), "8e9e05c52164694d");
  EXPECT_EQ(parse_hex_id("8E9E05C52164694D"), 0x8e9e05c52164694dULL);
  EXPECT_EQ(parse_hex_id("0000000000000000001"), 1u);
  EXPECT_FALSE(parse_hex_id("10000000000000000"));
  EXPECT_FALSE(parse_hex_id(""));
  EXPECT_FALSE(parse_hex_id("x1"));
}

TEST(MembersTest, renderedListParsesBack) {
  std::vector<MemberInfo> in = {{1, "a", {"http://a:2380"}, {"http://a:2379"}},
                                {0xffffffffffffffffULL, "", {"http://b:2380"}, {}}};
  const std::string body = render_members_json(in);
  const std::string first =
      R"([{"id":1,"peerURLs":["http://a:2380"],"name":"a","clientURLs":["http://a:2379"]},)";
  EXPECT_EQ(body.substr(0, first.size()), first);
  EXPECT_EQ(body.back(), '\n');
  auto out = parse_members_json(body);
  ASSERT_TRUE(out);
  ASSERT_EQ(out->size(), 2u);
  EXPECT_EQ((*out)[1].id, 0xffffffffffffffffULL);
  EXPECT_EQ((*out)[0].name, "a");
  EXPECT_EQ((*out)[0].client_urls, in[0].client_urls);
  EXPECT_FALSE(parse_members_json(R"([{"peerURLs":[1]}])"));
}

TEST(VersionTest, versionJsonNamesBothVersions) {
  const std::string json(version::kVersionJson);
  EXPECT_EQ(json, "{\"etcdserver\":\"" + std::string(version::kServer) +
                      "\",\"etcdcluster\":\"" + std::string(version::kCluster) + "\"}");
}

}  // namespace
}  // namespace kvd
