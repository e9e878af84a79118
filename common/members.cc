#include "common/members.h"

#include <nlohmann/json.hpp>

namespace kvd {
namespace {

std::optional<std::vector<std::string>> string_array(const nlohmann::json& v) {
  if (v.is_null()) return std::vector<std::string>{};  // Go's nil slice
  if (!v.is_array()) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& s : v) {
    if (!s.is_string()) return std::nullopt;
    out.push_back(s.get<std::string>());
  }
  return out;
}

}  // namespace

std::string render_members_json(const std::vector<MemberInfo>& members) {
  std::string out = "[";
  bool first = true;
  for (const auto& m : members) {
    if (!first) out += ',';
    first = false;
    nlohmann::ordered_json j;
    j["id"] = m.id;
    j["peerURLs"] = m.peer_urls;
    j["name"] = m.name;
    j["clientURLs"] = m.client_urls;
    out += j.dump();
  }
  out += "]\n";
  return out;
}

std::optional<std::vector<MemberInfo>> parse_members_json(std::string_view body) {
  auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_array()) return std::nullopt;
  std::vector<MemberInfo> out;
  for (const auto& m : j) {
    if (!m.is_object()) return std::nullopt;
    MemberInfo info;
    auto peers = string_array(m.value("peerURLs", nlohmann::json()));
    auto clients = string_array(m.value("clientURLs", nlohmann::json()));
    if (!peers || !clients) return std::nullopt;
    info.peer_urls = std::move(*peers);
    info.client_urls = std::move(*clients);
    if (auto id = m.find("id"); id != m.end() && id->is_number_unsigned()) {
      info.id = id->get<uint64_t>();
    }
    if (auto name = m.find("name"); name != m.end() && name->is_string()) {
      info.name = name->get<std::string>();
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::string format_cluster_file(const std::vector<std::string>& peer_urls) {
  nlohmann::json j = nlohmann::json::object();
  j["PeerURLs"] = peer_urls;
  return j.dump();
}

std::optional<std::vector<std::string>> parse_cluster_file(std::string_view content) {
  auto j = nlohmann::json::parse(content.begin(), content.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto it = j.find("PeerURLs");
  if (it == j.end()) return std::nullopt;
  return string_array(*it);
}

}  // namespace kvd
