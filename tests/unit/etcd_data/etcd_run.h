// The data dir the etcd_data tests read: made once per test process by a real etcd 3.4, with
// --snapshot-count 60, as a scenario:
//   1. fillers: PUT /v2/keys/fill/<i> value=f<i>, one after another, until etcd has saved at
//      least two snap files and the last filler is at most 20 raft entries past the newest one;
//   2. the scenario writes (listed in etcd_run.cc), which so land after that snap file and before
//      the next (which needs 60 more entries): in the WAL, as entries after the snapshot;
//   3. etcd stopped with SIGTERM.
// Also helpers that copy and damage such a dir: the tests work on copies.
//
// Test code; one thread.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "etcd_data/etcd_member.h"
#include "etcd_data/wal_decoder.h"
#include "tests/unit/etcd_data/etcd_process.h"

namespace kvd::etcd_data::testing {

inline constexpr int kSnapshotCount = 60;

struct Write {
  std::string method;
  std::string key;    // "/a": the v2 key (etcd's store path is "/1" + key)
  std::string query;  // "ttl=600", "" for none
  std::string value;  // the form's value, "" for none
  HttpResponse response;
  uint64_t etcd_index = 0;  // X-Etcd-Index: the store's index after the write
  uint64_t raft_index = 0;  // X-Raft-Index: the commit index when etcd answered
};

struct EtcdRun {
  std::string data_dir;  // read it, never change it: tests copy it
  uint64_t member_id = 0;   // from GET /v2/members
  uint64_t cluster_id = 0;  // from its X-Etcd-Cluster-Id header
  std::vector<Write> fillers;
  std::vector<Write> scenario;
  // The wall clock (Unix ns) just before and after the write with a TTL, scenario[kTtlWrite].
  int64_t ttl_sent_before_ns = 0;
  int64_t ttl_sent_after_ns = 0;
};

// The index in EtcdRun::scenario of the PUT with ttl=600.
inline constexpr size_t kTtlWrite = 2;

// Runs the scenario on the first call; later calls return the same run. nullptr if it failed,
// with the reason (and etcd's log) in *error.
const EtcdRun* etcd_run(std::string* error);

// The fixture of tests that read etcd_run()'s data dir.
class EtcdRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    run_ = etcd_run(&error);
    ASSERT_NE(run_, nullptr) << error;
  }
  const EtcdRun* run_ = nullptr;
};

// The snap files of a data dir (<dir>/member/snap/*.snap), newest first.
std::vector<std::string> snap_files(const std::string& data_dir);
// The WAL files of a data dir, in order.
std::vector<WalFile> wal_files(const std::string& data_dir);
// Every record of the data dir's WAL, in order (fails the test on a decode error).
std::vector<WalRecord> wal_records(const std::string& data_dir);

// Copies data dir `from` into `to` (which must not exist), cutting each WAL file after its last
// record (the preallocated zeros after it mean the same as the end of the file) and leaving out
// snap/db, so that copies are small.
void copy_compact(const std::string& from, const std::string& to);

std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);

}  // namespace kvd::etcd_data::testing
