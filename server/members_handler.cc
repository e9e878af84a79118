// /v2/members (list, leader, add, remove, update) and /v2/machines, as etcd's v2http members
// handlers (v2-cluster-api.md §1-§5): the body checks are made here, the membership checks and
// the change by the Node, whose MemberChange is answered with etcd's status and message.
#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "common/go.h"
#include "common/ids.h"
#include "common/url.h"
#include "server/client_api.h"
#include "server/responses.h"

namespace kvd::server {
namespace {

constexpr std::string_view kMembersPrefix = "/v2/members";

void append_member_json(std::string& out, const MemberInfo& m) {
  out += "{\"id\":\"";
  out += hex_id(m.id);
  out += "\",\"name\":";
  go::append_json_string(out, m.name);
  out += ",\"peerURLs\":[";
  for (size_t i = 0; i < m.peer_urls.size(); ++i) {
    if (i) out.push_back(',');
    go::append_json_string(out, m.peer_urls[i]);
  }
  out += "],\"clientURLs\":[";
  for (size_t i = 0; i < m.client_urls.size(); ++i) {
    if (i) out.push_back(',');
    go::append_json_string(out, m.client_urls[i]);
  }
  out += "]}";
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
    if (std::string err = url::check(u); !err.empty()) {
      *error = err;
      return {};
    }
  }
  std::sort(urls.begin(), urls.end());
  return urls;
}

}  // namespace

void ClientApi::handle_members(const HttpRequest& r, std::string_view path,
                               const ExchangePtr& ex) {
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
                                        const ExchangePtr& ex) {
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
  const bool add = m == "POST";
  auto done = [ex, cid, add](MemberChange mc) {
    using Outcome = MemberChange::Outcome;
    switch (mc.outcome) {
      case Outcome::kDone: {
        HttpResponse resp;
        resp.status = add ? 201 : 204;
        resp.cluster_id = cid;
        if (add) {
          resp.content_type = kJson;
          append_member_json(resp.body, mc.member);
          resp.body.push_back('\n');
        }
        return ex->reply(std::move(resp));
      }
      case Outcome::kUnknownMember: return ex->reply(message_error(404, mc.message, cid));
      case Outcome::kRemovedMember: return ex->reply(message_error(410, mc.message, cid));
      case Outcome::kPeerUrlInUse: return ex->reply(message_error(409, mc.message, cid));
      case Outcome::kFailed: break;
    }
    // etcd answers every other failure (an unhealthy cluster under --strict-reconfig-check, a
    // timeout, a stopped server) with a bare 500.
    ex->reply(message_error(500, "Internal Server Error", cid));
  };
  if (m == "POST") {
    node_.add_member(std::move(urls), std::move(done));
  } else if (m == "PUT") {
    node_.update_member(*id, std::move(urls), std::move(done));
  } else {
    node_.remove_member(*id, std::move(done));
  }
}

void ClientApi::handle_machines(std::string_view m, const ExchangePtr& ex) {
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
}

}  // namespace kvd::server
