// Header rewriting for proxy mode, as etcd's proxy/httpproxy/reverse.go does it, with the two
// fixes listed in README ("Where kvd's proxy differs from etcd's"): headers named in the
// client's Connection header are dropped too (RFC 7230 §6.1), and the member's CORS headers
// are replaced by the proxy's own instead of being sent twice.
//
// Pure functions of strings; unit tested in tests/unit/proxy/proxy_headers_test.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvd::server::proxy {

// The hop-by-hop headers Go's reverse proxies drop in both directions: Connection, Keep-Alive,
// Proxy-Authenticate, Proxy-Authorization, Te, Trailers, Transfer-Encoding, Upgrade.
bool is_hop_by_hop(std::string_view name);

// Whether a member's response header reaches the client. Hop-by-hop headers and framing
// (Content-Length; the proxy frames the body itself) do not, nor the member's
// Access-Control-Allow-* (the proxy adds its own set, from its --cors).
bool pass_response_header(std::string_view name);

// The request sent to a member, complete with body. raw_header is the client's normalized
// header block (request line, CRLF-terminated fields, blank line); the member gets the same
// method and target as HTTP/1.1 and every field except the hop-by-hop ones, those named in the
// client's Connection header, Content-Length and Expect (the proxy has read the body already
// and sends it with its own Content-Length), with the client's Host kept and remote_ip
// appended to X-Forwarded-For ("1.2.3.4, 127.0.0.1"; several such headers fold into one).
// Content-Length is sent when the body is not empty or the client framed one.
std::string build_upstream_request(std::string_view method, std::string_view target,
                                   std::string_view raw_header, std::string_view body,
                                   std::string_view remote_ip);

// Whether the query of `target` sets `name` to true as Go's strconv.ParseBool reads it
// ("wait=true", "wait=1"), as etcd parses its keys flags.
bool query_flag(std::string_view target, std::string_view name);

// The first value of `name` in the query of `target` as an unsigned decimal, if it is one.
std::optional<uint64_t> query_uint(std::string_view target, std::string_view name);

// target with every `name` parameter of its query replaced by one name=value at the end.
std::string with_query_param(std::string_view target, std::string_view name,
                             std::string_view value);

}  // namespace kvd::server::proxy
