// The proxy's probes of its members (kvd's addition to etcd's proxy, README "Where kvd's proxy
// differs from etcd's"): a member that is paused (SIGSTOP, a stall) or cut off by a network
// that drops its packets answers nothing, and etcd's proxy sends it request after request that
// each waits for the full timeout. Every kProbeInterval the prober asks each endpoint for
// GET /version (answered by a member at once, without raft) with kProbeTimeout; an endpoint
// without an answer in time is marked silent (EndpointSet::set_silent): new requests go to the
// others, and requests waiting on it move on (proxy_call.h). A silent member is so noticed
// within kProbeInterval + kProbeTimeout (1.5 s), and used again once a probe is answered.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "server/proxy/shared.h"

namespace kvd::server::proxy {

inline constexpr auto kProbeInterval = std::chrono::milliseconds(500);
inline constexpr auto kProbeTimeout = std::chrono::milliseconds(1000);

// Probes on a thread of its own (each round's probes run concurrently, one short-lived thread
// per endpoint); start() and stop() from run_proxy's thread.
class Prober {
 public:
  explicit Prober(Shared& shared) : shared_(shared) {}
  ~Prober() { stop(); }

  void start() {
    thread_ = std::thread([this] { loop(); });
  }
  void stop();

 private:
  void loop();
  void probe_all();

  Shared& shared_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace kvd::server::proxy
