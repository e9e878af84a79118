#include "server/http/host_whitelist.h"

#include <vector>

#include "common/go.h"

namespace kvd::server {

HostWhitelist::HostWhitelist(const std::vector<std::string>& hosts) {
  for (const auto& h : hosts) {
    if (h == "*") any_ = true;
    hosts_.insert(h);
  }
  if (hosts_.empty()) any_ = true;
}

std::string_view HostWhitelist::hostname(std::string_view h) {
  // net.SplitHostPort: "[v6]:port", or "host:port" with exactly one colon.
  if (!h.empty() && h[0] == '[') {
    size_t end = h.find(']');
    if (end != std::string_view::npos && end + 1 < h.size() && h[end + 1] == ':' &&
        h.find(':', end + 2) == std::string_view::npos)
      return h.substr(1, end - 1);
    return h;
  }
  size_t colon = h.find(':');
  if (colon != std::string_view::npos && h.find(':', colon + 1) == std::string_view::npos)
    return h.substr(0, colon);
  return h;
}

bool HostWhitelist::allows(std::string_view host_header) const {
  return any_ || hosts_.count(hostname(host_header)) != 0;
}

std::string HostWhitelist::refusal_text(std::string_view hostname) {
  return "\netcd received your request, but the Host header was unrecognized.\n\n"
         "To fix this, choose one of the following options:\n"
         "- Enable TLS, then any HTTPS request will be allowed.\n"
         "- Add the hostname you want to use to the whitelist in settings.\n"
         "  - e.g. etcd --host-whitelist " + go::quote(hostname) + "\n\n"
         "This requirement has been added to help prevent \"DNS Rebinding\" attacks "
         "(CVE-2018-5702).\n";
}

}  // namespace kvd::server
