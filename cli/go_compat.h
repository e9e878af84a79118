// Re-implementations of the few Go standard-library behaviours that etcdctl's output and
// argument handling depend on: duration/int/bool parsing as the `flag` package accepts them,
// `encoding/json` and `strconv.Quote` string quoting, and `net/url` escaping and path cleaning.
// Pure functions; safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvd::cli {

// time.ParseDuration: "2s", "500ms", "1m30s", "1.5h", "0". A bare "5" is rejected.
std::optional<std::chrono::nanoseconds> parse_go_duration(std::string_view s);

// strconv.ParseInt(s, 0, 64): optional sign, 0x/0o/0b/leading-0 prefixes.
std::optional<std::int64_t> parse_go_int(std::string_view s);

// strconv.ParseBool: 1 t T TRUE true True 0 f F FALSE false False.
std::optional<bool> parse_go_bool(std::string_view s);

// encoding/json string encoding with HTML escaping (<, >, & as \u003c...), quotes included.
std::string go_json_quote(std::string_view s);

// strconv.Quote (fmt's %q) for a string, quotes included.
std::string go_quote(std::string_view s);

// url.PathEscape-style escaping as url.URL.EscapedPath does it ('/' kept).
std::string go_escape_path(std::string_view s);

// url.QueryEscape (space becomes '+').
std::string go_query_escape(std::string_view s);

// etcd's CanonicalURLPath: path.Clean that keeps a trailing slash; "" becomes "/".
std::string canonical_url_path(std::string_view p);

// strconv.Itoa-like formatting kept here so callers need no <format>.
std::string to_dec(std::uint64_t v);

}  // namespace kvd::cli
