#include "cli/etcd_client.h"
#include "cli/go_json.h"
#include "common/go.h"

#include <algorithm>
#include <nlohmann/json.hpp>


namespace kvd::cli {
namespace {

using json = nlohmann::json;

const char kClusterUnavailable[] = "client: etcd cluster is unavailable or misconfigured";
const char kInvalidJson[] =
    "client: response is invalid json. The endpoint is probably not valid etcd cluster endpoint";

ClientError plain(std::string msg, bool connection = false) {
  return ClientError{ClientError::Kind::kPlain, std::move(msg), {}, connection};
}

std::string status_text(int code) {
  switch (code) {
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 510: return "Not Extended";
    case 511: return "Network Authentication Required";
    default: return "";
  }
}

std::string encode_values(std::vector<std::pair<std::string, std::string>> kv) {
  std::stable_sort(kv.begin(), kv.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out;
  for (const auto& [k, v] : kv) {
    if (!out.empty()) out += '&';
    out += go::query_escape(k) + "=" + go::query_escape(v);
  }
  return out;
}

// path.Join(a, b): clean, no trailing slash kept.
std::string join_path(const std::string& a, const std::string& b) {
  std::string joined = a.empty() ? b : (b.empty() ? a : a + "/" + b);
  if (joined.empty()) return "";
  bool rooted = joined[0] == '/';
  std::string c = canonical_url_path(joined);
  if (c.size() > 1 && c.back() == '/') c.pop_back();
  if (!rooted && !c.empty() && c[0] == '/') c.erase(0, 1);
  return c;
}

// Go's json.Unmarshal error text for a body that is not JSON.
std::string json_syntax_error(const std::string& body) {
  std::string err = go::json_syntax_error(body);
  if (!err.empty()) return err;
  // Valid for Go but not for the parser (invalid UTF-8 inside a string): the nearest text.
  return "invalid character looking for beginning of value";
}

// Case-insensitive member lookup, as encoding/json matches field names.
const json* field(const json& obj, std::string_view name) { return go_json_field(obj, name); }

std::string str_field(const json& obj, std::string_view name) {
  const json* f = field(obj, name);
  return f && f->is_string() ? f->get<std::string>() : "";
}

std::uint64_t uint_field(const json& obj, std::string_view name) {
  const json* f = field(obj, name);
  if (f && f->is_number_unsigned()) return f->get<std::uint64_t>();
  if (f && f->is_number_integer()) return static_cast<std::uint64_t>(f->get<std::int64_t>());
  return 0;
}

std::vector<std::string> str_list(const json& obj, std::string_view name) {
  std::vector<std::string> out;
  const json* f = field(obj, name);
  if (f && f->is_array()) {
    for (const auto& v : *f) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  }
  return out;
}

Node parse_node(const json& j) {
  Node n;
  n.key = str_field(j, "key");
  if (const json* d = field(j, "dir"); d && d->is_boolean()) n.dir = d->get<bool>();
  n.value = str_field(j, "value");
  if (const json* ns = field(j, "nodes"); ns && ns->is_array()) {
    n.nodes.emplace();
    for (const auto& c : *ns) n.nodes->push_back(parse_node(c));
  }
  n.created_index = uint_field(j, "createdIndex");
  n.modified_index = uint_field(j, "modifiedIndex");
  if (const json* e = field(j, "expiration"); e && e->is_string()) n.expiration = e->get<std::string>();
  if (const json* t = field(j, "ttl"); t && t->is_number_integer()) n.ttl = t->get<std::int64_t>();
  return n;
}

Member parse_member(const json& j) {
  return Member{str_field(j, "id"), str_field(j, "name"), str_list(j, "peerURLs"),
                str_list(j, "clientURLs")};
}

std::string unexpected_status(int code) { return "unexpected status code " + std::to_string(code); }

std::string peer_urls_body(const std::vector<std::string>& urls) {
  std::vector<std::string> sorted;
  for (const auto& u : urls) {
    std::string t = u;
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.erase(0, 1);
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
    sorted.push_back(t);
  }
  std::sort(sorted.begin(), sorted.end());
  std::string body = "{\"peerURLs\":[";
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    if (i) body += ',';
    body += go::json_quote(sorted[i]);
  }
  return body + "]}";
}

// membersError{message, code}: its Error() is the message.
ClientError members_error(const std::string& body) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return plain(json_syntax_error(body));
  return plain(str_field(j, "message"));
}

}  // namespace

// etcd's CanonicalURLPath: path.Clean that keeps a trailing slash; "" becomes "/".
std::string canonical_url_path(std::string_view p) {
  if (p.empty()) return "/";
  std::string in = p[0] == '/' ? std::string(p) : "/" + std::string(p);
  // path.Clean on a rooted path: drop empty and "." elements, resolve "..".
  std::vector<std::string_view> parts;
  std::string_view rest = in;
  while (!rest.empty()) {
    std::size_t slash = rest.find('/');
    std::string_view elem = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (elem.empty() || elem == ".") continue;
    if (elem == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(elem);
  }
  std::string out;
  for (auto e : parts) {
    out += '/';
    out.append(e);
  }
  if (out.empty()) return "/";
  if (in.back() == '/') out += '/';
  return out;
}

std::optional<KeysResponse> parse_keys_body(const std::string& body) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  KeysResponse r;
  r.action = str_field(j, "action");
  if (const json* n = field(j, "node"); n && n->is_object()) r.node = parse_node(*n);
  if (const json* p = field(j, "prevNode"); p && p->is_object()) r.prev_node = parse_node(*p);
  return r;
}

std::variant<bool, std::string> decode_health(const std::string& body) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return json_syntax_error(body);
  const json* h = field(j, "health");
  if (h == nullptr) return false;
  if (h->is_string()) return h->get<std::string>() == "true";
  if (h->is_boolean()) return h->get<bool>();
  return false;
}

std::optional<std::string> validate_peer_urls(const std::vector<std::string>& urls) {
  if (urls.empty()) return "no valid URLs given";
  for (const auto& raw : urls) {
    std::string in = raw;
    while (!in.empty() && std::isspace(static_cast<unsigned char>(in.front()))) in.erase(0, 1);
    while (!in.empty() && std::isspace(static_cast<unsigned char>(in.back()))) in.pop_back();
    std::string err;
    auto u = url::parse(in, &err, /*default_http=*/false);
    if (!u) return err;
    if (u->scheme != "http" && u->scheme != "https" && u->scheme != "unix" && u->scheme != "unixs") {
      return "URL scheme must be http, https, unix, or unixs: " + in;
    }
    if (u->port.empty() && in.find("://" + u->host + ":") == std::string::npos) {
      return "URL address does not have the form \"host:port\": " + in;
    }
    if (!u->path.empty()) return "URL must not contain a path: " + in;
  }
  return std::nullopt;
}

EtcdClient::EtcdClient(std::vector<Endpoint> endpoints, ClientOptions options)
    : options_(std::move(options)), rng_(std::random_device{}()) {
  set_endpoints(std::move(endpoints));
}

void EtcdClient::set_endpoints(std::vector<Endpoint> eps) {
  std::shuffle(eps.begin(), eps.end(), rng_);
  endpoints_ = std::move(eps);
  pinned_ = 0;
}

std::vector<std::string> EtcdClient::endpoint_texts() const {
  std::vector<std::string> out;
  for (const auto& e : endpoints_) out.push_back(e.text);
  return out;
}

std::optional<Clock::time_point> EtcdClient::command_deadline() const {
  if (options_.total_timeout.count() <= 0) {
    // context.WithTimeout with a non-positive duration is already expired.
    if (options_.total_timeout.count() < 0) return Clock::now();
    return Clock::now();
  }
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(options_.total_timeout);
}

Result<HttpResponse> EtcdClient::send(const ApiRequest& req,
                                      std::optional<Clock::time_point> deadline, bool one_shot,
                                      bool wait) {
  if (endpoints_.empty()) return plain("client: no endpoints available");
  std::vector<ClientError> errors;
  const std::size_t n = endpoints_.size();
  for (std::size_t i = pinned_; i < pinned_ + n; ++i) {
    const std::size_t k = i % n;
    const Endpoint& ep = endpoints_[k];
    std::string path = req.join_path ? join_path(ep.path, req.path)
                                     : canonical_url_path(ep.path + req.path);
    std::string target = go::escape_path(path.empty() ? "/" : path);
    std::string query = encode_values(req.query);
    if (!query.empty()) target += "?" + query;

    HttpCall call;
    call.method = req.method;
    call.target = target;
    if (req.form) {
      call.body = encode_values(*req.form);
      call.content_type = "application/x-www-form-urlencoded";
    } else if (req.json_body) {
      call.body = *req.json_body;
      call.content_type = "application/json";
    }
    call.authorization = options_.authorization;
    call.tls = options_.tls.get();
    call.deadline = deadline;
    if (!wait && options_.header_timeout.count() > 0) {
      call.header_deadline =
          Clock::now() + std::chrono::duration_cast<Clock::duration>(options_.header_timeout);
    }
    auto dial = std::chrono::milliseconds(30000);
    if (options_.total_timeout.count() != 0) {
      dial = std::min(dial, std::chrono::duration_cast<std::chrono::milliseconds>(
                                options_.total_timeout));
    }
    call.dial_timeout = dial;
    if (options_.debug) {
      std::string base = ep.text.substr(0, ep.text.size() - ep.path.size());
      std::string line = "cURL Command: curl -X " + req.method + " " + base + target;
      if (call.body) line += " -d " + go::quote(*call.body);
      std::fprintf(stderr, "%s\n", line.c_str());
    }

    HttpResult r = http_round_trip(ep, call);
    if (auto* f = std::get_if<HttpFailure>(&r)) {
      ClientError e;
      switch (f->kind) {
        case HttpFailure::Kind::kDeadline:
          return plain("context deadline exceeded", /*connection=*/true);
        case HttpFailure::Kind::kHeaderTimeout:
          e = plain("client: endpoint " + ep.text + " exceeded header timeout");
          break;
        case HttpFailure::Kind::kConnection:
          e = plain(f->message, /*connection=*/true);
          break;
        case HttpFailure::Kind::kOther:
          e = plain(f->message);
          break;
      }
      if (one_shot) return e;
      errors.push_back(std::move(e));
      continue;
    }
    auto& resp = std::get<HttpResponse>(r);
    if (resp.status / 100 == 5) {
      ClientError e = resp.status == 500 || resp.status == 503
                          ? plain("client: etcd member " + ep.text + " has no leader")
                          : plain("client: etcd member " + ep.text + " returns server error [" +
                                  status_text(resp.status) + "]");
      if (one_shot) return e;
      errors.push_back(std::move(e));
      continue;
    }
    pinned_ = k;
    return std::move(resp);
  }
  ClientError cerr;
  cerr.kind = ClientError::Kind::kCluster;
  cerr.message = kClusterUnavailable;
  cerr.connection = true;
  for (std::size_t i = 0; i < errors.size(); ++i) {
    cerr.message += "; error #" + std::to_string(i) + ": " + errors[i].message + "\n";
    cerr.errors.push_back(errors[i].message);
    cerr.connection = cerr.connection && errors[i].connection;
  }
  return cerr;
}

Result<KeysResponse> EtcdClient::keys(const ApiRequest& req,
                                      std::optional<Clock::time_point> deadline, bool one_shot,
                                      bool wait) {
  auto r = send(req, deadline, one_shot, wait);
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  const auto& resp = std::get<HttpResponse>(r);
  if (resp.status == 200 || resp.status == 201) {
    if (resp.body.empty()) return plain("client: response body is empty");
    auto parsed = parse_keys_body(resp.body);
    if (!parsed) return plain(kInvalidJson);
    std::string idx = resp.header("x-etcd-index");
    if (!idx.empty()) parsed->index = std::strtoull(idx.c_str(), nullptr, 10);
    return *parsed;
  }
  auto j = json::parse(resp.body, nullptr, false);
  if (j.is_discarded() || !(j.is_object() || j.is_null())) return plain(kInvalidJson);
  ClientError e;
  e.kind = ClientError::Kind::kEtcd;
  std::int64_t code = 0;
  if (const json* c = field(j, "errorCode"); c && c->is_number_integer()) code = c->get<std::int64_t>();
  e.message = std::to_string(code) + ": " + str_field(j, "message") + " (" +
              str_field(j, "cause") + ") [" + std::to_string(uint_field(j, "index")) + "]";
  return e;
}

std::optional<ClientError> EtcdClient::sync(std::optional<Clock::time_point> deadline) {
  auto members = list_members(deadline);
  if (auto* e = std::get_if<ClientError>(&members)) return *e;
  std::vector<std::string> eps;
  for (const auto& m : std::get<std::vector<Member>>(members)) {
    eps.insert(eps.end(), m.client_urls.begin(), m.client_urls.end());
  }
  std::sort(eps.begin(), eps.end());
  auto current = endpoint_texts();
  std::sort(current.begin(), current.end());
  if (eps == current) return std::nullopt;
  if (eps.empty()) return plain("client: no endpoints available");
  std::vector<Endpoint> parsed;
  for (const auto& s : eps) {
    std::string err;
    auto ep = url::parse(s, &err, /*default_http=*/false);
    if (!ep) return plain(err);
    parsed.push_back(*ep);
  }
  set_endpoints(std::move(parsed));
  return std::nullopt;
}

Result<std::string> EtcdClient::get_members_api(const std::string& path,
                                                std::optional<Clock::time_point> deadline) {
  ApiRequest req;
  req.path = path;
  req.join_path = true;
  auto r = send(req, deadline, false, false);
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  const auto& resp = std::get<HttpResponse>(r);
  if (resp.status != 200) return plain(unexpected_status(resp.status));
  return resp.body;
}

Result<std::vector<Member>> EtcdClient::list_members(std::optional<Clock::time_point> deadline) {
  auto body = get_members_api("/v2/members", deadline);
  if (auto* e = std::get_if<ClientError>(&body)) return *e;
  auto j = json::parse(std::get<std::string>(body), nullptr, false);
  if (j.is_discarded()) return plain(json_syntax_error(std::get<std::string>(body)));
  std::vector<Member> out;
  if (const json* ms = field(j, "members"); ms && ms->is_array()) {
    for (const auto& m : *ms) out.push_back(parse_member(m));
  }
  return out;
}

Result<Member> EtcdClient::leader(std::optional<Clock::time_point> deadline) {
  auto body = get_members_api("/v2/members/leader", deadline);
  if (auto* e = std::get_if<ClientError>(&body)) return *e;
  auto j = json::parse(std::get<std::string>(body), nullptr, false);
  if (j.is_discarded()) return plain(json_syntax_error(std::get<std::string>(body)));
  return parse_member(j);
}

Result<Member> EtcdClient::add_member(const std::string& peer_url,
                                      std::optional<Clock::time_point> deadline) {
  if (auto bad = validate_peer_urls({peer_url})) return plain(*bad);
  ApiRequest req;
  req.method = "POST";
  req.path = "/v2/members";
  req.join_path = true;
  req.json_body = peer_urls_body({peer_url});
  auto r = send(req, deadline, false, false);
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  const auto& resp = std::get<HttpResponse>(r);
  if (resp.status != 201 && resp.status != 409) return plain(unexpected_status(resp.status));
  if (resp.status == 409) return members_error(resp.body);
  auto j = json::parse(resp.body, nullptr, false);
  if (j.is_discarded()) return plain(json_syntax_error(resp.body));
  return parse_member(j);
}

std::optional<ClientError> EtcdClient::remove_member(const std::string& id,
                                                     std::optional<Clock::time_point> deadline) {
  ApiRequest req;
  req.method = "DELETE";
  req.path = "/v2/members/" + id;
  req.join_path = true;
  auto r = send(req, deadline, false, false);
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  const auto& resp = std::get<HttpResponse>(r);
  if (resp.status != 204 && resp.status != 410) return plain(unexpected_status(resp.status));
  return std::nullopt;
}

std::optional<ClientError> EtcdClient::update_member(const std::string& id,
                                                     const std::vector<std::string>& peer_urls,
                                                     std::optional<Clock::time_point> deadline) {
  if (auto bad = validate_peer_urls(peer_urls)) return plain(*bad);
  ApiRequest req;
  req.method = "PUT";
  req.path = "/v2/members/" + id;
  req.join_path = true;
  req.json_body = peer_urls_body(peer_urls);
  auto r = send(req, deadline, false, false);
  if (auto* e = std::get_if<ClientError>(&r)) return *e;
  const auto& resp = std::get<HttpResponse>(r);
  if (resp.status == 204) return std::nullopt;
  if (resp.status != 404 && resp.status != 409) return plain(unexpected_status(resp.status));
  return members_error(resp.body);
}

}  // namespace kvd::cli
