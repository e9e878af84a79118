// JSON rendering of keys events in etcd's exact shape: field order and omission rules of the
// shared spec v2-keys-api.md §3, Go encoding/json string escaping (with HTML escaping), and
// time.Time's RFC 3339 nanosecond form. Written straight into a std::string: this runs for every
// response and every watch delivery.
#include <cstdio>

#include "api_v2/render.h"
#include "api_v2/store.h"

namespace kvd::v2 {
namespace {

constexpr char kHex[] = "0123456789abcdef";

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

// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not one (Go's
// utf8.DecodeRuneInString rules: no overlongs, no surrogates, nothing above U+10FFFF).
size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t left = s.size() - i;
  auto cont = [&](size_t k) { return (b(k) & 0xc0) == 0x80; };
  if (c >= 0xc2 && c <= 0xdf) {
    return left >= 2 && cont(i + 1) ? 2 : 0;
  }
  if (c >= 0xe0 && c <= 0xef) {
    if (left < 3) return 0;
    unsigned char c1 = b(i + 1);
    if (c == 0xe0 && c1 < 0xa0) return 0;  // overlong
    if (c == 0xed && c1 > 0x9f) return 0;  // surrogate
    return cont(i + 1) && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (left < 4) return 0;
    unsigned char c1 = b(i + 1);
    if (c == 0xf0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xf4 && c1 > 0x8f) return 0;  // above U+10FFFF
    return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
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
    append_json_string(out, n.key);
  }
  if (!n.dir && with_value) {
    field("value");
    append_json_string(out, n.value);
  }
  if (n.dir) {
    field("dir");
    out.append("true");
  }
  if (n.expiration_ns) {
    field("expiration");
    out.push_back('"');
    append_rfc3339_nano(out, *n.expiration_ns);
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

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  size_t run = 0;  // start of the pending run of bytes copied verbatim
  size_t i = 0;
  auto flush = [&](size_t end) {
    if (end > run) out.append(s.data() + run, end - run);
  };
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
        ++i;
        continue;
      }
      flush(i);
      switch (c) {
        case '"': out.append("\\\""); break;
        case '\\': out.append("\\\\"); break;
        case '\n': out.append("\\n"); break;
        case '\r': out.append("\\r"); break;
        case '\t': out.append("\\t"); break;
        default:
          out.append("\\u00");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xf]);
      }
      run = ++i;
      continue;
    }
    size_t len = utf8_sequence_length(s, i);
    if (len == 0) {
      flush(i);
      out.append("\\ufffd");
      run = ++i;
      continue;
    }
    // U+2028 and U+2029 (E2 80 A8/A9) break JavaScript parsers; Go escapes them.
    if (len == 3 && c == 0xe2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(s[i + 2]) & 0xfe) == 0xa8) {
      flush(i);
      out.append(static_cast<unsigned char>(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029");
      i += 3;
      run = i;
      continue;
    }
    i += len;
  }
  flush(i);
  out.push_back('"');
}

void append_rfc3339_nano(std::string& out, int64_t unix_ns) {
  int64_t secs = unix_ns / 1'000'000'000;
  int64_t nanos = unix_ns % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    secs -= 1;
  }
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    days -= 1;
  }
  // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld",
                        static_cast<long long>(y), static_cast<long long>(m),
                        static_cast<long long>(d), static_cast<long long>(rem / 3600),
                        static_cast<long long>(rem / 60 % 60), static_cast<long long>(rem % 60));
  out.append(buf, static_cast<size_t>(n));
  if (nanos != 0) {
    char frac[10];
    for (int k = 8; k >= 0; --k) {
      frac[k] = static_cast<char>('0' + nanos % 10);
      nanos /= 10;
    }
    int len = 9;
    while (len > 0 && frac[len - 1] == '0') --len;
    out.push_back('.');
    out.append(frac, static_cast<size_t>(len));
  }
  out.push_back('Z');
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

}  // namespace kvd::v2
