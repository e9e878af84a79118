// etcd's --host-whitelist (its access controller, against DNS rebinding, CVE-2018-5702): a
// plain-HTTP request whose Host names a host outside the list is refused with 421 before any
// handler (and before CORS) sees it; requests over TLS are not checked. Pure; any thread.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kvd::server {

class HostWhitelist {
 public:
  // The flag's values; "*" anywhere (etcd's default) allows every host.
  explicit HostWhitelist(const std::vector<std::string>& hosts);
  bool allows_all() const { return any_; }
  // Whether a request with this Host header may be served (Go's net.SplitHostPort drops a
  // port; a Host it cannot split is compared whole).
  bool allows(std::string_view host_header) const;

  // The host name compared, as etcd names it in its refusal.
  static std::string_view hostname(std::string_view host_header);
  // etcd's refusal text (without the trailing newline Go's http.Error adds).
  static std::string refusal_text(std::string_view hostname);

 private:
  bool any_ = false;
  std::set<std::string, std::less<>> hosts_;
};

}  // namespace kvd::server
