// Wiring between a Node and its PeerTransport: the transport delivers peer messages, snapshots
// and unreachability reports on the node's strand, serves GET /members from the node, and the
// node reaches its peers through a PeerLink backed by the transport. Used by main.cc.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "server/node.h"
#include "server/peer_transport.h"
#include "storage/status.h"

namespace kvd::server {

// Creates the transport for `node` (REQUIRES: open() returned, start() not yet called), attaches
// it as the node's PeerLink and binds listen_peer_urls. The transport must be stopped before the
// node. Fails with the transport's message naming the URL that could not be bound.
Result<std::unique_ptr<PeerTransport>> start_peer_transport(
    boost::asio::io_context& io, Node& node, std::vector<std::string> listen_peer_urls);

}  // namespace kvd::server
