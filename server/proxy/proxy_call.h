// One proxied request (ProxyCall, in proxy_call.cc): from the client connection's loop to a
// member and back.
//
// Forwarding (spec v2-proxy.md §3): a call tries the endpoints available when it starts, in
// order; a transport failure (refused, dial/write/read timeout, reset before the response
// header) marks that endpoint failed for --proxy-failure-wait and moves on with the same
// request; any HTTP answer, 5xx included, goes to the client as it is. A failure on a reused
// pooled connection before any response byte is first retried once on a fresh connection to
// the same member (the member may have closed an idle connection), without marking it.
// Unlike etcd's proxy, a request that is not a GET or HEAD is never sent again once a member
// had all of it: a failure then is answered 502 ("may or may not have been applied"), since
// the member may have applied it before it died; pooled connections the member closed are
// recognized (a peek) before a request is written into them.
//
// Responses: a member answer that is complete when its header arrives, or has a
// Content-Length, is relayed in one reply (with the member's Content-Length). A chunked or
// unframed one (watches, large bodies) is streamed: headers at once, then each piece as it
// arrives, reading more from the member only once the client connection has taken the last
// piece (back-pressure). A client that leaves closes the upstream connection, which ends the
// member's watch.
//
// Silent members (kvd's addition, see prober.h): while a call waits on a member the prober
// finds silent, a GET or HEAD whose answer has not begun moves on to the next endpoint as after
// a transport failure; a write whose answer has not begun is answered 504 (it may or may not
// have been applied: it is never sent twice). A long-poll watch (wait=true without stream=true)
// whose member goes silent or dies before the event arrived is resumed on another member with
// the same waitIndex (or, when the client gave none, the X-Etcd-Index of the first answer + 1),
// its body spliced into the stream the client already has: no event is lost or repeated.
// Any other stream a member leaves ends cleanly, as through etcd's proxy: an empty or
// unfinished 200, which clients retry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/http/types.h"
#include "server/proxy/shared.h"

namespace kvd::server::proxy {

// What the proxy knows of a request, for the choices above.
struct CallInfo {
  std::string method;       // the client's, for the metrics
  Clock::time_point start;  // when the proxy took the request, for the metrics
  bool head = false;        // HEAD: the answer has no body
  bool idempotent = false;  // GET or HEAD: may be sent to another member after a silence
  bool watch = false;       // wait=true: a long poll, whose member connection closes when the
                            // client leaves
  bool stream = false;      // stream=true
  std::optional<uint64_t> wait_index;  // the client's waitIndex
  // For a watch: the request to send a member with waitIndex=N.
  std::function<std::string(uint64_t)> with_wait_index;
};

// Starts forwarding `request` (the bytes to send a member, see headers.h) to the first of
// `endpoints` that answers, and relays the answer through ex. REQUIRES: on the thread of loop
// `loop`, which runs the client connection of ex.
void start_proxy_call(Shared& shared, size_t loop, std::shared_ptr<Exchange> ex,
                      std::string request, CallInfo info,
                      std::vector<std::shared_ptr<Endpoint>> endpoints);

}  // namespace kvd::server::proxy
