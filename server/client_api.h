// The client API of a member (etcd's v2http handlers): routing as Go's ServeMux does it
// (client_api.cc), the keys endpoint with watches (keys_handler.cc), /v2/members and
// /v2/machines (members_handler.cc), /version, /health and /v2/stats/* (stats_handler.cc), and
// v2 auth: /v2/auth/* and the access checks of the other endpoints (auth_handler.cc), and
// /kvd/backup, an online backup (backup_handler.cc), and /metrics (metrics_handler.cc).
// Shared specs: v2-keys-api.md §1, §3, §4, §8 and v2-cluster-api.md §1-§5.
//
// Each handler turns an HttpRequest into a call on the Node and the Node's typed answer into
// etcd's HTTP answer: the handlers alone choose statuses and render JSON (api_v2/render.h for
// keys, responses.h for the shared shapes). The answer goes back through the Exchange, possibly
// from the node's strand. ClientApi keeps no per-request state; it is owned by main and is safe
// to call from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "api_v2/keys_request.h"
#include "server/auth/authenticator.h"
#include "server/http/types.h"
#include "server/keys_metrics.h"
#include "server/member/node.h"

namespace kvd::server {

struct ClientApiOptions {
  // Checks passwords for v2 auth. REQUIRES: outlives the ClientApi.
  auth::Authenticator* authenticator = nullptr;
  // --client-cert-auth: a request without an Authorization header is the user named by its
  // verified client certificate's common name, when there is such a user (etcd 3.4).
  bool client_cert_auth = false;
};

class ClientApi final : public RequestHandler {
 public:
  ClientApi(Node& node, ClientApiOptions options);

  void handle(const HttpRequest& request, const std::shared_ptr<Exchange>& exchange) override;

 private:
  using ExchangePtr = std::shared_ptr<Exchange>;

  // keys_handler.cc
  void handle_keys(const HttpRequest& r, std::string_view method, std::string_view path,
                   const ExchangePtr& ex);
  // What etcd_http_* (keys_metrics.h) record of a keys request: its method label and arrival.
  struct Timing {
    KeysMetrics::Method method;
    std::chrono::steady_clock::time_point start;
  };
  void serve_keys(v2::KeysRequest parsed, bool head, Timing timing, const ExchangePtr& ex);
  // auth_handler.cc
  void handle_auth(const HttpRequest& r, std::string_view path, const ExchangePtr& ex);
  void handle_auth_enable(const HttpRequest& r, const ExchangePtr& ex);
  // After the method and root checks: one /v2/auth/users or /v2/auth/roles request ("" name:
  // the list).
  void serve_auth_users(const v2::auth::AuthState& st, std::string_view method,
                        const std::string& name, std::string_view body, const ExchangePtr& ex);
  void serve_auth_roles(const v2::auth::AuthState& st, std::string_view method,
                        const std::string& name, std::string_view body, const ExchangePtr& ex);
  void propose_auth(v2::auth::Request req, const ExchangePtr& ex);
  // etcd's hasRootAccess / hasKeyPrefixAccess: cb(allowed), at once or from a pool thread once
  // a password was checked. REQUIRES: auth enabled in `st`.
  using Allowed = std::function<void(bool)>;
  void check_root(const HttpRequest& r, std::shared_ptr<const v2::auth::AuthState> st, Allowed cb);
  void check_key(const HttpRequest& r, std::shared_ptr<const v2::auth::AuthState> st,
                 std::string_view key, bool recursive, Allowed cb);
  // The user the request names by Basic credentials, checked: cb(user or null).
  void basic_user(const HttpRequest& r, std::shared_ptr<const v2::auth::AuthState> st,
                  std::function<void(const v2::auth::User*)> cb);
  // members_handler.cc
  void handle_members(const HttpRequest& r, std::string_view path, const ExchangePtr& ex);
  void serve_members(const HttpRequest& r, std::string_view path, const ExchangePtr& ex);
  void handle_members_mutation(const HttpRequest& r, std::string_view method,
                               std::string_view id_part, const ExchangePtr& ex);
  void handle_machines(std::string_view method, const ExchangePtr& ex);
  // metrics_handler.cc
  void handle_metrics(std::string_view method, const ExchangePtr& ex);
  // log_handler.cc
  void handle_log_level(const HttpRequest& r, const ExchangePtr& ex);
  // backup_handler.cc
  void handle_backup(const HttpRequest& r, const ExchangePtr& ex);
  void serve_backup(const ExchangePtr& ex);
  // stats_handler.cc
  void handle_version(std::string_view method, const ExchangePtr& ex);
  void handle_health(std::string_view method, const ExchangePtr& ex);
  void handle_stats_self(std::string_view method, const ExchangePtr& ex);
  void handle_stats_leader(std::string_view method, const ExchangePtr& ex);
  void handle_stats_store(std::string_view method, const ExchangePtr& ex);

  // keys_handler.cc: the JSON of the event last delivered to a watcher, which the other
  // watchers of that event share (a change seen by 1,000 watchers is rendered once).
  class WatchEventJson;
  static std::shared_ptr<WatchEventJson> make_watch_event_json();

  Node& node_;
  const uint64_t cluster_id_;
  const ClientApiOptions options_;
  KeysMetrics keys_metrics_;
  const std::shared_ptr<WatchEventJson> watch_json_;
};

}  // namespace kvd::server
