// /version, /health and /v2/stats/{self,leader,store}, as etcd 3.4's v2http answers them.
#include <chrono>

#include <spdlog/spdlog.h>

#include "api_v2/render.h"
#include "common/go.h"
#include "common/ids.h"
#include "common/log_event.h"
#include "common/version.h"
#include "metrics/metrics.h"
#include "server/client_api.h"
#include "server/responses.h"

namespace kvd::server {

void ClientApi::handle_version(std::string_view m, const ExchangePtr& ex) {
  if (m != "GET") return ex->reply(method_not_allowed("GET"));
  HttpResponse resp;
  resp.content_type = kJson;
  resp.body = version::version_json();
  ex->reply(std::move(resp));
}

void ClientApi::handle_health(std::string_view m, const ExchangePtr& ex) {
  if (m != "GET") return ex->reply(method_not_allowed("GET"));
  // etcd 3.4's checkHealth: unhealthy without a known leader (answered at once), else an
  // empty read through raft (QGET) must complete within 1 s. kvd raises no alarms.
  static metrics::Counter& successes =
      metrics::registry()
          .counter("etcd_server_health_success", "The total number of successful health checks")
          .only();
  static metrics::Counter& failures =
      metrics::registry()
          .counter("etcd_server_health_failures", "The total number of failed health checks")
          .only();
  // Each failure is logged as etcd logs it, at most one line per 10 s (monitors probe often).
  static logev::Repeats failure_log(std::chrono::seconds(10));
  auto fail = [](const ExchangePtr& ex, const char* why) {
    failures.inc();
    uint64_t suppressed = 0;
    if (failure_log.allow(&suppressed)) {
      KVD_LOG_EVENT(WARN, std::string("/health error; ") + why + " (status code 503)",
                    logev::count("suppressed", suppressed));
    }
    ex->reply(go_error(503, R"({"health":"false"})"));
  };
  Node* node = &node_;
  node_.info([ex, node, fail](Node::Info info) {
    if (info.leader_id == 0) return fail(ex, "no leader");
    node->probe_quorum(std::chrono::seconds(1), [ex, fail](bool ok) {
      if (!ok) return fail(ex, "QGET failed: no quorum read within 1s");
      successes.inc();
      HttpResponse resp;
      resp.content_type = kTextPlain;
      resp.body = R"({"health":"true"})";
      ex->reply(std::move(resp));
    });
  });
}

void ClientApi::handle_stats_self(std::string_view m, const ExchangePtr& ex) {
  if (m != "GET") return ex->reply(method_not_allowed("GET"));
  node_.info([ex](Node::Info info) {
    HttpResponse resp;
    resp.content_type = kJson;
    std::string& b = resp.body;
    b = "{\"name\":";
    go::append_json_string(b, info.name);
    b += ",\"id\":\"" + hex_id(info.member_id) + "\",\"state\":\"";
    b += info.stats_state_leader ? "StateLeader" : "StateFollower";
    b += "\",\"startTime\":\"" + go::format_rfc3339_nano(info.start_time);
    b += "\",\"leaderInfo\":{\"leader\":\"";
    if (info.stats_leader != 0) b += hex_id(info.stats_leader);
    auto uptime = std::chrono::system_clock::now() - info.stats_leader_since;
    b += "\",\"uptime\":\"" +
         go::format_duration(std::chrono::duration_cast<std::chrono::nanoseconds>(uptime).count());
    b += "\",\"startTime\":\"" + go::format_rfc3339_nano(info.stats_leader_since);
    b += "\"},\"recvAppendRequestCnt\":" + std::to_string(info.recv_append_requests);
    b += ",\"sendAppendRequestCnt\":" + std::to_string(info.send_append_requests) + "}";
    ex->reply(std::move(resp));
  });
}

void ClientApi::handle_stats_leader(std::string_view m, const ExchangePtr& ex) {
  if (m != "GET") return ex->reply(method_not_allowed("GET"));
  node_.info([ex](Node::Info info) {
    if (!info.is_leader) {
      HttpResponse resp = message_error(403, "not current leader", 0);
      resp.cluster_id.reset();
      return ex->reply(std::move(resp));
    }
    HttpResponse resp;
    resp.content_type = kJson;
    resp.body = "{\"leader\":\"" + hex_id(info.member_id) + "\",\"followers\":{";
    bool first = true;
    for (const auto& member : info.members) {
      if (member.id == info.member_id) continue;
      PeerStats ps;
      if (auto it = info.follower_stats.find(member.id); it != info.follower_stats.end()) {
        ps = it->second;
      }
      if (!first) resp.body.push_back(',');
      first = false;
      resp.body += "\"" + hex_id(member.id) + "\":{\"latency\":{\"current\":" +
                   go::format_float(ps.latency_current_ms) + ",\"average\":" +
                   go::format_float(ps.latency_average_ms) + ",\"standardDeviation\":" +
                   go::format_float(ps.latency_stddev_ms) + ",\"minimum\":" +
                   go::format_float(ps.latency_minimum_ms) + ",\"maximum\":" +
                   go::format_float(ps.latency_maximum_ms) + "},\"counts\":{\"fail\":" +
                   std::to_string(ps.fail) + ",\"success\":" + std::to_string(ps.success) +
                   "}}";
    }
    resp.body += "}}";
    ex->reply(std::move(resp));
  });
}

void ClientApi::handle_stats_store(std::string_view m, const ExchangePtr& ex) {
  if (m != "GET") return ex->reply(method_not_allowed("GET"));
  node_.info([ex](Node::Info info) {
    HttpResponse resp;
    resp.content_type = kJson;
    resp.body = v2::render_store_stats(info.store_stats, info.watchers);
    ex->reply(std::move(resp));
  });
}

}  // namespace kvd::server
