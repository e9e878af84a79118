// What the proxy's calls share, and the per-loop bookkeeping of the proxy's event loops.
// Owned by run_proxy(); outlives every call (run_proxy drains the event loops before it goes).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "server/http/event_loops.h"
#include "server/http/types.h"
#include "server/proxy/endpoints.h"
#include "server/proxy/proxy.h"
#include "server/proxy/proxy_metrics.h"

namespace kvd::server::proxy {

// The proxy's event loops (server/http/event_loops.h). A client connection, the calls it makes
// and the member connections they use all live on one of them, so a request is served without
// crossing threads.
using Loops = EventLoops;
// Which of the loops the current thread runs (set by each thread of run_proxy).
extern thread_local size_t t_loop;

struct Settings {
  ProxyMode mode = ProxyMode::kOn;
  Clock::duration dial_timeout{};
  Clock::duration write_timeout{};
  Clock::duration read_timeout{};  // zero: none
};

// How busy one loop is, for busy polling (EventLoops::set_spin). While at most kFewCalls
// proxied requests are in flight on the loop (and none of the last kQuietAfterBusy was busy),
// the loop polls for the member's answer for up to kAwaitSpin instead of sleeping: one sleep
// and wake-up less per request, which on a virtual machine is a good part of what a proxy hop
// costs. kAwaitSpin covers a cluster write's commit (fsyncs on two members); a 40 us poll, which
// only a read's answer beat, made one-connection writes slower than not polling at all. Once none
// is in flight, the loop polls only kIdleSpin for the client's next request. Used by the loop's
// own thread only.
struct LoopLoad {
  static constexpr int kFewCalls = 2;
  static constexpr auto kQuietAfterBusy = std::chrono::milliseconds(100);
  static constexpr auto kAwaitSpin = std::chrono::microseconds(2000);
  static constexpr auto kIdleSpin = std::chrono::microseconds(50);
  int calls = 0;  // proxied requests in flight, long polls excluded
  Clock::time_point busy_until{};

  void started(Clock::time_point now) {
    if (++calls > kFewCalls) busy_until = now + kQuietAfterBusy;
  }
  void ended() { --calls; }
  std::chrono::microseconds spin(Clock::time_point now) const {
    if (calls > kFewCalls || now < busy_until) return std::chrono::microseconds(0);
    return calls > 0 ? kAwaitSpin : kIdleSpin;
  }
};

// What the calls share. Outlives every call (run_proxy drains the io_context before it goes).
struct Shared {
  Shared(Loops& loops_, Settings s, Clock::duration failure_wait)
      : loops(loops_), settings(s), endpoints(failure_wait), load(loops_.size()) {}
  Loops& loops;
  const Settings settings;
  // TLS towards the members' https client URLs (requests, probes) and their peer URLs (the
  // cluster's member list): ProxyConfig's client TLS (or the peer TLS without it), peer TLS.
  std::shared_ptr<tls::TlsContexts> member_tls;
  std::shared_ptr<tls::TlsContexts> peer_tls;
  EndpointSet endpoints;
  ProxyMetrics metrics;
  std::vector<LoopLoad> load;  // load[i]: loop i's, touched by its thread only
};

// {"message":"httpproxy: <message>"}, as etcd's proxy answers its own errors.
HttpResponse proxy_error(int status, const std::string& message);

}  // namespace kvd::server::proxy
