// save()/recover(): round trips of the whole state (tree with TTLs, index, internal records,
// history, statistics), rejection of malformed images, and a seeded randomized round trip that
// also replays the same commands on the original and the recovered store.
#include <cstdio>
#include <random>

#include "tests/unit/api_v2/store_test_util.h"

namespace kvd::v2 {
namespace {

// Everything observable about a store, for comparing two of them.
std::string observe(Store& s, int64_t now_ns) {
  std::string out;
  auto res = s.get("/", true, true, now_ns);
  out += render_event(std::get<Event>(res));
  out += std::to_string(s.index()) + "\n";
  auto next = s.next_expiration_ns();
  out += next ? std::to_string(*next) : "none";
  out += "\n";
  for (const auto& [k, v] : s.internal()) out += k + "=" + v + "\n";
  // The history, as seen by a recursive watch from index 1 onward.
  for (uint64_t i = 1; i <= s.index(); ++i) {
    WatchResult w = s.watch("/", true, false, i, [](const auto&) {});
    if (w.error) {
      out += w.error->to_json();
    } else if (w.event) {
      out += render_event(*w.event);
    } else {
      s.unwatch(w.id);
      out += "waiting\n";
    }
  }
  return out;
}

TEST_F(StoreTest, recover_roundTripKeepsEverything) {
  fill_sample();
  std::string image = store_.save();

  Store other;
  ASSERT_TRUE(other.recover(image));
  EXPECT_EQ(other.check_invariants(), "");
  EXPECT_EQ(other.save(), image);
  EXPECT_EQ(render_store_stats(other.stats(), other.watcher_count()),
            render_store_stats(store_.stats(), store_.watcher_count()));
  EXPECT_EQ(observe(other, now_), observe(store_, now_));
  std::string hidden = render_event(std::get<Event>(other.get("/a/_h", false, false, now_)));
  EXPECT_EQ(hidden,
            "{\"action\":\"get\",\"node\":{\"key\":\"/a/_h\",\"value\":\"hidden\",\"modifiedIndex\":2,"
            "\"createdIndex\":2}}\n");
}

TEST_F(StoreTest, recover_keepsWatchers) {
  int fired = 0;
  store_.watch("/w", false, false, 0, [&](const auto&) { ++fired; });
  Store other;
  other.apply(make(Op::kSet, "/x", "1"));
  ASSERT_TRUE(store_.recover(other.save()));
  EXPECT_EQ(store_.watcher_count(), 1u);
  set("/w", "1");
  EXPECT_EQ(fired, 1);
}

TEST_F(StoreTest, recover_rejectsMalformedAndLeavesStoreUnchanged) {
  set("/keep", "1");
  std::string before = store_.save();
  Store other;
  other.apply(make(Op::kSet, "/a/b", "x"));
  other.apply(with_ttl(make(Op::kSet, "/t", "y"), 5));
  std::string image = other.save();

  EXPECT_FALSE(store_.recover(""));
  EXPECT_FALSE(store_.recover("garbage"));
  std::string bad_version = image;
  bad_version[8] = 2;
  EXPECT_FALSE(store_.recover(bad_version));
  EXPECT_FALSE(store_.recover(image + "x"));
  // Every truncation is rejected.
  for (size_t len = 0; len < image.size(); ++len)
    EXPECT_FALSE(store_.recover(std::string_view(image).substr(0, len))) << "length " << len;
  // An index lower than the tree's indexes is rejected.
  std::string low_index = image;
  low_index[9] = 0;
  EXPECT_FALSE(store_.recover(low_index));
  EXPECT_EQ(store_.save(), before);
}

TEST_F(StoreTest, recover_rejectsDuplicateChildNames) {
  Store other;
  other.apply(make(Op::kSet, "/aa", "1"));
  other.apply(make(Op::kSet, "/ab", "1"));
  std::string image = other.save();
  size_t pos = image.find("ab");
  ASSERT_NE(pos, std::string::npos);
  image[pos + 1] = 'a';
  EXPECT_FALSE(store_.recover(image));
}

TEST_F(StoreTest, recover_randomizedRoundTrips) {
  unsigned seed = std::random_device{}();
  std::printf("recover_randomizedRoundTrips seed=%u\n", seed);
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return StoreTest::pick(rng, n); };
  auto random_command = [&] { return StoreTest::random_command(rng); };

  for (int round = 0; round < 20; ++round) {
    Store a;
    for (int i = 0; i < 200; ++i) {
      now_ += pick(3) * kSecond / 2;
      a.apply(random_command());
      ASSERT_EQ(a.check_invariants(), "") << "step " << i;
    }
    Store b;
    ASSERT_TRUE(b.recover(a.save()));
    ASSERT_EQ(b.check_invariants(), "");
    ASSERT_EQ(b.save(), a.save());
    ASSERT_EQ(observe(b, now_), observe(a, now_));
    // The same commands keep the two in step.
    for (int i = 0; i < 50; ++i) {
      now_ += pick(3) * kSecond / 2;
      Command c = random_command();
      auto ra = a.apply(c);
      auto rb = b.apply(c);
      ASSERT_EQ(ra.index(), rb.index());
      if (ra.index() == 0)
        ASSERT_EQ(render_event(std::get<Event>(ra)), render_event(std::get<Event>(rb)));
      else
        ASSERT_EQ(std::get<Error>(ra).to_json(), std::get<Error>(rb).to_json());
    }
    ASSERT_EQ(b.save(), a.save());
  }
}

}  // namespace
}  // namespace kvd::v2
