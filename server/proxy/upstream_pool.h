// The proxy's keep-alive connections to one member, so that the hot path opens no TCP
// connection.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "server/proxy/shared.h"
#include "server/tls/stream.h"

namespace kvd::server::proxy {

// An idle pooled connection older than this is closed instead of reused: kvd members close
// idle client connections after 30 s.
inline constexpr auto kMaxIdleTime = std::chrono::seconds(20);
inline constexpr size_t kMaxIdlePerMember = 1024;  // per member and loop

// Idle keep-alive connections to one member, one list per loop. Thread-safe. A connection is
// bound to its loop's io_context: whoever took one is its only user until it gives it back.
class UpstreamPool {
 public:
  struct Conn {
    explicit Conn(boost::asio::io_context& io) : socket(io) {}
    tls::Stream socket;
    boost::beast::flat_buffer buffer;
    Clock::time_point idle_since{};
  };

  // tls: for an https member (its certificate must name `host`), else null.
  UpstreamPool(Loops& loops, boost::asio::ip::tcp::endpoint address,
               std::shared_ptr<tls::TlsContexts> tls = nullptr, std::string host = "")
      : loops_(loops), address_(address), tls_(std::move(tls)), host_(std::move(host)) {
    for (size_t i = 0; i < loops.size(); ++i) slots_.push_back(std::make_unique<Slot>());
  }

  boost::asio::io_context& io(size_t loop) { return loops_[loop]; }
  const boost::asio::ip::tcp::endpoint& address() const { return address_; }
  tls::TlsContexts* tls() const { return tls_.get(); }
  const std::string& host() const { return host_; }

  // An idle connection of `loop`, or null.
  std::unique_ptr<Conn> take(size_t loop) {
    const auto now = Clock::now();
    Slot& slot = *slots_[loop];
    std::lock_guard lock(slot.mu);
    while (!slot.idle.empty()) {
      auto c = std::move(slot.idle.back());
      slot.idle.pop_back();
      if (now - c->idle_since < kMaxIdleTime) return c;
    }
    return nullptr;
  }
  void give_back(size_t loop, std::unique_ptr<Conn> c) {
    c->idle_since = Clock::now();
    Slot& slot = *slots_[loop];
    std::lock_guard lock(slot.mu);
    if (slot.idle.size() < kMaxIdlePerMember) slot.idle.push_back(std::move(c));
  }

 private:
  struct Slot {
    std::mutex mu;
    std::vector<std::unique_ptr<Conn>> idle;  // guarded by mu; most recently used last
  };
  Loops& loops_;
  const boost::asio::ip::tcp::endpoint address_;
  const std::shared_ptr<tls::TlsContexts> tls_;
  const std::string host_;
  std::vector<std::unique_ptr<Slot>> slots_;  // one per loop; the vector itself is const
};

}  // namespace kvd::server::proxy
