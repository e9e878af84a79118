#include "server/proxy/prober.h"

#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "server/http/blocking_client.h"

namespace kvd::server::proxy {

void Prober::stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Prober::loop() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, kProbeInterval, [this] { return stopped_; })) return;
    }
    probe_all();
  }
}

void Prober::probe_all() {
  const std::vector<std::string> urls = shared_.endpoints.urls();
  std::vector<GetResult> results(urls.size());
  std::vector<std::thread> probes;
  probes.reserve(urls.size());
  for (size_t i = 0; i < urls.size(); ++i) {
    probes.emplace_back([&, i] { results[i] = http_get(urls[i], "/version", kProbeTimeout, shared_.member_tls.get()); });
  }
  for (auto& t : probes) t.join();
  for (size_t i = 0; i < urls.size(); ++i) {
    const bool silent = !results[i].error.empty();
    if (!shared_.endpoints.set_silent(urls[i], silent)) continue;
    if (silent) {
      SPDLOG_WARN("proxy: member {} stopped answering ({}); requests go to the others", urls[i],
                   results[i].error);
    } else {
      SPDLOG_INFO("proxy: member {} answers again", urls[i]);
    }
  }
}

}  // namespace kvd::server::proxy
