// Rendering helpers shared by the keys handler and the store: etcd's JSON shapes written straight
// into a std::string. Pure functions; any thread may call them.
#pragma once

#include <cstdint>
#include <string>

#include "api_v2/store.h"

namespace kvd::v2 {

// Appends Go's time.Time JSON form of a Unix-nanosecond instant, without quotes: RFC 3339 in UTC
// with nanoseconds, trailing fractional zeros dropped, no fraction when it is 0
// ("2026-11-23T10:50:30.13098912Z").
void append_rfc3339_nano(std::string& out, int64_t unix_ns);

// Appends one node object in spec §3 field order. with_value=false leaves out "value" even for a
// file (the node of a delete, compareAndDelete or expire event).
void append_node_json(std::string& out, const NodeView& n, bool with_value = true);

}  // namespace kvd::v2
