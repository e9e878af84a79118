// DNS SRV lookups and TCP address resolution as Go's net package does them for etcd's
// --discovery-srv and etcdctl's --discovery-srv: LookupSRV(service, proto, name) queries
// _service._proto.name and returns the records by priority, then weight; ResolveTCPAddr turns
// host:port into the address a member is compared by. The queries go through libresolv
// (res_nquery, with the system's /etc/resolv.conf; `ip netns exec` mounts a namespace's own)
// and getaddrinfo (/etc/hosts, then DNS, as nsswitch.conf says).
//
// Blocking; any thread (each call has its own resolver state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kvd::dns {

struct SrvRecord {
  std::string target;  // as the answer names it, with its trailing dot ("n0.example.com.")
  uint16_t port = 0;
  uint16_t priority = 0;
  uint16_t weight = 0;
};

// The SRV records of _service._proto.domain, lowest priority first, then highest weight, then
// target (Go shuffles equal priorities by weight; a start-up lookup wants a stable order).
// An error reads as Go's: `lookup _etcd-server._tcp.example.com on 10.0.0.2:53: no such host`.
Result<std::vector<SrvRecord>> lookup_srv(const std::string& service, const std::string& proto,
                                          const std::string& domain);

// host:port resolved to "ip:port" ("[ip]:port" for IPv6), the first IPv4 address when there is
// one (Go's ResolveTCPAddr prefers IPv4). An error reads as Go's: `lookup n0.example.com: no such
// host`.
Result<std::string> resolve_tcp(const std::string& host, const std::string& port);

// The name with one trailing dot removed ("n0.example.com." -> "n0.example.com").
std::string without_trailing_dot(std::string name);

}  // namespace kvd::dns
