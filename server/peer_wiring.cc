#include "server/peer_wiring.h"

#include <algorithm>
#include <utility>

#include "common/ids.h"
#include "common/members.h"
#include "server/http/blocking_client.h"

namespace kvd::server {

Result<std::unique_ptr<PeerTransport>> start_peer_transport(boost::asio::io_context& io,
                                                            Node& node, PeerListeners listeners,
                                                            std::shared_ptr<tls::TlsContexts> tls) {
  PeerTransportConfig config;
  config.tls = std::move(tls);
  config.member_id = node.member_id();
  config.cluster_id = node.cluster_id();
  config.listeners = std::move(listeners);
  Node* n = &node;
  PeerTransport::Handler handler;
  handler.on_message = [n](raft::Message m) { n->step(std::move(m)); };
  handler.on_snapshot = [n](raft::Message m, std::string data) {
    n->step_snapshot(std::move(m), std::move(data));
  };
  handler.on_unreachable = [n](uint64_t peer) { n->report_unreachable(peer); };
  handler.members_json = [n] { return render_members_json(n->members()); };
  handler.on_removed = [n](uint64_t peer) { n->report_removed_by(peer); };
  auto transport =
      std::make_unique<PeerTransport>(io, node.executor(), std::move(config), std::move(handler));

  PeerTransport* t = transport.get();
  PeerLink link;
  link.send = [t](std::vector<raft::Message> ms) { t->send(std::move(ms)); };
  link.send_snapshot = [t](raft::Message m, std::shared_ptr<const std::string> data,
                           std::function<void(bool)> done) {
    t->send_snapshot(std::move(m), std::move(data), std::move(done));
  };
  link.add_peer = [t](uint64_t id, std::vector<std::string> urls) {
    t->add_peer(id, std::move(urls));
  };
  link.update_peer = [t](uint64_t id, std::vector<std::string> urls) {
    t->update_peer(id, std::move(urls));
  };
  link.remove_peer = [t](uint64_t id) { t->remove_peer(id); };
  link.connected = [t](uint64_t id) { return t->connected(id); };
  link.active_since = [t](uint64_t id) { return t->active_since(id); };
  link.stats = [t] { return t->stats(); };
  node.attach_peers(std::move(link));
  if (Status st = transport->listen(); !st.is_ok()) return st;
  return transport;
}

std::optional<RemoteCluster> fetch_remote_cluster(const std::string& peer_url,
                                                  std::chrono::milliseconds timeout,
                                                  tls::TlsContexts* tls, std::string* why) {
  GetResult got = http_get(peer_url, "/members", timeout, tls);
  if (!got.error.empty()) {
    *why = got.error;
    return std::nullopt;
  }
  if (got.status != 200) {
    *why = "status " + std::to_string(got.status);
    return std::nullopt;
  }
  if (got.cluster_id.empty()) {
    *why = "no X-Etcd-Cluster-Id header";
    return std::nullopt;
  }
  auto cid = parse_hex_id(got.cluster_id);
  auto members = parse_members_json(got.body);
  if (!cid || !members) {
    *why = "malformed member list";
    return std::nullopt;
  }
  RemoteCluster rc;
  rc.cluster_id = *cid;
  rc.members = std::move(*members);
  for (auto& m : rc.members) std::sort(m.peer_urls.begin(), m.peer_urls.end());
  return rc;
}

}  // namespace kvd::server
