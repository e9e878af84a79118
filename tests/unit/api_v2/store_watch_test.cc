// Watches and the event history (shared spec v2-keys-api.md §6, §8).
#include "tests/unit/api_v2/store_test_util.h"

#include <memory>
#include <vector>

namespace kvd::v2 {
namespace {

class Recorder {
 public:
  WatchCallback callback() {
    return [this](const std::shared_ptr<const Event>& e) {
      events.push_back(*e);
      delivered.push_back(e);
    };
  }
  std::vector<Event> events;
  std::vector<std::shared_ptr<const Event>> delivered;  // the objects each delivery carried
};

TEST_F(StoreTest, watch_firesOnceForExactKey) {
  Recorder r;
  WatchResult w = store_.watch("/w1", false, false, 0, r.callback());
  EXPECT_FALSE(w.error);
  EXPECT_FALSE(w.event);
  EXPECT_NE(w.id, 0u);
  EXPECT_EQ(store_.watcher_count(), 1u);
  set("/w1", "hello");
  set("/w1", "again");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(render_event(r.events[0]),
            "{\"action\":\"set\",\"node\":{\"key\":\"/w1\",\"value\":\"hello\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
  EXPECT_EQ(store_.watcher_count(), 0u);
}

TEST_F(StoreTest, watch_etcdIndexIsIndexAtRegistration) {
  set("/a", "1");
  set("/a", "2");
  Recorder r;
  WatchResult w = store_.watch("/a", false, false, 0, r.callback());
  EXPECT_EQ(w.etcd_index, 2u);
}

TEST_F(StoreTest, watch_deliveriesOfOneEventShareOneObject) {
  Recorder a, b, stream;
  store_.watch("/s", false, false, 0, a.callback());
  store_.watch("/", true, false, 0, b.callback());
  store_.watch("/", true, true, 0, stream.callback());
  set("/s", "one");
  ASSERT_EQ(a.delivered.size(), 1u);
  ASSERT_EQ(b.delivered.size(), 1u);
  ASSERT_EQ(stream.delivered.size(), 1u);
  ASSERT_NE(a.delivered[0], nullptr);
  EXPECT_EQ(a.delivered[0].get(), b.delivered[0].get());  // one event, not a copy per watcher
  EXPECT_EQ(a.delivered[0].get(), stream.delivered[0].get());
  EXPECT_EQ(a.delivered[0]->node.value, "one");
  set("/s", "two");  // only the stream is still there: a new event
  ASSERT_EQ(stream.delivered.size(), 2u);
  EXPECT_NE(stream.delivered[1].get(), stream.delivered[0].get());
  EXPECT_EQ(stream.delivered[1]->node.value, "two");
}

TEST_F(StoreTest, watch_nonRecursiveDirIgnoresChildren) {
  mkdir("/d");
  Recorder r;
  store_.watch("/d", false, false, 0, r.callback());
  set("/d/child", "1");
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(store_.watcher_count(), 1u);
}

TEST_F(StoreTest, watch_recursiveSeesDescendants) {
  Recorder r;
  store_.watch("/d", true, false, 0, r.callback());
  set("/dx", "not below");
  set("/d/a/b", "1");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].node.key, "/d/a/b");
}

TEST_F(StoreTest, watch_rootRecursiveSeesEverythingVisible) {
  Recorder r;
  store_.watch("/", true, true, 0, r.callback());
  set("/a", "1");
  set("/_h", "1");
  set("/b/_h/c", "1");
  set("/b/c", "1");
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].node.key, "/a");
  EXPECT_EQ(r.events[1].node.key, "/b/c");
}

TEST_F(StoreTest, watch_recursiveSkipsHiddenChildren) {
  Recorder r;
  store_.watch("/hw", true, false, 0, r.callback());
  set("/hw/_secret", "s");
  EXPECT_TRUE(r.events.empty());
  set("/hw/open", "o");
  ASSERT_EQ(r.events.size(), 1u);
}

TEST_F(StoreTest, watch_onHiddenPathFires) {
  Recorder direct, rooted;
  store_.watch("/hw/_secret", false, false, 0, direct.callback());
  store_.watch("/hw/_dir", true, false, 0, rooted.callback());
  set("/hw/_secret", "s");
  set("/hw/_dir/x", "s");
  EXPECT_EQ(direct.events.size(), 1u);
  EXPECT_EQ(rooted.events.size(), 1u);
}

TEST_F(StoreTest, watch_ancestorDeleteDeliversAncestorEvent) {
  set("/wd/a/b", "1");
  Recorder r;
  store_.watch("/wd/a/b", false, false, 0, r.callback());
  Command c = make(Op::kDelete, "/wd");
  c.recursive = true;
  ok(c);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(render_event(r.events[0]),
            "{\"action\":\"delete\",\"node\":{\"key\":\"/wd\",\"dir\":true,\"modifiedIndex\":2,"
            "\"createdIndex\":1},\"prevNode\":{\"key\":\"/wd\",\"dir\":true,\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, watch_ancestorDeleteReachesWatchOfMissingDescendant) {
  mkdir("/wd");
  Recorder r;
  store_.watch("/wd/none", false, false, 0, r.callback());
  Command c = make(Op::kDelete, "/wd");
  c.dir = true;
  ok(c);
  // Only existing nodes are visited when a subtree is removed, as in etcd.
  EXPECT_TRUE(r.events.empty());
}

TEST_F(StoreTest, watch_ancestorExpireDeliversAncestorEvent) {
  Command d = with_ttl(make(Op::kSet, "/e"), 1);
  d.dir = true;
  ok(d);
  set("/e/_hidden/f", "1");
  Recorder r;
  store_.watch("/e/_hidden/f", false, false, 0, r.callback());
  now_ += 2 * kSecond;
  apply(make(Op::kExpire, ""));
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].action, Action::kExpire);
  EXPECT_EQ(r.events[0].node.key, "/e");
}

TEST_F(StoreTest, watch_refreshNeverDelivered) {
  ok(with_ttl(make(Op::kSet, "/r", "v"), 10));
  Recorder live;
  store_.watch("/r", false, false, 0, live.callback());
  Command c = with_ttl(make(Op::kSet, "/r"), 20);
  c.refresh = true;
  ok(c);
  EXPECT_TRUE(live.events.empty());
  Recorder hist;
  WatchResult w = store_.watch("/r", false, false, 2, hist.callback());
  EXPECT_FALSE(w.event);
  EXPECT_EQ(store_.watcher_count(), 2u);
}

TEST_F(StoreTest, watch_sinceIndexFoundInHistoryAnswersAtOnce) {
  set("/a", "1");
  set("/b", "1");
  set("/a", "2");
  Recorder r;
  WatchResult w = store_.watch("/a", false, false, 2, r.callback());
  ASSERT_TRUE(w.event);
  EXPECT_EQ(w.event->node.modified_index, 3u);
  EXPECT_EQ(w.event->etcd_index, 3u);
  EXPECT_EQ(w.etcd_index, 3u);
  EXPECT_EQ(w.id, 0u);
  EXPECT_EQ(store_.watcher_count(), 0u);
}

TEST_F(StoreTest, watch_sinceIndexInFutureWaitsForIt) {
  Recorder r;
  store_.watch("/a", false, false, 3, r.callback());
  set("/a", "1");
  set("/a", "2");
  EXPECT_TRUE(r.events.empty());
  set("/a", "3");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].node.modified_index, 3u);
}

TEST_F(StoreTest, watch_historyReturnsHiddenKeysForRecursiveWatch) {
  set("/hw/_secret", "s");
  Recorder r;
  WatchResult w = store_.watch("/hw", true, false, 1, r.callback());
  ASSERT_TRUE(w.event);
  EXPECT_EQ(w.event->node.key, "/hw/_secret");
}

TEST_F(StoreTest, watch_historyPrefixQuirkForDeletedDir) {
  set("/wd/f", "1");
  Command c = make(Op::kDelete, "/wd");
  c.recursive = true;
  ok(c);
  WatchResult w = store_.watch("/wdx", false, false, 2, [](const auto&) {});
  ASSERT_TRUE(w.event);
  EXPECT_EQ(w.event->action, Action::kDelete);
  EXPECT_EQ(w.event->node.key, "/wd");
}

TEST_F(StoreTest, watch_historyClearedIs401) {
  for (int i = 0; i < 1005; ++i) set("/k", std::to_string(i));
  WatchResult w = store_.watch("/k", false, false, 1, [](const auto&) {});
  ASSERT_TRUE(w.error);
  EXPECT_EQ(w.error->to_json(),
            "{\"errorCode\":401,\"message\":\"The event in requested index is outdated and "
            "cleared\",\"cause\":\"the requested history has been cleared [6/1]\",\"index\":1005}\n");
  WatchResult oldest = store_.watch("/k", false, false, 6, [](const auto&) {});
  ASSERT_TRUE(oldest.event);
  EXPECT_EQ(oldest.event->node.value, "5");
}

TEST_F(StoreTest, watch_internalRecordsTakeHistorySlotsButNeverMatch) {
  ok(make(Op::kInternal, "/0/version", "3.4.0"));
  fail(make(Op::kSet, "/"));  // root is read only: no index, no history entry
  WatchResult w = store_.watch("/", true, false, 1, [](const auto&) {});
  EXPECT_FALSE(w.event);
  EXPECT_FALSE(w.error);
  EXPECT_EQ(store_.watcher_count(), 1u);
}

TEST_F(StoreTest, watch_streamStaysAndSeesEveryEvent) {
  Recorder r;
  WatchResult w = store_.watch("/s", true, true, 0, r.callback());
  set("/s/a", "1");
  set("/s/b", "2");
  EXPECT_EQ(r.events.size(), 2u);
  EXPECT_EQ(store_.watcher_count(), 1u);
  store_.unwatch(w.id);
  set("/s/c", "3");
  EXPECT_EQ(r.events.size(), 2u);
  EXPECT_EQ(store_.watcher_count(), 0u);
}

TEST_F(StoreTest, watch_streamGetsOwnDeleteTwiceAsEtcdDoes) {
  set("/s", "1");
  Recorder r;
  WatchResult w = store_.watch("/s", false, true, 0, r.callback());
  ok(make(Op::kDelete, "/s"));
  EXPECT_EQ(r.events.size(), 2u);
  store_.unwatch(w.id);
}

TEST_F(StoreTest, unwatch_removesWaitingWatcher) {
  WatchResult w = store_.watch("/a", false, false, 0, [](const auto&) { FAIL(); });
  store_.unwatch(w.id);
  store_.unwatch(w.id);  // twice is harmless
  set("/a", "1");
  EXPECT_EQ(store_.watcher_count(), 0u);
}

TEST_F(StoreTest, watch_callbackMayReenterStore) {
  std::string seen;
  WatchResult inner{};
  store_.watch("/a", false, false, 0, [&](const auto&) {
    seen = get("/a");
    inner = store_.watch("/a", false, false, 0, [](const auto&) {});
  });
  set("/a", "1");
  EXPECT_EQ(seen,
            "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"value\":\"1\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
  EXPECT_EQ(store_.watcher_count(), 1u);
  store_.unwatch(inner.id);
}

TEST_F(StoreTest, watch_callbackUnwatchingAnotherStopsItsDelivery) {
  WatcherId second = 0;
  int second_calls = 0;
  store_.watch("/", true, true, 0, [&](const auto&) { store_.unwatch(second); });
  second = store_.watch("/", true, true, 0, [&](const auto&) { ++second_calls; }).id;
  set("/a", "1");
  EXPECT_EQ(second_calls, 0);
  store_.unwatch(1);
}

TEST_F(StoreTest, watch_manyIdleWatchersOnlyMatchingOnesFire) {
  int fired = 0;
  for (int i = 0; i < 5000; ++i)
    store_.watch("/idle/" + std::to_string(i), false, false, 0, [&](const auto&) { ++fired; });
  set("/idle/42", "x");
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(store_.watcher_count(), 4999u);
  for (WatcherId id = 1; id <= 5000; ++id) store_.unwatch(id);
  EXPECT_EQ(store_.watcher_count(), 0u);
}

TEST_F(StoreTest, watch_sinceIndexZeroIgnoresHistory) {
  set("/a", "1");
  Recorder r;
  WatchResult w = store_.watch("/a", false, false, 0, r.callback());
  EXPECT_FALSE(w.event);
  EXPECT_NE(w.id, 0u);
  set("/a", "2");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].node.value, "2");
}

TEST_F(StoreTest, watch_recursiveNotWokenByHiddenDelete) {
  set("/h/_x/y", "1");
  Recorder parent, inside;
  store_.watch("/h", true, false, 0, parent.callback());
  store_.watch("/h/_x/y", false, false, 0, inside.callback());
  Command c = make(Op::kDelete, "/h/_x");
  c.recursive = true;
  ok(c);
  EXPECT_TRUE(parent.events.empty());
  ASSERT_EQ(inside.events.size(), 1u);
  EXPECT_EQ(inside.events[0].node.key, "/h/_x");
}

TEST_F(StoreTest, watch_compareAndDeleteFiresExactWatcher) {
  set("/k", "1");
  Recorder r;
  store_.watch("/k", false, false, 0, r.callback());
  Command c = make(Op::kCompareAndDelete, "/k");
  c.prev_index = 1;
  ok(c);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].action, Action::kCompareAndDelete);
}

TEST_F(StoreTest, watch_updateOfDirFiresWithNewIndex) {
  mkdir("/d");
  Recorder r;
  store_.watch("/d", false, false, 0, r.callback());
  ok(with_ttl(make(Op::kUpdate, "/d"), 30));
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].node.modified_index, 2u);
}

}  // namespace
}  // namespace kvd::v2
