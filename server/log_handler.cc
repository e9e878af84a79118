// PUT /config/local/log {"Level":"DEBUG"}: etcd's v2 endpoint that changes the log level of this
// process at run time (capnslog's level names, any case; server/logging.h). Answers as etcd 3.4:
// 204; 400 {"message":"Invalid json body"} or {"message":"Invalid log level X"}; 405 to other
// methods.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/go.h"
#include "server/client_api.h"
#include "server/http/header_checks.h"
#include "server/logging.h"
#include "server/responses.h"

namespace kvd::server {

namespace {

HttpResponse bad_request(std::string_view message) {
  HttpResponse r;
  r.status = 400;
  r.content_type = kJson;
  r.body = "{\"message\":";
  go::append_json_string(r.body, message);
  r.body.push_back('}');
  return r;
}

}  // namespace

void ClientApi::handle_log_level(const HttpRequest& r, const ExchangePtr& ex) {
  if (r.method != "PUT") return ex->reply(method_not_allowed("PUT"));
  // Go decodes into struct{ Level string }: the field matched in any case, other fields ignored.
  auto j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  std::string level;
  bool ok = j.is_object();
  if (ok) {
    for (const auto& [key, value] : j.items()) {
      if (!iequals(key, "level")) continue;
      if (value.is_string()) {
        level = value.get<std::string>();
      } else if (!value.is_null()) {
        ok = false;
      }
    }
  }
  if (!ok) return ex->reply(bad_request("Invalid json body"));
  auto set = set_level_name(level);
  if (!set) return ex->reply(bad_request("Invalid log level " + level));
  SPDLOG_WARN("globalLogLevel set to \"{}\"", *set);
  HttpResponse resp;
  resp.status = 204;
  ex->reply(std::move(resp));
}

}  // namespace kvd::server
