// GET /metrics: Prometheus's text exposition of the process's registry (metrics/metrics.h) with
// the member's own state read for this scrape (Node::info): etcd 3.4's etcd_server_*,
// etcd_cluster_version and etcd_debugging_store_* families, and kvd_* extras. What etcd exposes
// and kvd does not is listed in README "Metrics".
#include "common/ids.h"
#include "common/version.h"
#include "metrics/metrics.h"
#include "server/client_api.h"
#include "server/responses.h"

namespace kvd::server {

namespace {

using metrics::Registry;
using metrics::Type;

Registry::Extra one(std::string name, std::string help, Type type, double v,
                    std::vector<std::pair<std::string, std::string>> labels = {}) {
  return {std::move(name), std::move(help), type, {{std::move(labels), v}}};
}

std::vector<Registry::Extra> member_families(const Node::Info& info) {
  std::vector<Registry::Extra> out;
  const auto gauge = Type::kGauge;
  const auto counter = Type::kCounter;
  out.push_back(one("etcd_server_has_leader",
                    "Whether or not a leader exists. 1 is existence, 0 is not.", gauge,
                    info.leader_id != 0));
  out.push_back(one("etcd_server_is_leader",
                    "Whether or not this member is a leader. 1 if is, 0 otherwise.", gauge,
                    info.is_leader));
  out.push_back(one("etcd_server_is_learner",
                    "Whether or not this member is a learner. 1 if is, 0 otherwise.", gauge, 0));
  out.push_back(one("etcd_server_leader_changes_seen_total",
                    "The number of leader changes seen.", counter,
                    static_cast<double>(info.leader_changes)));
  out.push_back(one("etcd_server_proposals_committed_total",
                    "The total number of consensus proposals committed.", gauge,
                    static_cast<double>(info.status.raft_index)));
  out.push_back(one("etcd_server_proposals_applied_total",
                    "The total number of consensus proposals applied.", gauge,
                    static_cast<double>(info.applied)));
  out.push_back(one("etcd_server_proposals_pending",
                    "The current number of pending proposals to commit.", gauge,
                    static_cast<double>(info.proposals_pending)));
  out.push_back(one("etcd_server_proposals_failed_total",
                    "The total number of failed proposals seen.", counter,
                    static_cast<double>(info.proposals_failed)));
  out.push_back(one("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                    gauge, 1, {{"server_id", hex_id(info.member_id)}}));
  out.push_back(one("etcd_server_version",
                    "Which version is running. 1 for 'server_version' label with current version.",
                    gauge, 1, {{"server_version", std::string(version::kServer)}}));
  if (!info.cluster_version.empty()) {
    // etcd labels the cluster version as major.minor.
    std::string v = info.cluster_version;
    if (auto dot = v.find('.', v.find('.') + 1); dot != std::string::npos) v.resize(dot);
    out.push_back(one("etcd_cluster_version",
                      "Which version is running. 1 for 'cluster_version' label with current cluster version",
                      gauge, 1, {{"cluster_version", v}}));
  }
  const v2::StoreStats& s = info.store_stats;
  out.push_back({"etcd_debugging_store_reads_total",
                 "Total number of reads action by (get/getRecursive), local to this member.",
                 counter,
                 {{{{"action", "get"}}, static_cast<double>(s.gets_success + s.gets_fail)}}});
  auto w = [](uint64_t a, uint64_t b) { return static_cast<double>(a + b); };
  out.push_back({"etcd_debugging_store_writes_total",
                 "Total number of writes (e.g. set/compareAndDelete) seen by this member.",
                 counter,
                 {{{{"action", "set"}}, w(s.sets_success, s.sets_fail)},
                  {{{"action", "create"}}, w(s.create_success, s.create_fail)},
                  {{{"action", "update"}}, w(s.update_success, s.update_fail)},
                  {{{"action", "delete"}}, w(s.delete_success, s.delete_fail)},
                  {{{"action", "compareAndSwap"}},
                   w(s.compare_and_swap_success, s.compare_and_swap_fail)},
                  {{{"action", "compareAndDelete"}},
                   w(s.compare_and_delete_success, s.compare_and_delete_fail)}}});
  out.push_back(one("etcd_debugging_store_expires_total", "Total number of expired keys.",
                    counter, static_cast<double>(s.expire_count)));
  out.push_back(one("etcd_debugging_store_watchers", "Count of currently active watchers.",
                    gauge, static_cast<double>(info.watchers)));
  out.push_back(one("kvd_store_index", "The v2 store's index (X-Etcd-Index) on this member.",
                    gauge, static_cast<double>(info.status.etcd_index)));
  out.push_back(one("kvd_raft_term", "The raft term of the last applied entry (X-Raft-Term).",
                    gauge, static_cast<double>(info.status.raft_term)));
  out.push_back(one("kvd_wal_syncs_total",
                    "Synced writes of the raft log (each one fsync, for any number of entries).",
                    counter, static_cast<double>(info.wal_append_calls)));
  out.push_back(one("kvd_wal_loop_writes_total",
                    "Writes of the raft log made on the raft loop's thread, the WAL thread being "
                    "idle (a lone write spares the hand-off's wake-ups).",
                    counter, static_cast<double>(info.wal_loop_writes)));
  return out;
}

}  // namespace

void ClientApi::handle_metrics(std::string_view m, const ExchangePtr& ex) {
  // Any method, as etcd's promhttp handler (POST /metrics is a 200 there too).
  const bool head = m == "HEAD";
  node_.info([ex, head](Node::Info info) {
    HttpResponse resp;
    resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp.body = metrics::registry().render(member_families(info));
    resp.omit_body = head;
    ex->reply(std::move(resp));
  });
}

}  // namespace kvd::server
