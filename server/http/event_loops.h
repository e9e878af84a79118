// Event loops for kvd's processes (member and proxy): one single-threaded io_context per core
// the process may use.
// A single-threaded io_context takes no locks for its own handlers; code that keeps a client
// connection and everything it uses on one loop serves a request without crossing threads.
//
// Threads: construct and call run() on one thread (loop 0 runs there, the others on threads of
// their own); place() and stop() from any thread.
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

namespace kvd::server {

// The CPUs this process may run on (its affinity mask: taskset, a container's cpuset), as Go
// sizes GOMAXPROCS; the machine's count when the mask cannot be read. Loops beyond it would
// only take turns on the same cores.
inline unsigned usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

// A place on one of the loops: its executor, and a lease holding the place while it lives.
struct LoopPlace {
  boost::asio::any_io_executor executor;
  std::shared_ptr<void> lease;
};

class EventLoops {
 public:
  explicit EventLoops(unsigned n = usable_cpus())
      : open_(std::make_unique<std::atomic<size_t>[]>(std::max(1u, n))) {
    for (unsigned i = 0; i < std::max(1u, n); ++i) {
      ios_.push_back(std::make_unique<boost::asio::io_context>(1));
    }
  }

  size_t size() const { return ios_.size(); }
  boost::asio::io_context& operator[](size_t i) { return *ios_[i]; }

  // Where a new connection goes (ClientServerConfig::place_connection): the loop holding the
  // fewest connections placed here and still open, the lowest-numbered one on a tie, so that
  // a lone client shares loop 0 (the member's raft strand: its requests then cross no thread,
  // and wake none, on the way there and back) and many spread evenly. The lease counts the
  // connection on that loop until it is destroyed.
  LoopPlace place() {
    size_t best = 0;
    for (size_t i = 1; i < ios_.size(); ++i) {
      if (open_[i].load() < open_[best].load()) best = i;
    }
    std::atomic<size_t>* open = &open_[best];
    open->fetch_add(1);
    return LoopPlace{ios_[best]->get_executor(),
                     std::shared_ptr<void>(nullptr, [open](void*) { open->fetch_sub(1); })};
  }

  // Runs every loop until stop(): loop 0 on this thread, the others on threads of their own;
  // on_thread(i) runs first on the thread of loop i. Returns once all have stopped.
  void run(const std::function<void(size_t)>& on_thread = {}) {
    // A loop whose thread is idle must not return from run() before stop().
    std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards;
    for (auto& l : ios_) guards.push_back(boost::asio::make_work_guard(*l));
    std::vector<std::thread> threads;
    for (size_t i = 1; i < ios_.size(); ++i) {
      threads.emplace_back([this, i, &on_thread] {
        if (on_thread) on_thread(i);
        run_loop(i);
      });
    }
    if (on_thread) on_thread(0);
    run_loop(0);
    for (auto& t : threads) t.join();
  }

  // Busy polling, set before run(): once handlers ran on loop i, the loop keeps polling its
  // sockets without blocking for as long as spin_for(i) (called on that loop's thread) says,
  // counted from the last handler that ran; zero means block. An answer expected within a
  // millisecond (a member's, for the proxy) is then taken without the thread going to sleep and
  // being woken, which costs tens of microseconds on virtual machines. spin_for must say zero
  // unless the loop is lightly loaded: a polling thread takes a core from everything else (it
  // yields between polls, so a thread waiting for the core goes first).
  void set_spin(std::function<std::chrono::microseconds(size_t)> spin_for) {
    spin_for_ = std::move(spin_for);
  }

  void stop() {
    for (auto& l : ios_) l->stop();
  }

 private:
  void run_loop(size_t i) {
    boost::asio::io_context& io = *ios_[i];
    if (!spin_for_) {
      io.run();
      return;
    }
    using Clock = std::chrono::steady_clock;
    while (io.run_one() > 0) {  // blocks until a handler ran; 0 once stopped
      Clock::time_point last = Clock::now();
      while (!io.stopped()) {
        const std::chrono::microseconds spin = spin_for_(i);
        if (spin.count() <= 0) break;
        const size_t ran = io.poll();
        const Clock::time_point now = Clock::now();
        if (ran > 0) {
          last = now;
        } else if (now - last >= spin) {
          break;
        } else {
          std::this_thread::yield();
        }
      }
    }
  }

  std::function<std::chrono::microseconds(size_t)> spin_for_;
  std::vector<std::unique_ptr<boost::asio::io_context>> ios_;
  std::unique_ptr<std::atomic<size_t>[]> open_;  // open_[i]: leases of loop i alive
};

}  // namespace kvd::server
