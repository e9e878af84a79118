// The client API of a member (etcd's v2http handlers): routing as Go's ServeMux does it
// (client_api.cc), the keys endpoint with watches (keys_handler.cc), /v2/members and
// /v2/machines (members_handler.cc), /version, /health and /v2/stats/* (stats_handler.cc).
// Shared specs: v2-keys-api.md §1, §3, §4, §8 and v2-cluster-api.md §1-§5.
//
// Each handler turns an HttpRequest into a call on the Node and the Node's typed answer into
// etcd's HTTP answer: the handlers alone choose statuses and render JSON (api_v2/render.h for
// keys, responses.h for the shared shapes). The answer goes back through the Exchange, possibly
// from the node's strand. ClientApi keeps no per-request state; it is owned by main and is safe
// to call from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "server/http/types.h"
#include "server/member/node.h"

namespace kvd::server {

class ClientApi final : public RequestHandler {
 public:
  explicit ClientApi(Node& node);

  void handle(const HttpRequest& request, const std::shared_ptr<Exchange>& exchange) override;

 private:
  using ExchangePtr = std::shared_ptr<Exchange>;

  // keys_handler.cc
  void handle_keys(const HttpRequest& r, std::string_view method, const ExchangePtr& ex);
  // members_handler.cc
  void handle_members(const HttpRequest& r, std::string_view path, const ExchangePtr& ex);
  void handle_members_mutation(const HttpRequest& r, std::string_view method,
                               std::string_view id_part, const ExchangePtr& ex);
  void handle_machines(std::string_view method, const ExchangePtr& ex);
  // stats_handler.cc
  void handle_version(std::string_view method, const ExchangePtr& ex);
  void handle_health(std::string_view method, const ExchangePtr& ex);
  void handle_stats_self(std::string_view method, const ExchangePtr& ex);
  void handle_stats_leader(std::string_view method, const ExchangePtr& ex);
  void handle_stats_store(std::string_view method, const ExchangePtr& ex);

  Node& node_;
  const uint64_t cluster_id_;
};

}  // namespace kvd::server
