// run_proxy(): sets up the proxy's pieces (see proxy.h) and runs its event loops until a signal.
#include "server/proxy/proxy.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include "common/private_dir.h"

#include "common/data_dir.h"
#include "common/status.h"
#include "server/http/client_server.h"
#include "server/proxy/forwarder.h"
#include "server/proxy/prober.h"
#include "server/proxy/refresher.h"
#include "server/proxy/shared.h"

namespace kvd::server {
namespace proxy {

thread_local size_t t_loop = 0;

namespace {

// The seed peer URLs: the cluster file when there is one (it wins over --initial-cluster, as
// in etcd), else --initial-cluster's. A file that cannot be read or parsed is fatal.
Result<std::vector<std::string>> seed_peer_urls(const ProxyConfig& config,
                                                const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (in) {
    std::stringstream content;
    content << in.rdbuf();
    if (in.bad()) return Status::error("cannot read the proxy's cluster file " + file);
    auto urls = parse_cluster_file(content.str());
    if (urls && config.discover_peer_urls)
      SPDLOG_WARN("{} ignored since the proxy has already been initialized. Valid cluster file "
                  "found at \"{}\"",
                  config.discovery_what, file);
    if (!urls)
      return Status::error("the proxy's cluster file " + file +
                           " is corrupt (want {\"PeerURLs\":[...]}); remove it to start over "
                           "from --initial-cluster");
    SPDLOG_INFO("proxy: using peer urls [{}] from cluster file {}",
                 [&] {
                   std::string s;
                   for (const auto& u : *urls) s += (s.empty() ? "" : " ") + u;
                   return s;
                 }(),
                 file);
    return *urls;
  }
  if (errno != ENOENT) return Status::error("cannot open the proxy's cluster file " + file + ": " +
                                            std::strerror(errno));
  std::vector<std::string> urls = config.initial_peer_urls;
  if (config.discover_peer_urls) {
    auto found = config.discover_peer_urls();
    if (!found.is_ok()) return found.status();
    urls = std::move(found.value());
  }
  std::sort(urls.begin(), urls.end());
  urls.erase(std::unique(urls.begin(), urls.end()), urls.end());
  return urls;
}

}  // namespace
}  // namespace proxy

int run_proxy(const ProxyConfig& config) {
  using namespace proxy;
  using Clock = std::chrono::steady_clock;
  namespace asio = boost::asio;

  Loops loops;
  asio::io_context& io = loops[0];  // also the acceptors', signals' loop
  Settings settings;
  settings.mode = config.mode;
  settings.dial_timeout = config.dial_timeout;
  settings.write_timeout = config.write_timeout;
  settings.read_timeout = config.read_timeout;
  Shared shared(loops, settings, config.failure_wait);
  shared.member_tls = config.client_tls ? config.client_tls : config.peer_tls;
  shared.peer_tls = config.peer_tls;
  Forwarder forwarder(shared);

  ClientServerConfig server_config;
  server_config.listen_urls = config.listen_client_urls;
  server_config.cors = config.cors;
  server_config.host_whitelist = config.host_whitelist;
  server_config.max_connections = config.max_client_connections;
  server_config.place_connection = [&loops] { return loops.place(); };
  server_config.tls = config.client_tls;
  ClientServer server(io, forwarder, server_config);
  // Bound before the data dir is touched, as a member's (main.cc); served once seeded.
  if (auto st = server.bind(); !st.is_ok()) {
    SPDLOG_CRITICAL("cannot listen for clients: {}", st.message());
    return 1;
  }
  std::optional<ClientServer> metrics_server;
  if (!config.listen_metrics_urls.empty()) {
    metrics_server.emplace(io, forwarder,
                           metrics_listener_config(server_config, config.listen_metrics_urls));
    if (auto st = metrics_server->bind(); !st.is_ok()) {
      SPDLOG_CRITICAL("cannot listen for metrics: {}", st.message());
      return 1;
    }
  }
  const std::string proxy_dir = config.data_dir + "/" + std::string(data_dir::kProxyDir);
  if (Status st = make_private_dirs(proxy_dir); !st.is_ok()) {
    SPDLOG_CRITICAL("cannot create the proxy's data dir {}: {}", proxy_dir, st.message());
    return 1;
  }
  const std::string cluster_file = proxy_dir + "/" + std::string(data_dir::kProxyClusterFile);
  auto seed = seed_peer_urls(config, cluster_file);
  if (!seed.is_ok()) {
    SPDLOG_CRITICAL("{}", seed.status().message());
    return 1;
  }
  SPDLOG_INFO("proxy: this proxy supports v2 API only!");
  server.start();
  if (metrics_server) metrics_server->start();

  Refresher refresher(shared, std::move(seed.value()), cluster_file,
                      std::chrono::duration_cast<Clock::duration>(
                          std::max(config.refresh_interval, std::chrono::milliseconds(1))));
  refresher.start();
  Prober prober(shared);
  prober.start();

  SPDLOG_INFO("kvd proxy ({}) serving clients on {}",
              config.mode == ProxyMode::kReadonly ? "readonly" : "on",
              join_urls(config.listen_client_urls));
  if (metrics_server) SPDLOG_INFO("serving metrics on {}", join_urls(config.listen_metrics_urls));

  loops.set_spin([&shared](size_t i) { return shared.load[i].spin(Clock::now()); });

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    SPDLOG_INFO("received signal {}, shutting down", sig);
    server.stop();
    if (metrics_server) metrics_server->stop();
    loops.stop();
  });

  loops.run([](size_t i) { t_loop = i; });
  prober.stop();
  refresher.stop();
  return 0;
}

}  // namespace kvd::server
