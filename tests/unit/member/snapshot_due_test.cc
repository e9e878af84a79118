// When a member takes a snapshot: etcd's rule (more than snapshot_count entries since the last),
// and each member's own phase, so that the members of a cluster snapshot at different times.
#include "server/member/core.h"

#include <gtest/gtest.h>

#include <vector>

namespace kvd::server {
namespace {

// The indexes at which a member applying one entry at a time from 1 to `to` snapshots.
std::vector<uint64_t> snapshots_until(uint64_t to, uint64_t count, uint64_t phase) {
  std::vector<uint64_t> at;
  uint64_t last = 0;
  for (uint64_t applied = 1; applied <= to; ++applied) {
    if (snapshot_due(applied, last, count, phase)) {
      at.push_back(applied);
      last = applied;
    }
  }
  return at;
}

TEST(SnapshotDueTest, phaseZero_everyCountEntries) {
  EXPECT_EQ(snapshots_until(350, 100, 0), (std::vector<uint64_t>{100, 200, 300}));
}

TEST(SnapshotDueTest, threeMembers_snapshotAThirdOfTheCountApart) {
  const std::vector<uint64_t> voters = {0x9c, 0x15, 0x3a};
  EXPECT_EQ(snapshot_phase(0x15, voters, 300), 0u);
  EXPECT_EQ(snapshot_phase(0x3a, voters, 300), 100u);
  EXPECT_EQ(snapshot_phase(0x9c, voters, 300), 200u);
  EXPECT_EQ(snapshots_until(1000, 300, 0), (std::vector<uint64_t>{300, 600, 900}));
  // At the member's own points (100 + 300k, 200 + 300k), the first no earlier than half the
  // count after the start.
  EXPECT_EQ(snapshots_until(1000, 300, 100), (std::vector<uint64_t>{151, 400, 700, 1000}));
  EXPECT_EQ(snapshots_until(1000, 300, 200), (std::vector<uint64_t>{200, 500, 800}));
}

TEST(SnapshotDueTest, neverMoreOftenThanHalfTheCountNorLaterThanIt) {
  for (uint64_t phase = 0; phase < 100; phase += 7) {
    uint64_t last = 0;
    for (uint64_t at : snapshots_until(2000, 100, phase)) {
      EXPECT_GT(at - last, 50u) << "phase " << phase;
      EXPECT_LE(at - last, 101u) << "phase " << phase;
      last = at;
    }
  }
}

TEST(SnapshotDueTest, membersInStep_driftToTheirPhases) {
  // Three members that snapshotted at the same index (an earlier kvd, or etcd's rule) part
  // within one snapshot each.
  for (uint64_t phase : {0, 100, 200}) {
    uint64_t last = 3000;
    std::vector<uint64_t> at;
    for (uint64_t applied = 3001; applied <= 4000; ++applied) {
      if (snapshot_due(applied, last, 300, phase)) {
        at.push_back(applied);
        last = applied;
      }
    }
    ASSERT_GE(at.size(), 2u);
    EXPECT_EQ(at[1] % 300, phase) << "phase " << phase;
  }
}

TEST(SnapshotDueTest, notAVoterOrNothingApplied) {
  EXPECT_EQ(snapshot_phase(7, {1, 2, 3}, 300), 0u);
  EXPECT_FALSE(snapshot_due(10, 10, 300, 0));
  EXPECT_FALSE(snapshot_due(5, 10, 300, 0));
  EXPECT_FALSE(snapshot_due(1, 0, 1, 0));
  EXPECT_TRUE(snapshot_due(2, 0, 1, 0));
}

}  // namespace
}  // namespace kvd::server
