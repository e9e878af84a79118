// etcd 3.4's v2 discovery protocol (etcdserver/api/v2discovery), the client side: a new member
// registers itself under a token's directory on any etcd v2 keys server and waits there until
// the cluster's size of members registered; a proxy only waits. The protocol, as etcd:
//
//   <token>/_config/size   N, set by whoever made the token (e.g. `kvctl set
//                          /discovery/<token>/_config/size 3` on the discovery service)
//   <token>/<member id>    "name=peerURL[,name=peerURL...]", created by the member itself with
//                          prevExist=false (hex id as etcd's types.ID prints it)
//
//   1. GET _config/size; GET <token> (the registered members, sorted by createdIndex). When the
//      first N entries are others, the cluster is full (kFullCluster).
//   2. Create own key; watch it until it is visible (waitIndex = its createdIndex). A key that
//      exists already means this member registered before (kDuplicateId).
//   3. Check again, then watch <token> (recursive, from the index of that GET) until N members
//      are known. The first N by createdIndex are the cluster: "name=url,..." joined.
//
// The discovery URL is http[s]://host:port/v2/keys/<dir>/<token>; its path is the token and the
// whole URL is the cluster token for member and cluster ids (etcd's PeerURLsMapAndToken).
// Errors of the discovery service's connection (refused, reset, 500, 503) are retried forever
// with a backoff of 2 s, 4 s ... 256 s, logged as etcd does; other errors end the attempt.
//
// Blocking; runs on the starting thread before the member or proxy exists.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kvd::server::discovery {

// etcd's v2discovery errors (their texts are etcd's: "discovery: cluster is full", ...).
enum class Code {
  kOk,
  kInvalidUrl,
  kBadSizeKey,
  kSizeNotFound,
  kDuplicateId,
  kDuplicateName,
  kFullCluster,
  kBadDiscoveryEndpoint,
  kOther,  // the discovery service's answer (e.g. "100: Key not found (...) [12]"), or I/O
};

struct Outcome {
  Code code = Code::kOk;
  // kOk: the cluster, "name=peerURL,..."; with get_cluster also for kFullCluster.
  std::string cluster;
  std::string error;  // etcd's text of the error; "" for kOk
};

struct Options {
  std::string url;        // --discovery
  std::string proxy_url;  // --discovery-proxy: an HTTP forward proxy, "" for none
};

// A new member with id member_id and etcd's self description ("name=url,name=url", its
// advertised peer URLs) joins: registers, waits for the cluster to fill, returns it.
Outcome join_cluster(const Options& options, uint64_t member_id, const std::string& self);

// A proxy: waits until the cluster is complete (or takes the first size members when more
// registered) and returns it.
Outcome get_cluster(const Options& options);

// etcd's types.NewURLsMap: "name=url,name=url2,other=url3" as (name, url) pairs in input order
// (a name given twice keeps both pairs; distinct_names() tells). nullopt when a URL is not
// etcd-valid (common/url.h check()).
std::optional<std::vector<std::pair<std::string, std::string>>> parse_urls_map(
    const std::string& s);
size_t distinct_names(const std::vector<std::pair<std::string, std::string>>& pairs);

// The base URL (scheme://host:port) of a discovery URL, or "" when it is not usable.
std::string service_url(const std::string& discovery_url);

}  // namespace kvd::server::discovery
