// begin_image()/image_step(): an image made in steps while commands go on is, byte for byte,
// the image save() gave when it began; the commands in between behave as without it; a put
// that refuses, recover() and seed() end it.
#include <random>

#include "tests/unit/api_v2/store_test_util.h"

namespace kvd::v2 {
namespace {

// Runs image_step until the image ends, with steps of at most max_nodes nodes, calling between()
// before each step; returns the pieces concatenated and checks that each piece but the last
// has piece_bytes. The step count is bounded.
std::string walk(Store& s, size_t piece_bytes, const std::function<size_t()>& max_nodes,
                 const std::function<void()>& between, Store::ImageStep* last = nullptr) {
  std::string got;
  bool short_seen = false;
  auto put = [&](std::string_view piece) {
    EXPECT_FALSE(short_seen) << "a piece after a short one";
    EXPECT_GT(piece.size(), 0u);
    if (piece.size() != piece_bytes) short_seen = true;
    EXPECT_LE(piece.size(), piece_bytes);
    got.append(piece);
    return true;
  };
  Store::ImageStep r = Store::ImageStep::kMore;
  for (int i = 0; i < 1'000'000 && r == Store::ImageStep::kMore; ++i) {
    between();
    r = s.image_step(max_nodes(), put);
  }
  EXPECT_FALSE(s.image_in_progress());
  if (last) *last = r;
  return got;
}

TEST_F(StoreTest, imageStep_withoutChangesIsSavesImage) {
  fill_sample();
  for (int i = 0; i < 300; ++i) set("/bulk/d" + std::to_string(i % 7) + "/k" + std::to_string(i), "v");
  const std::string image = store_.save();
  for (size_t piece : {size_t{1}, size_t{50}, size_t{4096}, image.size(), image.size() + 1}) {
    for (size_t nodes : {size_t{1}, size_t{3}, size_t{1000}}) {
      store_.begin_image(piece);
      EXPECT_TRUE(store_.image_in_progress());
      Store::ImageStep last{};
      EXPECT_EQ(walk(store_, piece, [&] { return nodes; }, [] {}, &last), image)
          << "piece " << piece << " nodes " << nodes;
      EXPECT_EQ(last, Store::ImageStep::kDone);
    }
  }
}

TEST_F(StoreTest, imageStep_keepsWhatLaterChangesReplaceOrRemove) {
  // A tree the walk is inside of when everything changes: values, TTLs, a dir removed whole,
  // files replaced by set (a new node under the same name), new keys before and after the
  // cursor.
  for (int d = 0; d < 4; ++d) {
    for (int k = 0; k < 4; ++k) set("/d" + std::to_string(d) + "/k" + std::to_string(k), "old");
  }
  ok(with_ttl(make(Op::kSet, "/t", "ttl"), 30));
  const std::string image = store_.save();
  const uint64_t index = store_.index();
  store_.begin_image(16);
  std::string got;
  auto collect = [&](std::string_view p) {
    got.append(p);
    return true;
  };
  // Root and /d0 and its first child.
  ASSERT_EQ(store_.image_step(3, collect), Store::ImageStep::kMore);
  ok(make(Op::kDelete, "/d0/k3"));      // ahead, in the dir being written
  set("/d0/k1", "new");                 // replaced: a new node, same name
  ok(make(Op::kUpdate, "/d2/k0", "u"));  // changed in place, ahead
  Command rm = make(Op::kDelete, "/d1");
  rm.recursive = true;
  ok(rm);                                // a whole dir ahead
  set("/d1/k9", "made after");           // ... and made again
  set("/a", "before the cursor");
  set("/z", "after the cursor");
  ok(with_ttl(make(Op::kUpdate, "/t", "ttl2"), 60));
  Command cas = make(Op::kCompareAndSwap, "/d3/k3", "swapped");
  cas.prev_value = "old";
  ok(cas);
  now_ += 100 * kSecond;
  ok(make(Op::kExpire, ""));  // /t goes
  got += walk(store_, 16, [] { return size_t{2}; }, [] {});
  EXPECT_EQ(got, image);
  EXPECT_GT(store_.index(), index);
  // The store itself went on as without the image.
  EXPECT_TRUE(std::holds_alternative<Error>(store_.get("/t", false, false, now_)));
  Store copy;
  ASSERT_TRUE(copy.recover(image));
  EXPECT_EQ(copy.index(), index);
}

TEST_F(StoreTest, imageStep_randomizedChangesBetweenSteps) {
  for (unsigned seed = 1; seed <= 300; ++seed) {
    SCOPED_TRACE("seed=" + std::to_string(seed));
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return StoreTest::pick(rng, n); };
    auto random_command = [&] { return StoreTest::random_command(rng); };
    // a makes an image while the commands go on; b applies the same without one.
    Store a, b;
    for (int i = 0; i < 150; ++i) {
      now_ += pick(3) * kSecond / 2;
      Command c = random_command();
      a.apply(c);
      b.apply(c);
    }
    const std::string image = a.save();
    const size_t piece = 1 + static_cast<size_t>(pick(200));
    a.begin_image(piece);
    int changes = 0;
    auto between = [&] {
      for (int n = pick(4); n > 0; --n) {
        now_ += pick(3) * kSecond / 2;
        Command c = random_command();
        auto ra = a.apply(c);
        auto rb = b.apply(c);
        ASSERT_EQ(ra.index(), rb.index());
        if (ra.index() == 0) {
          ASSERT_EQ(render_event(std::get<Event>(ra)), render_event(std::get<Event>(rb)));
        } else {
          ASSERT_EQ(std::get<Error>(ra).to_json(), std::get<Error>(rb).to_json());
        }
        ++changes;
      }
    };
    Store::ImageStep last{};
    const std::string got =
        walk(a, piece, [&] { return static_cast<size_t>(1 + pick(3)); }, between, &last);
    ASSERT_EQ(last, Store::ImageStep::kDone);
    ASSERT_EQ(got, image) << "after " << changes << " changes";
    ASSERT_EQ(a.check_invariants(), "");
    ASSERT_EQ(a.save(), b.save());
    Store r;
    ASSERT_TRUE(r.recover(got));
  }
}

TEST_F(StoreTest, imageStep_stopsAtAPutThatRefuses) {
  fill_sample();
  store_.begin_image(8);
  int puts = 0;
  EXPECT_EQ(store_.image_step(1000, [&](std::string_view) { return ++puts < 3; }),
            Store::ImageStep::kStopped);
  EXPECT_EQ(puts, 3);
  EXPECT_FALSE(store_.image_in_progress());
  EXPECT_EQ(store_.image_step(1000, [](std::string_view) { return true; }),
            Store::ImageStep::kStopped);
}

TEST_F(StoreTest, imageStep_endsWhenTheStateIsReplaced) {
  fill_sample();
  const std::string image = store_.save();
  auto put = [](std::string_view) { return true; };
  store_.begin_image(8);
  ASSERT_EQ(store_.image_step(1, put), Store::ImageStep::kMore);
  ASSERT_TRUE(store_.recover(image));
  EXPECT_FALSE(store_.image_in_progress());
  EXPECT_EQ(store_.image_step(1, put), Store::ImageStep::kStopped);

  store_.begin_image(8);
  ASSERT_EQ(store_.image_step(1, put), Store::ImageStep::kMore);
  ASSERT_EQ(store_.seed(store_.dump()), "");
  EXPECT_FALSE(store_.image_in_progress());

  store_.begin_image(8);
  store_.end_image();
  EXPECT_FALSE(store_.image_in_progress());
}

}  // namespace
}  // namespace kvd::v2
