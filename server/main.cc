// kvd: an etcd v2 compatible member. Parses etcd's flags, opens the node (store + durable log),
// serves clients, and stops cleanly on SIGINT/SIGTERM.
#include <sys/resource.h>
#include <unistd.h>
#ifdef KVD_HAVE_TCMALLOC
#include <gperftools/malloc_extension.h>
#else
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <atomic>
#include <csignal>
#include <functional>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include "common/data_dir.h"
#include "common/private_dir.h"
#include "common/version.h"
#include "server/bootstrap_checks.h"
#include "server/client_api.h"
#include "server/discovery_bootstrap.h"
#include "server/flags.h"
#include "server/http/client_server.h"
#include "server/http/event_loops.h"
#include "server/logging.h"
#include "server/member/node.h"
#include "server/peer_wiring.h"
#include "server/proxy/proxy.h"
#include "server/tls_setup.h"

extern char** environ;

namespace {

// Gives memory freed after a burst (large request bodies, a snapshot) back to the system: the
// allocator keeps freed pages for reuse, so without this the process stays at its peak. Checked
// every few seconds on a thread of its own; with tcmalloc it releases only when more than
// kReleaseAboveBytes is free, so that steady traffic does not pay for page faults (refaulting
// that much every few seconds costs well under a millisecond).
class MemoryReleaser {
 public:
  static constexpr auto kInterval = std::chrono::seconds(5);
  static constexpr size_t kReleaseAboveBytes = 8 << 20;

  MemoryReleaser() : thread_([this] { run(); }) {}
  ~MemoryReleaser() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // One pass; also called directly after a burst known to have ended (opening the data dir).
  static void release() {
#ifdef KVD_HAVE_TCMALLOC
    size_t free_bytes = 0;
    if (MallocExtension::instance()->GetNumericProperty("tcmalloc.pageheap_free_bytes",
                                                        &free_bytes) &&
        free_bytes > kReleaseAboveBytes) {
      MallocExtension::instance()->ReleaseFreeMemory();
    }
#else
    malloc_trim(kReleaseAboveBytes);  // glibc: keeps that much at the top of the heap
#endif
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, kInterval, [this] { return stopped_; })) release();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;  // guarded by mu_
  std::thread thread_;
};

// File descriptors: the soft limit is raised to the hard one (as Go's runtime does for etcd), and
// client connections are limited so that kReservedDescriptors stay for the database's files,
// the peers and the snapshot machinery. Returns the client connection limit.
size_t client_connection_limit() {
  constexpr rlim_t kReservedDescriptors = 256;
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  if (lim.rlim_cur == RLIM_INFINITY) return 0;
  return lim.rlim_cur > 2 * kReservedDescriptors ? lim.rlim_cur - kReservedDescriptors
                                                   : lim.rlim_cur / 2;
}

// The client listeners' handler from the moment they are bound (before the member exists) to
// the moment they accept (after): the member's ClientApi, set before ClientServer::start.
class LateHandler final : public kvd::server::RequestHandler {
 public:
  kvd::server::RequestHandler* target = nullptr;
  void handle(const kvd::server::HttpRequest& r,
              const std::shared_ptr<kvd::server::Exchange>& ex) override {
    target->handle(r, ex);
  }
};

constexpr int kFallBackToProxy = -2;

enum class DataDirKind { kEmpty, kMember, kProxy, kBoth };

// etcd's identifyDataDirOrDie: what an existing data dir was made for.
DataDirKind data_dir_kind(const std::string& dir) {
  std::error_code ec;
  bool member = std::filesystem::is_directory(
      std::filesystem::path(dir) / std::string(kvd::data_dir::kMemberDir), ec);
  bool proxy = std::filesystem::is_directory(
      std::filesystem::path(dir) / std::string(kvd::data_dir::kProxyDir), ec);
  if (member && proxy) return DataDirKind::kBoth;
  if (member) return DataDirKind::kMember;
  return proxy ? DataDirKind::kProxy : DataDirKind::kEmpty;
}

}  // namespace

// A member: from the data dir, or bootstrapped from the flags, until a signal stops it.
// Returns the exit status, or kFallBackToProxy when discovery found the cluster full and
// --discovery-fallback says proxy (every port is released by then).
int run_member(const kvd::server::Flags& flags, const kvd::server::TlsSetup& tls,
               size_t max_connections) {
  using namespace kvd::server;
  // One single-threaded event loop per core (server/http/event_loops.h). Loop 0 (`io`) runs the
  // node's strand, the peer transport, the acceptors and the signals; client connections are
  // spread over all loops, each new one on the loop with the fewest (loop 0 on a tie, so that a
  // lone client shares the strand's thread), each staying on its loop: a connection's reads,
  // parsing and writes never cross threads, only the hand-off to the node's strand and back does
  // (on the other loops).
  EventLoops loops;
  boost::asio::io_context& io = loops[0];
  auto stop_loops = [&loops] { loops.stop(); };

  // As etcd, before anything is bound or written: the bootstrap flags of a new member (with
  // the initial cluster from DNS for --discovery-srv), then the data dir's permissions.
  const bool new_member = !holds_member(flags.data_dir);
  Flags bootstrap = flags;
  if (new_member && !flags.discovery_srv.empty()) {
    auto found = initial_cluster_from_srv(flags);
    if (!found.is_ok()) {
      SPDLOG_CRITICAL("{}", found.status().message());
      return 1;
    }
    bootstrap.initial_cluster = std::move(found.value());
  }
  if (new_member && !flags.discovery.empty()) {
    // The temporary cluster of etcd's discovery: this member alone (replaced once joined).
    bootstrap.initial_cluster.clear();
    for (const auto& u : flags.initial_advertise_peer_urls)
      bootstrap.initial_cluster.emplace_back(flags.name, u);
    bootstrap.initial_cluster_token = flags.discovery;
  }
  if (new_member) {
    if (auto err = verify_bootstrap(bootstrap)) {
      SPDLOG_CRITICAL("{}", *err);
      return 1;
    }
  } else if (!flags.discovery.empty()) {
    SPDLOG_WARN("discovery token ignored since a cluster has already been initialized. Valid "
                "log found at \"{}/{}\"",
                flags.data_dir, kvd::data_dir::kMemberDir);
  }
  if (auto warning = kvd::loose_permission_warning(flags.data_dir)) {
    SPDLOG_WARN("check file permission: {}", *warning);
  }

  // Every listener is bound before the data dir is touched: a busy port fails the start with
  // nothing written. Connections wait in the kernel's backlog until the member serves them.
  ClientServerConfig server_config;
  server_config.listen_urls = flags.listen_client_urls;
  server_config.cors = flags.cors;
  server_config.host_whitelist = flags.host_whitelist;
  server_config.place_connection = [&loops] { return loops.place(); };
  server_config.max_connections = max_connections;
  server_config.tls = tls.client;
  LateHandler client_handler;
  ClientServer server(io, client_handler, server_config);
  if (auto st = server.bind(); !st.is_ok()) {
    SPDLOG_CRITICAL("cannot listen for clients: {}", st.message());
    return 1;
  }
  // --listen-metrics-urls: /metrics and /health only, without CORS, https with the client
  // certificate (etcd's serveMetrics).
  std::optional<ClientServer> metrics_server;
  if (!flags.listen_metrics_urls.empty()) {
    metrics_server.emplace(io, client_handler,
                           metrics_listener_config(server_config, flags.listen_metrics_urls));
    if (auto st = metrics_server->bind(); !st.is_ok()) {
      SPDLOG_CRITICAL("cannot listen for metrics: {}", st.message());
      return 1;
    }
  }
  auto peer_listeners = bind_peer_listeners(io, flags.listen_peer_urls, tls.peer);
  if (!peer_listeners.is_ok()) {
    SPDLOG_CRITICAL("cannot listen for peers: {}", peer_listeners.status().message());
    return 1;
  }

  // --discovery: registering is a write to the discovery service, so it comes once every port
  // is ours; the member is opened only with the cluster it found.
  if (new_member && !flags.discovery.empty() && flags.initial_cluster_state == "new") {
    JoinOutcome joined = join_by_discovery(flags);
    if (joined.what == JoinOutcome::kFallBackToProxy) return kFallBackToProxy;
    if (joined.what != JoinOutcome::kJoined) return 1;
    bootstrap.initial_cluster = std::move(joined.cluster);
  }

  NodeConfig node_config;
  node_config.name = flags.name;
  node_config.data_dir = flags.data_dir;
  node_config.advertise_client_urls = flags.advertise_client_urls;
  node_config.initial_advertise_peer_urls = flags.initial_advertise_peer_urls;
  node_config.initial_cluster = bootstrap.initial_cluster;
  node_config.initial_cluster_state = flags.initial_cluster_state;
  node_config.force_new_cluster = flags.force_new_cluster;
  node_config.fetch_cluster = [peer_tls = tls.peer](const std::string& peer_url,
                                                            std::chrono::milliseconds timeout,
                                                            std::string* why) {
    return fetch_remote_cluster(peer_url, timeout, peer_tls.get(), why);
  };
  node_config.initial_cluster_token = bootstrap.initial_cluster_token;
  node_config.snapshot_count = std::max<uint64_t>(flags.snapshot_count, 1);
  node_config.heartbeat_interval = flags.heartbeat_interval;
  node_config.election_timeout = flags.election_timeout;
  node_config.pre_vote = flags.pre_vote;
  node_config.initial_election_tick_advance = flags.initial_election_tick_advance;
  node_config.strict_reconfig_check = flags.strict_reconfig_check;
  node_config.warning_apply_duration = flags.warning_apply_duration;

  // A member removed from the cluster stops serving (Node logs why); set once the pieces exist.
  std::function<void()> shutdown;
  node_config.on_removed = [&io, &shutdown] {
    boost::asio::post(io, [&shutdown] {
      if (shutdown) shutdown();
    });
  };

  auto opened = Node::open(io, node_config);
  if (!opened.is_ok()) {
    SPDLOG_CRITICAL("cannot open data dir {}: {}", flags.data_dir, opened.status().message());
    return 1;
  }
  std::unique_ptr<Node> node = std::move(opened.value());
  // Opening read the snapshot image and replayed the log: buffers as large as the store, freed.
  MemoryReleaser::release();

  std::unique_ptr<PeerTransport> transport;
  if (!flags.listen_peer_urls.empty()) {
    auto started = start_peer_transport(io, *node, std::move(peer_listeners.value()),
                                        tls.peer);
    if (!started.is_ok()) {
      SPDLOG_CRITICAL("cannot listen for peers: {}", started.status().message());
      node->stop();
      return 1;
    }
    transport = std::move(started.value());
  }
  auto stop_transport = [&] {
    if (transport) transport->stop();
  };

  auth::Authenticator authenticator;
  ClientApiOptions api_options;
  api_options.authenticator = &authenticator;
  api_options.client_cert_auth = flags.client_tls.client_cert_auth;
  ClientApi api(*node, std::move(api_options));
  client_handler.target = &api;
  server.start();
  if (metrics_server) metrics_server->start();
  node->start();
  SPDLOG_INFO("kvd member {} ({:x}) serving clients on {}", flags.name, node->member_id(),
              join_urls(flags.listen_client_urls));
  if (metrics_server) SPDLOG_INFO("serving metrics on {}", join_urls(flags.listen_metrics_urls));

  shutdown = [&] {
    SPDLOG_CRITICAL("this member was removed from the cluster: stopping");
    server.stop();
    if (metrics_server) metrics_server->stop();
    stop_transport();
    node->stop();
    stop_loops();
  };

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  int stop_signal = 0;
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    SPDLOG_INFO("received signal {}, shutting down", sig);
    stop_signal = sig;
    // As etcd's Close: client requests already being handled are answered first (at most
    // 2 s, Go's Shutdown there), then a leader hands leadership over (bounded by the request
    // timeout) so that the others need not wait for an election timeout, then everything stops.
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::seconds(5) + 2 * flags.election_timeout);
    server.shutdown(std::chrono::seconds(2), [&, timeout] {
      node->transfer_leadership_for_stop(timeout, [&] {
        boost::asio::post(io, [&] {
          server.stop();
          if (metrics_server) metrics_server->stop();
          stop_transport();
          node->stop();
          stop_loops();
        });
      });
    });
  });

  loops.run();
  if (stop_signal != 0) {
    // As etcd (osutil.HandleInterrupts): after the clean shutdown, die of the signal itself, so
    // the parent sees "terminated by SIGTERM" rather than exit status 0.
    signals.clear();
    std::signal(stop_signal, SIG_DFL);
    std::raise(stop_signal);
  }
  return 0;
}

int main(int argc, char** argv) {
  using namespace kvd::server;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);

  FlagsResult parsed = parse_flags(args, env);
  if (parsed.exit_code >= 0) {
    std::fputs(parsed.out.c_str(), stdout);
    std::fputs(parsed.err.c_str(), stderr);
    return parsed.exit_code;
  }
  const Flags& flags = parsed.flags;
  if (kvd::Status st = setup_logging(LogConfig{flags.logger, flags.log_outputs, flags.log_level});
      !st.is_ok()) {
    std::fprintf(stderr, "kvd: error verifying flags, %s. See 'kvd --help'.\n",
                 st.message().c_str());
    return 1;
  }
  SPDLOG_INFO("kvd Version: {}, Git SHA: {} (serving etcd {}'s v2 API)", kvd::version::kKvd,
               kvd::version::git_revision(), kvd::version::kServer);
  for (const auto& n : parsed.env_notices) SPDLOG_INFO("{}", n);
  for (const auto& w : parsed.env_warnings) SPDLOG_WARN("{}", w);

  auto tls = setup_tls(flags);
  if (!tls.is_ok()) {
    SPDLOG_CRITICAL("{}", tls.status().message());
    return 1;
  }
  for (const auto& n : tls.value().notices) SPDLOG_INFO("{}", n);
  for (const auto& w : tls.value().warnings) SPDLOG_WARN("{}", w);

  MemoryReleaser memory_releaser;
  const size_t max_connections = client_connection_limit();
  auto proxy_config = [&] {
    ProxyConfig proxy;
    proxy.mode = flags.proxy == ProxyMode::kOff ? ProxyMode::kOn : flags.proxy;
    proxy.data_dir = flags.data_dir;
    proxy.listen_client_urls = flags.listen_client_urls;
    proxy.listen_metrics_urls = flags.listen_metrics_urls;
    proxy.cors = flags.cors;
    proxy.host_whitelist = flags.host_whitelist;
    for (const auto& [name, url] : flags.initial_cluster) proxy.initial_peer_urls.push_back(url);
    proxy.discover_peer_urls = proxy_discovery(flags);
    proxy.discovery_what = flags.discovery.empty() ? "DNS SRV discovery" : "discovery token";
    proxy.failure_wait = flags.proxy_failure_wait;
    proxy.refresh_interval = flags.proxy_refresh_interval;
    proxy.dial_timeout = flags.proxy_dial_timeout;
    proxy.write_timeout = flags.proxy_write_timeout;
    proxy.read_timeout = flags.proxy_read_timeout;
    // Each proxied request may hold a connection to a member besides its client's.
    proxy.max_client_connections = max_connections / 2;
    proxy.client_tls = tls.value().client;
    proxy.peer_tls = tls.value().peer;
    return proxy;
  };

  if (flags.proxy != ProxyMode::kOff) return run_proxy(proxy_config());
  // As etcd, a data dir decides what it holds: one that a proxy made (a member that found the
  // discovery cluster full and fell back) starts the proxy again.
  switch (data_dir_kind(flags.data_dir)) {
    case DataDirKind::kBoth:
      SPDLOG_CRITICAL("invalid datadir. Both member and proxy directories exist.");
      return 1;
    case DataDirKind::kProxy:
      SPDLOG_INFO("the server is already initialized as proxy before, starting as etcd proxy...");
      return run_proxy(proxy_config());
    default:
      break;
  }
  int rc = run_member(flags, tls.value(), max_connections);
  if (rc == kFallBackToProxy) return run_proxy(proxy_config());
  return rc;
}
