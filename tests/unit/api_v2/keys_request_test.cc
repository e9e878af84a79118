// Tests of /v2/keys request parsing. Expected values were observed on etcd 3.4.23 (Go 1.19.8)
// with curl on 127.0.0.1 unless the test says kvd deliberately differs.
#include "api_v2/keys_request.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace kvd::v2 {
namespace {

constexpr std::string_view kFormType = "application/x-www-form-urlencoded";

KeysRequest parse(std::string_view method, std::string_view target, std::string_view body = "",
                  std::string_view content_type = kFormType) {
  return parse_keys_request(HttpInput{method, target, content_type, body});
}

// The error a request produced; fails the test when it produced a request instead.
Error error_of(const KeysRequest& r) {
  if (const Error* e = std::get_if<Error>(&r)) return *e;
  ADD_FAILURE() << "expected an error, got request alternative " << r.index();
  return Error{ErrorCode::kClientInternal, "<no error>", 0};
}

template <typename T>
T request_of(const KeysRequest& r) {
  if (const T* t = std::get_if<T>(&r)) return *t;
  if (const Error* e = std::get_if<Error>(&r)) {
    ADD_FAILURE() << "unexpected error " << static_cast<int>(e->code) << " cause " << e->cause;
  } else {
    ADD_FAILURE() << "unexpected request alternative " << r.index();
  }
  return T{};
}

Command write_of(const KeysRequest& r) { return request_of<WriteRequest>(r).cmd; }

void expect_error(const KeysRequest& r, ErrorCode code, std::string_view cause) {
  Error e = error_of(r);
  EXPECT_EQ(e.code, code);
  EXPECT_EQ(e.cause, cause);
  EXPECT_EQ(e.index, 0u);
}

// ---- Form: url.ParseQuery ----------------------------------------------------------------------

TEST(KeysRequestTest, form_decodesPlusAndEscapes) {
  Form f;
  EXPECT_EQ(f.parse("a+b=1&value=a+b%2Bc%20d%25&x=%E2%82%AC"), std::nullopt);
  EXPECT_EQ(f.get("a b"), "1");
  EXPECT_EQ(f.get("value"), "a b+c d%");
  EXPECT_EQ(f.get("x"), "\xE2\x82\xAC");
}

TEST(KeysRequestTest, form_firstValueWinsAndEmptyPairsSkipped) {
  Form f;
  EXPECT_EQ(f.parse("&&v=1&v=2&&flag&=anon&e="), std::nullopt);
  EXPECT_EQ(f.get("v"), "1");
  EXPECT_EQ(f.get("flag"), "");  // a bare name has the empty value
  EXPECT_TRUE(f.has("flag"));
  EXPECT_EQ(f.get(""), "anon");
  EXPECT_EQ(f.get("e"), "");
  EXPECT_FALSE(f.has("missing"));
  EXPECT_EQ(f.get("missing"), std::nullopt);
}

TEST(KeysRequestTest, form_keepsBytesAsGiven) {
  Form f;
  EXPECT_EQ(f.parse("v=%FF%00%C3%A9"), std::nullopt);
  EXPECT_EQ(f.get("v"), std::string("\xFF\0\xC3\xA9", 4));
}

TEST(KeysRequestTest, form_badEscapeTexts) {
  struct Case {
    std::string encoded;
    std::string cause;
  };
  const std::vector<Case> cases = {
      {"x=%zz", R"(invalid URL escape "%zz")"},
      {"%zz=1", R"(invalid URL escape "%zz")"},
      {"x=%", R"(invalid URL escape "%")"},
      {"x=%a", R"(invalid URL escape "%a")"},
      {"x=%a%41", R"(invalid URL escape "%a%")"},
      {"x=%\n\"", R"(invalid URL escape "%\n\"")"},
      {"x=%\"\\", R"(invalid URL escape "%\"\\")"},
      {"x=%\xFF", R"(invalid URL escape "%\xff")"},
      {"x=%\x01\x7F", R"(invalid URL escape "%\x01\x7f")"},
      {"x=%\t\r", R"(invalid URL escape "%\t\r")"},
      {"x=%\xC2\x85", R"(invalid URL escape "%\u0085")"},
      {"x=%\xC2\xA0", R"(invalid URL escape "%\u00a0")"},
      {"x=%\xC3\xA9", "invalid URL escape \"%\xC3\xA9\""},  // printable: raw
      {"x=%\xD8\x9D", R"(invalid URL escape "%\u061d")"},    // unassigned in Unicode 13
      {"x=%\xE2\x82", R"(invalid URL escape "%\xe2\x82")"},  // truncated 3-byte rune
  };
  for (const auto& c : cases) {
    Form f;
    EXPECT_EQ(f.parse(c.encoded), c.cause) << c.encoded;
  }
}

TEST(KeysRequestTest, form_firstEscapeErrorKeptAndParsingContinues) {
  Form f;
  EXPECT_EQ(f.parse("x=%zz&w=%qq&ok=1"), R"(invalid URL escape "%zz")");
  EXPECT_EQ(f.get("ok"), "1");
  EXPECT_FALSE(f.has("x"));
}

TEST(KeysRequestTest, form_semicolonIsAnErrorThatReplacesEarlierErrors) {
  Form a;
  EXPECT_EQ(a.parse("x=%zz&y;z"), "invalid semicolon separator in query");
  Form b;
  EXPECT_EQ(b.parse("y;z&x=%zz"), "invalid semicolon separator in query");
  Form c;
  EXPECT_EQ(c.parse("a=1;b=2&c=3"), "invalid semicolon separator in query");
  EXPECT_FALSE(c.has("a"));
  EXPECT_EQ(c.get("c"), "3");
}

// ---- decode_path and clean_path ----------------------------------------------------------------

TEST(KeysRequestTest, decodePath_plusStaysAndEscapesDecode) {
  EXPECT_EQ(decode_path("/v2/keys/a+b%20c%2Fd%25"), "/v2/keys/a+b c/d%");
  EXPECT_EQ(decode_path("/v2/keys/%C3%A9t%C3%A9"), "/v2/keys/\xC3\xA9t\xC3\xA9");
  EXPECT_EQ(decode_path("/v2/keys/%2e%2E"), "/v2/keys/..");
  EXPECT_EQ(decode_path("/v2/keys/%zz"), std::nullopt);
  EXPECT_EQ(decode_path("/v2/keys/%"), std::nullopt);
  EXPECT_EQ(decode_path("/v2/keys/%4"), std::nullopt);
}

TEST(KeysRequestTest, cleanPath_goServeMuxRules) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "/"},
      {"/", "/"},
      {"/v2/keys", "/v2/keys"},
      {"/v2/keys/", "/v2/keys/"},
      {"/v2/keys//foo", "/v2/keys/foo"},
      {"/v2/keys/../foo", "/v2/foo"},
      {"/v2/keys/../0/members", "/v2/0/members"},
      {"/v2/keys/./a/", "/v2/keys/a/"},
      {"/v2/keys/a//", "/v2/keys/a/"},
      {"/v2/keys/a/./", "/v2/keys/a/"},
      {"/v2/keys/a/../", "/v2/keys/"},
      {"/a/b/../../..", "/"},
      {"/..", "/"},
      {"/../", "/"},
      {"//", "/"},
      {"a", "/a"},
      {"a/../b/", "/b/"},
      {"/.../a", "/.../a"},
      {"/a./.b/..c", "/a./.b/..c"},
      {"/a;b:c", "/a;b:c"},
      {"/v2/keys/a b", "/v2/keys/a b"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(clean_path(in), want) << "input " << in;
}

// A clean path is a fixed point, starts with '/', and has no empty, "." or ".." element; the
// trailing slash survives exactly when the input had one and the result is not the root.
TEST(KeysRequestTest, cleanPath_randomInputsSatisfyInvariants) {
  const unsigned seed = std::random_device{}();
  std::printf("cleanPath_randomInputsSatisfyInvariants seed %u\n", seed);
  std::mt19937 rng(seed);
  const std::string alphabet = "/./a";
  for (int n = 0; n < 20000; ++n) {
    std::string in;
    const int len = static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) in += alphabet[rng() % alphabet.size()];
    auto out = clean_path(in);
    ASSERT_TRUE(out.has_value()) << "seed " << seed << " input " << in;
    const std::string& p = *out;
    ASSERT_FALSE(p.empty());
    EXPECT_EQ(p[0], '/') << "seed " << seed << " input " << in;
    EXPECT_EQ(clean_path(p), p) << "seed " << seed << " input " << in;
    std::string body = p.size() > 1 && p.back() == '/' ? p.substr(0, p.size() - 1) : p;
    if (body != "/") {
      for (size_t i = 0; i <= body.size(); ++i) {
        size_t j = body.find('/', i);
        if (j == std::string::npos) j = body.size();
        std::string elem = body.substr(i, j - i);
        if (i == 0) {
          EXPECT_EQ(elem, "") << "seed " << seed << " input " << in;
        } else {
          EXPECT_TRUE(elem != "" && elem != "." && elem != "..")
              << "seed " << seed << " input " << in << " output " << p;
        }
        i = j;
      }
    }
    const bool input_trailing = !in.empty() && in.back() == '/';
    EXPECT_EQ(p.size() > 1 && p.back() == '/', input_trailing && p != "/")
        << "seed " << seed << " input " << in << " output " << p;
  }
}

// ---- key -----------------------------------------------------------------------------------

TEST(KeysRequestTest, parse_keyIsDecodedCleanedPath) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/v2/keys", "/"},
      {"/v2/keys/", "/"},
      {"/v2/keys/foo", "/foo"},
      {"/v2/keys/foo/", "/foo"},
      {"/v2/keys/a/b/c", "/a/b/c"},
      {"/v2/keys/a%2Fb", "/a/b"},
      {"/v2/keys/a%2Fb%2F", "/a/b"},
      {"/v2/keys/a%20b", "/a b"},
      {"/v2/keys/a+b", "/a+b"},
      {"/v2/keys/100%25", "/100%"},
      {"/v2/keys/%C3%A9t%C3%A9", "/\xC3\xA9t\xC3\xA9"},
      {"/v2/keys/a.b;c:d", "/a.b;c:d"},
      {"/v2/keys/_hidden", "/_hidden"},
  };
  for (const auto& [target, key] : cases) {
    EXPECT_EQ(request_of<GetRequest>(parse("GET", target)).key, key) << target;
    EXPECT_EQ(write_of(parse("PUT", target, "value=1")).key, key) << target;
  }
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/tr/?x=1", "value=1")).key, "/tr");
}

TEST(KeysRequestTest, parse_pathOutsideKeysPrefix) {
  expect_error(parse("GET", "/v2/other"), ErrorCode::kInvalidForm, "incorrect key prefix");
}

// ---- where parameters come from ------------------------------------------------------------

TEST(KeysRequestTest, parse_bodyWinsOverQuery) {
  auto cmd = write_of(parse("PUT", "/v2/keys/a?value=q", "value=b"));
  EXPECT_EQ(cmd.value, "b");
  // ttl= in the body hides ?ttl=5: no TTL (observed).
  auto w = request_of<WriteRequest>(parse("PUT", "/v2/keys/a?ttl=5", "ttl=&value=1"));
  EXPECT_EQ(w.ttl_seconds, std::nullopt);
  // Query values still apply when the body lacks the name.
  w = request_of<WriteRequest>(parse("PUT", "/v2/keys/a?ttl=5", "value=1"));
  EXPECT_EQ(w.ttl_seconds, 5u);
}

TEST(KeysRequestTest, parse_firstOfRepeatedValueWins) {
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/a", "value=a&value=b")).value, "a");
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/a?value=a&value=b", "")).value, "a");
  EXPECT_TRUE(request_of<GetRequest>(parse("GET", "/v2/keys/a?recursive=true&recursive=x"))
                  .recursive);
  // The first ttl is empty, so there is no TTL even though a second one is given.
  EXPECT_EQ(request_of<WriteRequest>(parse("PUT", "/v2/keys/t1?ttl=&ttl=5", "")).ttl_seconds,
            std::nullopt);
}

TEST(KeysRequestTest, parse_unknownParametersIgnored) {
  auto g = request_of<GetRequest>(parse("GET", "/v2/keys/a?foo=%41&bar&=x&&"));
  EXPECT_EQ(g.key, "/a");
  EXPECT_FALSE(g.recursive);
}

TEST(KeysRequestTest, parse_bodyReadOnlyForFormContentType) {
  for (std::string_view ct : {"application/json", "text/plain", "", "text",
                              "multipart/form-data; boundary=x",
                              "application/x-www-form-urlencodedx"}) {
    EXPECT_EQ(write_of(parse("PUT", "/v2/keys/a", "value=x", ct)).value, "") << ct;
    EXPECT_EQ(write_of(parse("POST", "/v2/keys/q", "value=x", ct)).value, "") << ct;
  }
  for (std::string_view ct : {"application/x-www-form-urlencoded",
                              "APPLICATION/X-WWW-FORM-URLENCODED ; charset=utf-8",
                              "Application/X-Www-Form-Urlencoded;charset=\"utf-8\"",
                              "application/x-www-form-urlencoded;",
                              "  application/x-www-form-urlencoded ; a=1 ; b=\"x;y\"  "}) {
    EXPECT_EQ(write_of(parse("PUT", "/v2/keys/a", "value=x", ct)).value, "x") << ct;
  }
}

TEST(KeysRequestTest, parse_brokenBodyIsInvalidFormOnlyWhenReadAsAForm) {
  // A chunked body that broke off: etcd answers 210 with the body reader's error as the cause
  // when it reads a form, and ignores it otherwise (observed with raw chunked requests).
  auto broken = [](std::string_view method, std::string_view ct, std::string_view target) {
    return parse_keys_request(HttpInput{method, target, ct, "value=x", "malformed chunked encoding"});
  };
  Error e = error_of(broken("PUT", kFormType, "/v2/keys/a"));
  EXPECT_EQ(e.code, ErrorCode::kInvalidForm);
  EXPECT_EQ(e.cause, "malformed chunked encoding");
  EXPECT_EQ(error_of(broken("POST", kFormType, "/v2/keys/q")).cause, "malformed chunked encoding");
  // A bad media type is reported first, as Go's parsePostForm keeps the first error.
  EXPECT_EQ(error_of(broken("PUT", "a/b; =", "/v2/keys/a")).cause,
            error_of(parse("PUT", "/v2/keys/a", "value=x", "a/b; =")).cause);
  // Not a form, or not a method whose body is read: the request goes on, value empty.
  EXPECT_EQ(write_of(broken("PUT", "text/plain", "/v2/keys/a")).value, "");
  EXPECT_EQ(write_of(broken("DELETE", kFormType, "/v2/keys/a")).op, Op::kDelete);
}

TEST(KeysRequestTest, parse_bodyNeverReadForDeleteGetHead) {
  // DELETE -d recursive=true on a directory is a plain delete: the body is not read (observed).
  auto cmd = write_of(parse("DELETE", "/v2/keys/h", "recursive=true&prevValue=zzz"));
  EXPECT_EQ(cmd.op, Op::kDelete);
  EXPECT_FALSE(cmd.recursive);
  EXPECT_EQ(cmd.prev_value, std::nullopt);
  // A bad body or content type does not matter either.
  EXPECT_EQ(write_of(parse("DELETE", "/v2/keys/h", "x=%zz", ";x=y")).op, Op::kDelete);
  EXPECT_FALSE(request_of<GetRequest>(parse("GET", "/v2/keys/h", "recursive=true")).recursive);
  EXPECT_FALSE(request_of<GetRequest>(parse("HEAD", "/v2/keys/h", "recursive=true")).recursive);
}

TEST(KeysRequestTest, parse_mediaTypeErrorsAreInvalidForm) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"application/x-www-form-urlencoded; charset", "mime: invalid media parameter"},
      {"application/x-www-form-urlencoded; ;", "mime: invalid media parameter"},
      {"application/x-www-form-urlencoded; charset=\"utf-8", "mime: invalid media parameter"},
      {"application/x-www-form-urlencoded; charset=", "mime: invalid media parameter"},
      {"application/x-www-form-urlencoded; charset=a; charset=a", "mime: duplicate parameter name"},
      {"application/x-www-form-urlencoded; charset=a; CHARSET=b", "mime: duplicate parameter name"},
      {";x=y", "mime: no media type"},
      {"text/", "mime: expected token after slash"},
      {"text/plain x", "mime: unexpected content after media subtype"},
      {"text plain", "mime: expected slash after first token"},
      {"application/json; charset", "mime: invalid media parameter"},
  };
  for (const auto& [ct, cause] : cases) {
    expect_error(parse("PUT", "/v2/keys/a", "value=1", ct), ErrorCode::kInvalidForm, cause);
    expect_error(parse("POST", "/v2/keys/a", "value=1", ct), ErrorCode::kInvalidForm, cause);
  }
}

TEST(KeysRequestTest, parse_formErrorOrder) {
  // Body errors come before query errors; a mime error before both.
  expect_error(parse("PUT", "/v2/keys/a?y;z", "value=%zz"), ErrorCode::kInvalidForm,
               R"(invalid URL escape "%zz")");
  expect_error(parse("PUT", "/v2/keys/a?x=%qq", "value=%zz"), ErrorCode::kInvalidForm,
               R"(invalid URL escape "%zz")");
  expect_error(parse("PUT", "/v2/keys/a?x=%qq", "value=1"), ErrorCode::kInvalidForm,
               R"(invalid URL escape "%qq")");
  expect_error(parse("PUT", "/v2/keys/a", "v;alue=1&value=%zz"), ErrorCode::kInvalidForm,
               "invalid semicolon separator in query");
  expect_error(parse("PUT", "/v2/keys/a?x=%qq", "value=%zz", "text/"), ErrorCode::kInvalidForm,
               "mime: expected token after slash");
  // The form error wins over every parameter error.
  expect_error(parse("GET", "/v2/keys/a?prevIndex=x&y=%zz"), ErrorCode::kInvalidForm,
               R"(invalid URL escape "%zz")");
  expect_error(parse("GET", "/v2/keys/a?recursive=x&a;b"), ErrorCode::kInvalidForm,
               "invalid semicolon separator in query");
}

TEST(KeysRequestTest, parse_formBodyOverTenMegabytes) {
  std::string body = "value=" + std::string((size_t{10} << 20) - 6, 'a');
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/big", body)).value.size(), (size_t{10} << 20) - 6);
  body += 'a';
  expect_error(parse("PUT", "/v2/keys/big", body), ErrorCode::kInvalidForm,
               "http: POST too large");
  // Go reads the body even after an invalid parameter, so the size error replaces it.
  expect_error(parse("PUT", "/v2/keys/big", body, "application/x-www-form-urlencoded; charset"),
               ErrorCode::kInvalidForm, "http: POST too large");
  // Not a form: the body is not read at all.
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/big", body, "text/plain")).value, "");
}

// ---- typed parameters ------------------------------------------------------------------------

TEST(KeysRequestTest, parse_boolsUseGoParseBool) {
  for (std::string_view v : {"1", "t", "T", "TRUE", "true", "True"}) {
    std::string target = "/v2/keys/a?recursive=" + std::string(v);
    EXPECT_TRUE(request_of<GetRequest>(parse("GET", target)).recursive) << v;
  }
  for (std::string_view v : {"0", "f", "F", "FALSE", "false", "False"}) {
    std::string target = "/v2/keys/a?recursive=" + std::string(v);
    EXPECT_FALSE(request_of<GetRequest>(parse("GET", target)).recursive) << v;
  }
  for (std::string_view q : {"recursive=yes", "recursive=", "recursive", "recursive=tRUE",
                             "recursive=+true", "recursive=true+", "recursive=2",
                             "recursive=on"}) {
    expect_error(parse("GET", "/v2/keys/a?" + std::string(q)), ErrorCode::kInvalidField,
                 R"(invalid value for "recursive")");
  }
}

TEST(KeysRequestTest, parse_eachBoolNamesItselfInTheCause) {
  for (std::string_view name : {"recursive", "sorted", "wait", "dir", "quorum", "stream",
                                "noValueOnSuccess"}) {
    expect_error(parse("GET", "/v2/keys/a?" + std::string(name) + "=yes"),
                 ErrorCode::kInvalidField, "invalid value for \"" + std::string(name) + "\"");
  }
  // prevExist and refresh are unquoted, and empty is as bad as garbage.
  for (std::string_view v : {"", "yes"}) {
    expect_error(parse("PUT", "/v2/keys/a?prevExist=" + std::string(v)),
                 ErrorCode::kInvalidField, "invalid value for prevExist");
    expect_error(parse("PUT", "/v2/keys/a?refresh=" + std::string(v)), ErrorCode::kInvalidField,
                 "invalid value for refresh");
  }
  expect_error(parse("PUT", "/v2/keys/a?prevExist"), ErrorCode::kInvalidField,
               "invalid value for prevExist");
}

TEST(KeysRequestTest, parse_indexesUseGoParseUint) {
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/a?prevIndex=05", "value=1")).prev_index, 5u);
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/a?prevIndex=18446744073709551615", "value=1"))
                .prev_index,
            18446744073709551615u);
  for (std::string_view v : {"-1", "+1", "1.5", "abc", "", "0x10", "1_000", " 1",
                             "18446744073709551616"}) {
    expect_error(parse("PUT", "/v2/keys/a?prevIndex=" + std::string(v)), ErrorCode::kIndexNaN,
                 R"(invalid value for "prevIndex")");
    expect_error(parse("GET", "/v2/keys/a?wait=true&waitIndex=" + std::string(v)),
                 ErrorCode::kIndexNaN, R"(invalid value for "waitIndex")");
  }
  EXPECT_EQ(request_of<WatchRequest>(parse("GET", "/v2/keys/a?wait=true&waitIndex=007"))
                .wait_index,
            7u);
}

TEST(KeysRequestTest, parse_ttl) {
  auto ttl_of = [](std::string_view query) {
    return request_of<WriteRequest>(parse("PUT", "/v2/keys/a?" + std::string(query), "value=1"))
        .ttl_seconds;
  };
  EXPECT_EQ(ttl_of("x=1"), std::nullopt);
  EXPECT_EQ(ttl_of("ttl="), std::nullopt);
  EXPECT_EQ(ttl_of("ttl"), std::nullopt);
  EXPECT_EQ(ttl_of("ttl=0"), 0u);
  EXPECT_EQ(ttl_of("ttl=05"), 5u);
  EXPECT_EQ(ttl_of("ttl=60"), 60u);
  EXPECT_EQ(ttl_of("ttl=9223372036"), 9223372036u);  // largest whose nanoseconds fit int64
  for (std::string_view v : {"+5", "-1", "1.5", "abc", "5s", "18446744073709551616",
                             // kvd rejects these; etcd wraps them (spec §7).
                             "9223372037", "99999999999", "9223372036854775807",
                             "18446744073709551615"}) {
    expect_error(parse("PUT", "/v2/keys/a?ttl=" + std::string(v)), ErrorCode::kTtlNaN,
                 R"(invalid value for "ttl")");
  }
  EXPECT_EQ(request_of<WriteRequest>(parse("POST", "/v2/keys/q", "ttl=7")).ttl_seconds, 7u);
}

TEST(KeysRequestTest, parse_prevValueMustNotBeEmpty) {
  for (std::string_view method : {"PUT", "DELETE", "GET", "POST"}) {
    expect_error(parse(method, "/v2/keys/a?prevValue="), ErrorCode::kPrevValueRequired,
                 R"("prevValue" cannot be empty)");
    expect_error(parse(method, "/v2/keys/a?prevValue=&prevValue=x"),
                 ErrorCode::kPrevValueRequired, R"("prevValue" cannot be empty)");
  }
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/a?prevValue=x&prevValue=", "value=1")).prev_value,
            "x");
}

// Each row holds two faults; the one earlier in etcd's order must be reported.
TEST(KeysRequestTest, parse_validationOrder) {
  struct Case {
    std::string method;
    std::string query;
    ErrorCode code;
    std::string cause;
  };
  const std::vector<Case> cases = {
      {"PUT", "prevIndex=x&waitIndex=x", ErrorCode::kIndexNaN, R"(invalid value for "prevIndex")"},
      {"PUT", "waitIndex=x&recursive=x", ErrorCode::kIndexNaN, R"(invalid value for "waitIndex")"},
      {"GET", "dir=yes&prevIndex=x", ErrorCode::kIndexNaN, R"(invalid value for "prevIndex")"},
      {"GET", "stream=x&sorted=x&recursive=x", ErrorCode::kInvalidField,
       R"(invalid value for "recursive")"},
      {"GET", "stream=x&wait=x&sorted=x", ErrorCode::kInvalidField,
       R"(invalid value for "sorted")"},
      {"GET", "stream=x&dir=x&wait=x", ErrorCode::kInvalidField, R"(invalid value for "wait")"},
      {"GET", "stream=x&quorum=x&dir=x", ErrorCode::kInvalidField, R"(invalid value for "dir")"},
      {"GET", "stream=x&quorum=x", ErrorCode::kInvalidField, R"(invalid value for "quorum")"},
      {"PUT", "prevValue=&wait=true&stream=x", ErrorCode::kInvalidField,
       R"(invalid value for "stream")"},
      {"PUT", "prevValue=&wait=true", ErrorCode::kInvalidField,
       R"("wait" can only be used with GET requests)"},
      {"PUT", "noValueOnSuccess=x&prevValue=", ErrorCode::kPrevValueRequired,
       R"("prevValue" cannot be empty)"},
      {"PUT", "ttl=x&noValueOnSuccess=x", ErrorCode::kInvalidField,
       R"(invalid value for "noValueOnSuccess")"},
      {"PUT", "prevExist=x&ttl=x", ErrorCode::kTtlNaN, R"(invalid value for "ttl")"},
      {"PUT", "refresh=x&prevExist=x", ErrorCode::kInvalidField, "invalid value for prevExist"},
      {"PUT", "refresh=x&ttl=5", ErrorCode::kInvalidField, "invalid value for refresh"},
      {"PUT", "refresh=true&value=v", ErrorCode::kRefreshValue,
       "A value was provided on a refresh"},
      {"PUT", "refresh=true", ErrorCode::kRefreshTtlRequired, "No TTL value set"},
      {"POST", "refresh=true&ttl=5&prevExist=maybe", ErrorCode::kInvalidField,
       "invalid value for prevExist"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.method + " ?" + c.query);
    expect_error(parse(c.method, "/v2/keys/a?" + c.query, ""), c.code, c.cause);
  }
}

TEST(KeysRequestTest, parse_parameterErrorsRenderWithIndexZero) {
  Error e = error_of(parse("PUT", "/v2/keys/a?refresh=true"));
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.to_json(),
            "{\"errorCode\":212,\"message\":\"A TTL must be provided on refresh\","
            "\"cause\":\"No TTL value set\",\"index\":0}\n");
  e = error_of(parse("GET", "/v2/keys/a?x=%zz"));
  EXPECT_EQ(e.to_json(),
            "{\"errorCode\":210,\"message\":\"Invalid POST form\","
            "\"cause\":\"invalid URL escape \\\"%zz\\\"\",\"index\":0}\n");
}

// ---- reads and watches -----------------------------------------------------------------------

TEST(KeysRequestTest, parse_getFlags) {
  auto g = request_of<GetRequest>(parse("GET", "/v2/keys/d?recursive=true&sorted=1&quorum=t"));
  EXPECT_EQ(g.key, "/d");
  EXPECT_TRUE(g.recursive);
  EXPECT_TRUE(g.sorted);
  EXPECT_TRUE(g.quorum);
  EXPECT_FALSE(g.head);
  g = request_of<GetRequest>(parse("GET", "/v2/keys/d?stream=true&waitIndex=5"));
  EXPECT_FALSE(g.recursive || g.sorted || g.quorum || g.head);
}

TEST(KeysRequestTest, parse_waitIsAWatch) {
  auto w = request_of<WatchRequest>(
      parse("GET", "/v2/keys/w?wait=true&recursive=true&stream=true&waitIndex=12&sorted=true"));
  EXPECT_EQ(w.key, "/w");
  EXPECT_TRUE(w.recursive);
  EXPECT_TRUE(w.stream);
  EXPECT_EQ(w.wait_index, 12u);
  w = request_of<WatchRequest>(parse("GET", "/v2/keys/?wait=true"));
  EXPECT_EQ(w.key, "/");
  EXPECT_FALSE(w.recursive || w.stream);
  EXPECT_EQ(w.wait_index, 0u);
  // wait=false is a plain get.
  EXPECT_TRUE(std::holds_alternative<GetRequest>(parse("GET", "/v2/keys/w?wait=false")));
}

TEST(KeysRequestTest, parse_waitWithQuorumIsAnImmediateGet) {
  auto g = request_of<GetRequest>(parse("GET", "/v2/keys/w?wait=true&quorum=true&recursive=1"));
  EXPECT_TRUE(g.quorum);
  EXPECT_TRUE(g.recursive);
}

TEST(KeysRequestTest, parse_waitOnlyWithGet) {
  for (std::string_view method : {"PUT", "POST", "DELETE", "HEAD"}) {
    expect_error(parse(method, "/v2/keys/w?wait=true"), ErrorCode::kInvalidField,
                 R"("wait" can only be used with GET requests)");
  }
  // In a form body too, and wait=false is fine.
  expect_error(parse("PUT", "/v2/keys/w", "wait=1"), ErrorCode::kInvalidField,
               R"("wait" can only be used with GET requests)");
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/w?wait=false", "value=1")).op, Op::kSet);
}

TEST(KeysRequestTest, parse_headIsALocalGetWithoutBody) {
  auto g = request_of<GetRequest>(parse("HEAD", "/v2/keys/h?recursive=true&sorted=true"));
  EXPECT_TRUE(g.head);
  EXPECT_TRUE(g.recursive);
  EXPECT_TRUE(g.sorted);
  // etcd answers HEAD from the local store; quorum does not send it through raft.
  EXPECT_FALSE(request_of<GetRequest>(parse("HEAD", "/v2/keys/h?quorum=true")).quorum);
}

TEST(KeysRequestTest, parse_readsValidateWriteParameters) {
  expect_error(parse("GET", "/v2/keys/a?ttl=abc"), ErrorCode::kTtlNaN, R"(invalid value for "ttl")");
  expect_error(parse("GET", "/v2/keys/a?refresh=true"), ErrorCode::kRefreshTtlRequired,
               "No TTL value set");
  expect_error(parse("HEAD", "/v2/keys/a?prevExist=maybe"), ErrorCode::kInvalidField,
               "invalid value for prevExist");
}

// ---- PUT decision table (spec §5) ------------------------------------------------------------

TEST(KeysRequestTest, parse_putDecisionTable) {
  struct Case {
    std::string query;
    Op op;
    std::optional<std::string> prev_value;
    uint64_t prev_index;
  };
  const std::vector<Case> cases = {
      {"", Op::kSet, std::nullopt, 0},
      {"prevIndex=0", Op::kSet, std::nullopt, 0},
      {"prevExist=true", Op::kUpdate, std::nullopt, 0},
      {"prevExist=true&prevIndex=0", Op::kUpdate, std::nullopt, 0},
      {"prevExist=true&prevValue=p", Op::kCompareAndSwap, "p", 0},
      {"prevExist=true&prevIndex=4", Op::kCompareAndSwap, std::nullopt, 4},
      {"prevExist=false", Op::kCreate, std::nullopt, 0},
      {"prevExist=false&prevValue=p&prevIndex=4", Op::kCreate, std::nullopt, 0},
      {"prevValue=p", Op::kCompareAndSwap, "p", 0},
      {"prevIndex=9", Op::kCompareAndSwap, std::nullopt, 9},
      {"prevValue=p&prevIndex=9", Op::kCompareAndSwap, "p", 9},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE("?" + c.query);
    auto w = request_of<WriteRequest>(parse("PUT", "/v2/keys/k?" + c.query, "value=v"));
    EXPECT_EQ(w.cmd.op, c.op);
    EXPECT_EQ(w.cmd.key, "/k");
    EXPECT_EQ(w.cmd.value, "v");
    EXPECT_EQ(w.cmd.prev_value, c.prev_value);
    EXPECT_EQ(w.cmd.prev_index, c.prev_index);
    EXPECT_FALSE(w.cmd.refresh);
    EXPECT_FALSE(w.cmd.recursive);
    EXPECT_EQ(w.cmd.request_id, 0u);
    EXPECT_EQ(w.cmd.expire_at_ns, std::nullopt);
    EXPECT_EQ(w.ttl_seconds, std::nullopt);
    EXPECT_FALSE(w.no_value_on_success);
  }
}

TEST(KeysRequestTest, parse_putMissingValueIsEmpty) {
  auto cmd = write_of(parse("PUT", "/v2/keys/k", ""));
  EXPECT_EQ(cmd.op, Op::kSet);
  EXPECT_EQ(cmd.value, "");
}

TEST(KeysRequestTest, parse_putDirFlag) {
  // Set and create carry dir and drop a value given with it.
  auto cmd = write_of(parse("PUT", "/v2/keys/d?dir=true", "value=dropped"));
  EXPECT_EQ(cmd.op, Op::kSet);
  EXPECT_TRUE(cmd.dir);
  EXPECT_EQ(cmd.value, "");
  cmd = write_of(parse("PUT", "/v2/keys/d?dir=true&prevExist=false", ""));
  EXPECT_EQ(cmd.op, Op::kCreate);
  EXPECT_TRUE(cmd.dir);
  // Update and CAS ignore dir: on a file, PUT ?dir=true&prevExist=true sets the value to "".
  cmd = write_of(parse("PUT", "/v2/keys/f?dir=true&prevExist=true", ""));
  EXPECT_EQ(cmd.op, Op::kUpdate);
  EXPECT_FALSE(cmd.dir);
  cmd = write_of(parse("PUT", "/v2/keys/f?dir=true&prevValue=a", "value=b"));
  EXPECT_EQ(cmd.op, Op::kCompareAndSwap);
  EXPECT_FALSE(cmd.dir);
  EXPECT_EQ(cmd.value, "b");
  // dir=false is a file.
  cmd = write_of(parse("PUT", "/v2/keys/f?dir=false", "value=b"));
  EXPECT_FALSE(cmd.dir);
  EXPECT_EQ(cmd.value, "b");
}

TEST(KeysRequestTest, parse_refresh) {
  auto w = request_of<WriteRequest>(parse("PUT", "/v2/keys/r1", "ttl=60&refresh=true"));
  EXPECT_EQ(w.cmd.op, Op::kSet);
  EXPECT_TRUE(w.cmd.refresh);
  EXPECT_EQ(w.ttl_seconds, 60u);
  // An empty value is allowed, and only the first value counts.
  EXPECT_TRUE(write_of(parse("PUT", "/v2/keys/r1?refresh=true&value=&ttl=4", "")).refresh);
  EXPECT_TRUE(write_of(parse("PUT", "/v2/keys/r1?refresh=true&value=&value=x&ttl=4", "")).refresh);
  // Refresh follows the PUT table.
  auto cmd = write_of(parse("PUT", "/v2/keys/r1?refresh=true&ttl=5&prevExist=true", ""));
  EXPECT_EQ(cmd.op, Op::kUpdate);
  EXPECT_TRUE(cmd.refresh);
  cmd = write_of(parse("PUT", "/v2/keys/r1?refresh=true&ttl=5&prevValue=keep", ""));
  EXPECT_EQ(cmd.op, Op::kCompareAndSwap);
  EXPECT_TRUE(cmd.refresh);
  EXPECT_EQ(cmd.prev_value, "keep");
  // refresh=false is an ordinary write, value allowed.
  cmd = write_of(parse("PUT", "/v2/keys/r1?refresh=false", "value=x"));
  EXPECT_FALSE(cmd.refresh);
  EXPECT_EQ(cmd.value, "x");
  // The rules, from the body as well.
  expect_error(parse("PUT", "/v2/keys/r1", "refresh=true&ttl=5&value=v"), ErrorCode::kRefreshValue,
               "A value was provided on a refresh");
  expect_error(parse("PUT", "/v2/keys/r1", "refresh=true"), ErrorCode::kRefreshTtlRequired,
               "No TTL value set");
  expect_error(parse("PUT", "/v2/keys/r1", "refresh=true&ttl="), ErrorCode::kRefreshTtlRequired,
               "No TTL value set");
}

TEST(KeysRequestTest, parse_noValueOnSuccess) {
  EXPECT_TRUE(request_of<WriteRequest>(parse("PUT", "/v2/keys/a?noValueOnSuccess=true", "value=1"))
                  .no_value_on_success);
  EXPECT_TRUE(request_of<WriteRequest>(parse("POST", "/v2/keys/q", "noValueOnSuccess=1"))
                  .no_value_on_success);
  EXPECT_FALSE(request_of<WriteRequest>(parse("PUT", "/v2/keys/a", "value=1")).no_value_on_success);
}

// ---- POST ----------------------------------------------------------------------------------

TEST(KeysRequestTest, parse_postCreatesInOrderIgnoringConditions) {
  auto w = request_of<WriteRequest>(parse(
      "POST", "/v2/keys/queue?prevExist=true&prevValue=x&prevIndex=3", "value=job&ttl=30"));
  EXPECT_EQ(w.cmd.op, Op::kCreateInOrder);
  EXPECT_EQ(w.cmd.key, "/queue");
  EXPECT_EQ(w.cmd.value, "job");
  EXPECT_EQ(w.cmd.prev_value, std::nullopt);
  EXPECT_EQ(w.cmd.prev_index, 0u);
  EXPECT_FALSE(w.cmd.dir);
  EXPECT_EQ(w.ttl_seconds, 30u);
  // refresh is validated but then ignored.
  auto cmd = write_of(parse("POST", "/v2/keys/queue", "refresh=true&ttl=5"));
  EXPECT_EQ(cmd.op, Op::kCreateInOrder);
  EXPECT_FALSE(cmd.refresh);
  expect_error(parse("POST", "/v2/keys/queue?refresh=true"), ErrorCode::kRefreshTtlRequired,
               "No TTL value set");
  // Directories, missing values and the root.
  cmd = write_of(parse("POST", "/v2/keys/queue?dir=true", "value=dropped"));
  EXPECT_TRUE(cmd.dir);
  EXPECT_EQ(cmd.value, "");
  cmd = write_of(parse("POST", "/v2/keys", ""));
  EXPECT_EQ(cmd.key, "/");
  EXPECT_EQ(cmd.value, "");
}

// ---- DELETE --------------------------------------------------------------------------------

TEST(KeysRequestTest, parse_delete) {
  auto w = request_of<WriteRequest>(parse("DELETE", "/v2/keys/d?dir=true&recursive=true&ttl=5"));
  EXPECT_EQ(w.cmd.op, Op::kDelete);
  EXPECT_EQ(w.cmd.key, "/d");
  EXPECT_TRUE(w.cmd.dir);
  EXPECT_TRUE(w.cmd.recursive);
  EXPECT_EQ(w.ttl_seconds, std::nullopt);  // parsed, unused
  auto cmd = write_of(parse("DELETE", "/v2/keys/d?prevExist=false&prevIndex=0"));
  EXPECT_EQ(cmd.op, Op::kDelete);
  EXPECT_FALSE(cmd.dir || cmd.recursive);
  // ttl is still validated.
  expect_error(parse("DELETE", "/v2/keys/d?ttl=-1"), ErrorCode::kTtlNaN, R"(invalid value for "ttl")");
}

TEST(KeysRequestTest, parse_compareAndDelete) {
  auto cmd = write_of(parse("DELETE", "/v2/keys/cd?prevValue=1&recursive=true&dir=true"));
  EXPECT_EQ(cmd.op, Op::kCompareAndDelete);
  EXPECT_EQ(cmd.prev_value, "1");
  EXPECT_EQ(cmd.prev_index, 0u);
  EXPECT_FALSE(cmd.dir || cmd.recursive);
  cmd = write_of(parse("DELETE", "/v2/keys/cd?prevIndex=85"));
  EXPECT_EQ(cmd.op, Op::kCompareAndDelete);
  EXPECT_EQ(cmd.prev_value, std::nullopt);
  EXPECT_EQ(cmd.prev_index, 85u);
  cmd = write_of(parse("DELETE", "/v2/keys/cd?prevIndex=85&prevValue=a%20b"));
  EXPECT_EQ(cmd.prev_value, "a b");
  EXPECT_EQ(cmd.prev_index, 85u);
}

TEST(KeysRequestTest, parse_rootWritesAreLeftToTheStore) {
  // "Root is read only" (107) carries the store index, so the store reports it, not the parser.
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys/", "value=1")).key, "/");
  EXPECT_EQ(write_of(parse("DELETE", "/v2/keys?recursive=true")).key, "/");
}

// kvd's limit on key depth (keys_request.h): the store's walks stay bounded whatever the key.
TEST(KeysRequestTest, parse_writesDeeperThanTheLimitRefused) {
  std::string deepest;
  for (size_t i = 0; i < kMaxKeyDepth; ++i) deepest += "/a";
  EXPECT_EQ(write_of(parse("PUT", "/v2/keys" + deepest, "value=1")).key, deepest);
  expect_error(parse("PUT", "/v2/keys" + deepest + "/b", "value=1"), ErrorCode::kInvalidField,
               "key too deep: 1025 levels, at most 1024");
  // An in-order POST creates one level below its key.
  expect_error(parse("POST", "/v2/keys" + deepest, "value=1"), ErrorCode::kInvalidField,
               "key too deep: 1025 levels, at most 1024");
  EXPECT_EQ(write_of(parse("POST", "/v2/keys" + deepest.substr(2), "value=1")).op,
            Op::kCreateInOrder);
  // Reads and deletes create nothing: any depth is parsed.
  EXPECT_TRUE(std::holds_alternative<GetRequest>(parse("GET", "/v2/keys" + deepest + "/b")));
  EXPECT_EQ(write_of(parse("DELETE", "/v2/keys" + deepest + "/b")).op, Op::kDelete);
}

}  // namespace
}  // namespace kvd::v2
