#include "server/discovery/srv_cluster.h"

#include <map>

#include "common/dns_srv.h"
#include "common/url.h"

namespace kvd::server::discovery {

namespace {

std::string join_host_port(const std::string& host, const std::string& port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
}

// srv.GetCluster for one service: appends "name=scheme://target:port" pairs; the error when
// nothing could be taken from it.
Status add_service(const std::string& scheme, const std::string& service, const SrvQuery& q,
                   const std::map<std::string, std::string>& address_to_scheme, int& temp_name,
                   SrvCluster& out) {
  auto records = dns::lookup_srv(service, "tcp", q.domain);
  if (!records.is_ok())
    return Status::error("error querying DNS SRV records for _" + service + " " +
                         records.status().message());
  Status last = Status::error("error querying DNS SRV records for _" + service +
                              ": no usable record");
  size_t added = 0;
  for (const auto& r : records.value()) {
    const std::string port = std::to_string(r.port);
    const std::string host = dns::without_trailing_dot(r.target);
    auto address = dns::resolve_tcp(host, port);
    if (!address.is_ok()) {
      last = Status::error("error querying DNS SRV records for _" + service + " " +
                           address.status().message());
      continue;
    }
    auto own = address_to_scheme.find(address.value());
    const std::string url = scheme + "://" + join_host_port(host, port);
    if (own != address_to_scheme.end() && own->second != scheme) {
      last = Status::error("error querying DNS SRV records for _" + service + " bootstrap at " +
                           url + " from DNS for " + service +
                           " has scheme mismatch with expected peer " + own->second + "://" +
                           address.value());
      continue;
    }
    std::string name = own != address_to_scheme.end() ? q.name : std::to_string(temp_name++);
    out.members.emplace_back(name, url);
    ++added;
  }
  return added > 0 ? Status::ok() : last;
}

}  // namespace

Result<SrvCluster> srv_cluster(const SrvQuery& q) {
  // The advertised peer URLs by resolved address (etcd's tcp2ap), with their scheme.
  std::map<std::string, std::string> address_to_scheme;
  for (const auto& u : q.advertise_peer_urls) {
    std::string why;
    auto a = url::parse_address(u, &why);
    if (!a) return Status::error(why);
    auto address = dns::resolve_tcp(a->host, a->port);
    if (!address.is_ok()) return address.status();
    address_to_scheme[address.value()] = a->tls ? "https" : "http";
  }
  const std::string suffix = q.service_name.empty() ? "" : "-" + q.service_name;
  SrvCluster out;
  int temp_name = 0;
  Status https = add_service("https", "etcd-server-ssl" + suffix, q, address_to_scheme,
                             temp_name, out);
  Status http = add_service("http", "etcd-server" + suffix, q, address_to_scheme, temp_name, out);
  if (out.members.empty()) return Status::error(https.message() + "; " + http.message());
  if (!https.is_ok()) out.notes.push_back(https.message());
  if (!http.is_ok()) out.notes.push_back(http.message());
  if (q.member) {
    bool found = false;
    for (const auto& [name, url] : out.members) found = found || name == q.name;
    if (!found)
      return Status::error("cannot find local etcd member \"" + q.name + "\" in SRV records");
  }
  return out;
}

}  // namespace kvd::server::discovery
