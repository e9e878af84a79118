#include "server/proxy/headers.h"

#include <array>
#include <cctype>
#include <charconv>
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

namespace {

// The first value of `name` in the query of target ("" for a bare name), as url.Values.Get.
std::optional<std::string_view> query_value(std::string_view target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
  }
  return std::nullopt;
}

}  // namespace

bool query_flag(std::string_view target, std::string_view name) {
  auto v = query_value(target, name);
  return v && go::parse_bool(*v).value_or(false);
}

std::optional<uint64_t> query_uint(std::string_view target, std::string_view name) {
  auto v = query_value(target, name);
  uint64_t out = 0;
  if (!v || v->empty()) return std::nullopt;
  const auto [end, err] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (err != std::errc() || end != v->data() + v->size()) return std::nullopt;
  return out;
}

std::string with_query_param(std::string_view target, std::string_view name,
                             std::string_view value) {
  const size_t q = target.find('?');
  std::string out(target.substr(0, q));
  std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  char sep = '?';
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    if (pair.empty() || pair.substr(0, pair.find('=')) == name) continue;
    out += sep;
    out += pair;
    sep = '&';
  }
  out += sep;
  out += name;
  out += '=';
  out += value;
  return out;
}

}  // namespace kvd::server::proxy
