// Parsing and validation of /v2/keys requests into typed requests, before anything reaches raft.
// Pure functions; any thread may call them. Rules: shared spec v2-keys-api.md §1-§2 (parameter
// sources, Go's ParseBool, validation order, error codes and causes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <utility>
#include <vector>

#include "api_v2/command.h"
#include "api_v2/error.h"

namespace kvd::v2 {

// What the HTTP layer hands over. target is the raw request-target ("/v2/keys/a%20b?x=1").
struct HttpInput {
  std::string_view method;        // "GET", "HEAD", "PUT", "POST", "DELETE"
  std::string_view target;
  std::string_view content_type;  // raw header value, may be empty
  std::string_view body;
  // Non-empty when the body could not be read completely (Go's reader error, e.g. "malformed
  // chunked encoding"); a form body then fails with it as the 210 cause.
  std::string_view body_error = {};
};

struct GetRequest {
  std::string key;  // cleaned absolute key, "/" for the root
  bool recursive = false;
  bool sorted = false;
  bool quorum = false;
  bool head = false;  // HEAD: same answer without a body
};

struct WatchRequest {
  std::string key;
  bool recursive = false;
  bool stream = false;
  uint64_t wait_index = 0;  // 0 = from the next event
};

// A mutation. cmd has op, key, value, dir, recursive, refresh, prev_value, prev_index filled;
// the server fills request_id, now_ns and expire_at_ns (now + ttl_seconds) when proposing.
struct WriteRequest {
  Command cmd;
  std::optional<uint64_t> ttl_seconds;
  bool no_value_on_success = false;
};

using KeysRequest = std::variant<Error, GetRequest, WatchRequest, WriteRequest>;

// The deepest key a write may create: "/a" is 1 level, "/a/b" 2. A PUT or POST that would create
// a deeper node is refused with 209 "Invalid field" (etcd has no such limit; its request size
// limit alone bounds depth). The store, its rendering and its snapshots walk keys level by level,
// so the limit bounds the stack those walks use, whatever a client sends. Keys themselves are
// bounded by the 1 MiB request header limit (Go's, which etcd shares).
inline constexpr size_t kMaxKeyDepth = 1024;

// REQUIRES: target's path is /v2/keys or starts with /v2/keys/ and is already clean
// (clean_path(path) == path); method is one of GET, HEAD, PUT, POST, DELETE.
KeysRequest parse_keys_request(const HttpInput& in);

// Go's path.Clean applied to the percent-decoded path of a request target, as Go's ServeMux does
// before routing (trailing slash kept). If the result differs from the decoded path, the server
// answers 301 with Location set to it. Returns nullopt when the path cannot be decoded (the
// caller answers 400).
std::optional<std::string> clean_path(std::string_view decoded_path);

// Percent-decoding of a path (not a query: '+' stays '+'). nullopt on a malformed escape.
std::optional<std::string> decode_path(std::string_view raw_path);

// application/x-www-form-urlencoded parsing in Go's url.ParseQuery manner: first value of a
// repeated name wins when looked up; error text for a bad escape is Go's
// (`invalid URL escape "%zz"`).
class Form {
 public:
  // Returns an error cause on failure.
  std::optional<std::string> parse(std::string_view encoded);
  // First value for name, or nullopt when absent.
  std::optional<std::string> get(std::string_view name) const;
  bool has(std::string_view name) const;

 private:
  std::vector<std::pair<std::string, std::string>> pairs_;
};

}  // namespace kvd::v2
