// JSON rendering of what the v2 store returns, in etcd's exact shapes, written straight into a
// std::string: keys events (the keys handler's bodies and every watch delivery) and the store's
// statistics. Strings are escaped as Go's encoding/json does (common/go.h). Pure functions; any
// thread may call them.
#pragma once

#include <cstdint>
#include <string>

#include "api_v2/store.h"

namespace kvd::v2 {

// Body for a successful keys response: {"action":..,"node":..[,"prevNode":..]}\n with Go's JSON
// escaping. With no_value, only {"action":"<name>"}\n (noValueOnSuccess).
std::string render_event(const Event& ev, bool no_value = false);

// The /v2/stats/store body (no trailing newline): the counters in etcd's field order, then the
// number of watchers.
std::string render_store_stats(const StoreStats& stats, size_t watchers);

// Appends one node object in spec §3 field order. with_value=false leaves out "value" even for a
// file (the node of a delete, compareAndDelete or expire event).
void append_node_json(std::string& out, const NodeView& n, bool with_value = true);

}  // namespace kvd::v2
