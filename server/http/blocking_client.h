// One blocking HTTP GET, for the few places that ask a peer something before or beside serving:
// a member joining an existing cluster (GET <peerURL>/members), the proxy learning the cluster
// (the same, every refresh interval). Runs its own io_context on the calling thread; the timeout
// bounds the whole exchange (resolve, connect, write, read).
//
// Threads: any; calls share no state.
#pragma once

#include <chrono>
#include <string>

#include "server/tls/tls_config.h"

namespace kvd::server {

struct GetResult {
  int status = 0;
  std::string cluster_id;  // the X-Etcd-Cluster-Id header, "" when absent
  std::string body;
  std::string error;  // why no answer arrived (bad URL, refused, timed out), else empty
};

// GET base_url + path. base_url: http[s]://host:port[/]. An https URL is dialled with tls's
// client context (null: one that verifies against the system's roots, as Go's default).
GetResult http_get(const std::string& base_url, const std::string& path,
                   std::chrono::milliseconds timeout, tls::TlsContexts* tls = nullptr);

}  // namespace kvd::server
