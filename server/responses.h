// The answers the client handlers share, in etcd's exact shapes: Go's http.Error texts, etcd's
// {"message":...} errors, the keys API's errors and events. Pure; any thread.
#pragma once

#include <cstdint>
#include <string_view>

#include "api_v2/error.h"
#include "api_v2/store.h"
#include "server/http/types.h"
#include "server/member/node.h"

namespace kvd::server {

inline constexpr std::string_view kJson = "application/json";
inline constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";

// Go's http.Error: text/plain, nosniff, text + "\n".
HttpResponse go_error(int status, std::string_view text);
// Go's ServeMux answers.
HttpResponse not_found();
HttpResponse method_not_allowed(std::string_view allow);
// What Go's server answers before any handler runs for a request it cannot parse.
HttpResponse transport_bad_request();
// etcd's httptypes.HTTPError: {"message":"..."} without a newline.
HttpResponse message_error(int status, std::string_view message, uint64_t cluster_id);
// etcd's writeNoAuth: 401 {"message":"Insufficient credentials"}, without the cluster id (the
// handlers refuse before they set it).
HttpResponse insufficient_credentials();
// A keys API error (v2-keys-api.md §9), and a successful keys answer with its index headers.
HttpResponse keys_error(const v2::Error& e, uint64_t cluster_id, bool head);
HttpResponse keys_event(const v2::Event& ev, const RaftStatus& st, uint64_t cluster_id,
                        bool write, bool no_value, bool head);

}  // namespace kvd::server
