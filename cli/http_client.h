// A small blocking HTTP/1.1 client over POSIX sockets, plain or TLS (https://), one connection
// per request, with the deadlines etcd's Go client applies: a dial timeout, a deadline for the
// response headers, a deadline for the whole call, and Go's 10 s TLS handshake timeout (the
// header and call deadlines bound the handshake too). Failures are values carrying Go's texts
// ("dial tcp 127.0.0.1:1: connect: connection refused", "x509: certificate signed by unknown
// authority") because kvctl prints them verbatim.
// Not thread-safe per call; calls share no state but the TLS settings they are given.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "cli/tls_client_config.h"
#include "common/url.h"

namespace kvd::cli {

using Clock = std::chrono::steady_clock;

// One endpoint URL as etcdctl keeps it (Go's url.URL subset: scheme, host[:port], path), parsed
// by url::parse (common/url.h), whose errors are Go's.
using Endpoint = url::Url;

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;

  // Value of the first header named `lower_name`, or "".
  std::string header(std::string_view lower_name) const;
};

struct HttpFailure {
  enum class Kind {
    kConnection,     // dial/read failure: what etcdctl calls a connection error
    kHeaderTimeout,  // no response headers before the per-request timeout
    kDeadline,       // the whole command's deadline passed
    kOther,          // anything else (bad scheme, protocol error)
  };
  Kind kind;
  std::string message;
  // https:// to a server that answered in plain HTTP: Go's http.Client (not its Transport)
  // reports that as "http: server gave HTTP response to HTTPS client".
  bool plain_http_answer = false;
};

struct HttpCall {
  std::string method;
  std::string target;  // escaped path and query, starting with '/'
  std::optional<std::string> body;
  std::string content_type;
  std::string authorization;  // full header value, or empty
  std::optional<Clock::time_point> header_deadline;
  std::optional<Clock::time_point> deadline;
  std::chrono::milliseconds dial_timeout{30000};
  // For https:// endpoints; nullptr: TlsClientConfig::system_default(). Must outlive the call.
  const TlsClientConfig* tls = nullptr;
};

using HttpResult = std::variant<HttpResponse, HttpFailure>;

HttpResult http_round_trip(const Endpoint& ep, const HttpCall& call);

}  // namespace kvd::cli
