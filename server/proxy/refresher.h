// The proxy's knowledge of the cluster (etcd's proxy: GetClusterFromRemotePeers on a timer).
#pragma once

#include <condition_variable>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "server/proxy/shared.h"

namespace kvd::server::proxy {

// Learns the member client URLs through the peer URLs, on a thread of its own.
class Refresher {
 public:
  Refresher(Shared& shared, std::vector<std::string> peer_urls, std::string cluster_file,
            Clock::duration interval)
      : shared_(shared),
        peer_urls_(std::move(peer_urls)),
        cluster_file_(std::move(cluster_file)),
        interval_(interval),
        rng_(std::random_device{}()) {}
  ~Refresher() { stop(); }

  // The first refresh, on the caller's thread, then the loop.
  void start() {
    refresh();
    thread_ = std::thread([this] { loop(); });
  }
  void stop();

 private:
  void loop();

  void refresh();

  std::shared_ptr<Endpoint> make(const std::string& url);

  static std::string join(const std::vector<std::string>& v);

  Shared& shared_;
  std::vector<std::string> peer_urls_;  // the seed; replaced by what each refresh learns
  const std::string cluster_file_;
  const Clock::duration interval_;
  std::mt19937 rng_;
  std::vector<std::string> last_logged_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace kvd::server::proxy
