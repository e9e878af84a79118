#include "server/client_api.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

#include "api_v2/keys_request.h"
#include "api_v2/store.h"
#include "server/flags.h"

namespace kvd::server {
namespace {

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";
constexpr std::string_view kKeysPrefix = "/v2/keys";
constexpr std::string_view kMembersPrefix = "/v2/members";

std::string hex_id(uint64_t id) {
  char buf[17];
  int n = std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(id));
  return std::string(buf, static_cast<size_t>(n));
}

// Go's http.Error: text/plain, nosniff, text + "\n".
HttpResponse go_error(int status, std::string_view text) {
  HttpResponse r;
  r.status = status;
  r.content_type = kTextPlain;
  r.nosniff = true;
  r.body.reserve(text.size() + 1);
  r.body.append(text);
  r.body.push_back('\n');
  return r;
}

HttpResponse not_found() { return go_error(404, "404 page not found"); }

HttpResponse method_not_allowed(std::string_view allow) {
  HttpResponse r = go_error(405, "Method Not Allowed");
  r.allow = allow;
  return r;
}

// What Go's server answers before any handler runs for a request it cannot parse.
HttpResponse transport_bad_request() {
  HttpResponse r;
  r.status = 400;
  r.content_type = kTextPlain;
  r.body = "400 Bad Request";
  r.cors = false;
  r.close = true;
  r.unreadable_request = true;
  return r;
}

// etcd's httptypes.HTTPError: {"message":"..."} without a newline.
HttpResponse message_error(int status, std::string_view message, uint64_t cluster_id) {
  HttpResponse r;
  r.status = status;
  r.content_type = kJson;
  r.cluster_id = cluster_id;
  r.body = "{\"message\":";
  v2::append_json_string(r.body, message);
  r.body.push_back('}');
  return r;
}

HttpResponse keys_error(const v2::Error& e, uint64_t cluster_id, bool head) {
  HttpResponse r;
  r.status = e.status();
  r.content_type = kJson;
  r.cluster_id = cluster_id;
  r.etcd_index = e.index;
  r.body = e.to_json();
  r.omit_body = head;
  return r;
}

HttpResponse keys_event(const v2::Event& ev, const RaftStatus& st, uint64_t cluster_id,
                        bool write, bool no_value, bool head) {
  HttpResponse r;
  r.status = (ev.action == v2::Action::kCreate || ev.created()) ? 201 : 200;
  r.content_type = kJson;
  r.cluster_id = cluster_id;
  uint64_t index = write ? (ev.etcd_index ? ev.etcd_index : st.etcd_index)
                         : (st.etcd_index ? st.etcd_index : ev.etcd_index);
  r.etcd_index = index;
  r.raft_index = st.raft_index;
  r.raft_term = st.raft_term;
  bool strip = no_value && (ev.action == v2::Action::kSet || ev.action == v2::Action::kCreate ||
                            ev.action == v2::Action::kUpdate ||
                            ev.action == v2::Action::kCompareAndSwap);
  r.body = v2::render_event(ev, strip);
  r.omit_body = head;
  return r;
}

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

// A float64 as Go's encoding/json writes it: shortest representation that reads back exactly.
std::string go_float(double v) {
  if (v == 0) return "0";
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string out(buf);
  if (out.find('e') != std::string::npos) {
    std::snprintf(buf, sizeof buf, "%.17f", v);
    out = buf;
    while (!out.empty() && out.back() == '0') out.pop_back();
    if (!out.empty() && out.back() == '.') out.pop_back();
  }
  return out;
}

void append_member_json(std::string& out, const MemberInfo& m) {
  out += "{\"id\":\"";
  out += hex_id(m.id);
  out += "\",\"name\":";
  v2::append_json_string(out, m.name);
  out += ",\"peerURLs\":[";
  for (size_t i = 0; i < m.peer_urls.size(); ++i) {
    if (i) out.push_back(',');
    v2::append_json_string(out, m.peer_urls[i]);
  }
  out += "],\"clientURLs\":[";
  for (size_t i = 0; i < m.client_urls.size(); ++i) {
    if (i) out.push_back(',');
    v2::append_json_string(out, m.client_urls[i]);
  }
  out += "]}";
}

// Go's strconv.ParseUint(s, 16, 64).
std::optional<uint64_t> parse_hex_id(std::string_view s) {
  if (s.empty() || s.size() > 16) {
    // More than 16 digits can still be a valid number with leading zeros.
    size_t nz = s.find_first_not_of('0');
    if (s.empty() || (nz != std::string_view::npos && s.size() - nz > 16)) return std::nullopt;
  }
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return std::nullopt;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

std::string json_type_name(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::array: return "array";
    case nlohmann::json::value_t::string: return "string";
    case nlohmann::json::value_t::boolean: return "bool";
    case nlohmann::json::value_t::object: return "object";
    default: return "number";
  }
}

// Decodes a members mutation body as etcd's MemberCreateRequest/MemberUpdateRequest do.
// Returns the peer URLs or sets *error to Go's error text.
std::vector<std::string> parse_peer_urls(std::string_view body, std::string* error) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::parse_error& e) {
    // Go reports a body that ends early as one error and a bad byte by naming it.
    size_t at = e.byte > 0 ? e.byte - 1 : 0;
    std::string_view rest = body.substr(std::min(at, body.size()));
    size_t first = rest.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) {
      *error = "unexpected end of JSON input";
    } else {
      *error = "invalid character '";
      *error += rest[first];
      *error += "' looking for beginning of value";
    }
    return {};
  }
  std::vector<std::string> urls;
  if (j.is_null()) {
    // JSON null decodes into the zero request: no URLs.
  } else if (!j.is_object()) {
    *error = "json: cannot unmarshal " + json_type_name(j) +
             " into Go value of type struct { PeerURLs []string \"json:\\\"peerURLs\\\"\" }";
    return {};
  } else if (auto it = j.find("peerURLs"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) {
      *error = "json: cannot unmarshal " + json_type_name(*it) +
               " into Go struct field .peerURLs of type []string";
      return {};
    }
    for (const auto& u : *it) {
      if (!u.is_string()) {
        *error = "json: cannot unmarshal " + json_type_name(u) +
                 " into Go struct field .peerURLs of type string";
        return {};
      }
      urls.push_back(u.get<std::string>());
    }
  }
  if (urls.empty()) {
    *error = "no valid URLs given";
    return {};
  }
  for (const auto& u : urls) {
    if (std::string err = check_url(u); !err.empty()) {
      *error = err;
      return {};
    }
  }
  std::sort(urls.begin(), urls.end());
  return urls;
}

}  // namespace

std::string format_go_duration(int64_t ns) {
  if (ns == 0) return "0s";
  bool neg = ns < 0;
  uint64_t u = neg ? static_cast<uint64_t>(-(ns + 1)) + 1 : static_cast<uint64_t>(ns);
  auto frac = [](uint64_t v, int prec) {
    uint64_t p = 1;
    for (int i = 0; i < prec; ++i) p *= 10;
    std::string out = std::to_string(v / p);
    uint64_t f = v % p;
    if (f != 0) {
      std::string digits = std::to_string(f);
      digits.insert(0, static_cast<size_t>(prec) - digits.size(), '0');
      while (!digits.empty() && digits.back() == '0') digits.pop_back();
      out += '.';
      out += digits;
    }
    return out;
  };
  std::string out;
  if (u < 1000) {
    out = std::to_string(u) + "ns";
  } else if (u < 1000000) {
    out = frac(u, 3) + "µs";
  } else if (u < 1000000000) {
    out = frac(u, 6) + "ms";
  } else {
    constexpr uint64_t kMinute = 60ULL * 1000000000ULL;
    std::string secs = frac(u % kMinute, 9) + "s";
    uint64_t minutes = u / kMinute;
    if (minutes == 0) {
      out = secs;
    } else {
      uint64_t hours = minutes / 60;
      out = (hours ? std::to_string(hours) + "h" : std::string()) + std::to_string(minutes % 60) +
            "m" + secs;
    }
  }
  return neg ? "-" + out : out;
}

std::string format_rfc3339_nano(std::chrono::system_clock::time_point t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  int64_t secs = ns / 1000000000;
  int64_t nanos = ns % 1000000000;
  if (nanos < 0) {
    nanos += 1000000000;
    secs -= 1;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  if (nanos != 0) {
    char fb[16];
    std::snprintf(fb, sizeof fb, ".%09lld", static_cast<long long>(nanos));
    std::string f(fb);
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  out += 'Z';
  return out;
}

std::string escape_path(std::string_view path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(path.size());
  for (unsigned char c : path) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.' || c == '~' || c == '$' || c == '&' ||
                c == '+' || c == ',' || c == '/' || c == ':' || c == ';' || c == '=' || c == '@';
    if (keep) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

ClientApi::ClientApi(Node& node) : node_(node), cluster_id_(node.cluster_id()) {}

void ClientApi::handle(const HttpRequest& r, const std::shared_ptr<Exchange>& ex) {
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
      resp.location = escape_path(*cleaned);
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
    handle_keys(r, m, ex);
    return;
  }
  if (path == kMembersPrefix || starts_with(path, "/v2/members/")) {
    handle_members(r, path, ex);
    return;
  }
  if (path == "/version") {
    if (m != "GET") return ex->reply(method_not_allowed("GET"));
    HttpResponse resp;
    resp.content_type = kJson;
    resp.body = R"({"etcdserver":"3.4.23","etcdcluster":"3.4.0"})";
    return ex->reply(std::move(resp));
  }
  if (path == "/health") {
    if (m != "GET") return ex->reply(method_not_allowed("GET"));
    // etcd 3.4's checkHealth: unhealthy without a known leader (answered at once), else an
    // empty read through raft (QGET) must complete within 1 s. kvd raises no alarms.
    Node* node = &node_;
    node_.info([ex, node](Node::Info info) {
      if (info.leader_id == 0) return ex->reply(go_error(503, R"({"health":"false"})"));
      node->probe_quorum(std::chrono::seconds(1), [ex](bool ok) {
        if (!ok) return ex->reply(go_error(503, R"({"health":"false"})"));
        HttpResponse resp;
        resp.content_type = kTextPlain;
        resp.body = R"({"health":"true"})";
        ex->reply(std::move(resp));
      });
    });
    return;
  }
  if (path == "/v2/machines") {
    if (m != "GET" && m != "HEAD") return ex->reply(method_not_allowed("GET,HEAD"));
    bool head = m == "HEAD";
    node_.info([ex, head](Node::Info info) {
      std::vector<std::string> urls;
      for (const auto& member : info.members)
        urls.insert(urls.end(), member.client_urls.begin(), member.client_urls.end());
      std::sort(urls.begin(), urls.end());
      HttpResponse resp;
      resp.content_type = kTextPlain;
      for (size_t i = 0; i < urls.size(); ++i) {
        if (i) resp.body += ", ";
        resp.body += urls[i];
      }
      resp.omit_body = head;
      ex->reply(std::move(resp));
    });
    return;
  }
  if (path == "/v2/stats/self") {
    if (m != "GET") return ex->reply(method_not_allowed("GET"));
    node_.info([ex](Node::Info info) {
      HttpResponse resp;
      resp.content_type = kJson;
      std::string& b = resp.body;
      b = "{\"name\":";
      v2::append_json_string(b, info.name);
      b += ",\"id\":\"" + hex_id(info.member_id) + "\",\"state\":\"";
      b += info.stats_state_leader ? "StateLeader" : "StateFollower";
      b += "\",\"startTime\":\"" + format_rfc3339_nano(info.start_time);
      b += "\",\"leaderInfo\":{\"leader\":\"";
      if (info.stats_leader != 0) b += hex_id(info.stats_leader);
      auto uptime = std::chrono::system_clock::now() - info.stats_leader_since;
      b += "\",\"uptime\":\"" +
           format_go_duration(std::chrono::duration_cast<std::chrono::nanoseconds>(uptime).count());
      b += "\",\"startTime\":\"" + format_rfc3339_nano(info.stats_leader_since);
      b += "\"},\"recvAppendRequestCnt\":" + std::to_string(info.recv_append_requests);
      b += ",\"sendAppendRequestCnt\":" + std::to_string(info.send_append_requests) + "}";
      ex->reply(std::move(resp));
    });
    return;
  }
  if (path == "/v2/stats/leader") {
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
                     go_float(ps.latency_current_ms) + ",\"average\":" +
                     go_float(ps.latency_average_ms) + ",\"standardDeviation\":" +
                     go_float(ps.latency_stddev_ms) + ",\"minimum\":" +
                     go_float(ps.latency_minimum_ms) + ",\"maximum\":" +
                     go_float(ps.latency_maximum_ms) + "},\"counts\":{\"fail\":" +
                     std::to_string(ps.fail) + ",\"success\":" + std::to_string(ps.success) +
                     "}}";
      }
      resp.body += "}}";
      ex->reply(std::move(resp));
    });
    return;
  }
  if (path == "/v2/stats/store") {
    if (m != "GET") return ex->reply(method_not_allowed("GET"));
    node_.info([ex](Node::Info info) {
      HttpResponse resp;
      resp.content_type = kJson;
      resp.body = std::move(info.store_stats_json);
      ex->reply(std::move(resp));
    });
    return;
  }
  ex->reply(not_found());
}

void ClientApi::handle_keys(const HttpRequest& r, std::string_view m,
                            const std::shared_ptr<Exchange>& ex) {
  if (m != "GET" && m != "HEAD" && m != "PUT" && m != "POST" && m != "DELETE") {
    ex->reply(method_not_allowed("HEAD,GET,PUT,POST,DELETE"));
    return;
  }
  const uint64_t cid = cluster_id_;
  const bool head = m == "HEAD";
  v2::HttpInput in{m, r.target, r.content_type, r.body, r.body_error};
  if (!in.target.empty() && in.target[0] != '/') {
    // Absolute form: hand the parser the origin-form part.
    size_t slash = in.target.find('/', in.target.find("://") + 3);
    in.target = slash == std::string_view::npos ? std::string_view("/v2/keys") : in.target.substr(slash);
  }
  v2::KeysRequest parsed = v2::parse_keys_request(in);
  if (auto* e = std::get_if<v2::Error>(&parsed)) {
    ex->reply(keys_error(*e, cid, head));
    return;
  }
  if (auto* g = std::get_if<v2::GetRequest>(&parsed)) {
    node_.get(std::move(*g), [ex, cid, head](StoreResult res, RaftStatus st) {
      if (auto* ev = std::get_if<v2::Event>(&res))
        ex->reply(keys_event(*ev, st, cid, false, false, head));
      else
        ex->reply(keys_error(std::get<v2::Error>(res), cid, head));
    });
    return;
  }
  if (auto* w = std::get_if<v2::WriteRequest>(&parsed)) {
    bool no_value = w->no_value_on_success;
    node_.propose(std::move(*w), [ex, cid, no_value](StoreResult res, RaftStatus st) {
      if (auto* ev = std::get_if<v2::Event>(&res))
        ex->reply(keys_event(*ev, st, cid, true, no_value, false));
      else
        ex->reply(keys_error(std::get<v2::Error>(res), cid, false));
    });
    return;
  }
  auto& watch = std::get<v2::WatchRequest>(parsed);
  const bool stream = watch.stream;
  Node* node = &node_;
  node_.watch(
      std::move(watch),
      [ex, stream](const v2::Event& ev) {
        ex->send_chunk(v2::render_event(ev));
        if (!stream) ex->end_stream();
      },
      [ex, cid, stream, node](v2::WatchResult wr, RaftStatus st) {
        if (wr.error) {
          ex->reply(keys_error(*wr.error, cid, false));
          return;
        }
        HttpResponse h;
        h.content_type = kJson;
        h.cluster_id = cid;
        h.etcd_index = wr.etcd_index;
        h.raft_index = st.raft_index;
        h.raft_term = st.raft_term;
        if (wr.event) {
          // Found in history: no watcher was registered. A stream stays open with nothing
          // more to say, as etcd's does, until the client leaves.
          ex->begin_stream(std::move(h), nullptr);
          ex->send_chunk(v2::render_event(*wr.event));
          if (!stream) ex->end_stream();
          return;
        }
        v2::WatcherId id = wr.id;
        ex->begin_stream(std::move(h), [node, id] { node->unwatch(id); });
      });
}

void ClientApi::handle_members(const HttpRequest& r, std::string_view path,
                               const std::shared_ptr<Exchange>& ex) {
  const std::string_view m = r.method;
  if (m != "GET" && m != "POST" && m != "DELETE" && m != "PUT") {
    ex->reply(method_not_allowed("GET,POST,DELETE,PUT"));
    return;
  }
  const uint64_t cid = cluster_id_;
  std::string_view rest = path.substr(kMembersPrefix.size());
  if (!rest.empty() && rest[0] == '/') rest.remove_prefix(1);

  if (m == "GET") {
    if (rest.empty()) {
      node_.info([ex, cid](Node::Info info) {
        HttpResponse resp;
        resp.content_type = kJson;
        resp.cluster_id = cid;
        resp.body = "{\"members\":[";
        for (size_t i = 0; i < info.members.size(); ++i) {
          if (i) resp.body.push_back(',');
          append_member_json(resp.body, info.members[i]);
        }
        resp.body += "]}\n";
        ex->reply(std::move(resp));
      });
    } else if (rest == "leader") {
      node_.info([ex, cid](Node::Info info) {
        for (const auto& member : info.members) {
          if (info.leader_id != 0 && member.id == info.leader_id) {
            HttpResponse resp;
            resp.content_type = kJson;
            resp.cluster_id = cid;
            append_member_json(resp.body, member);
            resp.body.push_back('\n');
            return ex->reply(std::move(resp));
          }
        }
        ex->reply(message_error(503, "During election", cid));
      });
    } else {
      ex->reply(message_error(404, "Not found", cid));
    }
    return;
  }
  handle_members_mutation(r, m, rest, ex);
}

void ClientApi::handle_members_mutation(const HttpRequest& r, std::string_view m,
                                        std::string_view id_part,
                                        const std::shared_ptr<Exchange>& ex) {
  const uint64_t cid = cluster_id_;
  std::optional<uint64_t> id;
  if (m != "POST") {
    if (id_part.empty()) {
      HttpResponse resp = go_error(405, "Method Not Allowed");
      resp.cluster_id = cid;
      ex->reply(std::move(resp));
      return;
    }
    id = parse_hex_id(id_part);
    if (!id) {
      ex->reply(message_error(404, "No such member: " + std::string(id_part), cid));
      return;
    }
  }
  std::vector<std::string> urls;
  if (m != "DELETE") {
    // etcd lower-cases and trims the media type only when it has parameters.
    std::string ctype(r.content_type);
    if (size_t semi = ctype.find(';'); semi != std::string::npos) {
      ctype.resize(semi);
      std::transform(ctype.begin(), ctype.end(), ctype.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      size_t b = ctype.find_first_not_of(" \t");
      size_t e = ctype.find_last_not_of(" \t");
      ctype = b == std::string::npos ? "" : ctype.substr(b, e - b + 1);
    }
    if (ctype != "application/json") {
      ex->reply(message_error(415, "Bad Content-Type " + ctype + ", accept application/json", cid));
      return;
    }
    std::string error;
    urls = parse_peer_urls(r.body, &error);
    if (!error.empty()) {
      ex->reply(message_error(400, error, cid));
      return;
    }
  }
  // The member checks (unknown id, removed id, peer URL in use, strict reconfiguration) and the
  // raft configuration change happen in the Node; this renders its outcome as etcd does.
  auto done = [ex, cid](MemberChange mc) {
    if (mc.http_status == 201) {
      HttpResponse resp;
      resp.status = 201;
      resp.content_type = kJson;
      resp.cluster_id = cid;
      append_member_json(resp.body, mc.member);
      resp.body.push_back('\n');
      return ex->reply(std::move(resp));
    }
    if (mc.http_status == 204) {
      HttpResponse resp;
      resp.status = 204;
      resp.cluster_id = cid;
      return ex->reply(std::move(resp));
    }
    ex->reply(message_error(mc.http_status, mc.message, cid));
  };
  if (m == "POST") {
    node_.add_member(std::move(urls), std::move(done));
  } else if (m == "PUT") {
    node_.update_member(*id, std::move(urls), std::move(done));
  } else {
    node_.remove_member(*id, std::move(done));
  }
}

}  // namespace kvd::server
