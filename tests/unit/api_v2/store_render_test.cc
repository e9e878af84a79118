// render_event and append_json_string: etcd's field order, omission rules and Go's JSON escaping
// (shared spec v2-keys-api.md §3).
#include "api_v2/render.h"
#include "common/go.h"
#include "tests/unit/api_v2/store_test_util.h"

namespace kvd::v2 {
namespace {

std::string json_string(std::string_view s) {
  std::string out;
  go::append_json_string(out, s);
  return out;
}

std::string rfc3339(int64_t ns) {
  std::string out;
  go::append_rfc3339_nano(out, ns);
  return out;
}

TEST(RenderTest, appendJsonString_goEscaping) {
  EXPECT_EQ(json_string("plain"), "\"plain\"");
  EXPECT_EQ(json_string("a\x08\x0c\x01<>&\t\r\n\"\\"),
            "\"a\\u0008\\u000c\\u0001\\u003c\\u003e\\u0026\\t\\r\\n\\\"\\\\\"");
  EXPECT_EQ(json_string("\x7f"), "\"\x7f\"");
  EXPECT_EQ(json_string("\xc3\xa9t\xc3\xa9"), "\"\xc3\xa9t\xc3\xa9\"");
}

TEST(RenderTest, appendJsonString_invalidUtf8AndLineSeparators) {
  // Observed on etcd 3.4.23: ff, U+2028, ED A0 80 (a surrogate), 'x', a truncated C3.
  EXPECT_EQ(json_string("\xff\xe2\x80\xa8\xed\xa0\x80x\xc3"),
            "\"\\ufffd\\u2028\\ufffd\\ufffd\\ufffdx\\ufffd\"");
  EXPECT_EQ(json_string("\xe2\x80\xa9"), "\"\\u2029\"");
  EXPECT_EQ(json_string("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"");
  EXPECT_EQ(json_string("\xc0\xaf"), "\"\\ufffd\\ufffd\"");        // overlong
  EXPECT_EQ(json_string("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  // > U+10FFFF
}

TEST(RenderTest, appendRfc3339Nano_dropsTrailingZeros) {
  constexpr int64_t s = 1'800'000'000LL * 1'000'000'000;
  EXPECT_EQ(rfc3339(s), "2027-01-15T08:00:00Z");
  EXPECT_EQ(rfc3339(s + 130'989'120), "2027-01-15T08:00:00.13098912Z");
  EXPECT_EQ(rfc3339(s + 1), "2027-01-15T08:00:00.000000001Z");
  EXPECT_EQ(rfc3339(s + 500'000'000), "2027-01-15T08:00:00.5Z");
  EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(rfc3339(951'782'400LL * 1'000'000'000), "2000-02-29T00:00:00Z");
  EXPECT_EQ(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
}

TEST(RenderTest, renderEvent_fieldOrderAndOmissions) {
  Event ev;
  ev.action = Action::kSet;
  ev.node.key = "/k";
  ev.node.value = "v";
  ev.node.expiration_ns = 1'800'000'000LL * 1'000'000'000;
  ev.node.ttl = 5;
  ev.node.modified_index = 9;
  ev.node.created_index = 3;
  NodeView prev;
  prev.key = "/k";
  prev.dir = true;
  prev.nodes.push_back(NodeView{});  // prevNode lists are never rendered by the store
  prev.nodes.clear();
  prev.modified_index = 2;
  prev.created_index = 1;
  ev.prev_node = prev;
  EXPECT_EQ(render_event(ev),
            "{\"action\":\"set\",\"node\":{\"key\":\"/k\",\"value\":\"v\",\"expiration\":"
            "\"2027-01-15T08:00:00Z\",\"ttl\":5,\"modifiedIndex\":9,\"createdIndex\":3},"
            "\"prevNode\":{\"key\":\"/k\",\"dir\":true,\"modifiedIndex\":2,\"createdIndex\":1}}\n");
}

TEST(RenderTest, renderEvent_noValueOnlyForWrites) {
  Event ev;
  ev.action = Action::kCompareAndSwap;
  ev.node.key = "/k";
  EXPECT_EQ(render_event(ev, true), "{\"action\":\"compareAndSwap\"}\n");
  ev.action = Action::kDelete;
  ev.node.modified_index = ev.node.created_index = 1;
  EXPECT_EQ(render_event(ev, true),
            "{\"action\":\"delete\",\"node\":{\"key\":\"/k\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST(RenderTest, eventCreated_matchesEtcdIsCreated) {
  Event ev;
  ev.action = Action::kCreate;
  EXPECT_TRUE(ev.created());
  ev.action = Action::kSet;
  EXPECT_TRUE(ev.created());
  ev.prev_node = NodeView{};
  EXPECT_FALSE(ev.created());
  ev.action = Action::kUpdate;
  ev.prev_node.reset();
  EXPECT_FALSE(ev.created());
}

TEST(RenderTest, actionName_allActions) {
  EXPECT_EQ(action_name(Action::kGet), "get");
  EXPECT_EQ(action_name(Action::kSet), "set");
  EXPECT_EQ(action_name(Action::kCreate), "create");
  EXPECT_EQ(action_name(Action::kUpdate), "update");
  EXPECT_EQ(action_name(Action::kCompareAndSwap), "compareAndSwap");
  EXPECT_EQ(action_name(Action::kDelete), "delete");
  EXPECT_EQ(action_name(Action::kCompareAndDelete), "compareAndDelete");
  EXPECT_EQ(action_name(Action::kExpire), "expire");
}

TEST_F(StoreTest, set_escapedKeyAndValueRendered) {
  EXPECT_EQ(set("/a<b>/\xc3\xa9", "x&y"),
            "{\"action\":\"set\",\"node\":{\"key\":\"/a\\u003cb\\u003e/\xc3\xa9\",\"value\":"
            "\"x\\u0026y\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

}  // namespace
}  // namespace kvd::v2
