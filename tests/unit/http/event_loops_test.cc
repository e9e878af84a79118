// EventLoops: one io_context per loop; where connections go (place); busy polling (set_spin).
#include "server/http/event_loops.h"

#include <sched.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <limits>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace kvd::server {
namespace {

constexpr auto kWait = std::chrono::seconds(20);

// A timer of `delay` on loop `loop`, set from that loop's thread; the future is ready when it
// fired.
std::future<void> timer_on(EventLoops& loops, size_t loop, std::chrono::milliseconds delay) {
  auto fired = std::make_shared<std::promise<void>>();
  auto fut = fired->get_future();
  boost::asio::post(loops[loop], [&loops, loop, delay, fired] {
    auto timer = std::make_shared<boost::asio::steady_timer>(loops[loop], delay);
    timer->async_wait([timer, fired](const boost::system::error_code&) { fired->set_value(); });
  });
  return fut;
}

// Runs loops.run() on a thread of its own; returns its future.
std::future<void> run_async(EventLoops& loops) {
  return std::async(std::launch::async, [&loops] { loops.run(); });
}

// Stops the loops when it goes: declared after run_async's future, it lets a test that fails
// an ASSERT end instead of waiting in that future's destructor for loops that still poll.
struct StopAtEnd {
  EventLoops& loops;
  ~StopAtEnd() { loops.stop(); }
};

// Posts `rounds` handlers, each from the previous one, hopping over all loops; the future is
// ready when the last ran.
std::future<int> ping_pong(EventLoops& loops, int rounds) {
  auto done = std::make_shared<std::promise<int>>();
  auto fut = done->get_future();
  auto count = std::make_shared<int>(0);
  auto step = std::make_shared<std::function<void()>>();
  *step = [&loops, done, count, step, rounds] {
    if (++*count == rounds) {
      done->set_value(*count);
      *step = nullptr;  // breaks the cycle
      return;
    }
    boost::asio::post(loops[*count % loops.size()], *step);
  };
  boost::asio::post(loops[0], *step);
  return fut;
}

TEST(EventLoopsTest, defaultSize_isTheCpusTheProcessMayUse) {
  cpu_set_t before;
  ASSERT_EQ(::sched_getaffinity(0, sizeof(before), &before), 0);
  const int allowed = CPU_COUNT(&before);
  EXPECT_EQ(EventLoops().size(), static_cast<size_t>(allowed));
  // Restricted to one of them (as taskset -c or a container's cpuset would), one loop.
  int first = 0;
  while (!CPU_ISSET(first, &before)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(::sched_setaffinity(0, sizeof(one), &one), 0);
  const size_t restricted = EventLoops().size();
  ASSERT_EQ(::sched_setaffinity(0, sizeof(before), &before), 0);
  EXPECT_EQ(restricted, 1u);
}

// The loop of a place, by its executor.
size_t loop_of(EventLoops& loops, const LoopPlace& p) {
  for (size_t i = 0; i < loops.size(); ++i) {
    if (p.executor == boost::asio::any_io_executor(loops[i].get_executor())) return i;
  }
  return loops.size();
}

TEST(EventLoopsTest, place_fewestOpenFirstLowestOnATie) {
  EventLoops loops(3);
  // A lone connection, closed and opened again, stays on loop 0 (the member's strand's).
  for (int i = 0; i < 3; ++i) EXPECT_EQ(loop_of(loops, loops.place()), 0u);
  LoopPlace a = loops.place();
  LoopPlace b = loops.place();
  LoopPlace c = loops.place();
  EXPECT_EQ(loop_of(loops, a), 0u);
  EXPECT_EQ(loop_of(loops, b), 1u);
  EXPECT_EQ(loop_of(loops, c), 2u);
  LoopPlace d = loops.place();
  EXPECT_EQ(loop_of(loops, d), 0u);
  // A place is given up when its lease goes (and not before: a copy keeps it).
  std::shared_ptr<void> copy = b.lease;
  b = LoopPlace{};
  EXPECT_EQ(loop_of(loops, loops.place()), 1u);  // and given up again at once
  c = LoopPlace{};
  EXPECT_EQ(loop_of(loops, loops.place()), 2u);
  copy.reset();
  LoopPlace e = loops.place();
  EXPECT_EQ(loop_of(loops, e), 1u);
  // Many spread evenly.
  std::vector<LoopPlace> many;
  for (int i = 0; i < 300; ++i) many.push_back(loops.place());
  size_t per[3] = {0, 0, 0};
  for (const auto& p : many) ++per[loop_of(loops, p)];
  EXPECT_EQ(per[0] + 2, per[1] + 1);  // loop 0 held a and d, loop 1 e, loop 2 none
  EXPECT_EQ(per[1] + 1, per[2]);
}

TEST(EventLoopsTest, run_runsHandlersOnEveryLoopUntilStop) {
  EventLoops loops(2);
  auto running = run_async(loops);
  auto pp = ping_pong(loops, 1000);
  ASSERT_EQ(pp.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(pp.get(), 1000);
  loops.stop();
  ASSERT_EQ(running.wait_for(kWait), std::future_status::ready);
}

TEST(EventLoopsTest, setSpin_pollingLoopsRunHandlersAndTimersAndStop) {
  EventLoops loops(2);
  std::atomic<int> asked{0};
  loops.set_spin([&asked](size_t) {
    asked.fetch_add(1);
    return std::chrono::microseconds(200);
  });
  auto running = run_async(loops);
  auto pp = ping_pong(loops, 1000);
  ASSERT_EQ(pp.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(pp.get(), 1000);
  EXPECT_GT(asked.load(), 0);  // the loops did poll
  // A timer fires while a loop polls, and after it went back to blocking.
  ASSERT_EQ(timer_on(loops, 1, std::chrono::milliseconds(5)).wait_for(kWait),
            std::future_status::ready);
  loops.stop();
  ASSERT_EQ(running.wait_for(kWait), std::future_status::ready);
}

TEST(EventLoopsTest, setSpin_zeroBlocksAsWithout) {
  EventLoops loops(1);
  std::atomic<int> asked{0};
  loops.set_spin([&asked](size_t) {
    asked.fetch_add(1);
    return std::chrono::microseconds(0);
  });
  auto running = run_async(loops);
  auto pp = ping_pong(loops, 100);
  ASSERT_EQ(pp.wait_for(kWait), std::future_status::ready);
  // Idle now: a loop that is told to poll for zero time asks once per wake-up, not in a loop.
  const int before = asked.load();
  ASSERT_EQ(timer_on(loops, 0, std::chrono::milliseconds(20)).wait_for(kWait),
            std::future_status::ready);
  EXPECT_LE(asked.load() - before, 3);
  loops.stop();
  ASSERT_EQ(running.wait_for(kWait), std::future_status::ready);
}

// The polling time is asked for again while polling: when it drops to zero the loop blocks at
// once, however long it was told to poll before.
TEST(EventLoopsTest, setSpin_pollingTimeIsAskedWhilePolling) {
  EventLoops loops(1);
  std::atomic<bool> poll{true};
  std::atomic<int> asked{0};
  std::atomic<int> grown_at{std::numeric_limits<int>::max()};
  std::atomic<bool> told{false};
  std::promise<void> grown;
  loops.set_spin([&](size_t) {
    const int n = asked.fetch_add(1) + 1;
    if (n >= grown_at.load() && !told.exchange(true)) grown.set_value();
    return poll.load() ? std::chrono::microseconds(std::chrono::hours(1)) : std::chrono::microseconds(0);
  });
  auto running = run_async(loops);
  StopAtEnd stop_at_end{loops};
  auto pp = ping_pong(loops, 10);
  ASSERT_EQ(pp.wait_for(kWait), std::future_status::ready);
  // Polling for an hour: asked over and over, a hundred more times whenever the loop's thread
  // gets the CPU (the loop tells when it has).
  grown_at = asked.load() + 100;
  ASSERT_EQ(grown.get_future().wait_for(kWait), std::future_status::ready);
  poll = false;
  // A handler that runs after this: the loop, polling, runs it, asks once more and blocks.
  ASSERT_EQ(ping_pong(loops, 1).wait_for(kWait), std::future_status::ready);
  // Blocked now: a 20 ms timer sees at most a couple of questions (one per wake-up).
  const int before = asked.load();
  ASSERT_EQ(timer_on(loops, 0, std::chrono::milliseconds(20)).wait_for(kWait),
            std::future_status::ready);
  EXPECT_LE(asked.load() - before, 3);
  loops.stop();
  ASSERT_EQ(running.wait_for(kWait), std::future_status::ready);
}

}  // namespace
}  // namespace kvd::server
