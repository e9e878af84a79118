#include "server/proxy/endpoints.h"

#include <algorithm>
#include <charconv>
#include <set>

#include "common/url.h"

namespace kvd::server::proxy {

std::optional<HostPort> parse_http_url(std::string_view url) {
  std::string why;
  auto a = url::parse_address(url, &why);
  if (!a || a->host.empty() || (!a->path.empty() && a->path != "/")) return std::nullopt;
  HostPort out;
  out.host = a->host;
  out.tls = a->tls;
  out.port = a->port.empty() ? (a->tls ? 443 : 80) : a->port_number;
  if (out.port == 0) return std::nullopt;
  return out;
}

void EndpointSet::replace(const std::vector<std::string>& urls, const MakeEndpoint& make) {
  std::vector<std::shared_ptr<Endpoint>> old;
  std::set<std::string> silent;
  {
    std::lock_guard lock(mu_);
    for (auto& e : entries_) {
      old.push_back(e.endpoint);
      if (e.silent) silent.insert(e.endpoint->url);
    }
  }
  // make() may resolve names or allocate: outside the lock.
  std::vector<Entry> fresh;
  std::set<std::string> seen;
  for (const auto& url : urls) {
    if (!seen.insert(url).second) continue;
    auto it = std::find_if(old.begin(), old.end(), [&](const auto& ep) { return ep->url == url; });
    std::shared_ptr<Endpoint> ep = it != old.end() ? *it : make(url);
    if (ep) fresh.push_back(Entry{std::move(ep), {}, silent.count(url) > 0});
  }
  std::lock_guard lock(mu_);
  entries_ = std::move(fresh);
}

std::vector<std::shared_ptr<Endpoint>> EndpointSet::available(Clock::time_point now) const {
  std::vector<std::shared_ptr<Endpoint>> out, silent;
  std::lock_guard lock(mu_);
  out.reserve(entries_.size());
  for (const auto& e : entries_)
    if (now >= e.failed_until) (e.silent ? silent : out).push_back(e.endpoint);
  return out.empty() ? silent : out;
}

bool EndpointSet::set_silent(const std::string& url, bool silent) {
  std::lock_guard lock(mu_);
  bool changed = false;
  for (auto& e : entries_) {
    if (e.endpoint->url != url || e.silent == silent) continue;
    e.silent = silent;
    changed = true;
  }
  return changed;
}

bool EndpointSet::is_silent(const Endpoint& ep) const {
  std::lock_guard lock(mu_);
  for (const auto& e : entries_)
    if (e.endpoint.get() == &ep) return e.silent;
  return false;
}

void EndpointSet::mark_failed(const Endpoint& ep, Clock::time_point now) {
  std::lock_guard lock(mu_);
  for (auto& e : entries_)
    if (e.endpoint.get() == &ep) e.failed_until = now + failure_wait_;
}

std::vector<std::string> EndpointSet::urls() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e.endpoint->url);
  return out;
}

size_t EndpointSet::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

namespace {

std::vector<std::string> sorted_unique(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

}  // namespace

std::vector<std::string> all_client_urls(const std::vector<MemberInfo>& members) {
  std::vector<std::string> out;
  for (const auto& m : members) out.insert(out.end(), m.client_urls.begin(), m.client_urls.end());
  return sorted_unique(std::move(out));
}

std::vector<std::string> all_peer_urls(const std::vector<MemberInfo>& members) {
  std::vector<std::string> out;
  for (const auto& m : members) out.insert(out.end(), m.peer_urls.begin(), m.peer_urls.end());
  return sorted_unique(std::move(out));
}

}  // namespace kvd::server::proxy
