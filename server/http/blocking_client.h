// One blocking HTTP exchange, for the few places that ask another server something before or
// beside serving: a member joining an existing cluster (GET <peerURL>/members), the proxy
// learning the cluster (the same, every refresh interval), and discovery (the keys API of a
// discovery service, possibly through an HTTP forward proxy). Runs its own io_context on the
// calling thread; the timeout bounds the whole exchange (resolve, connect, write, read).
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
  std::string etcd_index;  // the X-Etcd-Index header, "" when absent
  std::string body;
  std::string error;  // why no answer arrived (bad URL, refused, timed out), else empty
};

struct HttpCall {
  std::string method = "GET";
  std::string target = "/";   // path and query
  std::string body;           // sent with content_type when not empty
  std::string content_type;
  // An HTTP forward proxy (http://host:port) to go through, "" for none: a plain request goes
  // to it with the absolute URL as its target, an https one through a CONNECT tunnel (what
  // Go's http.ProxyURL does).
  std::string proxy_url;
};

// call.method base_url + call.target. base_url: http[s]://host:port[/]. An https URL is dialled
// with tls's client context (null: one that verifies against the system's roots, as Go's
// default).
GetResult http_request(const std::string& base_url, const HttpCall& call,
                       std::chrono::milliseconds timeout, tls::TlsContexts* tls = nullptr);

// GET base_url + path.
GetResult http_get(const std::string& base_url, const std::string& path,
                   std::chrono::milliseconds timeout, tls::TlsContexts* tls = nullptr);

}  // namespace kvd::server
