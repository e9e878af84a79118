// poll_until: waits for a condition nothing signals (requests answered, a new leader) by checking
// it on a timer.
#pragma once

#include <chrono>
#include <memory>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace kvd {

// Runs done() on `executor` once pred() holds or `deadline` has passed, checking pred at once
// and then every `interval`. pred and done run on the executor.
template <class Pred, class Done>
void poll_until(boost::asio::any_io_executor executor, std::chrono::steady_clock::duration interval,
                std::chrono::steady_clock::time_point deadline, Pred pred, Done done) {
  struct Poll : std::enable_shared_from_this<Poll> {
    Poll(boost::asio::any_io_executor ex, std::chrono::steady_clock::duration i,
         std::chrono::steady_clock::time_point d, Pred p, Done f)
        : timer(std::move(ex)), interval(i), deadline(d), pred(std::move(p)), done(std::move(f)) {}
    void check() {
      if (pred() || std::chrono::steady_clock::now() >= deadline) return done();
      timer.expires_after(interval);
      timer.async_wait([self = this->shared_from_this()](const boost::system::error_code&) {
        self->check();
      });
    }
    boost::asio::steady_timer timer;
    const std::chrono::steady_clock::duration interval;
    const std::chrono::steady_clock::time_point deadline;
    Pred pred;
    Done done;
  };
  auto poll = std::make_shared<Poll>(executor, interval, deadline, std::move(pred), std::move(done));
  boost::asio::post(executor, [poll] { poll->check(); });
}

}  // namespace kvd
