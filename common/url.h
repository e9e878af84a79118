// URL parsing, in the three ways kvd needs it:
//   - parse():         Go's url.Parse (the subset etcdctl's endpoints use), for kvctl;
//   - check():         etcd's validation of a flag URL (types.NewURLs), for the command line;
//   - parse_address(): the host and port a server binds or dials (listen URLs, peer URLs,
//                      member client URLs), http or https.
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvd::url {

// A URL as Go's url.URL keeps it (scheme, host[:port], path).
struct Url {
  std::string text;    // as url.URL.String() renders it; used in error messages
  std::string scheme;  // lower-cased; empty when absent
  std::string host;    // without brackets for IPv6
  std::string port;    // empty: none given
  std::string path;    // may be empty
};

// Go's url.Parse. With default_http an absent scheme becomes "http", as etcdctl does for its
// endpoints. On failure returns nullopt and sets *error to Go's message, e.g.
// `parse "127.0.0.1:22379": first path segment in URL cannot contain colon`.
std::optional<Url> parse(std::string_view raw, std::string* error, bool default_http = false);

// etcd's check of a URL given in a flag: scheme http, https, unix or unixs, no path, a
// "host:port" address. Returns "" when valid, else etcd's error text naming the URL.
std::string check(std::string_view url);

// Where a server binds or dials: http://host[:port][/path].
struct Address {
  bool tls = false;  // https
  std::string host;  // without brackets; may be empty ("http://:2379")
  std::string port;  // decimal digits, at most 65535; empty when the URL names none (or "h:")
  uint16_t port_number = 0;
  std::string path;  // "" or starting with '/'
};
// Splits an http or https URL. On failure returns nullopt and sets *why (without the URL) to
// "unix sockets are not supported by kvd",
// "URL scheme must be http, https, unix, or unixs", "missing ']' in host" or
// "invalid port in URL".
std::optional<Address> parse_address(std::string_view url, std::string* why);

}  // namespace kvd::url
