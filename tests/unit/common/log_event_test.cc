// common/log_event: the payload of a structured event, its capnslog text, and the rate limit
// of repeated events.
#include "common/log_event.h"

#include <gtest/gtest.h>

#include <thread>

namespace kvd::logev {
namespace {

TEST(LogEventTest, encode_decode_fieldsAsJsonMembers) {
  const std::string p = encode("slow fdatasync", {dur("took", std::chrono::milliseconds(1500)),
                                                  dur("expected-duration", std::chrono::seconds(1)),
                                                  num("entries", 3), str("key", "/a \"b\"\n"),
                                                  num("ok", true), count("suppressed", 0),
                                                  count("dropped", 2), id("peer", 0xabc)});
  ASSERT_TRUE(is_event(p));
  const Decoded d = decode(p);
  EXPECT_EQ(d.msg, "slow fdatasync");
  EXPECT_EQ(d.fields,
            R"("took":"1.5s","expected-duration":"1s","entries":3,"key":"/a \"b\"\n",)"
            R"("ok":true,"dropped":2,"peer":"abc")");
}

TEST(LogEventTest, text_capnslogRendering) {
  EXPECT_EQ(text(encode("no leader", {str("reachable", "1 of 3, or so"), num("term", 7)})),
            "no leader (reachable=\"1 of 3, or so\", term=7)");
  EXPECT_EQ(text(encode("plain", {})), "plain");
  EXPECT_EQ(text(encode("escaped", {str("v", "a\\\",b")})), "escaped (v=\"a\\\\\\\",b\")");
}

TEST(LogEventTest, plainMessages_areNotEvents) {
  // What spdlog gets from an ordinary call is written as it is, even with a separator in it.
  for (std::string_view s : {"", "hello", "a\x1f" "b", "\x1e" "no fields mark"}) {
    EXPECT_FALSE(is_event(s)) << s;
    EXPECT_EQ(decode(s).msg, s);
    EXPECT_EQ(text(s), s);
  }
}

TEST(LogEventTest, repeats_firstThenOnePerIntervalWithTheCountHeldBack) {
  Repeats r(std::chrono::milliseconds(200));
  uint64_t suppressed = 99;
  ASSERT_TRUE(r.allow(&suppressed));
  EXPECT_EQ(suppressed, 0u);
  EXPECT_FALSE(r.allow(&suppressed));
  EXPECT_FALSE(r.allow(&suppressed, 5));
  // Wait out the interval: bounded polling, not a fixed sleep.
  bool allowed = false;
  int held_polls = 0;
  for (int i = 0; i < 500 && !allowed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    allowed = r.allow(&suppressed);
    if (!allowed) ++held_polls;
  }
  ASSERT_TRUE(allowed);
  // The 6 held back before the polling, and each poll that was held back too.
  EXPECT_EQ(suppressed, 6u + static_cast<uint64_t>(held_polls));
  EXPECT_FALSE(r.allow(&suppressed));
}

}  // namespace
}  // namespace kvd::logev
