// TTL rendering and expiry (shared spec v2-keys-api.md §3, §7).
#include "tests/unit/api_v2/store_test_util.h"

namespace kvd::v2 {
namespace {

TEST_F(StoreTest, get_ttlRoundsUp) {
  ok(with_ttl(make(Op::kSet, "/t", "v"), 10));
  now_ += 500'000'000;  // 9.5 s left
  EXPECT_EQ(get("/t"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/t\",\"value\":\"v\",\"expiration\":"
            "\"2027-01-15T08:00:10Z\",\"ttl\":10,\"modifiedIndex\":1,\"createdIndex\":1}}\n");
  now_ += 9 * kSecond;  // 0.5 s left
  auto ev = std::get<Event>(store_.get("/t", false, false, now_));
  EXPECT_EQ(ev.node.ttl, 1);
}

TEST_F(StoreTest, get_ttlOmittedWhenOverdueLessThanOneSecond) {
  ok(with_ttl(make(Op::kSet, "/t", "v"), 1));
  now_ += 1'700'000'000;  // overdue by 0.7 s
  EXPECT_EQ(get("/t"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/t\",\"value\":\"v\",\"expiration\":"
            "\"2027-01-15T08:00:01Z\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, get_ttlNegativeTruncatedWhenOverdue) {
  ok(with_ttl(make(Op::kSet, "/t", "v"), 1));
  now_ += 3'500'000'000;  // overdue by 2.5 s
  auto ev = std::get<Event>(store_.get("/t", false, false, now_));
  EXPECT_EQ(ev.node.ttl, -2);
}

TEST_F(StoreTest, set_ttlZeroRendersExpirationWithoutTtl) {
  now_ += 130'989'120;
  EXPECT_EQ(ok(with_ttl(make(Op::kSet, "/z", "v"), 0)),
            "{\"action\":\"set\",\"node\":{\"key\":\"/z\",\"value\":\"v\",\"expiration\":"
            "\"2027-01-15T08:00:00.13098912Z\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, next_expiration_isEarliestDeadline) {
  EXPECT_FALSE(store_.next_expiration_ns().has_value());
  ok(with_ttl(make(Op::kSet, "/a", "v"), 30));
  ok(with_ttl(make(Op::kSet, "/b", "v"), 10));
  EXPECT_EQ(store_.next_expiration_ns(), kStart + 10 * kSecond);
}

TEST_F(StoreTest, expire_nothingDueKeepsIndex) {
  ok(with_ttl(make(Op::kSet, "/a", "v"), 30));
  auto res = apply(make(Op::kExpire, ""));
  const Event& ev = std::get<Event>(res);
  EXPECT_EQ(ev.action, Action::kExpire);
  EXPECT_EQ(ev.etcd_index, 1u);
  EXPECT_EQ(store_.index(), 1u);
  EXPECT_EQ(store_.stats().expire_count, 0u);
}

TEST_F(StoreTest, expire_removesDueNodesInDeadlineOrderEachWithOwnIndex) {
  ok(with_ttl(make(Op::kSet, "/late", "1"), 5));
  ok(with_ttl(make(Op::kSet, "/early", "2"), 2));
  ok(with_ttl(make(Op::kSet, "/never", "3"), 100));
  std::vector<std::string> seen;
  store_.watch("/", true, true, 0, [&](const auto& e) { seen.push_back(render_event(*e)); });
  now_ += 5 * kSecond;  // deadline <= now expires: /late is due exactly now
  auto res = apply(make(Op::kExpire, ""));
  EXPECT_EQ(std::get<Event>(res).etcd_index, 5u);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0],
            "{\"action\":\"expire\",\"node\":{\"key\":\"/early\",\"modifiedIndex\":4,"
            "\"createdIndex\":2},\"prevNode\":{\"key\":\"/early\",\"value\":\"2\",\"expiration\":"
            "\"2027-01-15T08:00:02Z\",\"ttl\":-3,\"modifiedIndex\":2,\"createdIndex\":2}}\n");
  EXPECT_EQ(seen[1],
            "{\"action\":\"expire\",\"node\":{\"key\":\"/late\",\"modifiedIndex\":5,"
            "\"createdIndex\":1},\"prevNode\":{\"key\":\"/late\",\"value\":\"1\",\"expiration\":"
            "\"2027-01-15T08:00:05Z\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
  EXPECT_EQ(store_.stats().expire_count, 2u);
  EXPECT_EQ(store_.next_expiration_ns(), kStart + 100 * kSecond);
  store_.unwatch(1);
}

TEST_F(StoreTest, expire_dirRemovesSubtreeAsOneEvent) {
  Command c = with_ttl(make(Op::kSet, "/d"), 1);
  c.dir = true;
  ok(c);
  set("/d/a", "1");
  ok(with_ttl(make(Op::kSet, "/d/b", "2"), 50));
  now_ += 2 * kSecond;
  apply(make(Op::kExpire, ""));
  EXPECT_EQ(store_.index(), 4u);
  EXPECT_EQ(store_.stats().expire_count, 1u);
  EXPECT_FALSE(store_.next_expiration_ns().has_value());
  EXPECT_EQ(get("/d"), "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/d\",\"index\":4}\n");
}

TEST_F(StoreTest, update_ttlCanBeAddedAndRemoved) {
  set("/k", "v");
  ok(with_ttl(make(Op::kUpdate, "/k", "v"), 5));
  EXPECT_EQ(store_.next_expiration_ns(), kStart + 5 * kSecond);
  ok(make(Op::kUpdate, "/k", "v"));
  EXPECT_FALSE(store_.next_expiration_ns().has_value());
}

TEST_F(StoreTest, set_refreshOfPermanentKeyGivesTtl) {
  set("/k", "v");
  Command c = with_ttl(make(Op::kSet, "/k"), 7);
  c.refresh = true;
  ok(c);
  EXPECT_EQ(store_.next_expiration_ns(), kStart + 7 * kSecond);
}

TEST_F(StoreTest, delete_ttlNodeLeavesTtlIndex) {
  ok(with_ttl(make(Op::kSet, "/k", "v"), 7));
  ok(make(Op::kDelete, "/k"));
  EXPECT_FALSE(store_.next_expiration_ns().has_value());
}

TEST_F(StoreTest, get_listingShowsChildTtl) {
  ok(with_ttl(make(Op::kSet, "/d/t", "v"), 3));
  EXPECT_EQ(get("/d"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/d\",\"dir\":true,\"nodes\":[{\"key\":"
            "\"/d/t\",\"value\":\"v\",\"expiration\":\"2027-01-15T08:00:03Z\",\"ttl\":3,"
            "\"modifiedIndex\":1,\"createdIndex\":1}],\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, expire_atRecoveredStateMatchesOriginal) {
  ok(with_ttl(make(Op::kSet, "/a", "1"), 1));
  ok(with_ttl(make(Op::kSet, "/b", "2"), 2));
  Store copy;
  ASSERT_TRUE(copy.recover(store_.save()));
  now_ += 3 * kSecond;
  Command c = make(Op::kExpire, "");
  apply(c);
  copy.apply(c);
  EXPECT_EQ(copy.index(), 4u);
  EXPECT_EQ(copy.save(), store_.save());
}

}  // namespace
}  // namespace kvd::v2
