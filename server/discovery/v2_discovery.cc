// join_cluster / get_cluster (v2_discovery.h): etcd 3.4's discovery.go, step for step, with
// its log lines (capnslog's texts) and its error texts.
#include "server/discovery/v2_discovery.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/go.h"
#include "common/ids.h"
#include "common/url.h"
#include "server/http/blocking_client.h"

namespace kvd::server::discovery {

namespace {

using json = nlohmann::json;

// client.DefaultRequestTimeout of etcd's v2 client, for every call but the watches.
constexpr std::chrono::seconds kRequestTimeout{5};
// A watch waits without end in etcd; here each long poll is re-issued after this long (same
// waitIndex, so nothing is missed).
constexpr std::chrono::minutes kWatchPoll{5};
// etcd: nRetries = MaxUint32 (forever), the backoff doubling up to 2^8 s.
constexpr unsigned kMaxExponentialRetries = 8;

struct Node {
  std::string key;
  std::string value;
  uint64_t created_index = 0;
  uint64_t modified_index = 0;
};

// One answer of the keys API, as etcd's v2 client sorts it out.
struct Reply {
  enum Kind { kOk, kClusterError, kKeysError, kInvalidJson } kind = kOk;
  std::string action;
  Node node;
  std::vector<Node> nodes;  // node's children
  uint64_t index = 0;       // X-Etcd-Index
  int error_code = 0;       // kKeysError: the v2 errorCode
  std::string error;        // the text etcd's client would give
  bool empty_body = false;  // a 200 without a body (a long poll the server ended)
};

Node node_of(const json& j) {
  Node n;
  n.key = j.value("key", "");
  if (j.contains("value") && j["value"].is_string()) n.value = j["value"].get<std::string>();
  n.created_index = j.value("createdIndex", uint64_t{0});
  n.modified_index = j.value("modifiedIndex", uint64_t{0});
  return n;
}

std::string base_name(const std::string& key) {
  auto slash = key.find_last_of('/');
  return slash == std::string::npos ? key : key.substr(slash + 1);
}

class Discovery {
 public:
  Discovery(const Options& options, std::string base, std::string token, uint64_t id)
      : options_(options), base_(std::move(base)), token_(std::move(token)), id_(id) {
    if (!options_.proxy_url.empty() && options_.proxy_url.rfind("http://", 0) != 0 &&
        options_.proxy_url.rfind("https://", 0) != 0)
      options_.proxy_url = "http://" + options_.proxy_url;  // as etcd's newProxyFunc
    if (!options_.proxy_url.empty())
      SPDLOG_INFO("discovery: using proxy \"{}\"", options_.proxy_url);
  }

  Outcome join(const std::string& self) {
    Checked c = check_cluster();
    if (c.outcome.code != Code::kOk) return c.outcome;
    if (Outcome o = create_self(self); o.code != Code::kOk) return o;
    return wait_for_cluster(/*proxy=*/false);
  }

  Outcome get() { return wait_for_cluster(/*proxy=*/true); }

 private:
  struct Checked {
    Outcome outcome;
    std::vector<Node> nodes;  // registered members by createdIndex (_config left out)
    uint64_t size = 0;
    uint64_t index = 0;
  };

  std::string key_path(const std::string& key) const { return go::escape_path(key); }
  std::string self_key() const { return token_ + "/" + hex_id(id_); }

  Reply call(const HttpCall& c, std::chrono::milliseconds timeout) const {
    HttpCall with_proxy = c;
    with_proxy.proxy_url = options_.proxy_url;
    GetResult got = http_request(base_, with_proxy, timeout);
    Reply r;
    if (!got.error.empty() || got.status == 500 || got.status == 503) {
      r.kind = Reply::kClusterError;
      r.error = "error #0: " + (got.error.empty() ? "client: etcd member " + base_ +
                                                        " has no leader (" +
                                                        std::to_string(got.status) + ")"
                                                  : got.error);
      return r;
    }
    r.index = go::parse_uint(got.etcd_index).value_or(0);
    json body = json::parse(got.body, nullptr, /*allow_exceptions=*/false);
    if ((got.status == 200 || got.status == 201) && got.body.empty()) {
      r.kind = Reply::kInvalidJson;
      r.empty_body = true;  // etcd's client: ErrEmptyBody
      r.error = "client: response body is empty";
      return r;
    }
    if (got.status == 200 || got.status == 201) {
      if (body.is_discarded() || !body.is_object() || !body.contains("node")) {
        r.kind = Reply::kInvalidJson;
        r.error = "client: response is invalid json. The endpoint is probably not valid etcd "
                  "cluster endpoint.";
        return r;
      }
      r.action = body.value("action", "");
      r.node = node_of(body["node"]);
      if (body["node"].contains("nodes") && body["node"]["nodes"].is_array())
        for (const auto& child : body["node"]["nodes"]) r.nodes.push_back(node_of(child));
      return r;
    }
    if (body.is_discarded() || !body.is_object()) {
      r.kind = Reply::kInvalidJson;
      r.error = "client: response is invalid json. The endpoint is probably not valid etcd "
                "cluster endpoint.";
      return r;
    }
    // client.Error.Error(): "%v: %v (%v) [%v]".
    r.kind = Reply::kKeysError;
    r.error_code = body.value("errorCode", 0);
    r.error = std::to_string(r.error_code) + ": " + body.value("message", "") + " (" +
              body.value("cause", "") + ") [" + std::to_string(body.value("index", uint64_t{0})) +
              "]";
    return r;
  }

  Reply get_key(const std::string& key) const {
    HttpCall c;
    c.target = key_path(key) + "?quorum=false&recursive=false&sorted=false";
    return call(c, kRequestTimeout);
  }

  // Waits for the first change of key (recursive: under it) at or after wait_index.
  Reply watch(const std::string& key, uint64_t wait_index, bool recursive) const {
    HttpCall c;
    c.target = key_path(key) + "?recursive=" + (recursive ? "true" : "false") +
               "&wait=true&waitIndex=" + std::to_string(wait_index);
    for (;;) {
      Reply r = call(c, kWatchPoll);
      // A long poll that ended without an event (timed out here, or the server closed it with
      // an empty body) is asked again, as etcd's watcher does on an empty body.
      if (r.kind == Reply::kClusterError && r.error.find("timed out") != std::string::npos)
        continue;
      if (r.empty_body) continue;  // ErrEmptyBody: etcd's watcher asks again
      return r;
    }
  }

  Outcome create_self(const std::string& self) {
    HttpCall c;
    c.method = "PUT";
    c.target = key_path(self_key()) + "?prevExist=false";
    c.body = "value=" + go::query_escape(self);
    c.content_type = "application/x-www-form-urlencoded";
    Reply r = call(c, kRequestTimeout);
    if (r.kind == Reply::kKeysError && r.error_code == 105)
      return {Code::kDuplicateId, "", "discovery: found duplicate id"};
    if (r.kind != Reply::kOk) return {Code::kOther, "", error_text(r)};
    Reply seen = watch(self_key(), r.node.created_index, false);
    if (seen.kind != Reply::kOk) return {Code::kOther, "", error_text(seen)};
    return {};
  }

  static std::string error_text(const Reply& r) {
    if (r.kind == Reply::kClusterError)
      return "client: etcd cluster is unavailable or misconfigured; " + r.error;
    return r.error;
  }

  void backoff(const char* step) {
    ++retries_;
    unsigned exponent = std::min(retries_, kMaxExponentialRetries);
    std::chrono::seconds wait{1u << exponent};
    SPDLOG_INFO("discovery: {}: error connecting to {}, retrying in {}", step, base_,
                go::format_duration(std::chrono::nanoseconds(wait).count()));
    std::this_thread::sleep_for(wait);
  }

  // One checkCluster of etcd, with its retries on connection errors.
  Checked check_cluster() {
    for (;;) {
      Checked c;
      const std::string config_key = token_ + "/_config";
      Reply size = get_key(config_key + "/size");
      if (size.kind == Reply::kClusterError) {
        SPDLOG_ERROR("discovery: {}", size.error);
        backoff("cluster status check");
        continue;
      }
      if (size.kind == Reply::kInvalidJson) {
        c.outcome = {Code::kBadDiscoveryEndpoint, "", "discovery: bad discovery endpoint"};
        return c;
      }
      if (size.kind == Reply::kKeysError) {
        // etcd's client returns its Error by value, which etcd's check for a missing size key
        // (a pointer) never matches: the service's own error text is what etcd reports.
        c.outcome = {Code::kSizeNotFound, "", size.error};
        return c;
      }
      auto n = go::parse_uint(size.node.value);
      if (!n) {
        c.outcome = {Code::kBadSizeKey, "", "discovery: size key is bad"};
        return c;
      }
      c.size = *n;
      Reply dir = get_key(token_);
      if (dir.kind == Reply::kClusterError) {
        SPDLOG_ERROR("discovery: {}", dir.error);
        backoff("cluster status check");
        continue;
      }
      if (dir.kind != Reply::kOk) {
        c.outcome = {Code::kOther, "", error_text(dir)};
        return c;
      }
      for (auto& node : dir.nodes)
        if (base_name(node.key) != "_config") c.nodes.push_back(std::move(node));
      std::stable_sort(c.nodes.begin(), c.nodes.end(), [](const Node& a, const Node& b) {
        return a.created_index < b.created_index;
      });
      c.index = dir.index;
      const std::string self = hex_id(id_);
      for (size_t i = 0; i < c.nodes.size(); ++i) {
        if (base_name(c.nodes[i].key) == self) break;
        if (c.size == 0 || i >= c.size - 1) {
          c.nodes.resize(c.size);
          c.outcome = {Code::kFullCluster, "", "discovery: cluster is full"};
          return c;
        }
      }
      return c;
    }
  }

  Outcome wait_for_cluster(bool proxy) {
    for (;;) {
      Checked c = check_cluster();
      if (c.outcome.code == Code::kFullCluster && proxy) return to_cluster(c.nodes, c.size);
      if (c.outcome.code != Code::kOk) return c.outcome;
      std::vector<Node> all = std::move(c.nodes);
      if (all.size() > c.size) all.resize(c.size);
      std::set<std::string> known;
      const std::string self = hex_id(id_);
      for (const auto& n : all) {
        known.insert(base_name(n.key));
        if (!proxy && base_name(n.key) == self)
          SPDLOG_INFO("discovery: found self {} in the cluster", base_name(n.key));
        else
          SPDLOG_INFO("discovery: found peer {} in the cluster", base_name(n.key));
      }
      uint64_t wait_index = c.index + 1;
      bool lost = false;
      while (all.size() < c.size) {
        SPDLOG_INFO("discovery: found {} peer(s), waiting for {} more", all.size(),
                    c.size - all.size());
        Reply r = watch(token_, wait_index, true);
        if (r.kind == Reply::kClusterError) {
          SPDLOG_ERROR("discovery: {}", r.error);
          lost = true;
          break;
        }
        if (r.kind != Reply::kOk) return {Code::kOther, "", error_text(r)};
        wait_index = r.node.modified_index + 1;
        // etcd counts every event under the token; only a new member's key is one (a change
        // of _config, a deletion or a second write of a known key would make a bad cluster).
        const std::string name = base_name(r.node.key);
        bool created = r.action == "create" || r.action == "set" || r.action == "compareAndSwap";
        if (!created || name == "_config" || r.node.key.find("/_config/") != std::string::npos ||
            !known.insert(name).second)
          continue;
        SPDLOG_INFO("discovery: found peer {} in the cluster", name);
        all.push_back(r.node);
      }
      if (lost) {
        backoff("waiting for other nodes");
        continue;
      }
      SPDLOG_INFO("discovery: found {} needed peer(s)", all.size());
      return to_cluster(all, c.size);
    }
  }

  static Outcome to_cluster(const std::vector<Node>& nodes, uint64_t size) {
    Outcome o;
    for (const auto& n : nodes) o.cluster += (o.cluster.empty() ? "" : ",") + n.value;
    auto pairs = parse_urls_map(o.cluster);
    if (!pairs) {
      o.code = Code::kInvalidUrl;
      o.error = "discovery: invalid URL";
    } else if (distinct_names(*pairs) != size) {
      o.code = Code::kDuplicateName;
      o.error = "discovery: found duplicate name";
    }
    return o;
  }

  Options options_;
  const std::string base_;   // scheme://host:port
  const std::string token_;  // the URL's path: /v2/keys/<dir>/<token>
  const uint64_t id_;
  unsigned retries_ = 0;
};

struct Parsed {
  std::string base;
  std::string token;
};

std::optional<Parsed> parse_discovery_url(const std::string& durl) {
  std::string why;
  auto u = url::parse(durl, &why);
  if (!u || (u->scheme != "http" && u->scheme != "https") || u->host.empty()) return std::nullopt;
  std::string host = u->host.find(':') != std::string::npos ? "[" + u->host + "]" : u->host;
  std::string port = u->port.empty() ? (u->scheme == "https" ? "443" : "80") : u->port;
  std::string token = u->path;
  while (token.size() > 1 && token.back() == '/') token.pop_back();
  if (token.empty() || token == "/") return std::nullopt;
  return Parsed{u->scheme + "://" + host + ":" + port, token};
}

Outcome run(const Options& options, uint64_t id, const std::string* self) {
  auto parsed = parse_discovery_url(options.url);
  if (!parsed) return {Code::kInvalidUrl, "", "discovery: invalid URL"};
  Discovery d(options, parsed->base, parsed->token, id);
  return self ? d.join(*self) : d.get();
}

}  // namespace

Outcome join_cluster(const Options& options, uint64_t member_id, const std::string& self) {
  return run(options, member_id, &self);
}

Outcome get_cluster(const Options& options) { return run(options, 0, nullptr); }

std::optional<std::vector<std::pair<std::string, std::string>>> parse_urls_map(
    const std::string& s) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string part = s.substr(start, comma == std::string::npos ? std::string::npos
                                                                  : comma - start);
    auto eq = part.find('=');
    if (eq == std::string::npos) return std::nullopt;
    std::string u = part.substr(eq + 1);
    if (!url::check(u).empty()) return std::nullopt;
    out.emplace_back(part.substr(0, eq), u);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

size_t distinct_names(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::set<std::string> names;
  for (const auto& p : pairs) names.insert(p.first);
  return names.size();
}

std::string service_url(const std::string& discovery_url) {
  auto p = parse_discovery_url(discovery_url);
  return p ? p->base : "";
}

}  // namespace kvd::server::discovery
