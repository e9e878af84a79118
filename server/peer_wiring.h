// Wiring between the member (server/member/) and the peer transport (server/peer/): the
// transport delivers peer messages, snapshots and unreachability reports on the member's strand
// and serves GET /members from the member's list, and the member reaches its peers through a
// PeerLink backed by the transport. Also how a joining member asks a peer for the cluster. Used
// by main.cc.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "common/status.h"
#include "server/member/node.h"
#include "server/peer/peer_transport.h"

namespace kvd::server {

// Creates the transport for `node` (REQUIRES: open() returned, start() not yet called), attaches
// it as the node's PeerLink and serves `listeners` (bound on io by bind_peer_listeners before
// the node was opened). The transport must be stopped before the node.
Result<std::unique_ptr<PeerTransport>> start_peer_transport(boost::asio::io_context& io,
                                                            Node& node, PeerListeners listeners,
                                                            std::shared_ptr<tls::TlsContexts> tls);

// GET <peer_url>/members (etcd's GetClusterFromRemotePeers for one peer): the cluster id from
// X-Etcd-Cluster-Id and the member list, with peer URLs sorted. For NodeConfig::fetch_cluster.
// tls: the peer TLS (for https peer URLs).
std::optional<RemoteCluster> fetch_remote_cluster(const std::string& peer_url,
                                                  std::chrono::milliseconds timeout,
                                                  tls::TlsContexts* tls, std::string* why);

}  // namespace kvd::server
