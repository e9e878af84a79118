// JSON rendering of keys events in etcd's exact shape: field order and omission rules of the
// shared spec v2-keys-api.md §3, Go encoding/json string escaping (with HTML escaping), and
// time.Time's RFC 3339 nanosecond form. Written straight into a std::string: this runs for every
// response and every watch delivery.
#include <cstdio>

#include "api_v2/render.h"
#include "api_v2/store.h"
#include "common/go.h"

namespace kvd::v2 {
namespace {

void append_u64(std::string& out, uint64_t v) {
  char buf[24];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) out.push_back(buf[--n]);
}

void append_i64(std::string& out, int64_t v) {
  if (v < 0) {
    out.push_back('-');
    append_u64(out, ~static_cast<uint64_t>(v) + 1);
  } else {
    append_u64(out, static_cast<uint64_t>(v));
  }
}

void render_node(std::string& out, const NodeView& n, bool with_value) {
  out.push_back('{');
  bool first = true;
  auto field = [&](const char* name) {
    if (!first) out.push_back(',');
    first = false;
    out.push_back('"');
    out.append(name);
    out.append("\":");
  };
  if (!n.key.empty()) {
    field("key");
    go::append_json_string(out, n.key);
  }
  if (!n.dir && with_value) {
    field("value");
    go::append_json_string(out, n.value);
  }
  if (n.dir) {
    field("dir");
    out.append("true");
  }
  if (n.expiration_ns) {
    field("expiration");
    out.push_back('"');
    go::append_rfc3339_nano(out, *n.expiration_ns);
    out.push_back('"');
  }
  if (n.ttl != 0) {
    field("ttl");
    append_i64(out, n.ttl);
  }
  if (!n.nodes.empty()) {
    field("nodes");
    out.push_back('[');
    for (size_t i = 0; i < n.nodes.size(); ++i) {
      if (i > 0) out.push_back(',');
      render_node(out, n.nodes[i], true);
    }
    out.push_back(']');
  }
  if (n.modified_index != 0) {
    field("modifiedIndex");
    append_u64(out, n.modified_index);
  }
  if (n.created_index != 0) {
    field("createdIndex");
    append_u64(out, n.created_index);
  }
  out.push_back('}');
}

}  // namespace

std::string_view action_name(Action a) {
  switch (a) {
    case Action::kGet: return "get";
    case Action::kSet: return "set";
    case Action::kCreate: return "create";
    case Action::kUpdate: return "update";
    case Action::kCompareAndSwap: return "compareAndSwap";
    case Action::kDelete: return "delete";
    case Action::kCompareAndDelete: return "compareAndDelete";
    case Action::kExpire: return "expire";
  }
  return "unknown";
}

bool Event::created() const {
  return action == Action::kCreate || (action == Action::kSet && !prev_node.has_value());
}

void append_node_json(std::string& out, const NodeView& n, bool with_value) {
  render_node(out, n, with_value);
}

std::string render_event(const Event& ev, bool no_value) {
  std::string out;
  out.reserve(128 + ev.node.value.size() + (ev.prev_node ? ev.prev_node->value.size() : 0));
  out.append("{\"action\":\"");
  out.append(action_name(ev.action));
  out.push_back('"');
  bool write_action = ev.action == Action::kSet || ev.action == Action::kCreate ||
                      ev.action == Action::kUpdate || ev.action == Action::kCompareAndSwap;
  if (!(no_value && write_action)) {
    // Delete, compareAndDelete and expire events describe a node that is gone: no value.
    bool node_value = ev.action != Action::kDelete && ev.action != Action::kCompareAndDelete &&
                      ev.action != Action::kExpire;
    out.append(",\"node\":");
    render_node(out, ev.node, node_value);
    if (ev.prev_node) {
      out.append(",\"prevNode\":");
      render_node(out, *ev.prev_node, true);
    }
  }
  out.append("}\n");
  return out;
}

std::string render_store_stats(const StoreStats& s, size_t watchers) {
  std::string out;
  out.reserve(512);
  auto field = [&](const char* name, uint64_t v, bool first = false) {
    if (!first) out.push_back(',');
    out.push_back('"');
    out.append(name);
    out.append("\":");
    append_u64(out, v);
  };
  out.push_back('{');
  field("getsSuccess", s.gets_success, true);
  field("getsFail", s.gets_fail);
  field("setsSuccess", s.sets_success);
  field("setsFail", s.sets_fail);
  field("deleteSuccess", s.delete_success);
  field("deleteFail", s.delete_fail);
  field("updateSuccess", s.update_success);
  field("updateFail", s.update_fail);
  field("createSuccess", s.create_success);
  field("createFail", s.create_fail);
  field("compareAndSwapSuccess", s.compare_and_swap_success);
  field("compareAndSwapFail", s.compare_and_swap_fail);
  field("compareAndDeleteSuccess", s.compare_and_delete_success);
  field("compareAndDeleteFail", s.compare_and_delete_fail);
  field("expireCount", s.expire_count);
  field("watchers", watchers);
  out.push_back('}');
  return out;
}

}  // namespace kvd::v2
