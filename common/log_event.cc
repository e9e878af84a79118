// Structured log events (log_event.h).
#include "common/log_event.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/go.h"
#include "common/ids.h"

namespace kvd::logev {

namespace {
constexpr char kStart = '\x1e';
constexpr char kFields = '\x1f';
}  // namespace

Field str(std::string key, std::string_view value) {
  Field f{std::move(key), {}};
  go::append_json_string(f.json, value);
  return f;
}

Field dur(std::string key, std::chrono::nanoseconds d) {
  return str(std::move(key), go::format_duration(d.count()));
}

Field id(std::string key, uint64_t member_id) { return str(std::move(key), hex_id(member_id)); }

Field num_double(std::string key, double value) {
  if (!std::isfinite(value)) return str(std::move(key), std::isnan(value) ? "NaN" : "Inf");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  return {std::move(key), buf};
}

Field count(std::string key, uint64_t n) {
  if (n == 0) return {};
  return num(std::move(key), n);
}

std::string encode(std::string_view msg, std::initializer_list<Field> fields) {
  std::string out;
  out.reserve(msg.size() + 2 + fields.size() * 24);
  out += kStart;
  out += msg;
  out += kFields;
  bool first = true;
  for (const Field& f : fields) {
    if (f.key.empty()) continue;
    if (!first) out += ',';
    first = false;
    go::append_json_string(out, f.key);
    out += ':';
    out += f.json;
  }
  return out;
}

bool is_event(std::string_view payload) {
  return !payload.empty() && payload[0] == kStart && payload.find(kFields) != std::string_view::npos;
}

Decoded decode(std::string_view payload) {
  if (!is_event(payload)) return {payload, {}};
  const size_t mark = payload.rfind(kFields);
  if (mark == std::string_view::npos) return {payload, {}};
  return {payload.substr(1, mark - 1), payload.substr(mark + 1)};
}

std::string text(std::string_view payload) {
  Decoded d = decode(payload);
  std::string out(d.msg);
  if (d.fields.empty()) return out;
  // The members are `"key":value` with JSON keys that never need escapes (kvd's own names):
  // drop the key's quotes and write key=value.
  out += " (";
  std::string_view rest = d.fields;
  bool first = true;
  while (!rest.empty()) {
    if (!first) out += ", ";
    first = false;
    const size_t key_end = rest.find("\":");
    if (rest[0] != '"' || key_end == std::string_view::npos) {
      out += rest;  // not kvd's shape: as it is
      break;
    }
    out += rest.substr(1, key_end - 1);
    out += '=';
    rest.remove_prefix(key_end + 2);
    // The value ends at the first comma outside a string.
    size_t i = 0;
    bool in_string = false;
    for (; i < rest.size(); ++i) {
      const char c = rest[i];
      if (in_string) {
        if (c == '\\') ++i;
        else if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == ',') {
        break;
      }
    }
    out += rest.substr(0, i);
    rest.remove_prefix(std::min(i + 1, rest.size()));
  }
  out += ')';
  return out;
}

bool Repeats::allow(uint64_t* suppressed, uint64_t n) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lk(mu_);
  if (logged_ && now - last_ < interval_) {
    held_ += n;
    return false;
  }
  logged_ = true;
  last_ = now;
  *suppressed = held_;
  held_ = 0;
  return true;
}

}  // namespace kvd::logev
