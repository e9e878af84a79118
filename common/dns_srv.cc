#include "common/dns_srv.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace kvd::dns {

namespace {

// "on 10.0.0.2:53" as Go names the server it asked, from the resolver's first name server.
std::string first_server(const res_state st) {
  if (st->nscount <= 0) return "";
  const sockaddr_in& a = st->nsaddr_list[0];
  char ip[INET_ADDRSTRLEN] = {};
  if (a.sin_family != AF_INET || !::inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip)) return "";
  return std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
}

// Go's texts for a failed lookup (net.DNSError).
std::string lookup_error(int h_errno_value) {
  switch (h_errno_value) {
    case HOST_NOT_FOUND:
    case NO_DATA:
      return "no such host";
    case TRY_AGAIN:
      return "i/o timeout";
    default:
      return "server misbehaving";
  }
}

}  // namespace

std::string without_trailing_dot(std::string name) {
  if (!name.empty() && name.back() == '.') name.pop_back();
  return name;
}

Result<std::vector<SrvRecord>> lookup_srv(const std::string& service, const std::string& proto,
                                          const std::string& domain) {
  const std::string name = "_" + service + "._" + proto + "." + domain;
  auto st = std::make_unique<struct __res_state>();
  std::memset(st.get(), 0, sizeof(struct __res_state));
  if (::res_ninit(st.get()) != 0) {
    return Status::error("lookup " + name + ": cannot read the resolver configuration");
  }
  struct Closer {
    res_state s;
    ~Closer() { ::res_nclose(s); }
  } closer{st.get()};
  const std::string server = first_server(st.get());
  auto fail = [&](const std::string& why) {
    return Status::error("lookup " + name + (server.empty() ? "" : " on " + server) + ": " + why);
  };

  std::vector<unsigned char> answer(NS_MAXMSG);
  int n = ::res_nquery(st.get(), name.c_str(), ns_c_in, ns_t_srv, answer.data(),
                       static_cast<int>(answer.size()));
  if (n < 0) return fail(lookup_error(st->res_h_errno));
  ns_msg msg;
  if (::ns_initparse(answer.data(), std::min<int>(n, static_cast<int>(answer.size())), &msg) != 0)
    return fail("cannot parse DNS message");
  std::vector<SrvRecord> records;
  for (int i = 0; i < ns_msg_count(msg, ns_s_an); ++i) {
    ns_rr rr;
    if (::ns_parserr(&msg, ns_s_an, i, &rr) != 0) return fail("cannot parse DNS message");
    if (ns_rr_type(rr) != ns_t_srv || ns_rr_rdlen(rr) < 7) continue;
    const unsigned char* rdata = ns_rr_rdata(rr);
    SrvRecord r;
    r.priority = static_cast<uint16_t>(ns_get16(rdata));
    r.weight = static_cast<uint16_t>(ns_get16(rdata + 2));
    r.port = static_cast<uint16_t>(ns_get16(rdata + 4));
    char target[NS_MAXDNAME];
    if (::dn_expand(ns_msg_base(msg), ns_msg_end(msg), rdata + 6, target, sizeof target) < 0)
      return fail("cannot parse DNS message");
    r.target = std::string(target) + ".";
    records.push_back(std::move(r));
  }
  if (records.empty()) return fail("no such host");
  std::sort(records.begin(), records.end(), [](const SrvRecord& a, const SrvRecord& b) {
    if (a.priority != b.priority) return a.priority < b.priority;
    if (a.weight != b.weight) return a.weight > b.weight;
    if (a.target != b.target) return a.target < b.target;
    return a.port < b.port;
  });
  return records;
}

Result<std::string> resolve_tcp(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &list);
  if (rc != 0) {
    std::string why = rc == EAI_NONAME || rc == EAI_NODATA ? "no such host" : ::gai_strerror(rc);
    return Status::error("lookup " + host + ": " + why);
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(list, &::freeaddrinfo);
  const addrinfo* pick = nullptr;
  for (const addrinfo* a = list; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
    if (!pick && a->ai_family == AF_INET6) pick = a;
  }
  if (!pick) return Status::error("lookup " + host + ": no such host");
  char ip[INET6_ADDRSTRLEN] = {};
  if (pick->ai_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr, ip,
                sizeof ip);
    return std::string(ip) + ":" + port;
  }
  ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr, ip,
              sizeof ip);
  return "[" + std::string(ip) + "]:" + port;
}

}  // namespace kvd::dns
