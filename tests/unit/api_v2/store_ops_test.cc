// Store operations: set, create, update, compareAndSwap, delete, compareAndDelete, POST, get,
// hidden keys, internal records and statistics (shared spec v2-keys-api.md §3, §5, §6, §9).
#include "tests/unit/api_v2/store_test_util.h"

namespace kvd::v2 {
namespace {

TEST_F(StoreTest, get_emptyRoot) {
  EXPECT_EQ(get("/"), "{\"action\":\"get\",\"node\":{\"dir\":true}}\n");
  EXPECT_EQ(store_.index(), 0u);
}

TEST_F(StoreTest, set_createsFileAndReportsCreated) {
  auto res = apply(make(Op::kSet, "/foo", "bar"));
  ASSERT_TRUE(std::holds_alternative<Event>(res));
  const Event& ev = std::get<Event>(res);
  EXPECT_TRUE(ev.created());
  EXPECT_EQ(ev.etcd_index, 1u);
  EXPECT_EQ(render_event(ev),
            "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
  EXPECT_EQ(get("/foo"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, set_replacesNodeWithNewCreatedIndex) {
  set("/c1", "a");
  auto res = apply(make(Op::kSet, "/c1", "b"));
  const Event& ev = std::get<Event>(res);
  EXPECT_FALSE(ev.created());
  EXPECT_EQ(render_event(ev),
            "{\"action\":\"set\",\"node\":{\"key\":\"/c1\",\"value\":\"b\",\"modifiedIndex\":2,"
            "\"createdIndex\":2},\"prevNode\":{\"key\":\"/c1\",\"value\":\"a\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, set_emptyValueRendered) {
  EXPECT_EQ(set("/e", ""),
            "{\"action\":\"set\",\"node\":{\"key\":\"/e\",\"value\":\"\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, set_createsIntermediateDirsWithWriteIndex) {
  set("/x", "1");
  set("/a/b/c", "v");
  EXPECT_EQ(get("/a", true),
            "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"dir\":true,\"nodes\":[{\"key\":\"/a/b\","
            "\"dir\":true,\"nodes\":[{\"key\":\"/a/b/c\",\"value\":\"v\",\"modifiedIndex\":2,"
            "\"createdIndex\":2}],\"modifiedIndex\":2,\"createdIndex\":2}],\"modifiedIndex\":2,"
            "\"createdIndex\":2}}\n");
}

TEST_F(StoreTest, set_dirOverFileReplacesWithEmptyDir) {
  set("/foo", "baz");
  Command c = make(Op::kSet, "/foo", "ignored");
  c.dir = true;
  EXPECT_EQ(ok(c),
            "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"dir\":true,\"modifiedIndex\":2,"
            "\"createdIndex\":2},\"prevNode\":{\"key\":\"/foo\",\"value\":\"baz\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, set_dirOverDirIsNotFile) {
  mkdir("/dir1");
  Command c = make(Op::kSet, "/dir1");
  c.dir = true;
  EXPECT_EQ(fail(c), "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/dir1\",\"index\":1}\n");
}

TEST_F(StoreTest, set_fileOverDirIsNotFile) {
  set("/d/f", "1");
  EXPECT_EQ(fail(make(Op::kSet, "/d", "x")),
            "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":1}\n");
}

TEST_F(StoreTest, set_underFileIsNotDirWithFileCause) {
  set("/tr", "1");
  EXPECT_EQ(fail(make(Op::kSet, "/tr/sub/x", "v")),
            "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/tr\",\"index\":1}\n");
}

TEST_F(StoreTest, set_rootIsReadOnly) {
  Command c = make(Op::kSet, "/");
  c.dir = true;
  EXPECT_EQ(fail(c), "{\"errorCode\":107,\"message\":\"Root is read only\",\"cause\":\"/\",\"index\":0}\n");
}

TEST_F(StoreTest, set_withoutTtlMakesPermanent) {
  ok(with_ttl(make(Op::kSet, "/t", "1"), 60));
  EXPECT_TRUE(store_.next_expiration_ns().has_value());
  set("/t", "2");
  EXPECT_FALSE(store_.next_expiration_ns().has_value());
  EXPECT_EQ(get("/t"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/t\",\"value\":\"2\",\"modifiedIndex\":2,"
            "\"createdIndex\":2}}\n");
}

TEST_F(StoreTest, set_deadlineBefore2000IsPermanent) {
  Command c = make(Op::kSet, "/old", "v");
  c.expire_at_ns = 900'000'000LL * kSecond;
  ok(c);
  EXPECT_FALSE(store_.next_expiration_ns().has_value());
}

TEST_F(StoreTest, set_cleansKey) {
  set("/a//b/./c/", "v");
  EXPECT_EQ(get("/a/b/c"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/a/b/c\",\"value\":\"v\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, set_refreshKeepsValueAndRecreatesNode) {
  ok(with_ttl(make(Op::kSet, "/r1", "keep"), 30));
  Command c = with_ttl(make(Op::kSet, "/r1"), 60);
  c.refresh = true;
  EXPECT_EQ(ok(c),
            "{\"action\":\"set\",\"node\":{\"key\":\"/r1\",\"value\":\"keep\",\"expiration\":"
            "\"2027-01-15T08:01:00Z\",\"ttl\":60,\"modifiedIndex\":2,\"createdIndex\":2},"
            "\"prevNode\":{\"key\":\"/r1\",\"value\":\"keep\",\"expiration\":\"2027-01-15T08:00:30Z\","
            "\"ttl\":30,\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, set_refreshMissingKeyIsNotFound) {
  Command c = with_ttl(make(Op::kSet, "/nope"), 5);
  c.refresh = true;
  EXPECT_EQ(fail(c), "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/nope\",\"index\":0}\n");
  EXPECT_EQ(store_.index(), 0u);
}

TEST_F(StoreTest, set_refreshOnDirIsNotFile) {
  mkdir("/d");
  Command c = with_ttl(make(Op::kSet, "/d"), 5);
  c.refresh = true;
  EXPECT_EQ(fail(c), "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":1}\n");
}

TEST_F(StoreTest, create_failsWhenKeyExists) {
  ok(make(Op::kCreate, "/c1", "one"));
  EXPECT_EQ(fail(make(Op::kCreate, "/c1", "two")),
            "{\"errorCode\":105,\"message\":\"Key already exists\",\"cause\":\"/c1\",\"index\":1}\n");
}

TEST_F(StoreTest, create_dirAndCreatedFlag) {
  Command c = make(Op::kCreate, "/cd", "dropped");
  c.dir = true;
  auto res = apply(c);
  const Event& ev = std::get<Event>(res);
  EXPECT_TRUE(ev.created());
  EXPECT_EQ(render_event(ev),
            "{\"action\":\"create\",\"node\":{\"key\":\"/cd\",\"dir\":true,\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, create_underFileIsNotDir) {
  set("/f", "1");
  EXPECT_EQ(fail(make(Op::kCreate, "/f/g/h", "1")),
            "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/f\",\"index\":1}\n");
}

TEST_F(StoreTest, createInOrder_namesAreZeroPaddedNewIndex) {
  set("/other", "x");
  EXPECT_EQ(ok(make(Op::kCreateInOrder, "/queue", "j1")),
            "{\"action\":\"create\",\"node\":{\"key\":\"/queue/00000000000000000002\",\"value\":"
            "\"j1\",\"modifiedIndex\":2,\"createdIndex\":2}}\n");
  set("/other", "y");
  EXPECT_EQ(ok(make(Op::kCreateInOrder, "/queue", "")),
            "{\"action\":\"create\",\"node\":{\"key\":\"/queue/00000000000000000004\",\"value\":"
            "\"\",\"modifiedIndex\":4,\"createdIndex\":4}}\n");
}

TEST_F(StoreTest, createInOrder_toRootWorks) {
  EXPECT_EQ(ok(make(Op::kCreateInOrder, "/", "r")),
            "{\"action\":\"create\",\"node\":{\"key\":\"/00000000000000000001\",\"value\":\"r\","
            "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, createInOrder_toFileIsNotDir) {
  set("/f", "1");
  EXPECT_EQ(fail(make(Op::kCreateInOrder, "/f", "x")),
            "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/f\",\"index\":1}\n");
}

TEST_F(StoreTest, update_keepsCreatedIndex) {
  ok(make(Op::kCreate, "/c1", "one"));
  EXPECT_EQ(ok(make(Op::kUpdate, "/c1", "two")),
            "{\"action\":\"update\",\"node\":{\"key\":\"/c1\",\"value\":\"two\",\"modifiedIndex\":2,"
            "\"createdIndex\":1},\"prevNode\":{\"key\":\"/c1\",\"value\":\"one\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, update_missingKeyIsNotFound) {
  EXPECT_EQ(fail(make(Op::kUpdate, "/zz1/zz2", "v")),
            "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/zz1\",\"index\":0}\n");
}

TEST_F(StoreTest, update_dirReturnsNewIndexButKeepsStoredOne) {
  mkdir("/d");
  EXPECT_EQ(ok(with_ttl(make(Op::kUpdate, "/d"), 10)),
            "{\"action\":\"update\",\"node\":{\"key\":\"/d\",\"dir\":true,\"expiration\":"
            "\"2027-01-15T08:00:10Z\",\"ttl\":10,\"modifiedIndex\":2,\"createdIndex\":1},"
            "\"prevNode\":{\"key\":\"/d\",\"dir\":true,\"modifiedIndex\":1,\"createdIndex\":1}}\n");
  EXPECT_EQ(get("/d"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/d\",\"dir\":true,\"expiration\":"
            "\"2027-01-15T08:00:10Z\",\"ttl\":10,\"modifiedIndex\":1,\"createdIndex\":1}}\n");
  EXPECT_EQ(store_.index(), 2u);
}

TEST_F(StoreTest, update_dirWithValueIsNotFile) {
  mkdir("/d");
  EXPECT_EQ(fail(make(Op::kUpdate, "/d", "v")),
            "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":1}\n");
}

TEST_F(StoreTest, update_dirFlagIgnoredOnFile) {
  set("/f", "v");
  Command c = make(Op::kUpdate, "/f");
  c.dir = true;
  EXPECT_EQ(ok(c),
            "{\"action\":\"update\",\"node\":{\"key\":\"/f\",\"value\":\"\",\"modifiedIndex\":2,"
            "\"createdIndex\":1},\"prevNode\":{\"key\":\"/f\",\"value\":\"v\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, update_rootIsReadOnly) {
  EXPECT_EQ(fail(make(Op::kUpdate, "/", "")),
            "{\"errorCode\":107,\"message\":\"Root is read only\",\"cause\":\"/\",\"index\":0}\n");
}

TEST_F(StoreTest, update_refreshKeepsValue) {
  set("/k", "keep");
  Command c = with_ttl(make(Op::kUpdate, "/k"), 20);
  c.refresh = true;
  EXPECT_EQ(ok(c),
            "{\"action\":\"update\",\"node\":{\"key\":\"/k\",\"value\":\"keep\",\"expiration\":"
            "\"2027-01-15T08:00:20Z\",\"ttl\":20,\"modifiedIndex\":2,\"createdIndex\":1},"
            "\"prevNode\":{\"key\":\"/k\",\"value\":\"keep\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, compareAndSwap_valueMatch) {
  set("/c", "one");
  Command c = make(Op::kCompareAndSwap, "/c", "two");
  c.prev_value = "one";
  EXPECT_EQ(ok(c),
            "{\"action\":\"compareAndSwap\",\"node\":{\"key\":\"/c\",\"value\":\"two\","
            "\"modifiedIndex\":2,\"createdIndex\":1},\"prevNode\":{\"key\":\"/c\",\"value\":\"one\","
            "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, compareAndSwap_valueMismatchCause) {
  set("/c", "three");
  Command c = make(Op::kCompareAndSwap, "/c", "four");
  c.prev_value = "nope";
  EXPECT_EQ(fail(c),
            "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[nope != three]\","
            "\"index\":1}\n");
}

TEST_F(StoreTest, compareAndSwap_indexMismatchCause) {
  set("/c", "three");
  Command c = make(Op::kCompareAndSwap, "/c", "four");
  c.prev_index = 7;
  EXPECT_EQ(fail(c),
            "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[7 != 1]\",\"index\":1}\n");
}

TEST_F(StoreTest, compareAndSwap_bothMismatchCause) {
  set("/c", "three");
  Command c = make(Op::kCompareAndSwap, "/c", "four");
  c.prev_value = "x";
  c.prev_index = 5;
  EXPECT_EQ(fail(c),
            "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[x != three] [5 != 1]\","
            "\"index\":1}\n");
}

TEST_F(StoreTest, compareAndSwap_bothMustMatch) {
  set("/c", "v");
  Command c = make(Op::kCompareAndSwap, "/c", "w");
  c.prev_value = "v";
  c.prev_index = 2;
  EXPECT_EQ(fail(c),
            "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[2 != 1]\",\"index\":1}\n");
  c.prev_index = 1;
  ok(c);
}

TEST_F(StoreTest, compareAndSwap_dirIsNotFile) {
  mkdir("/d");
  Command c = make(Op::kCompareAndSwap, "/d", "x");
  c.prev_index = 1;
  EXPECT_EQ(fail(c), "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":1}\n");
}

TEST_F(StoreTest, compareAndSwap_missingIsNotFound) {
  Command c = make(Op::kCompareAndSwap, "/m", "x");
  c.prev_value = "a";
  EXPECT_EQ(fail(c), "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/m\",\"index\":0}\n");
}

TEST_F(StoreTest, compareAndSwap_withoutTtlDropsTtl) {
  ok(with_ttl(make(Op::kSet, "/c", "v"), 30));
  Command c = make(Op::kCompareAndSwap, "/c", "w");
  c.prev_value = "v";
  ok(c);
  EXPECT_FALSE(store_.next_expiration_ns().has_value());
}

TEST_F(StoreTest, delete_fileHasNoValueInNode) {
  set("/d/f1", "1");
  EXPECT_EQ(ok(make(Op::kDelete, "/d/f1")),
            "{\"action\":\"delete\",\"node\":{\"key\":\"/d/f1\",\"modifiedIndex\":2,"
            "\"createdIndex\":1},\"prevNode\":{\"key\":\"/d/f1\",\"value\":\"1\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, delete_fileIgnoresDirFlags) {
  set("/f", "1");
  Command c = make(Op::kDelete, "/f");
  c.dir = true;
  c.recursive = true;
  ok(c);
  EXPECT_EQ(get("/f"), "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/f\",\"index\":2}\n");
}

TEST_F(StoreTest, delete_dirWithoutFlagsIsNotFile) {
  mkdir("/d");
  EXPECT_EQ(fail(make(Op::kDelete, "/d")),
            "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":1}\n");
}

TEST_F(StoreTest, delete_nonEmptyDirNeedsRecursive) {
  set("/d/f", "1");
  Command c = make(Op::kDelete, "/d");
  c.dir = true;
  EXPECT_EQ(fail(c),
            "{\"errorCode\":108,\"message\":\"Directory not empty\",\"cause\":\"/d\",\"index\":1}\n");
  c.recursive = true;
  EXPECT_EQ(ok(c),
            "{\"action\":\"delete\",\"node\":{\"key\":\"/d\",\"dir\":true,\"modifiedIndex\":2,"
            "\"createdIndex\":1},\"prevNode\":{\"key\":\"/d\",\"dir\":true,\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
  EXPECT_EQ(get("/d/f"), "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/d\",\"index\":2}\n");
}

TEST_F(StoreTest, delete_emptyDirWithDirFlag) {
  mkdir("/d");
  Command c = make(Op::kDelete, "/d");
  c.dir = true;
  ok(c);
  EXPECT_EQ(store_.index(), 2u);
}

TEST_F(StoreTest, delete_recursiveRemovesTtlChildren) {
  ok(with_ttl(make(Op::kSet, "/d/t", "1"), 30));
  Command c = make(Op::kDelete, "/d");
  c.recursive = true;
  ok(c);
  EXPECT_FALSE(store_.next_expiration_ns().has_value());
}

TEST_F(StoreTest, delete_rootIsReadOnly) {
  Command c = make(Op::kDelete, "/");
  c.recursive = true;
  EXPECT_EQ(fail(c), "{\"errorCode\":107,\"message\":\"Root is read only\",\"cause\":\"/\",\"index\":0}\n");
}

TEST_F(StoreTest, delete_missingIsNotFound) {
  EXPECT_EQ(fail(make(Op::kDelete, "/nope")),
            "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/nope\",\"index\":0}\n");
}

TEST_F(StoreTest, compareAndDelete_match) {
  set("/cd", "1");
  Command c = make(Op::kCompareAndDelete, "/cd");
  c.prev_value = "1";
  EXPECT_EQ(ok(c),
            "{\"action\":\"compareAndDelete\",\"node\":{\"key\":\"/cd\",\"modifiedIndex\":2,"
            "\"createdIndex\":1},\"prevNode\":{\"key\":\"/cd\",\"value\":\"1\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, compareAndDelete_mismatch) {
  set("/cd", "1");
  Command c = make(Op::kCompareAndDelete, "/cd");
  c.prev_value = "2";
  EXPECT_EQ(fail(c),
            "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[2 != 1]\",\"index\":1}\n");
}

TEST_F(StoreTest, compareAndDelete_dirIsNotFileEvenRecursive) {
  set("/d/f", "1");
  Command c = make(Op::kCompareAndDelete, "/d");
  c.prev_index = 1;
  c.recursive = true;
  EXPECT_EQ(fail(c), "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":1}\n");
}

TEST_F(StoreTest, compareAndDelete_rootIsNotFileWithoutCause) {
  Command c = make(Op::kCompareAndDelete, "/");
  c.prev_value = "x";
  EXPECT_EQ(fail(c), "{\"errorCode\":102,\"message\":\"Not a file\",\"index\":0}\n");
}

TEST_F(StoreTest, get_missingCauseIsFirstMissingComponent) {
  EXPECT_EQ(get("/zz1/zz2/zz3"),
            "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/zz1\",\"index\":0}\n");
  set("/zz1/a", "1");
  EXPECT_EQ(get("/zz1/zz2/zz3"),
            "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/zz1/zz2\",\"index\":1}\n");
}

TEST_F(StoreTest, get_belowFileIsNotDir) {
  set("/tr", "1");
  EXPECT_EQ(get("/tr/sub"),
            "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/tr\",\"index\":1}\n");
}

TEST_F(StoreTest, get_dirListsOnlyDirectChildrenWithoutRecursive) {
  set("/d/f", "1");
  set("/d/sub/g", "2");
  EXPECT_EQ(get("/d"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/d\",\"dir\":true,\"nodes\":[{\"key\":\"/d/f\","
            "\"value\":\"1\",\"modifiedIndex\":1,\"createdIndex\":1},{\"key\":\"/d/sub\",\"dir\":true,"
            "\"modifiedIndex\":2,\"createdIndex\":2}],\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, get_recursiveOnFileIgnored) {
  set("/f", "1");
  EXPECT_EQ(get("/f", true), get("/f", false));
}

TEST_F(StoreTest, get_sortedIsByteWiseAtEveryLevel) {
  set("/s/b", "1");
  set("/s/B", "2");
  set("/s/a/z", "3");
  set("/s/a/y", "4");
  set("/s/\xc3\xa9", "5");
  auto res = store_.get("/s", true, true, now_);
  const Event& ev = std::get<Event>(res);
  ASSERT_EQ(ev.node.nodes.size(), 4u);
  EXPECT_EQ(ev.node.nodes[0].key, "/s/B");
  EXPECT_EQ(ev.node.nodes[1].key, "/s/a");
  EXPECT_EQ(ev.node.nodes[2].key, "/s/b");
  EXPECT_EQ(ev.node.nodes[3].key, "/s/\xc3\xa9");
  ASSERT_EQ(ev.node.nodes[1].nodes.size(), 2u);
  EXPECT_EQ(ev.node.nodes[1].nodes[0].key, "/s/a/y");
  EXPECT_EQ(ev.node.nodes[1].nodes[1].key, "/s/a/z");
}

TEST_F(StoreTest, get_unsortedOrderIsDeterministic) {
  for (const char* k : {"/u/q", "/u/a", "/u/m"}) set(k, "v");
  std::string first = get("/u", true, false);
  EXPECT_EQ(get("/u", true, false), first);
  EXPECT_EQ(get("/u", true, true), first);
}

TEST_F(StoreTest, get_hiddenChildrenNotListed) {
  set("/h/visible", "1");
  set("/h/_hidden", "2");
  set("/h/_hdir/x", "3");
  EXPECT_EQ(get("/h", true),
            "{\"action\":\"get\",\"node\":{\"key\":\"/h\",\"dir\":true,\"nodes\":[{\"key\":"
            "\"/h/visible\",\"value\":\"1\",\"modifiedIndex\":1,\"createdIndex\":1}],"
            "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

TEST_F(StoreTest, get_hiddenReadableByExactPath) {
  set("/h/_hidden", "2");
  set("/h/_hdir/x", "3");
  EXPECT_EQ(get("/h/_hidden"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/h/_hidden\",\"value\":\"2\",\"modifiedIndex\":1,"
            "\"createdIndex\":1}}\n");
  EXPECT_EQ(get("/h/_hdir"),
            "{\"action\":\"get\",\"node\":{\"key\":\"/h/_hdir\",\"dir\":true,\"nodes\":[{\"key\":"
            "\"/h/_hdir/x\",\"value\":\"3\",\"modifiedIndex\":2,\"createdIndex\":2}],"
            "\"modifiedIndex\":2,\"createdIndex\":2}}\n");
}

TEST_F(StoreTest, get_rootListsChildrenWithoutKey) {
  set("/a", "1");
  EXPECT_EQ(get("/"),
            "{\"action\":\"get\",\"node\":{\"dir\":true,\"nodes\":[{\"key\":\"/a\",\"value\":\"1\","
            "\"modifiedIndex\":1,\"createdIndex\":1}]}}\n");
}

TEST_F(StoreTest, get_etcdIndexIsCurrentIndex) {
  set("/a", "1");
  set("/b", "1");
  auto res = store_.get("/a", false, false, now_);
  EXPECT_EQ(std::get<Event>(res).etcd_index, 2u);
}

TEST_F(StoreTest, apply_internalBumpsIndexInvisibly) {
  Command c = make(Op::kInternal, "/0/members/8e9e05c52164694d/attributes", "{\"name\":\"n1\"}");
  auto res = apply(c);
  ASSERT_TRUE(std::holds_alternative<Event>(res));
  EXPECT_EQ(store_.index(), 1u);
  EXPECT_EQ(store_.internal().at("/0/members/8e9e05c52164694d/attributes"), "{\"name\":\"n1\"}");
  EXPECT_EQ(get("/"), "{\"action\":\"get\",\"node\":{\"dir\":true}}\n");
  EXPECT_EQ(set("/k", "v"),
            "{\"action\":\"set\",\"node\":{\"key\":\"/k\",\"value\":\"v\",\"modifiedIndex\":2,"
            "\"createdIndex\":2}}\n");
}

TEST_F(StoreTest, stats_countsSuccessesAndFailures) {
  set("/a", "1");
  get("/a");
  get("/missing");
  ok(make(Op::kCreate, "/b", "1"));
  fail(make(Op::kCreate, "/b", "1"));
  ok(make(Op::kUpdate, "/a", "2"));
  fail(make(Op::kUpdate, "/zz", "2"));
  fail(make(Op::kDelete, "/zz"));
  ok(make(Op::kDelete, "/b"));
  Command cas = make(Op::kCompareAndSwap, "/a", "3");
  cas.prev_value = "2";
  ok(cas);
  fail(cas);
  const StoreStats& s = store_.stats();
  EXPECT_EQ(s.sets_success, 1u);
  EXPECT_EQ(s.gets_success, 1u);
  EXPECT_EQ(s.gets_fail, 1u);
  EXPECT_EQ(s.create_success, 1u);
  EXPECT_EQ(s.create_fail, 1u);
  EXPECT_EQ(s.update_success, 1u);
  EXPECT_EQ(s.update_fail, 1u);
  EXPECT_EQ(s.delete_success, 1u);
  EXPECT_EQ(s.delete_fail, 1u);
  EXPECT_EQ(s.compare_and_swap_success, 1u);
  EXPECT_EQ(s.compare_and_swap_fail, 1u);
}

// The counts below were observed on etcd 3.4.23: several early error returns are counted as
// successes, and a create blocked by a file also counts a failed set.
TEST_F(StoreTest, stats_reproducesEtcdCountingQuirks) {
  set("/d/f", "1");
  Command cad_dir = make(Op::kCompareAndDelete, "/d");
  cad_dir.prev_value = "1";
  fail(cad_dir);
  Command cad_mismatch = make(Op::kCompareAndDelete, "/d/f");
  cad_mismatch.prev_value = "2";
  fail(cad_mismatch);
  Command cas_root = make(Op::kCompareAndSwap, "/", "1");
  cas_root.prev_value = "x";
  fail(cas_root);
  fail(make(Op::kUpdate, "/", "1"));
  fail(make(Op::kUpdate, "/d", "1"));
  Command del_root = make(Op::kDelete, "/");
  del_root.recursive = true;
  fail(del_root);
  fail(make(Op::kSet, "/d/f/g/h", "1"));
  fail(make(Op::kCreate, "/d/f/g/h", "1"));
  fail(make(Op::kCreateInOrder, "/d/f/g", "1"));
  const StoreStats& s = store_.stats();
  EXPECT_EQ(s.compare_and_delete_success, 2u);
  EXPECT_EQ(s.compare_and_delete_fail, 0u);
  EXPECT_EQ(s.compare_and_swap_success, 1u);
  EXPECT_EQ(s.update_success, 2u);
  EXPECT_EQ(s.delete_success, 1u);
  EXPECT_EQ(s.sets_success, 1u);
  EXPECT_EQ(s.sets_fail, 3u);
  EXPECT_EQ(s.create_fail, 2u);
}

TEST_F(StoreTest, stats_jsonFieldOrderWithWatchers) {
  set("/a", "1");
  store_.watch("/a", false, false, 0, [](const auto&) {});
  EXPECT_EQ(render_store_stats(store_.stats(), store_.watcher_count()),
            "{\"getsSuccess\":0,\"getsFail\":0,\"setsSuccess\":1,\"setsFail\":0,\"deleteSuccess\":0,"
            "\"deleteFail\":0,\"updateSuccess\":0,\"updateFail\":0,\"createSuccess\":0,"
            "\"createFail\":0,\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,"
            "\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,"
            "\"watchers\":1}");
}

TEST_F(StoreTest, stats_internalCountsAsEtcdDoes) {
  ok(make(Op::kInternal, "/0/members/1/raftAttributes", "{}"));
  ok(make(Op::kInternal, "/0/members/1/attributes", "{}"));
  ok(make(Op::kInternal, "/0/version", "3.4.0"));
  EXPECT_EQ(store_.stats().create_success, 1u);
  EXPECT_EQ(store_.stats().sets_success, 2u);
}

}  // namespace
}  // namespace kvd::v2
