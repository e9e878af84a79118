// etcd 3.4's metrics of the v2 keys API (its v2http package): etcd_http_received_total{method}
// (requests parsed and allowed, watches excepted), etcd_http_failed_total{method,code} (an error
// answer from the store or the cluster, watches included) and
// etcd_http_successful_duration_seconds{method} (from the request's arrival to its answer,
// non-watches). The method label is the HTTP method, "QGET" for a GET with quorum=true.
//
// The hot path takes no lock: the children for the six methods and the error statuses are kept
// in tables of atomics once they first count (metrics::cached_child).
//
// Threads: any.
#pragma once

#include <array>
#include <atomic>
#include <chrono>

#include "metrics/metrics.h"

namespace kvd::server {

class KeysMetrics {
 public:
  enum class Method { kGet, kQget, kHead, kPut, kPost, kDelete };
  static constexpr size_t kMethods = 6;

  KeysMetrics();
  void received(Method m);
  void failed(Method m, int status);
  void succeeded(Method m, std::chrono::steady_clock::time_point start);

 private:
  // Error statuses 400..599 have a slot each; any other takes the family's mutex.
  static constexpr int kFirstCode = 400;
  static constexpr size_t kCodes = 200;
  metrics::Family<metrics::Counter>& received_;
  metrics::Family<metrics::Counter>& failed_;
  metrics::Family<metrics::Histogram>& duration_;
  std::array<std::atomic<metrics::Counter*>, kMethods> received_by_method_{};
  std::array<std::atomic<metrics::Histogram*>, kMethods> duration_by_method_{};
  std::array<std::array<std::atomic<metrics::Counter*>, kCodes>, kMethods> failed_by_code_{};
};

}  // namespace kvd::server
