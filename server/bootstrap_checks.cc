// verify_bootstrap (bootstrap_checks.h): etcd 3.4's advertiseMatchesCluster, checkDuplicateURL
// and the texts of netutil.URLStringsEqual.
#include "server/bootstrap_checks.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/data_dir.h"
#include "common/go.h"
#include "common/url.h"

namespace kvd::server {

namespace {

std::string join(const std::vector<std::string>& v, const char* sep = ",") {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// Go's %q of a []string: ["a" "b"].
std::string go_quoted_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ' ';
    out += go::json_quote(v[i]);
  }
  return out + "]";
}

// The URL with its host resolved to an address (as Go's net.ResolveTCPAddr picks one), or
// nullopt when it cannot be resolved.
std::optional<std::string> resolved(const std::string& u) {
  std::string why;
  auto a = url::parse_address(u, &why);
  if (!a) return std::nullopt;
  boost::system::error_code ec;
  auto ip = boost::asio::ip::make_address(a->host, ec);
  std::string host = a->host;
  if (ec) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::resolver resolver(io);
    auto results = resolver.resolve(a->host, a->port, ec);
    if (ec || results.empty()) return std::nullopt;
    host = results.begin()->endpoint().address().to_string();
  } else {
    host = ip.to_string();
  }
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return std::string(a->tls ? "https" : "http") + "://" + host + ":" + a->port;
}

// netutil.URLStringsEqual: "" when the sorted lists name the same addresses, else its error.
std::string urls_equal(std::vector<std::string> a, std::vector<std::string> b) {
  if (a.size() != b.size()) {
    return "len(" + go_quoted_list(a) + ") != len(" + go_quoted_list(b) + ")";
  }
  std::vector<std::string> ra, rb;
  for (const auto& u : a) {
    auto r = resolved(u);
    if (!r) return "failed to resolve " + go::json_quote(u);
    ra.push_back(*r);
  }
  for (const auto& u : b) {
    auto r = resolved(u);
    if (!r) return "failed to resolve " + go::json_quote(u);
    rb.push_back(*r);
  }
  std::sort(ra.begin(), ra.end());
  std::sort(rb.begin(), rb.end());
  for (size_t i = 0; i < ra.size(); ++i) {
    if (ra[i] != rb[i]) {
      return "resolved urls: " + go::json_quote(ra[i]) + " != " + go::json_quote(rb[i]);
    }
  }
  return "";
}

// types.URLsMap.String(): name=url pairs, sorted, comma-separated.
std::string urls_map_string(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::vector<std::string> out;
  for (const auto& [name, u] : pairs) out.push_back(name + "=" + u);
  std::sort(out.begin(), out.end());
  return join(out);
}

std::optional<std::string> advertise_matches_cluster(const Flags& f) {
  std::vector<std::string> urls, apurls = f.initial_advertise_peer_urls;
  for (const auto& [name, u] : f.initial_cluster) {
    if (name == f.name) urls.push_back(u);
  }
  std::sort(urls.begin(), urls.end());
  std::sort(apurls.begin(), apurls.end());
  const std::string err = urls_equal(apurls, urls);
  if (err.empty()) return std::nullopt;
  const std::set<std::string> init_set(urls.begin(), urls.end());
  const std::set<std::string> ap_set(apurls.begin(), apurls.end());
  std::vector<std::string> missing;
  for (const auto& u : init_set) {
    if (!ap_set.count(u)) missing.push_back(f.name + "=" + u);
  }
  if (!missing.empty()) {
    return "--initial-cluster has " + join(missing) +
           " but missing from --initial-advertise-peer-urls=" + join(apurls) + " (" + err + ")";
  }
  std::vector<std::pair<std::string, std::string>> own;
  for (const auto& u : f.initial_advertise_peer_urls) own.emplace_back(f.name, u);
  for (const auto& u : ap_set) {
    if (!init_set.count(u)) missing.push_back(u);
  }
  if (!missing.empty()) {
    return "--initial-advertise-peer-urls has " + join(missing) +
           " but missing from --initial-cluster=" + urls_map_string(own);
  }
  return "failed to resolve " + join(apurls) + " to match --initial-cluster=" +
         urls_map_string(own) + " (" + err + ")";
}

std::optional<std::string> duplicate_url(const Flags& f) {
  std::set<std::string> seen;
  for (const auto& [name, u] : f.initial_cluster) {
    if (!seen.insert(u).second) {
      return "initial cluster " + urls_map_string(f.initial_cluster) + " has duplicate url";
    }
  }
  return std::nullopt;
}

}  // namespace

bool holds_member(const std::string& data_dir) {
  std::error_code ec;
  return std::filesystem::exists(
      std::filesystem::path(data_dir) / data_dir::kMemberDir / data_dir::kRaftLogDir, ec);
}

std::optional<std::string> verify_bootstrap(const Flags& f) {
  // hasLocalMember is checked with the flags (parse_flags).
  if (f.initial_cluster_state == "new") {
    if (auto e = advertise_matches_cluster(f)) return e;
  }
  return duplicate_url(f);
}

}  // namespace kvd::server
