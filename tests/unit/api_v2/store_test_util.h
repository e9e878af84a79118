// Shared fixture for the v2 store tests: builds commands at a controllable clock and checks the
// store's invariants after every test (tree keys and parents, indexes <= store index, TTL index
// consistent with the tree, history order, watcher index).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <variant>

#include "api_v2/render.h"
#include "api_v2/store.h"

namespace kvd::v2 {

class StoreTest : public ::testing::Test {
 protected:
  static constexpr int64_t kSecond = 1'000'000'000;
  // 2027-01-15T08:00:00Z.
  static constexpr int64_t kStart = 1'800'000'000LL * kSecond;

  void TearDown() override { EXPECT_EQ(store_.check_invariants(), ""); }

  Command make(Op op, std::string key, std::string value = "") {
    Command c;
    c.op = op;
    c.request_id = next_request_++;
    c.now_ns = now_;
    c.key = std::move(key);
    c.value = std::move(value);
    return c;
  }
  static Command with_ttl(Command c, int64_t ttl_seconds) {
    c.expire_at_ns = c.now_ns + ttl_seconds * kSecond;
    return c;
  }

  std::variant<Event, Error> apply(const Command& c) { return store_.apply(c); }

  // Applies c, which must succeed, and returns the rendered event.
  std::string ok(const Command& c) {
    auto res = store_.apply(c);
    if (auto* e = std::get_if<Error>(&res)) {
      ADD_FAILURE() << "unexpected error " << e->to_json();
      return "";
    }
    return render_event(std::get<Event>(res));
  }
  // Applies c, which must fail, and returns the rendered error.
  std::string fail(const Command& c) {
    auto res = store_.apply(c);
    if (auto* ev = std::get_if<Event>(&res)) {
      ADD_FAILURE() << "unexpected success " << render_event(*ev);
      return "";
    }
    return std::get<Error>(res).to_json();
  }

  std::string set(std::string key, std::string value) { return ok(make(Op::kSet, key, value)); }
  // A bit of everything a store image holds: keys, a hidden key, a TTL key and dir, an internal
  // record, a deletion, and a read in the counters.
  void fill_sample() {
    set("/a/b", "1");
    set("/a/_h", "hidden");
    ok(with_ttl(make(Op::kSet, "/t", "ttl"), 30));
    Command d = with_ttl(make(Op::kSet, "/tdir"), 40);
    d.dir = true;
    ok(d);
    ok(make(Op::kInternal, "/0/version", "3.4.0"));
    ok(make(Op::kDelete, "/a/b"));
    get("/a");
  }
  // A random number below n.
  static int pick(std::mt19937& rng, int n) {
    return static_cast<int>(rng() % static_cast<unsigned>(n));
  }
  // A random command of every kind the store applies (dir, recursive, TTL, compare and refresh
  // flags at random) on a small key space: up to three levels of a, b, c and a hidden _h.
  Command random_command(std::mt19937& rng) {
    static const char* names[] = {"a", "b", "_h", "c"};
    static const Op ops[] = {Op::kSet, Op::kCreate, Op::kUpdate, Op::kCompareAndSwap,
                             Op::kDelete, Op::kCompareAndDelete, Op::kCreateInOrder,
                             Op::kExpire, Op::kInternal};
    std::string key;
    for (int i = 1 + pick(rng, 3); i > 0; --i) key += std::string("/") + names[pick(rng, 4)];
    Command c = make(ops[pick(rng, 9)], key, "v" + std::to_string(pick(rng, 5)));
    c.dir = pick(rng, 4) == 0;
    c.recursive = pick(rng, 3) == 0;
    if (pick(rng, 3) == 0) c.expire_at_ns = now_ + pick(rng, 20) * kSecond;
    if (pick(rng, 2) == 0) c.prev_value = "v" + std::to_string(pick(rng, 5));
    if (pick(rng, 2) == 0) c.prev_index = static_cast<uint64_t>(pick(rng, 40));
    c.refresh = c.expire_at_ns && pick(rng, 5) == 0;
    return c;
  }

  std::string mkdir(std::string key) {
    Command c = make(Op::kSet, key);
    c.dir = true;
    return ok(c);
  }

  std::string get(std::string key, bool recursive = false, bool sorted = false) {
    auto res = store_.get(key, recursive, sorted, now_);
    if (auto* e = std::get_if<Error>(&res)) return e->to_json();
    return render_event(std::get<Event>(res));
  }

  Store store_;
  int64_t now_ = kStart;
  uint64_t next_request_ = 1;
};

}  // namespace kvd::v2
