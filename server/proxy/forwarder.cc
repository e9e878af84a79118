#include "server/proxy/forwarder.h"


#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/log_event.h"
#include "server/proxy/headers.h"
#include "server/proxy/proxy_call.h"

namespace kvd::server::proxy {
namespace {

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

}  // namespace

HttpResponse proxy_error(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  nlohmann::json j = {{"message", "httpproxy: " + message}};
  r.body = j.dump();
  return r;
}

void Forwarder::handle(const HttpRequest& r, const std::shared_ptr<Exchange>& ex) {
  const std::string_view path = path_of(r.target);
  if (path == "/metrics") return ex->reply(metrics());
  shared_.metrics.request(r.method);
  if (shared_.settings.mode == ProxyMode::kReadonly && r.method != "GET") {
    HttpResponse resp;  // etcd's readonly handler: bare 501, outside the CORS wrapper
    resp.status = 501;
    resp.cors = false;
    return ex->reply(std::move(resp));
  }
  if (r.method == "OPTIONS") {
    HttpResponse resp;  // answered by the CORS wrapper
    return ex->reply(std::move(resp));
  }
  if (path == "/v2/config/local/proxy") return ex->reply(config(r.method));
  if (!r.body_error.empty()) {
    return ex->reply(
        proxy_error(500, "failed to read request body: " + std::string(r.body_error)));
  }
  auto endpoints = shared_.endpoints.available(Clock::now());
  if (endpoints.empty()) {
    shared_.metrics.dropped(r.method, ProxyMetrics::Drop::kZeroEndpoints);
    static logev::Repeats repeats(std::chrono::seconds(5));
    if (uint64_t suppressed = 0; repeats.allow(&suppressed)) {
      KVD_LOG_EVENT(WARN, "proxy: zero endpoints currently available",
                    logev::count("suppressed", suppressed));
    }
    return ex->reply(proxy_error(503, "zero endpoints currently available"));
  }
  CallInfo info;
  info.method = std::string(r.method);
  info.start = Clock::now();
  info.head = r.method == "HEAD";
  info.idempotent = r.method == "GET" || r.method == "HEAD";
  info.watch = query_flag(r.target, "wait");
  info.stream = query_flag(r.target, "stream");
  if (info.watch && !info.stream && r.method == "GET") {
    info.wait_index = query_uint(r.target, "waitIndex");
    info.with_wait_index = [target = std::string(r.target), header = std::string(r.raw_header),
                            ip = std::string(r.remote_ip)](uint64_t index) {
      const std::string t = with_query_param(target, "waitIndex", std::to_string(index));
      return build_upstream_request("GET", t, header, "", ip);
    };
  }
  start_proxy_call(shared_, t_loop, ex,
                   build_upstream_request(r.method, r.target, r.raw_header, r.body, r.remote_ip),
                   std::move(info), std::move(endpoints));
}

HttpResponse Forwarder::config(std::string_view method) {
  HttpResponse resp;
  if (method != "GET") {
    resp.status = 405;
    resp.allow = "GET";
    resp.content_type = "text/plain; charset=utf-8";
    resp.nosniff = true;
    resp.body = "Method Not Allowed\n";
    return resp;
  }
  nlohmann::json urls = nlohmann::json::array();
  for (const auto& ep : shared_.endpoints.available(Clock::now())) urls.push_back(ep->url);
  resp.content_type = "text/plain; charset=utf-8";  // Go sniffs the JSON encoder's output
  resp.body = nlohmann::json({{"endpoints", urls}}).dump() + "\n";
  return resp;
}

HttpResponse Forwarder::metrics() {
  HttpResponse resp;
  resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
  resp.body = metrics::registry().render();
  return resp;
}

}  // namespace kvd::server::proxy
