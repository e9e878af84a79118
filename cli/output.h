// Renders v2 keys responses in etcdctl's three output formats (simple, extended, json) and
// writes them to stdout unbuffered, as Go's fmt.Println does (so a watcher's output is visible
// the moment an event arrives).
#pragma once

#include <string>
#include <string_view>

#include "cli/etcd_client.h"

namespace kvd::cli {

// Writes and flushes. Used for every stdout line so interleaving with child processes and
// signals matches etcdctl.
void write_stdout(std::string_view s);
void write_stderr(std::string_view s);

// etcdctl's printResponseKey: unknown formats print "Unsupported output format: <f>" to stderr.
void print_response(const KeysResponse& resp, const std::string& format);

// The Go client's Response struct marshalled by encoding/json (field order action, node,
// prevNode; node: key, dir, value, nodes, createdIndex, modifiedIndex, expiration, ttl).
std::string response_json(const KeysResponse& resp);

}  // namespace kvd::cli
