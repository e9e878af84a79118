#include "server/proxy_endpoints.h"

#include <algorithm>
#include <charconv>
#include <set>

#include <nlohmann/json.hpp>

namespace kvd::server::proxy {

std::optional<HostPort> parse_http_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) return std::nullopt;
  url.remove_prefix(kScheme.size());
  if (!url.empty() && url.back() == '/') url.remove_suffix(1);
  if (url.empty() || url.find('/') != std::string_view::npos) return std::nullopt;
  HostPort out;
  std::string_view host = url;
  std::string_view port;
  if (url.front() == '[') {
    size_t close = url.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = url.substr(1, close - 1);
    std::string_view rest = url.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
    }
  } else if (size_t colon = url.rfind(':'); colon != std::string_view::npos) {
    host = url.substr(0, colon);
    port = url.substr(colon + 1);
  }
  if (host.empty()) return std::nullopt;
  out.host = std::string(host);
  if (port.empty()) {
    out.port = 80;
  } else {
    unsigned v = 0;
    auto res = std::from_chars(port.data(), port.data() + port.size(), v);
    if (res.ec != std::errc() || res.ptr != port.data() + port.size() || v == 0 || v > 65535)
      return std::nullopt;
    out.port = static_cast<uint16_t>(v);
  }
  return out;
}

void EndpointSet::replace(const std::vector<std::string>& urls, const MakeEndpoint& make) {
  std::vector<std::shared_ptr<Endpoint>> old;
  {
    std::lock_guard lock(mu_);
    for (auto& e : entries_) old.push_back(e.endpoint);
  }
  // make() may resolve names or allocate: outside the lock.
  std::vector<Entry> fresh;
  std::set<std::string> seen;
  for (const auto& url : urls) {
    if (!seen.insert(url).second) continue;
    auto it = std::find_if(old.begin(), old.end(), [&](const auto& ep) { return ep->url == url; });
    std::shared_ptr<Endpoint> ep = it != old.end() ? *it : make(url);
    if (ep) fresh.push_back(Entry{std::move(ep), {}});
  }
  std::lock_guard lock(mu_);
  entries_ = std::move(fresh);
}

std::vector<std::shared_ptr<Endpoint>> EndpointSet::available(Clock::time_point now) const {
  std::vector<std::shared_ptr<Endpoint>> out;
  std::lock_guard lock(mu_);
  out.reserve(entries_.size());
  for (const auto& e : entries_)
    if (now >= e.failed_until) out.push_back(e.endpoint);
  return out;
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

std::optional<std::vector<std::string>> string_array(const nlohmann::json& v) {
  if (v.is_null()) return std::vector<std::string>{};  // Go's nil slice
  if (!v.is_array()) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& s : v) {
    if (!s.is_string()) return std::nullopt;
    out.push_back(s.get<std::string>());
  }
  return out;
}

std::vector<std::string> sorted_unique(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

}  // namespace

std::optional<std::vector<MemberUrls>> parse_members_json(std::string_view body) {
  auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_array()) return std::nullopt;
  std::vector<MemberUrls> out;
  for (const auto& m : j) {
    if (!m.is_object()) return std::nullopt;
    MemberUrls mu;
    auto peers = string_array(m.value("peerURLs", nlohmann::json()));
    auto clients = string_array(m.value("clientURLs", nlohmann::json()));
    if (!peers || !clients) return std::nullopt;
    mu.peer_urls = std::move(*peers);
    mu.client_urls = std::move(*clients);
    out.push_back(std::move(mu));
  }
  return out;
}

std::vector<std::string> all_client_urls(const std::vector<MemberUrls>& members) {
  std::vector<std::string> out;
  for (const auto& m : members) out.insert(out.end(), m.client_urls.begin(), m.client_urls.end());
  return sorted_unique(std::move(out));
}

std::vector<std::string> all_peer_urls(const std::vector<MemberUrls>& members) {
  std::vector<std::string> out;
  for (const auto& m : members) out.insert(out.end(), m.peer_urls.begin(), m.peer_urls.end());
  return sorted_unique(std::move(out));
}

std::string format_cluster_file(const std::vector<std::string>& peer_urls) {
  nlohmann::json j = nlohmann::json::object();
  j["PeerURLs"] = peer_urls;
  return j.dump();
}

std::optional<std::vector<std::string>> parse_cluster_file(std::string_view content) {
  auto j = nlohmann::json::parse(content.begin(), content.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto it = j.find("PeerURLs");
  if (it == j.end()) return std::nullopt;
  return string_array(*it);
}

}  // namespace kvd::server::proxy
