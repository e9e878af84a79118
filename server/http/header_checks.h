// Checks on a raw request header block that Go's net/http makes and Boost.Beast does not, so
// that the client port refuses (and accepts) exactly what etcd's does. normalize_header() rewrites
// the block into the strict CRLF form Beast parses: bare LF line ends are accepted, more than one
// Host or a malformed Host is 400, a Transfer-Encoding other than exactly one "chunked" is 501
// (HTTP/1.1; HTTP/1.0 ignores it), chunked wins over Content-Length, identical repeated
// Content-Lengths count once. Also the small case-insensitive text helpers the proxy's header
// rewriting shares.
//
// Pure functions; any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kvd::server {

// ASCII case-insensitive comparison, as HTTP field names are compared.
bool iequals(std::string_view a, std::string_view b);
bool istarts_with(std::string_view s, std::string_view prefix);
// Strips optional white space (spaces and tabs) around a field value.
std::string_view trim_ows(std::string_view v);

// Where the header block in data ends (just past its blank line), or npos while incomplete.
// Lines end in "\n" with an optional "\r" before it, as Go's textproto reads them. from: bytes
// already searched (the search resumes a little before it).
size_t find_header_end(std::string_view data, size_t from);

enum class HeaderVerdict {
  kOk,
  kBadRequest,                   // plain "400 Bad Request"
  kUnsupportedTransferEncoding,  // 501
  kMissingHost,                  // "400 Bad Request: missing required Host header"
  kBadHost,                      // "400 Bad Request: malformed Host header"
  kBadHeaderName,                // "400 Bad Request: invalid header name"
  kBadHeaderValue,               // "400 Bad Request: invalid header value"
};

// Rewrites a raw header block (request line, fields, blank line) into the strict CRLF form
// Beast parses in `out`, applying Go's rules above in Go's order: a line without a colon,
// several Hosts, the Transfer-Encoding, a missing Host (HTTP/1.1), a malformed Host, header
// names, header values. `out` is meaningful only when the verdict is kOk.
HeaderVerdict normalize_header(std::string_view raw, std::string& out);

}  // namespace kvd::server
