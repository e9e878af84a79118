// The proxy's metrics, as etcd 3.4's httpproxy counts them: etcd_proxy_requests_total{method},
// etcd_proxy_handled_total{method,code}, etcd_proxy_dropped_total{method,proxying_error} and
// etcd_proxy_handling_duration_seconds{method} (non-watch requests), plus kvd's
// kvd_proxy_upstream_dials_total. Rendered by the process registry (metrics/metrics.h).
//
// The hot path takes no lock: the children for the usual methods and status codes are looked
// up once and kept in a table of atomics; an unusual method or code takes the family's mutex
// each time.
//
// Threads: any.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <optional>
#include <string_view>

#include "metrics/metrics.h"

namespace kvd::server::proxy {

class ProxyMetrics {
 public:
  ProxyMetrics();
  void request(std::string_view method);
  // A request answered by a member with `code`; took: how long it took, for a non-watch.
  void handled(std::string_view method, int code, std::optional<std::chrono::nanoseconds> took);
  enum class Drop { kZeroEndpoints, kFailedSending, kFailedResponse };
  void dropped(std::string_view method, Drop why);
  void upstream_dial() { dials_.inc(); }

 private:
  // GET PUT POST DELETE HEAD OPTIONS PATCH, then "other" (looked up by name each time).
  static constexpr size_t kMethods = 7;
  static size_t method_slot(std::string_view method);
  metrics::Family<metrics::Counter>& requests_;
  metrics::Family<metrics::Counter>& handled_;
  metrics::Family<metrics::Counter>& dropped_;
  metrics::Family<metrics::Histogram>& duration_;
  metrics::Counter& dials_;
  // Children by method slot (and code - 100, or drop reason), filled on first use: as Go's
  // client, a child appears in the exposition once it has counted.
  std::array<std::atomic<metrics::Counter*>, kMethods> request_by_method_{};
  std::array<std::atomic<metrics::Histogram*>, kMethods> duration_by_method_{};
  std::array<std::array<std::atomic<metrics::Counter*>, 3>, kMethods> dropped_by_method_{};
  std::array<std::array<std::atomic<metrics::Counter*>, 500>, kMethods> handled_by_code_{};
};

}  // namespace kvd::server::proxy
