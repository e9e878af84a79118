// Go standard-library behaviours that clients of etcd can observe, reproduced once for the
// server and kvctl: strconv (Quote, ParseBool, ParseInt/ParseUint with base 0), encoding/json
// string escaping, float formatting and syntax errors, time (Duration.String, ParseDuration,
// RFC3339Nano), unicode/utf8 decoding and net/url escaping. Each function names the Go function
// it follows.
//
// Pure functions; any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvd::go {

// utf8.DecodeRuneInString at s[i]: the rune, with *width set to its byte length; -1 with
// *width = 1 for an invalid or truncated sequence (overlongs, surrogates and anything above
// U+10FFFF are invalid). REQUIRES: i < s.size().
int32_t decode_rune(std::string_view s, size_t i, size_t* width);

// strconv.Quote, quotes included: \a \b \f \n \r \t \v, \xNN for invalid UTF-8 and other ASCII
// controls, \u0NNN for non-printable runes up to U+07FF (unicode.IsPrint as in Go 1.19); longer
// runes are copied as printable.
std::string quote(std::string_view s);

// encoding/json's string encoding with HTML escaping, quotes included, appended to out: " \ \n
// \r \t escaped, other controls and < > & as \u00NN, U+2028/U+2029 as \u2028/\u2029, invalid
// UTF-8 as \ufffd.
void append_json_string(std::string& out, std::string_view s);
std::string json_quote(std::string_view s);

// encoding/json's float64 form: the shortest decimal that reads back exactly, without an
// exponent ("0", "1.5", "0.000123").
std::string format_float(double v);

// strconv.ParseBool: 1 t T TRUE true True, 0 f F FALSE false False.
std::optional<bool> parse_bool(std::string_view s);

// strconv.ParseUint(s, 0, 64) and strconv.ParseInt(s, 0, 64): a 0x/0o/0b prefix or a leading 0
// (octal) chooses the base, underscores may separate digits, nullopt on a syntax error or
// overflow.
std::optional<uint64_t> parse_uint(std::string_view s);
std::optional<int64_t> parse_int(std::string_view s);

// time.ParseDuration: "2s", "500ms", "1m30s", "1.5h", "-3us", "0". A bare "5" is rejected, as
// is anything beyond the int64 nanosecond range.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s);

// time.Duration.String: "1h2m3.5s", "29.806656311s", "1.5ms", "0s".
std::string format_duration(int64_t ns);

// time.Time's RFC3339Nano in UTC, appended to out without quotes: trailing fractional zeros
// dropped, no fraction when it is 0 ("2026-11-23T10:50:30.13098912Z").
void append_rfc3339_nano(std::string& out, int64_t unix_ns);
std::string format_rfc3339_nano(std::chrono::system_clock::time_point t);
// time.Parse(time.RFC3339Nano, s) as Unix nanoseconds ("2006-01-02T15:04:05.999999999Z07:00");
// nullopt when malformed or outside what 64-bit nanoseconds hold (1677..2262, so not Go's
// zero time, 0001-01-01T00:00:00Z).
std::optional<int64_t> parse_rfc3339_nano(std::string_view s);

// net/http's TimeFormat in UTC, as in a Date header: "Tue, 24 Nov 2026 17:45:49 GMT".
std::string format_http_date(int64_t unix_seconds);

// url.URL.EscapedPath for a path without a RawPath: everything but unreserved characters and
// $&+,/:;=@ percent-encoded with upper-case hex.
std::string escape_path(std::string_view path);

// url.QueryEscape: unreserved characters kept, space as '+', the rest percent-encoded.
std::string query_escape(std::string_view s);

// The SyntaxError text of json.Unmarshal, which checks the whole input (checkValid) before it
// decodes anything: "" when data is one JSON value with optional whitespace around it, else
// the first error, "invalid character 'x' <context>" with Go's scanner context ("looking for
// beginning of value", "after object key", "in string escape code", ...) or "unexpected end of
// JSON input". The offending byte is quoted as the rune of the same value ('\x01', '\u0080',
// 'ÿ'). The end of input is scanned as a space, so "1." is "invalid character ' ' after decimal
// point in numeric literal". Invalid UTF-8 inside strings is accepted; nesting deeper than
// 10000 arrays and objects is "exceeded max depth".
std::string json_syntax_error(std::string_view data);

}  // namespace kvd::go
