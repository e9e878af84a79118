// Response serialization in Go's net/http shape, so that answers look like etcd's byte for
// byte apart from the Date: the status line, CORS headers, the other headers sorted by name as Go
// writes them, Date, Content-Length or Transfer-Encoding, Connection.
//
// Framing follows Go's ResponseWriter (the connection chooses, see connection.cc): a body of up
// to kGoResponseBuffer bytes (its buffer) gets Content-Length; a larger one is sent as one chunk
// with Transfer-Encoding: chunked (HTTP/1.1), or unframed with the connection closed after it
// (HTTP/1.0), or with neither header (HEAD).
//
// Pure functions of their arguments (append_date_header keeps a per-thread cache); any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/http/types.h"

namespace kvd::server {

// Go's bufferBeforeChunkingSize: a handler's output up to this size gets a Content-Length.
inline constexpr size_t kGoResponseBuffer = 2048;

// How a response body is delimited.
enum class Framing { kLength, kChunked, kNone };

// The reason phrase Go writes for a status ("Not Found").
std::string_view reason(int status);

// Appends v in the given base (10 or 16, lower-case digits).
void append_uint(std::string& out, uint64_t v, int base = 10);

// "Date: Tue, 24 Nov 2026 17:45:49 GMT\r\n", recomputed once a second per thread.
void append_date_header(std::string& out);

// Appends the status line and headers of r, ending with the blank line. version: 10 or 11.
// kChunked on HTTP/1.0 writes no framing header (the body ends with the connection). close: the
// connection closes after this response ("Connection: close" on HTTP/1.1; HTTP/1.0 otherwise
// gets "Connection: keep-alive"). cors_origin: the Access-Control-Allow-Origin value for this
// request, or "" for none (only written when r.cors).
void append_response_head(std::string& out, const HttpResponse& r, Framing framing, int version,
                          bool close, std::string_view cors_origin);

}  // namespace kvd::server
