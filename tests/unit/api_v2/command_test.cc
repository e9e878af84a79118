// Command encode/decode: round trips and rejection of malformed bytes.
#include <gtest/gtest.h>

#include "api_v2/command.h"

namespace kvd::v2 {
namespace {

Command full_command() {
  Command c;
  c.op = Op::kCompareAndSwap;
  c.request_id = 0x0102030405060708ULL;
  c.now_ns = -5;
  c.key = "/a/b";
  c.value = std::string("v\0x", 3);
  c.dir = true;
  c.recursive = true;
  c.refresh = true;
  c.expire_at_ns = 1'800'000'000LL * 1'000'000'000;
  c.prev_value = "";
  c.prev_index = 42;
  return c;
}

TEST(CommandTest, encode_roundTripsEveryField) {
  Command c = full_command();
  Command out;
  ASSERT_TRUE(decode(encode(c), &out));
  EXPECT_EQ(out, c);
}

TEST(CommandTest, encode_roundTripsDefaults) {
  for (uint8_t op = 1; op <= 9; ++op) {
    Command c;
    c.op = static_cast<Op>(op);
    Command out;
    ASSERT_TRUE(decode(encode(c), &out));
    EXPECT_EQ(out, c);
  }
}

TEST(CommandTest, encode_layoutIsVersionOpThenLittleEndian) {
  Command c;
  c.op = Op::kDelete;
  c.request_id = 1;
  std::string b = encode(c);
  ASSERT_GE(b.size(), 10u);
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[1], 5);
  EXPECT_EQ(b[2], 1);
  EXPECT_EQ(b[9], 0);
  // version, op, request_id, now_ns, 2 empty strings, 3 bools, 2 absent optionals, prev_index.
  EXPECT_EQ(b.size(), 1u + 1 + 8 + 8 + 4 + 4 + 3 + 1 + 1 + 8);
}

TEST(CommandTest, decode_rejectsUnknownVersion) {
  std::string b = encode(full_command());
  b[0] = 2;
  Command out;
  EXPECT_FALSE(decode(b, &out));
}

TEST(CommandTest, decode_rejectsUnknownOp) {
  Command out;
  for (uint8_t op : {0, 11, 255}) {
    std::string b = encode(full_command());
    b[1] = static_cast<char>(op);
    EXPECT_FALSE(decode(b, &out)) << int(op);
  }
}

TEST(CommandTest, decode_rejectsEveryTruncation) {
  std::string b = encode(full_command());
  Command out;
  for (size_t len = 0; len < b.size(); ++len)
    EXPECT_FALSE(decode(std::string_view(b).substr(0, len), &out)) << len;
}

TEST(CommandTest, decode_rejectsTrailingBytes) {
  Command out;
  EXPECT_FALSE(decode(encode(full_command()) + '\0', &out));
}

TEST(CommandTest, decode_rejectsNonBooleanByte) {
  Command c;
  std::string b = encode(c);
  // dir sits after version, op, request_id, now_ns and two empty strings.
  size_t dir_pos = 1 + 1 + 8 + 8 + 4 + 4;
  b[dir_pos] = 2;
  Command out;
  EXPECT_FALSE(decode(b, &out));
}

TEST(CommandTest, decode_rejectsOversizedStringLength) {
  Command c;
  std::string b = encode(c);
  size_t key_len_pos = 1 + 1 + 8 + 8;
  b[key_len_pos + 3] = static_cast<char>(0x7f);
  Command out;
  EXPECT_FALSE(decode(b, &out));
}

}  // namespace
}  // namespace kvd::v2
