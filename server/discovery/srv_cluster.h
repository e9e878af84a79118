// --discovery-srv: the initial cluster from DNS SRV records (etcd's srv.GetCluster and
// embed.Config.GetDNSClusterNames). The records of _etcd-server-ssl._tcp.<domain> (https peer
// URLs) and _etcd-server._tcp.<domain> (http) are both used (with --discovery-srv-name X:
// _etcd-server-ssl-X._tcp and _etcd-server-X._tcp); etcd 3.4 uses the http records only when
// their lookup fails (an inverted test fixed in etcd 3.5), so with http records alone it cannot
// start, where kvd does as etcd 3.5. Each record's target:port is resolved; the one at the
// address of one of this member's advertised peer URLs gets the member's name, the others
// temporary names "0", "1", ... (a member's real name replaces it once it publishes). The peer
// URL is scheme://target:port, the target without its trailing dot.
//
// Blocking (DNS); runs on the starting thread.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace kvd::server::discovery {

struct SrvQuery {
  std::string domain;        // --discovery-srv
  std::string service_name;  // --discovery-srv-name, "" for none
  std::string name;          // --name
  std::vector<std::string> advertise_peer_urls;
  // A member must find itself in the records ("cannot find local etcd member"); a proxy not.
  bool member = true;
};

struct SrvCluster {
  std::vector<std::pair<std::string, std::string>> members;  // (name, peer URL), DNS order
  // The lookup that found nothing while the other found members (for the log: a cluster
  // without TLS has no _etcd-server-ssl records).
  std::vector<std::string> notes;
};

Result<SrvCluster> srv_cluster(const SrvQuery& query);

}  // namespace kvd::server::discovery
