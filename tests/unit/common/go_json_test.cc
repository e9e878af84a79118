// go::json_syntax_error against the texts etcd 3.4 (Go 1.19's encoding/json) answers a
// POST /v2/members with for each body: every scanner context, how the offending byte is quoted,
// the end of input scanned as a space, and inputs that are valid ("" expected; etcd answered
// those with a type or URL error instead).
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "common/go.h"

namespace kvd {
namespace {

struct JsonCase {
  std::string_view body;
  std::string_view go_error;  // "" when Go's scanner accepts the body
};

// Non-ASCII bytes are written in octal; in the expected texts they are the UTF-8 of the rune
// with the byte's value ('\303\277' is U+00FF for the byte 0xFF).
constexpr JsonCase kJsonCases[] = {
    {"", "unexpected end of JSON input"},
    {"{bad", "invalid character 'b' looking for beginning of object key string"},
    {"{", "unexpected end of JSON input"},
    {"[", "unexpected end of JSON input"},
    {"{\"a\"", "unexpected end of JSON input"},
    {"{\"a\":", "unexpected end of JSON input"},
    {"{\"a\":1", "unexpected end of JSON input"},
    {"{\"a\" 1}", "invalid character '1' after object key"},
    {"{\"a\":1 \"b\"}", "invalid character '\"' after object key:value pair"},
    {"[1 2]", "invalid character '2' after array element"},
    {"{} x", "invalid character 'x' after top-level value"},
    {"{}}", "invalid character '}' after top-level value"},
    {"\"abc", "unexpected end of JSON input"},
    {"\"a\001\"", "invalid character '\\x01' in string literal"},
    {"\"a\n\"", "invalid character '\\n' in string literal"},
    {"\"a\t\"", "invalid character '\\t' in string literal"},
    {"\"\\x\"", "invalid character 'x' in string escape code"},
    {"\"\\u12g4\"", "invalid character 'g' in \\u hexadecimal character escape"},
    {"\"\\u\"", "invalid character '\"' in \\u hexadecimal character escape"},
    {"-", "invalid character ' ' in numeric literal"},
    {"-a", "invalid character 'a' in numeric literal"},
    {"1.", "invalid character ' ' after decimal point in numeric literal"},
    {"1.x", "invalid character 'x' after decimal point in numeric literal"},
    {"1e", "invalid character ' ' in exponent of numeric literal"},
    {"1e+x", "invalid character 'x' in exponent of numeric literal"},
    {"01", "invalid character '1' after top-level value"},
    {"tx", "invalid character 'x' in literal true (expecting 'r')"},
    {"trx", "invalid character 'x' in literal true (expecting 'u')"},
    {"trux", "invalid character 'x' in literal true (expecting 'e')"},
    {"fx", "invalid character 'x' in literal false (expecting 'a')"},
    {"fax", "invalid character 'x' in literal false (expecting 'l')"},
    {"falx", "invalid character 'x' in literal false (expecting 's')"},
    {"falsx", "invalid character 'x' in literal false (expecting 'e')"},
    {"nx", "invalid character 'x' in literal null (expecting 'u')"},
    {"nux", "invalid character 'x' in literal null (expecting 'l')"},
    {"nulx", "invalid character 'x' in literal null (expecting 'l')"},
    {"tru", "invalid character ' ' in literal true (expecting 'e')"},
    {"[1,]", "invalid character ']' looking for beginning of value"},
    {"{\"a\":1,}", "invalid character '}' looking for beginning of object key string"},
    {"{,}", "invalid character ',' looking for beginning of object key string"},
    {"'a'", "invalid character '\\'' looking for beginning of value"},
    {"\177", "invalid character '\\x7f' looking for beginning of value"},
    {"\200", "invalid character '\\u0080' looking for beginning of value"},
    {"\377", "invalid character '\303\277' looking for beginning of value"},
    {"\240", "invalid character '\\u00a0' looking for beginning of value"},
    {"\255", "invalid character '\\u00ad' looking for beginning of value"},
    {"\351", "invalid character '\303\251' looking for beginning of value"},
    {"\\", "invalid character '\\\\' looking for beginning of value"},
    {"}", "invalid character '}' looking for beginning of value"},
    {"]", "invalid character ']' looking for beginning of value"},
    {"nul", "invalid character ' ' in literal null (expecting 'l')"},
    {"fals", "invalid character ' ' in literal false (expecting 'e')"},
    {"{\"peerURLs\":[\"a\"]] }", "invalid character ']' after object key:value pair"},
    {"\"\377\376\"", ""},
    {"1 2", "invalid character '2' after top-level value"},
    {" ", "unexpected end of JSON input"},
    {std::string_view("{\"a\":1}\000", 8), "invalid character '\\x00' after top-level value"},
    {"[1,2", "unexpected end of JSON input"},
    {"{\"a\":-}", "invalid character '}' in numeric literal"},
    {"[.5]", "invalid character '.' looking for beginning of value"},
    {"[+1]", "invalid character '+' looking for beginning of value"},
    {"[1.5e]", "invalid character ']' in exponent of numeric literal"},
    {"0x10", "invalid character 'x' after top-level value"},
    {"\"\\/\\b\\f\\n\\r\\t\\\"\\\\\\u00e9\"", ""},
    {"{\"a\"}", "invalid character '}' after object key"},
    {"{\"a\":1}   ", ""},
    {"{:1}", "invalid character ':' looking for beginning of object key string"},
    {"\013", "invalid character '\\v' looking for beginning of value"},
    {"\007", "invalid character '\\a' looking for beginning of value"},
    {"\010", "invalid character '\\b' looking for beginning of value"},
    {"\014", "invalid character '\\f' looking for beginning of value"},
    {"\r", "unexpected end of JSON input"},
    {"{\"a\":1}\r\n", ""},
    {"[1}", "invalid character '}' after array element"},
    {"{\"a\":1]", "invalid character ']' after object key:value pair"},
    {"\"a\177\"", ""},
    {"\"\303", "unexpected end of JSON input"},
    {"\"\\ud800\"", ""},
    {"{\"a\":[1,{\"b\":tru}]}", "invalid character '}' in literal true (expecting 'e')"},
    {"1.5E-", "invalid character ' ' in exponent of numeric literal"},
    {"-01", "invalid character '1' after top-level value"},
    {"{\"a\":1}{", "invalid character '{' after top-level value"},
    {std::string_view("\"\000\"", 3), "invalid character '\\x00' in string literal"},
    {std::string_view("\000", 1), "invalid character '\\x00' looking for beginning of value"},
    {"\"", "unexpected end of JSON input"},
    {"\"\\", "invalid character ' ' in string escape code"},
    {"\"\\u00", "invalid character ' ' in \\u hexadecimal character escape"},
    {"{\"a\":nulL}", "invalid character 'L' in literal null (expecting 'l')"},
    {"[-]", "invalid character ']' in numeric literal"},
    {"{\"\\u00e9\":1}x", "invalid character 'x' after top-level value"},
    {"\302\200", "invalid character '\303\202' looking for beginning of value"},
    {"\"\037\"", "invalid character '\\x1f' in string literal"},
    {"\" \"", ""},
    {"[1.e5]", "invalid character 'e' after decimal point in numeric literal"},
    {"[1e5.2]", "invalid character '.' after array element"},
    {"\t\n {\"a\" : [ ] , \"b\":{}}\t", ""},
    {"{\"a\":1}\357\273\277", "invalid character '\303\257' after top-level value"},
    {"\357\273\277{}", "invalid character '\303\257' looking for beginning of value"},
    {"\"\\U0041\"", "invalid character 'U' in string escape code"},
    {"{\"peerURLs\":[\"http://1.2.3.4:1\"]}x", "invalid character 'x' after top-level value"},
};

TEST(GoTest, jsonSyntaxErrorAsEtcdAnswersMalformedBodies) {
  for (const auto& c : kJsonCases) {
    EXPECT_EQ(go::json_syntax_error(c.body), c.go_error) << go::quote(c.body);
  }
}

TEST(GoTest, jsonSyntaxErrorStopsNestingAtTenThousand) {
  EXPECT_EQ(go::json_syntax_error(std::string(10000, '[')), "unexpected end of JSON input");
  EXPECT_EQ(go::json_syntax_error(std::string(10001, '[')),
            "invalid character '[' exceeded max depth");
  EXPECT_EQ(go::json_syntax_error(std::string(10000, '[') + std::string(10000, ']')), "");
  EXPECT_EQ(go::json_syntax_error(std::string(10000, '[') + "{"),
            "invalid character '{' exceeded max depth");
  std::string objects;
  for (int i = 0; i < 10000; ++i) objects += "{\"a\":";
  EXPECT_EQ(go::json_syntax_error(objects + "1" + std::string(10000, '}')), "");
  EXPECT_EQ(go::json_syntax_error(objects + "{"), "invalid character '{' exceeded max depth");
}

}  // namespace
}  // namespace kvd
