#include "server/client_api.h"

#include <string>

#include "api_v2/keys_request.h"
#include "common/go.h"
#include "metrics/metrics.h"
#include "server/responses.h"

namespace kvd::server {
namespace {

constexpr std::string_view kKeysPrefix = "/v2/keys";
constexpr std::string_view kMembersPrefix = "/v2/members";

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// True when a raw path certainly needs neither decoding nor cleaning: the common case, served
// without copying the path.
bool trivially_clean(std::string_view p) {
  if (p.empty() || p[0] != '/') return false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '%') return false;
    if (c == '/' && i + 1 < p.size() && (p[i + 1] == '/' || p[i + 1] == '.')) return false;
  }
  return true;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace

ClientApi::ClientApi(Node& node, ClientApiOptions options)
    : node_(node),
      cluster_id_(node.cluster_id()),
      options_(std::move(options)),
      watch_json_(make_watch_event_json()) {
  metrics::register_process_metrics();
}

void ClientApi::handle(const HttpRequest& r, const ExchangePtr& ex) {
  std::string_view target = r.target;
  if (target.empty() || target[0] != '/') {
    if (target == "*") {
      // The client server answers "*" itself as Go does (200 for OPTIONS, else 400); this
      // is the ServeMux answer for a caller that hands "*" on.
      HttpResponse resp;
      resp.status = 400;
      resp.close = true;
      ex->reply(std::move(resp));
      return;
    }
    // Absolute form (proxies): http://host/path?query.
    size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) {
      ex->reply(transport_bad_request());
      return;
    }
    size_t slash = target.find_first_of("/?", scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    if (!target.empty() && target[0] == '?') target = "/";  // "http://h?x": no path
  }
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  std::string_view raw_query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);

  std::string decoded_storage;
  std::string_view path = raw_path;
  if (!trivially_clean(raw_path)) {
    auto decoded = v2::decode_path(raw_path);
    if (!decoded) {
      ex->reply(transport_bad_request());
      return;
    }
    decoded_storage = std::move(*decoded);
    path = decoded_storage;
  }
  if (r.method == "OPTIONS") {
    ex->reply(HttpResponse{});  // CORS headers only; the connection adds them
    return;
  }
  if (!decoded_storage.empty() || path != raw_path) {
    auto cleaned = v2::clean_path(path);
    if (!cleaned) {
      ex->reply(transport_bad_request());
      return;
    }
    if (*cleaned != path) {
      HttpResponse resp;
      resp.status = 301;
      resp.location = go::escape_path(*cleaned);
      if (!raw_query.empty()) {
        resp.location += '?';
        resp.location += raw_query;
      }
      if (r.method == "GET" || r.method == "HEAD") resp.content_type = "text/html; charset=utf-8";
      if (r.method == "GET") {
        resp.body = "<a href=\"" + html_escape(resp.location) + "\">Moved Permanently</a>.\n\n";
      }
      ex->reply(std::move(resp));
      return;
    }
  }

  const std::string_view m = r.method;
  if (path == kKeysPrefix || starts_with(path, "/v2/keys/")) {
    handle_keys(r, m, path, ex);
    return;
  }
  if (starts_with(path, "/v2/auth/")) {
    handle_auth(r, path, ex);
    return;
  }
  if (path == kMembersPrefix || starts_with(path, "/v2/members/")) {
    handle_members(r, path, ex);
    return;
  }
  if (path == "/version") return handle_version(m, ex);
  if (path == "/health") return handle_health(m, ex);
  if (path == "/v2/machines") return handle_machines(m, ex);
  if (path == "/v2/stats/self") return handle_stats_self(m, ex);
  if (path == "/v2/stats/leader") return handle_stats_leader(m, ex);
  if (path == "/v2/stats/store") return handle_stats_store(m, ex);
  if (path == "/kvd/backup") return handle_backup(r, ex);
  if (path == "/metrics") return handle_metrics(m, ex);
  if (path == "/config/local/log") return handle_log_level(r, ex);
  ex->reply(not_found());
}

}  // namespace kvd::server
