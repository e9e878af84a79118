// One proxied request (ProxyCall, in proxy_call.cc): from the client connection's loop to a
// member and back.
//
// Forwarding (spec v2-proxy.md §3): a call tries the endpoints available when it starts, in
// order; a transport failure (refused, dial/write/read timeout, reset before the response
// header) marks that endpoint failed for --proxy-failure-wait and moves on with the same
// request; any HTTP answer, 5xx included, goes to the client as it is. A failure on a reused
// pooled connection before any response byte is first retried once on a fresh connection to
// the same member (the member may have closed an idle connection), without marking it.
//
// Responses: a member answer that is complete when its header arrives, or has a
// Content-Length, is relayed in one reply (with the member's Content-Length). A chunked or
// unframed one (watches, large bodies) is streamed: headers at once, then each piece as it
// arrives, reading more from the member only once the client connection has taken the last
// piece (back-pressure). A member that dies mid-stream ends the client's stream cleanly, so
// a watch sees what it sees through etcd's proxy: an empty 200, which clients retry. A client
// that leaves closes the upstream connection, which ends the member's watch.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "server/http/types.h"
#include "server/proxy/shared.h"

namespace kvd::server::proxy {

// Starts forwarding `request` (the bytes to send a member, see headers.h) to the first of
// `endpoints` that answers, and relays the answer through ex. watch: the request is a long poll
// (wait=true), whose member connection closes when the client leaves. REQUIRES: on the thread
// of loop `loop`, which runs the client connection of ex.
void start_proxy_call(Shared& shared, size_t loop, std::shared_ptr<Exchange> ex,
                      std::string request, bool head,
                      std::vector<std::shared_ptr<Endpoint>> endpoints, bool watch);

}  // namespace kvd::server::proxy
