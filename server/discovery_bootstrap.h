// How kvd's start uses server/discovery/: a new member's initial cluster from --discovery-srv
// (before anything is bound) or from --discovery (once its listeners are bound: registering is
// a write to the discovery service), and a proxy's peer URLs from either. Logs what etcd 3.4
// logs on each outcome (etcdmain's texts), so operators' runbooks keep working.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "server/flags.h"

namespace kvd::server {

using InitialCluster = std::vector<std::pair<std::string, std::string>>;

// --discovery-srv: the initial cluster from DNS (a member must be in it). Logs each member
// found ("got bootstrap from DNS for etcd-server at ...").
Result<InitialCluster> initial_cluster_from_srv(const Flags& flags);

struct JoinOutcome {
  enum What { kJoined, kFallBackToProxy, kFailed } what = kFailed;
  InitialCluster cluster;  // kJoined
};

// --discovery for a new member: registers with the service and waits for the cluster. The
// member id is etcd's for the advertised peer URLs with the discovery URL as token. On failure
// logs etcd's explanation; a full cluster with --discovery-fallback proxy falls back.
JoinOutcome join_by_discovery(const Flags& flags);

// For a proxy without a cluster file (ProxyConfig::discover_peer_urls): the peer URLs from the
// discovery service or DNS; empty when neither flag is set.
std::function<Result<std::vector<std::string>>()> proxy_discovery(const Flags& flags);

}  // namespace kvd::server
