// The proxy's view of the cluster: which member client URLs it forwards to, in which order,
// and which are sitting out a failure (etcd's proxy/httpproxy director). The formats it reads
// and keeps (GET /members, the learned-cluster file) are common/members.h's.
//
// Pure and clock-injected, so the selection and failure-wait rules are unit tested without
// sockets (tests/unit/proxy/proxy_endpoints_test.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/log_event.h"
#include "common/members.h"

namespace kvd::server::proxy {

using Clock = std::chrono::steady_clock;

// "http://host:port" split for dialing. Only http is supported (kvd serves no TLS).
struct HostPort {
  std::string host;
  uint16_t port = 0;
  bool tls = false;  // https
};
// nullopt if `url` is not http[s]://host[:port][/] with a host and a port from 1 to 65535 (80,
// or 443 for https, when absent); a path other than "/" is refused too.
std::optional<HostPort> parse_http_url(std::string_view url);

class UpstreamPool;  // upstream_pool.h: the keep-alive connections to one member

// One member client URL. Shared by the set and the requests using it; the pool survives a
// refresh that keeps the URL.
struct Endpoint {
  std::string url;  // as the member advertises it, "http://127.0.0.1:2379"
  HostPort address;
  std::shared_ptr<UpstreamPool> pool;  // null in unit tests
  // Requests that could not reach this member are logged at most once per 5 s.
  logev::Repeats failure_log{std::chrono::seconds(5)};
};

// The ordered endpoint list with failure marks. Thread-safe (one mutex, held briefly).
//
// etcd's rules (spec v2-proxy.md §2-§3): a request tries the endpoints available when it
// starts, in list order, so traffic sticks to the first; a transport failure marks an
// endpoint unavailable for failure_wait; a refresh installs a new list (shuffled by the
// caller) in which every endpoint is available again.
//
// kvd's addition: an endpoint the prober (prober.h) found silent (no answer to a probe in
// time: a paused or cut-off member, which accepts connections or drops packets but answers
// nothing) is left out until a probe gets an answer again, across refreshes. When every
// endpoint that has not failed is silent, they are offered anyway: a prober wrong about all of
// them must not refuse every request.
class EndpointSet {
 public:
  using MakeEndpoint = std::function<std::shared_ptr<Endpoint>(const std::string& url)>;

  explicit EndpointSet(Clock::duration failure_wait) : failure_wait_(failure_wait) {}

  // Installs `urls` in this order (duplicates dropped); all available. An endpoint whose URL
  // was already present keeps its object (and so its connections); others come from make,
  // which may return null to leave a URL out (unusable).
  void replace(const std::vector<std::string>& urls, const MakeEndpoint& make);
  // The endpoints available at `now`, in try order.
  std::vector<std::shared_ptr<Endpoint>> available(Clock::time_point now) const;
  // Marks ep failed until now + failure_wait (no-op if it is no longer in the list).
  void mark_failed(const Endpoint& ep, Clock::time_point now);
  // Records a probe's verdict on the endpoint with this URL; returns whether it changed.
  bool set_silent(const std::string& url, bool silent);
  bool is_silent(const Endpoint& ep) const;
  // Every URL in the list, in order, available or not.
  std::vector<std::string> urls() const;
  size_t size() const;

 private:
  struct Entry {
    std::shared_ptr<Endpoint> endpoint;
    Clock::time_point failed_until{};  // available when now >= failed_until
    bool silent = false;               // the last probe got no answer in time
  };
  const Clock::duration failure_wait_;
  mutable std::mutex mu_;
  std::vector<Entry> entries_;  // guarded by mu_
};

// All client URLs / peer URLs of the members, sorted and without duplicates, as etcd's
// RaftCluster.ClientURLs()/PeerURLs() give them.
std::vector<std::string> all_client_urls(const std::vector<MemberInfo>& members);
std::vector<std::string> all_peer_urls(const std::vector<MemberInfo>& members);

}  // namespace kvd::server::proxy
