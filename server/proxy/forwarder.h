// The proxy's RequestHandler: answers what the proxy answers itself and forwards the rest.
#pragma once

#include <memory>

#include "metrics/metrics.h"
#include "server/http/types.h"
#include "server/proxy/shared.h"

namespace kvd::server::proxy {

// What the proxy answers itself (readonly refusals, OPTIONS, /v2/config/local/proxy, /metrics,
// its own errors) and a ProxyCall for everything else. Called from any event loop's thread.
class Forwarder final : public RequestHandler {
 public:
  explicit Forwarder(Shared& shared) : shared_(shared) { metrics::register_process_metrics(); }

  void handle(const HttpRequest& r, const std::shared_ptr<Exchange>& ex) override;

 private:
  HttpResponse config(std::string_view method);
  HttpResponse metrics();

  Shared& shared_;
};

}  // namespace kvd::server::proxy
