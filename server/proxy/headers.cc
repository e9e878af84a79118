#include "server/proxy/headers.h"

#include <array>
#include <cctype>
#include <vector>

#include "common/go.h"
#include "server/http/header_checks.h"

namespace kvd::server::proxy {

namespace {

struct Field {
  std::string_view name;
  std::string_view line;  // the whole line without CRLF
  std::string_view value;
};

}  // namespace

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::array<std::string_view, 8> kHopByHop = {
      "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
      "Te",         "Trailers",   "Transfer-Encoding",  "Upgrade"};
  for (auto h : kHopByHop)
    if (iequals(name, h)) return true;
  return false;
}

bool pass_response_header(std::string_view name) {
  if (is_hop_by_hop(name) || iequals(name, "Content-Length")) return false;
  return !istarts_with(name, "Access-Control-Allow-");
}

std::string build_upstream_request(std::string_view method, std::string_view target,
                                   std::string_view raw_header, std::string_view body,
                                   std::string_view remote_ip) {
  // Split the block into fields (the first line is the request line).
  std::vector<Field> fields;
  bool first = true;
  while (!raw_header.empty()) {
    size_t nl = raw_header.find('\n');
    std::string_view line = raw_header.substr(0, nl);
    raw_header.remove_prefix(nl == std::string_view::npos ? raw_header.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (first) {
      first = false;
      continue;
    }
    if (line.empty()) break;
    if (line[0] == ' ' || line[0] == '\t') continue;  // obsolete folding: dropped
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    fields.push_back(Field{line.substr(0, colon), line, trim_ows(line.substr(colon + 1))});
  }
  // Names listed in Connection are hop-by-hop for this message.
  std::vector<std::string_view> connection_named;
  bool framed = false;
  for (const auto& f : fields) {
    if (iequals(f.name, "Connection")) {
      std::string_view v = f.value;
      while (!v.empty()) {
        size_t comma = v.find(',');
        std::string_view token = trim_ows(v.substr(0, comma));
        if (!token.empty()) connection_named.push_back(token);
        v.remove_prefix(comma == std::string_view::npos ? v.size() : comma + 1);
      }
    } else if (iequals(f.name, "Content-Length") || iequals(f.name, "Transfer-Encoding")) {
      framed = true;
    }
  }
  std::string out;
  out.reserve(256 + body.size());
  out.append(method);
  out += ' ';
  out.append(target);
  out += " HTTP/1.1\r\n";
  std::string forwarded;
  for (const auto& f : fields) {
    if (is_hop_by_hop(f.name) || iequals(f.name, "Content-Length") || iequals(f.name, "Expect"))
      continue;
    bool named = false;
    for (auto n : connection_named) named = named || iequals(n, f.name);
    if (named) continue;
    if (iequals(f.name, "X-Forwarded-For")) {
      if (!forwarded.empty()) forwarded += ", ";
      forwarded.append(f.value);
      continue;
    }
    out.append(f.line);
    out += "\r\n";
  }
  if (!remote_ip.empty()) {
    if (!forwarded.empty()) forwarded += ", ";
    forwarded.append(remote_ip);
  }
  if (!forwarded.empty()) {
    out += "X-Forwarded-For: ";
    out += forwarded;
    out += "\r\n";
  }
  if (!body.empty() || framed) {
    out += "Content-Length: ";
    out += std::to_string(body.size());
    out += "\r\n";
  }
  out += "\r\n";
  out.append(body);
  return out;
}

bool query_flag(std::string_view target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return false;
  std::string_view query = target.substr(q + 1);
  bool value = false;
  while (!query.empty()) {  // the first occurrence wins, as url.Values.Get
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    std::string_view v = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    value = go::parse_bool(v).value_or(false);
    break;
  }
  return value;
}

}  // namespace kvd::server::proxy
