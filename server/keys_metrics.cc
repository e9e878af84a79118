// KeysMetrics (keys_metrics.h).
#include "server/keys_metrics.h"

#include <string>
#include <string_view>
#include <vector>

namespace kvd::server {

namespace {

constexpr std::array<std::string_view, KeysMetrics::kMethods> kMethodNames = {
    "GET", "QGET", "HEAD", "PUT", "POST", "DELETE"};

std::string name_of(KeysMetrics::Method m) {
  return std::string(kMethodNames[static_cast<size_t>(m)]);
}

}  // namespace

KeysMetrics::KeysMetrics()
    : received_(metrics::registry().counter(
          "etcd_http_received_total",
          "Counter of requests received into the system (successfully parsed and authd).",
          {"method"})),
      failed_(metrics::registry().counter(
          "etcd_http_failed_total",
          "Counter of handle failures of requests (non-watches), by method (GET/PUT etc.) and "
          "code (400, 500 etc.).",
          {"method", "code"})),
      duration_(metrics::registry().histogram(
          "etcd_http_successful_duration_seconds",
          "Bucketed histogram of processing time (s) of successfully handled requests "
          "(non-watches), by method (GET/PUT etc.).",
          metrics::exponential_buckets(0.0005, 2, 13), {"method"})) {
  for (auto& by_code : failed_by_code_) {
    for (auto& slot : by_code) slot.store(nullptr, std::memory_order_relaxed);
  }
}

void KeysMetrics::received(Method m) {
  metrics::cached_child(received_by_method_[static_cast<size_t>(m)], received_,
                        [m] { return std::vector<std::string>{name_of(m)}; })
      .inc();
}

void KeysMetrics::failed(Method m, int status) {
  auto labels = [m, status] { return std::vector<std::string>{name_of(m), std::to_string(status)}; };
  if (status < kFirstCode || status >= kFirstCode + static_cast<int>(kCodes)) {
    return failed_.with(labels()).inc();
  }
  metrics::cached_child(failed_by_code_[static_cast<size_t>(m)][static_cast<size_t>(status - kFirstCode)],
                        failed_, labels)
      .inc();
}

void KeysMetrics::succeeded(Method m, std::chrono::steady_clock::time_point start) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics::cached_child(duration_by_method_[static_cast<size_t>(m)], duration_,
                        [m] { return std::vector<std::string>{name_of(m)}; })
      .observe(seconds);
}

}  // namespace kvd::server
