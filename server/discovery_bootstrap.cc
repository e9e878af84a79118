#include "server/discovery_bootstrap.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "server/discovery/srv_cluster.h"
#include "server/discovery/v2_discovery.h"
#include "server/member/node.h"

namespace kvd::server {

namespace {

discovery::SrvQuery srv_query(const Flags& flags, bool member) {
  discovery::SrvQuery q;
  q.domain = flags.discovery_srv;
  q.service_name = flags.discovery_srv_name;
  q.name = flags.name;
  q.advertise_peer_urls = flags.initial_advertise_peer_urls;
  q.member = member;
  return q;
}

discovery::Options discovery_options(const Flags& flags) {
  return discovery::Options{flags.discovery, flags.discovery_proxy};
}

std::string format_cluster(const InitialCluster& c) {
  std::string out;
  for (const auto& [name, url] : c) out += (out.empty() ? "" : ",") + name + "=" + url;
  return out;
}

}  // namespace

Result<InitialCluster> initial_cluster_from_srv(const Flags& flags) {
  auto found = discovery::srv_cluster(srv_query(flags, /*member=*/true));
  if (!found.is_ok()) {
    SPDLOG_ERROR("couldn't resolve during SRV discovery ({})", found.status().message());
    return found.status();
  }
  for (const auto& note : found.value().notes) SPDLOG_INFO("SRV discovery: {}", note);
  for (const auto& [name, url] : found.value().members)
    SPDLOG_INFO("got bootstrap from DNS for etcd-server at {}={}", name, url);
  return found.value().members;
}

JoinOutcome join_by_discovery(const Flags& flags) {
  // etcd's InitialPeerURLsMap.String(): "name=url" pairs, sorted.
  std::vector<std::string> pairs;
  for (const auto& u : flags.initial_advertise_peer_urls) pairs.push_back(flags.name + "=" + u);
  std::sort(pairs.begin(), pairs.end());
  std::string self;
  for (const auto& p : pairs) self += (self.empty() ? "" : ",") + p;
  const uint64_t id = compute_member_id(flags.initial_advertise_peer_urls, flags.discovery);

  auto outcome = discovery::join_cluster(discovery_options(flags), id, self);
  JoinOutcome out;
  using discovery::Code;
  if (outcome.code == Code::kOk) {
    auto cluster = discovery::parse_urls_map(outcome.cluster);
    std::set<std::string> urls;
    bool duplicate = false;
    for (const auto& [name, url] : *cluster) duplicate = !urls.insert(url).second || duplicate;
    if (duplicate) {
      SPDLOG_CRITICAL("discovery cluster {} has duplicate url", format_cluster(*cluster));
      return out;
    }
    out.what = JoinOutcome::kJoined;
    out.cluster = std::move(*cluster);
    return out;
  }
  const std::string error = "failed to join discovery cluster (" + outcome.error + ")";
  if (outcome.code == Code::kFullCluster && flags.discovery_fallback_proxy) {
    SPDLOG_INFO("discovery cluster full, falling back to proxy");
    out.what = JoinOutcome::kFallBackToProxy;
    return out;
  }
  switch (outcome.code) {
    case Code::kDuplicateId:
      SPDLOG_ERROR("member \"{}\" has previously registered with discovery service token ({}).",
                   flags.name, flags.discovery);
      SPDLOG_ERROR("But etcd could not find valid cluster configuration in the given data dir "
                   "({}).",
                   flags.data_dir);
      SPDLOG_INFO("Please check the given data dir path if the previous bootstrap succeeded");
      SPDLOG_INFO("or use a new discovery token if the previous bootstrap failed.");
      break;
    case Code::kDuplicateName:
      SPDLOG_ERROR("member with duplicated name has registered with discovery service token({}).",
                   flags.discovery);
      SPDLOG_ERROR("please check (cURL) the discovery token for more information.");
      SPDLOG_ERROR("please do not reuse the discovery token and generate a new one to bootstrap "
                   "the cluster.");
      break;
    default:
      SPDLOG_ERROR("{}", error);
      SPDLOG_INFO("discovery token {} was used, but failed to bootstrap the cluster.",
                  flags.discovery);
      SPDLOG_INFO("please generate a new discovery token and try to bootstrap again.");
  }
  return out;
}

std::function<Result<std::vector<std::string>>()> proxy_discovery(const Flags& flags) {
  auto urls_of = [](const InitialCluster& c) {
    std::vector<std::string> urls;
    for (const auto& [name, url] : c) urls.push_back(url);
    return urls;
  };
  if (!flags.discovery.empty()) {
    return [options = discovery_options(flags), urls_of]() -> Result<std::vector<std::string>> {
      auto outcome = discovery::get_cluster(options);
      if (outcome.code != discovery::Code::kOk) return Status::error(outcome.error);
      auto cluster = discovery::parse_urls_map(outcome.cluster);
      if (!cluster) return Status::error("discovery: invalid URL");
      return urls_of(*cluster);
    };
  }
  if (!flags.discovery_srv.empty()) {
    return [q = srv_query(flags, /*member=*/false), urls_of]() -> Result<std::vector<std::string>> {
      auto found = discovery::srv_cluster(q);
      if (!found.is_ok())
        return Status::error("error setting up initial cluster: " + found.status().message());
      for (const auto& [name, url] : found.value().members)
        SPDLOG_INFO("got bootstrap from DNS for etcd-server at {}={}", name, url);
      return urls_of(found.value().members);
    };
  }
  return {};
}

}  // namespace kvd::server
