#include "common/url.h"

#include <cctype>
#include <charconv>

namespace kvd::url {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

std::optional<Url> parse(std::string_view raw, std::string* error, bool default_http) {
  const std::string quoted = "parse \"" + std::string(raw) + "\": ";
  Url u;
  std::string_view rest = raw;
  // Scheme: a letter followed by letters, digits, '+', '-', '.', ended by ':'.
  for (size_t i = 0; i < rest.size(); ++i) {
    char c = rest[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool digit_etc = (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
    if (alpha) continue;
    if (digit_etc) {
      if (i == 0) break;
      continue;
    }
    if (c == ':') {
      if (i == 0) {
        *error = quoted + "missing protocol scheme";
        return std::nullopt;
      }
      u.scheme = lower(rest.substr(0, i));
      rest.remove_prefix(i + 1);
    }
    break;
  }
  if (size_t q = rest.find('?'); q != std::string_view::npos) rest = rest.substr(0, q);
  if (size_t h = rest.find('#'); h != std::string_view::npos) rest = rest.substr(0, h);
  if (u.scheme.empty()) {
    std::string_view first_seg = rest.substr(0, rest.find('/'));
    if (first_seg.find(':') != std::string_view::npos) {
      *error = quoted + "first path segment in URL cannot contain colon";
      return std::nullopt;
    }
  }
  std::string authority;
  bool has_authority = false;
  if (rest.substr(0, 2) == "//") {
    rest.remove_prefix(2);
    size_t slash = rest.find('/');
    authority = std::string(rest.substr(0, slash));
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    has_authority = true;
  } else if (!u.scheme.empty() && !rest.empty() && rest[0] != '/') {
    // Opaque URL such as "localhost:22379": no host; a request to it fails later.
    u.text = u.scheme + ":" + std::string(rest);
    return u;
  }
  if (has_authority) {
    if (size_t at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
    std::string host = authority;
    std::string port;
    if (!host.empty() && host[0] == '[') {
      size_t close = host.find(']');
      if (close == std::string::npos) {
        *error = quoted + "missing ']' in host";
        return std::nullopt;
      }
      std::string after = host.substr(close + 1);
      if (!after.empty()) {
        if (after[0] != ':') {
          *error = quoted + "invalid port \"" + after + "\" after host";
          return std::nullopt;
        }
        port = after.substr(1);
      }
      host = host.substr(1, close - 1);
    } else if (size_t colon = host.rfind(':'); colon != std::string::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
    }
    for (char c : port) {
      if (c < '0' || c > '9') {
        *error = quoted + "invalid port \":" + port + "\" after host";
        return std::nullopt;
      }
    }
    u.host = host;
    u.port = port;
  }
  u.path = std::string(rest);
  if (u.scheme.empty()) {
    if (!default_http) {
      u.text = std::string(raw);
      return u;
    }
    u.scheme = "http";
  }
  u.text = u.scheme + ":";
  if (has_authority || !u.path.empty()) u.text += "//" + authority;
  u.text += u.path;
  return u;
}

std::string check(std::string_view url_view) {
  const std::string url(url_view);
  auto scheme_end = url.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https" && scheme != "unix" && scheme != "unixs")
    return "URL scheme must be http, https, unix, or unixs: " + url;
  std::string rest = url.substr(scheme_end + 3);
  if (rest.find('/') != std::string::npos) return "URL must not contain a path: " + url;
  // net.SplitHostPort: host may be empty or [v6], the port must be present.
  auto colon = rest.rfind(':');
  bool bracketed = !rest.empty() && rest[0] == '[';
  if (colon == std::string::npos || (bracketed && rest.find(']') > colon) ||
      (!bracketed && rest.find(':') != colon))
    return "URL address does not have the form \"host:port\": " + url;
  return "";
}

std::optional<Address> parse_address(std::string_view url, std::string* why) {
  if (starts_with(url, "unix://") || starts_with(url, "unixs://")) {
    *why = "unix sockets are not supported by kvd";
    return std::nullopt;
  }
  Address a;
  a.tls = starts_with(url, "https://");
  if (!a.tls && !starts_with(url, "http://")) {
    *why = "URL scheme must be http, https, unix, or unixs";
    return std::nullopt;
  }
  std::string_view rest = url.substr(a.tls ? 8 : 7);
  size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    a.path = std::string(rest.substr(slash));
    rest = rest.substr(0, slash);
  }
  std::string_view host = rest;
  std::string_view port;
  bool has_port = false;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      *why = "missing ']' in host";
      return std::nullopt;
    }
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        *why = "invalid port in URL";
        return std::nullopt;
      }
      port = after.substr(1);
      has_port = true;
    }
  } else if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    has_port = true;
  }
  if (has_port && !port.empty()) {
    unsigned value = 0;
    auto res = std::from_chars(port.data(), port.data() + port.size(), value);
    if (res.ec != std::errc() || res.ptr != port.data() + port.size() ||
        value > 65535) {
      *why = "invalid port in URL";
      return std::nullopt;
    }
    a.port = std::string(port);
    a.port_number = static_cast<uint16_t>(value);
  }
  a.host = std::string(host);
  return a;
}

}  // namespace kvd::url
