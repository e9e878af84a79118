#include "cli/output.h"
#include "common/go.h"

#include <unistd.h>

#include <cerrno>


namespace kvd::cli {
namespace {

void write_fd(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stdout closed: nothing sensible left to do, like Go's Println
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

// time.Time round trip (RFC3339Nano): trailing zeros of the fraction are dropped.
std::string normalize_time(const std::string& t) {
  std::size_t dot = t.find('.');
  if (dot == std::string::npos) return t;
  std::size_t end = dot + 1;
  while (end < t.size() && t[end] >= '0' && t[end] <= '9') ++end;
  std::size_t last = end;
  while (last > dot + 1 && t[last - 1] == '0') --last;
  std::string frac = last > dot + 1 ? t.substr(dot, last - dot) : "";
  return t.substr(0, dot) + frac + t.substr(end);
}

void append_node(std::string& out, const Node& n) {
  out += "{\"key\":" + go::json_quote(n.key);
  if (n.dir) out += ",\"dir\":true";
  out += ",\"value\":" + go::json_quote(n.value);
  out += ",\"nodes\":";
  if (!n.nodes) {
    out += "null";
  } else {
    out += '[';
    for (std::size_t i = 0; i < n.nodes->size(); ++i) {
      if (i) out += ',';
      append_node(out, (*n.nodes)[i]);
    }
    out += ']';
  }
  out += ",\"createdIndex\":" + std::to_string(n.created_index);
  out += ",\"modifiedIndex\":" + std::to_string(n.modified_index);
  if (n.expiration) out += ",\"expiration\":" + go::json_quote(normalize_time(*n.expiration));
  if (n.ttl != 0) out += ",\"ttl\":" + std::to_string(n.ttl);
  out += '}';
}

}  // namespace

void write_stdout(std::string_view s) { write_fd(STDOUT_FILENO, s); }
void write_stderr(std::string_view s) { write_fd(STDERR_FILENO, s); }

std::string response_json(const KeysResponse& resp) {
  std::string out = "{\"action\":" + go::json_quote(resp.action) + ",\"node\":";
  append_node(out, resp.node);
  out += ",\"prevNode\":";
  if (resp.prev_node) {
    append_node(out, *resp.prev_node);
  } else {
    out += "null";
  }
  out += '}';
  return out;
}

void print_response(const KeysResponse& resp, const std::string& format) {
  std::string out;
  if (format == "simple") {
    if (resp.action != "delete") {
      out = resp.node.value + "\n";
    } else {
      out = "PrevNode.Value: " + (resp.prev_node ? resp.prev_node->value : "") + "\n";
    }
  } else if (format == "extended") {
    out += "Key: " + resp.node.key + "\n";
    out += "Created-Index: " + std::to_string(resp.node.created_index) + "\n";
    out += "Modified-Index: " + std::to_string(resp.node.modified_index) + "\n";
    if (resp.prev_node) out += "PrevNode.Value: " + resp.prev_node->value + "\n";
    out += "TTL: " + std::to_string(resp.node.ttl) + "\n";
    out += "Index: " + std::to_string(resp.index) + "\n";
    if (resp.action != "delete") out += "\n" + resp.node.value + "\n";
  } else if (format == "json") {
    out = response_json(resp) + "\n";
  } else {
    write_stderr("Unsupported output format: " + format + "\n");
    return;
  }
  write_stdout(out);
}

}  // namespace kvd::cli
