// The subset of etcd's Go v2 client (go.etcd.io/etcd/client) that etcdctl uses, with the same
// observable behaviour: shuffled endpoints, member sync, failover on transport errors and 5xx
// answers (one-shot for create/delete), per-request header timeout, cluster errors listing
// each endpoint's failure, and the v2 keys and members JSON models.
// One instance per command; single-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "cli/http_client.h"

namespace kvd::cli {

// An error as etcdctl prints it. kEtcd: an etcd error body ("100: Key not found (/a) [5]");
// kCluster: every endpoint failed ("client: etcd cluster is unavailable or misconfigured; ...").
struct ClientError {
  enum class Kind { kPlain, kEtcd, kCluster };
  Kind kind = Kind::kPlain;
  std::string message;              // the Go error's Error() text
  std::vector<std::string> errors;  // kCluster: one entry per endpoint tried
  bool connection = false;          // etcdctl's isConnectionError()
};

struct Node {
  std::string key;
  bool dir = false;
  std::string value;
  std::optional<std::vector<Node>> nodes;  // nullopt renders as null
  std::uint64_t created_index = 0;
  std::uint64_t modified_index = 0;
  std::optional<std::string> expiration;
  std::int64_t ttl = 0;
};

struct KeysResponse {
  std::string action;
  Node node;
  std::optional<Node> prev_node;
  std::uint64_t index = 0;  // X-Etcd-Index
};

struct Member {
  std::string id;
  std::string name;
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
};

// One HTTP request before an endpoint is chosen. `path` is unescaped and relative to the
// endpoint's own path; query and form pairs are sorted by key when encoded, as url.Values does.
struct ApiRequest {
  std::string method = "GET";
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  std::optional<std::vector<std::pair<std::string, std::string>>> form;
  std::optional<std::string> json_body;
  bool join_path = false;  // path.Join semantics (members API) instead of CanonicalURLPath
};

struct ClientOptions {
  std::chrono::nanoseconds header_timeout{0};  // 0: none
  std::chrono::nanoseconds total_timeout{0};   // 0: none; also caps the dial timeout
  bool debug = false;
  std::string authorization;  // "Basic ..." or empty
  std::shared_ptr<const TlsClientConfig> tls;  // for https:// endpoints; nullptr: Go's default
};

template <typename T>
using Result = std::variant<T, ClientError>;

class EtcdClient {
 public:
  EtcdClient(std::vector<Endpoint> endpoints, ClientOptions options);

  std::vector<std::string> endpoint_texts() const;

  // Replaces the endpoints with the members' client URLs (GET /v2/members).
  std::optional<ClientError> sync(std::optional<Clock::time_point> deadline);

  // Sends to the pinned endpoint, failing over as etcd's httpClusterClient.Do does.
  // `wait` requests get no header timeout.
  Result<HttpResponse> send(const ApiRequest& req, std::optional<Clock::time_point> deadline,
                            bool one_shot, bool wait);

  // v2 keys: sends and decodes a keys response or an etcd error.
  Result<KeysResponse> keys(const ApiRequest& req, std::optional<Clock::time_point> deadline,
                            bool one_shot, bool wait);

  Result<std::vector<Member>> list_members(std::optional<Clock::time_point> deadline);
  Result<Member> leader(std::optional<Clock::time_point> deadline);
  Result<Member> add_member(const std::string& peer_url, std::optional<Clock::time_point> deadline);
  std::optional<ClientError> remove_member(const std::string& id,
                                           std::optional<Clock::time_point> deadline);
  std::optional<ClientError> update_member(const std::string& id,
                                           const std::vector<std::string>& peer_urls,
                                           std::optional<Clock::time_point> deadline);

  std::optional<Clock::time_point> command_deadline() const;

  // The TLS settings every request of this client uses (nullptr: Go's default).
  const TlsClientConfig* tls() const { return options_.tls.get(); }

 private:
  void set_endpoints(std::vector<Endpoint> eps);
  // GET path of the members API: the body of a 200 answer, else the error etcdctl reports.
  Result<std::string> get_members_api(const std::string& path,
                                      std::optional<Clock::time_point> deadline);

  std::vector<Endpoint> endpoints_;
  std::size_t pinned_ = 0;
  ClientOptions options_;
  std::mt19937_64 rng_;
};

// types.NewURLs validation used by member add/update; nullopt if all valid, else Go's message.
std::optional<std::string> validate_peer_urls(const std::vector<std::string>& urls);

// A /health body: true for {"health":"true"} or {"health":true}, false for other JSON objects,
// else Go's json error text.
std::variant<bool, std::string> decode_health(const std::string& body);

// etcd's pathutil.CanonicalURLPath: path.Clean of the rooted path, keeping a trailing slash;
// "" becomes "/".
std::string canonical_url_path(std::string_view p);

// Parses one v2 node JSON object (nlohmann-free interface for callers).
std::optional<KeysResponse> parse_keys_body(const std::string& body);

}  // namespace kvd::cli
