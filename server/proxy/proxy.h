// Proxy mode (`kvd --proxy on|readonly`): an etcd v2 proxy that forwards client requests to the
// cluster's members. run_proxy() owns its own event loops and threads and returns the process
// exit status once SIGINT/SIGTERM stops it (or at once when the configuration cannot be served).
//
// The pieces (server/proxy/), all owned by run_proxy():
//   - endpoints.h:    the member client URLs in try order, with failure marks (EndpointSet);
//   - refresher.h:    learns the members from the peer URLs' GET /members, at start and every
//                     refresh interval, and keeps <data-dir>/proxy/cluster;
//   - forwarder.h:    the RequestHandler: what the proxy answers itself (readonly refusals,
//                     OPTIONS, /v2/config/local/proxy, /metrics), a ProxyCall for the rest;
//   - proxy_call.h:   one client request on its way to a member and back;
//   - upstream_pool.h: idle keep-alive connections to one member;
//   - headers.h:      the header rewriting of etcd's reverse proxy;
//   - shared.h:       what the calls share (settings, endpoints, metrics, per-loop load).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/tls/tls_config.h"

namespace kvd::server {

enum class ProxyMode { kOff, kOn, kReadonly };

struct ProxyConfig {
  ProxyMode mode = ProxyMode::kOn;  // kOn or kReadonly
  std::string data_dir;             // <data-dir>/proxy/cluster keeps the learned peer URLs
  std::vector<std::string> listen_client_urls;
  // --listen-metrics-urls: /metrics (the proxy's) and /health (forwarded) only. etcd's proxy
  // ignores the flag; kvd's serves them.
  std::vector<std::string> listen_metrics_urls;
  std::vector<std::string> cors = {"*"};
  // --host-whitelist, as on a member (etcd's proxy accepts the flag and does not check it).
  std::vector<std::string> host_whitelist = {"*"};
  // The peer URLs of --initial-cluster, in flag order: where to learn the cluster from when
  // there is no cluster file yet.
  std::vector<std::string> initial_peer_urls;
  // --discovery or --discovery-srv: where the peer URLs come from instead when there is no
  // cluster file yet (may block until the cluster is known). Empty: initial_peer_urls.
  std::function<Result<std::vector<std::string>>()> discover_peer_urls;
  std::string discovery_what;  // "discovery token" / "DNS SRV discovery", for the log
  std::chrono::milliseconds failure_wait{5000};
  std::chrono::milliseconds refresh_interval{30000};
  std::chrono::milliseconds dial_timeout{1000};
  std::chrono::milliseconds write_timeout{5000};
  std::chrono::milliseconds read_timeout{0};  // 0: none (long polls stay open)
  size_t max_client_connections = 0;          // 0: no limit (ClientServerConfig)
  // TLS, as etcd's proxy: client_tls (--cert-file ...) for its own https listeners and towards
  // the members' https client URLs, where the peer TLS (--peer-cert-file ...) stands in when no
  // client TLS is given; peer_tls for asking the members' peer URLs for the cluster. peer_tls
  // is never null (setup_tls); client_tls may be.
  std::shared_ptr<tls::TlsContexts> client_tls;
  std::shared_ptr<tls::TlsContexts> peer_tls;
};

int run_proxy(const ProxyConfig& config);

}  // namespace kvd::server
