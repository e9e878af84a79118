// /v2/members (list, leader, add, remove, update) and /v2/machines, as etcd's v2http members
// handlers (v2-cluster-api.md §1-§5): the body checks are made here, the membership checks and
// the change by the Node, whose MemberChange is answered with etcd's status and message.
#include <algorithm>
#include <cctype>
#include <charconv>

#include <nlohmann/json.hpp>

#include "common/go.h"
#include "common/ids.h"
#include "common/url.h"
#include "server/client_api.h"
#include "server/http/header_checks.h"
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

template <class Json>
std::string json_type_name(const Json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::array: return "array";
    case nlohmann::json::value_t::string: return "string";
    case nlohmann::json::value_t::boolean: return "bool";
    case nlohmann::json::value_t::object: return "object";
    default: return "number";
  }
}

// A body Go's scanner accepted, rewritten so that nlohmann reads it as Go's decoder does here:
// each invalid UTF-8 byte and each unpaired surrogate escape in a string becomes U+FFFD (Go's
// unquote), and each number becomes 0, since only its type matters to this request and Go has
// no range limit at this stage (nlohmann rejects 1e400). REQUIRES: go::json_syntax_error(body)
// is "".
std::string as_go_decodes(std::string_view body) {
  auto hex4 = [&](size_t at) {
    unsigned v = 0;
    if (at + 4 > body.size()) return -1;
    auto [end, ec] = std::from_chars(body.data() + at, body.data() + at + 4, v, 16);
    return ec == std::errc() && end == body.data() + at + 4 ? static_cast<int>(v) : -1;
  };
  auto in_number = [](char c) { return (c >= '0' && c <= '9') || c == '-' || c == '+' ||
                                       c == '.' || c == 'e' || c == 'E'; };
  std::string out;
  bool in_string = false;
  for (size_t i = 0; i < body.size();) {
    const char c = body[i];
    if (!in_string) {
      if (c == '-' || (c >= '0' && c <= '9')) {
        while (i < body.size() && in_number(body[i])) ++i;
        out.push_back('0');
      } else {
        in_string = c == '"';
        out.push_back(c);
        ++i;
      }
    } else if (c == '"') {
      in_string = false;
      out.push_back(c);
      ++i;
    } else if (c == '\\') {
      size_t len = body[i + 1] == 'u' ? 6 : 2;
      const int r = len == 6 ? hex4(i + 2) : -1;
      if (r >= 0xDC00 && r < 0xE000) {
        out += "\\ufffd";  // a low surrogate first
      } else if (r >= 0xD800 && r < 0xDC00) {
        const int low = i + 7 < body.size() && body[i + 6] == '\\' && body[i + 7] == 'u'
                            ? hex4(i + 8) : -1;
        if (low >= 0xDC00 && low < 0xE000) {
          len = 12;
          out.append(body.substr(i, len));
        } else {
          out += "\\ufffd";  // a high surrogate without its low half
        }
      } else {
        out.append(body.substr(i, len));
      }
      i += len;
    } else {
      size_t width = 1;
      if (go::decode_rune(body, i, &width) < 0) {
        out += "\xEF\xBF\xBD";
      } else {
        out.append(body.substr(i, width));
      }
      i += width;
    }
  }
  return out;
}

// Decodes a members mutation body as etcd's MemberCreateRequest/MemberUpdateRequest do.
// Returns the peer URLs or sets *error to Go's error text.
std::vector<std::string> parse_peer_urls(std::string_view body, std::string* error) {
  // json.Unmarshal checks the whole body before decoding: the first syntax error wins.
  if (std::string syntax = go::json_syntax_error(body); !syntax.empty()) {
    *error = std::move(syntax);
    return {};
  }
  // Document order matters (Go assigns each matching key in turn), so an ordered object.
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(as_go_decodes(body), nullptr, false);
  if (j.is_discarded()) {
    // Not expected: what Go's scanner accepts, rewritten, nlohmann reads.
    *error = "unexpected end of JSON input";
    return {};
  }
  std::vector<std::string> urls;
  if (j.is_null()) {
    // JSON null decodes into the zero request: no URLs.
  } else if (!j.is_object()) {
    *error = "json: cannot unmarshal " + json_type_name(j) +
             " into Go value of type struct { PeerURLs []string \"json:\\\"peerURLs\\\"\" }";
    return {};
  } else {
    // encoding/json: a key names the field exactly or case-insensitively; each one found is
    // decoded in turn (the last wins, null empties it); the first type error is reported.
    std::string first_error;
    for (const auto& [key, v] : j.items()) {
      if (!iequals(key, "peerURLs")) continue;
      if (v.is_null()) {
        urls.clear();
        continue;
      }
      if (!v.is_array()) {
        if (first_error.empty())
          first_error = "json: cannot unmarshal " + json_type_name(v) +
                        " into Go struct field .peerURLs of type []string";
        continue;
      }
      urls.clear();
      for (const auto& u : v) {
        if (!u.is_string()) {
          if (first_error.empty())
            first_error = "json: cannot unmarshal " + json_type_name(u) +
                          " into Go struct field .peerURLs of type string";
          urls.emplace_back();
          continue;
        }
        urls.push_back(u.get<std::string>());
      }
    }
    if (!first_error.empty()) {
      *error = std::move(first_error);
      return {};
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
  if (m != "GET" && node_.auth_enabled()) {
    // etcd's hasWriteRootAccess: changing the membership needs the root role.
    // The request's views stay valid until it is answered; the struct is copied.
    return check_root(r, node_.auth_state(), [this, req = r, path = std::string(path), ex](bool allowed) {
      if (!allowed) return ex->reply(insufficient_credentials());
      serve_members(req, path, ex);
    });
  }
  serve_members(r, path, ex);
}

void ClientApi::serve_members(const HttpRequest& r, std::string_view path, const ExchangePtr& ex) {
  const std::string_view m = r.method;
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
