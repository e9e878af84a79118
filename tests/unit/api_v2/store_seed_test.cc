// Store::dump() and Store::seed(): the whole state as plain values and back, and the refusal of a
// seed that breaks the store's invariants (the store is then unchanged).
#include "tests/unit/api_v2/store_test_util.h"

namespace kvd::v2 {
namespace {

TEST_F(StoreTest, seed_ofDumpRebuildsTheSameStore) {
  fill_sample();
  ok(make(Op::kCreateInOrder, "/q", "job"));
  const StoreSeed seed = store_.dump();
  EXPECT_EQ(seed.nodes.size(), 6u);  // /a /a/_h /q /q/<n> /t /tdir
  EXPECT_EQ(seed.history.size(), 7u);
  EXPECT_FALSE(seed.history[4].event.has_value());  // the internal record's slot

  Store other;
  ASSERT_EQ(other.seed(seed), "");
  EXPECT_EQ(other.save(), store_.save());
  // It works as a store: the next write takes the next index, TTLs expire.
  Command expire = make(Op::kExpire, "");
  expire.now_ns = now_ + 100 * kSecond;
  EXPECT_EQ(std::get<Event>(other.apply(expire)).etcd_index,
            std::get<Event>(store_.apply(expire)).etcd_index);
  EXPECT_EQ(other.save(), store_.save());
}

TEST_F(StoreTest, seed_refusesBrokenSeedsAndKeepsTheStore) {
  set("/keep", "me");
  const std::string before = store_.save();
  auto refused = [&](StoreSeed s, const std::string& why) {
    EXPECT_NE(store_.seed(s).find(why), std::string::npos) << why;
    EXPECT_EQ(store_.save(), before);
  };
  StoreSeed s;
  s.index = 5;
  s.nodes = {{"/a/b", false, "x", std::nullopt, 1, 1}};
  refused(s, "parent");
  s.nodes = {{"/a", false, "x", std::nullopt, 1, 1}, {"/a/b", false, "y", std::nullopt, 2, 2}};
  refused(s, "parent");
  s.nodes = {{"/a", true, "", std::nullopt, 1, 1}, {"/a", true, "", std::nullopt, 1, 1}};
  refused(s, "twice");
  s.nodes = {{"/a/../b", false, "", std::nullopt, 1, 1}};
  refused(s, "clean");
  s.nodes = {{"/a", false, "x", std::nullopt, 9, 9}};
  refused(s, "index above");
  s.nodes = {};
  s.history = {{3, std::nullopt}, {2, std::nullopt}};
  refused(s, "out of order");
}

}  // namespace
}  // namespace kvd::v2
