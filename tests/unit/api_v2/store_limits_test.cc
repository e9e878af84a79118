// The store at kvd's key-depth limit (api_v2/keys_request.h kMaxKeyDepth): writing, reading
// recursively, rendering, watching, snapshotting and deleting the deepest allowed tree all fit in
// a 1 MiB stack (the server's threads have 8 MiB), so no request can exhaust a thread's stack.
#include <pthread.h>

#include <functional>

#include "api_v2/keys_request.h"
#include "tests/unit/api_v2/store_test_util.h"

namespace kvd::v2 {
namespace {

// Runs fn on a thread with a 1 MiB stack and waits for it.
void on_small_stack(const std::function<void()>& fn) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 1 << 20), 0);
  pthread_t t;
  auto run = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&t, &attr, run, const_cast<std::function<void()>*>(&fn)), 0);
  ASSERT_EQ(pthread_join(t, nullptr), 0);
  pthread_attr_destroy(&attr);
}

TEST_F(StoreTest, depthLimit_deepestTreeIsWalkedOnASmallStack) {
  std::string deepest;
  for (size_t i = 0; i < kMaxKeyDepth; ++i) deepest += "/d";
  size_t seen = 0;
  on_small_stack([&] {
    store_.watch("/", true, true, 0, [&](const auto&) { ++seen; });
    ok(make(Op::kSet, deepest, "bottom"));
    // A recursive read of the whole tree, rendered as a response.
    auto all = store_.get("/", true, true, now_);
    ASSERT_TRUE(std::holds_alternative<Event>(all));
    const std::string body = render_event(std::get<Event>(all));
    EXPECT_NE(body.find("\"value\":\"bottom\""), std::string::npos);
    // Snapshot and recovery.
    Store copy;
    ASSERT_TRUE(copy.recover(store_.save()));
    EXPECT_EQ(render_event(std::get<Event>(copy.get(deepest, false, false, now_))),
              render_event(std::get<Event>(store_.get(deepest, false, false, now_))));
    // A recursive delete from the top notifies the watcher and frees every level.
    Command rm = make(Op::kDelete, "/d");
    rm.dir = true;
    rm.recursive = true;
    ok(rm);
  });
  EXPECT_EQ(seen, 2u);  // the set and the delete
  EXPECT_TRUE(std::holds_alternative<Error>(store_.get("/d", false, false, now_)));
}

}  // namespace
}  // namespace kvd::v2
