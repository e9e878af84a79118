// ProxyMetrics (proxy_metrics.h).
#include "server/proxy/proxy_metrics.h"

#include <string>

namespace kvd::server::proxy {

namespace {

constexpr std::array<std::string_view, 7> kMethodNames = {"GET",     "PUT",  "POST", "DELETE",
                                                          "HEAD", "OPTIONS", "PATCH"};
constexpr std::array<std::string_view, 3> kDropNames = {
    "zero_endpoints", "failed_sending_request", "failed_getting_response"};

std::vector<std::string> names(std::string_view a, std::string_view b = {}) {
  std::vector<std::string> out{std::string(a)};
  if (!b.empty()) out.emplace_back(b);
  return out;
}

}  // namespace

ProxyMetrics::ProxyMetrics()
    : requests_(metrics::registry().counter("etcd_proxy_requests_total",
                                            "Counter requests incoming by method.", {"method"})),
      handled_(metrics::registry().counter(
          "etcd_proxy_handled_total", "Counter of requests fully handled (by authoratitave servers)",
          {"method", "code"})),
      dropped_(metrics::registry().counter("etcd_proxy_dropped_total",
                                           "Counter of requests dropped on the proxy.",
                                           {"method", "proxying_error"})),
      duration_(metrics::registry().histogram(
          "etcd_proxy_handling_duration_seconds",
          "Bucketed histogram of handling time of successful events (non-watches), by method "
          "(GET/PUT etc.).",
          metrics::exponential_buckets(0.0005, 2, 13), {"method"})),
      dials_(metrics::registry()
                 .counter("kvd_proxy_upstream_dials_total", "TCP connections opened to members.")
                 .only()) {
  for (auto& by_code : handled_by_code_) {
    for (auto& slot : by_code) slot.store(nullptr, std::memory_order_relaxed);
  }
}

size_t ProxyMetrics::method_slot(std::string_view method) {
  for (size_t m = 0; m < kMethods; ++m) {
    if (kMethodNames[m] == method) return m;
  }
  return kMethods;
}

void ProxyMetrics::request(std::string_view method) {
  const size_t m = method_slot(method);
  if (m < kMethods) return metrics::cached_child(request_by_method_[m], requests_, [&] { return names(method); }).inc();
  requests_.with(names(method)).inc();
}

void ProxyMetrics::handled(std::string_view method, int code,
                           std::optional<std::chrono::nanoseconds> took) {
  const size_t m = method_slot(method);
  if (m < kMethods && code >= 100 && code < 600) {
    metrics::cached_child(handled_by_code_[m][static_cast<size_t>(code - 100)], handled_,
          [&] { return names(method, std::to_string(code)); })
        .inc();
  } else {
    handled_.with(names(method, std::to_string(code))).inc();
  }
  if (!took) return;
  const double seconds = std::chrono::duration<double>(*took).count();
  if (m < kMethods) {
    return metrics::cached_child(duration_by_method_[m], duration_, [&] { return names(method); }).observe(seconds);
  }
  duration_.with(names(method)).observe(seconds);
}

void ProxyMetrics::dropped(std::string_view method, Drop why) {
  const size_t m = method_slot(method);
  const size_t d = static_cast<size_t>(why);
  if (m < kMethods) {
    return metrics::cached_child(dropped_by_method_[m][d], dropped_,
                 [&] { return names(method, kDropNames[d]); })
        .inc();
  }
  dropped_.with(names(method, kDropNames[d])).inc();
}

}  // namespace kvd::server::proxy
