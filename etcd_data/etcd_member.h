// Reads an etcd 3.4 member's data dir, offline and without modifying it: the newest usable
// snapshot (the v2 store's JSON image and the configuration at its index), the WAL's member and
// cluster ids, the last hard state, and every raft entry after the snapshot, decoded. What a
// later conversion into kvd's format starts from. The files and what a crash can leave in them
// are described at the top of etcd_member.cc.
//
// Pure functions over files; any thread. The data dir must not be in use by a running etcd
// (etcd may be rewriting its WAL's tail).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace kvd::etcd_data {

// etcdserverpb.Request, a v2 request as etcd proposed it. Paths are the store's ("/1/a" for the
// key /a; "/0/..." holds etcd's own records: members, cluster version). expiration and time are
// Unix nanoseconds (0: none).
struct V2Request {
  uint64_t id = 0;
  std::string method;  // "PUT", "POST", "DELETE", "QGET", "SYNC", ...
  std::string path;
  std::string val;
  bool dir = false;
  std::string prev_value;
  uint64_t prev_index = 0;
  std::optional<bool> prev_exist;
  int64_t expiration = 0;
  bool wait = false;
  uint64_t since = 0;
  bool recursive = false;
  bool sorted = false;
  bool quorum = false;
  int64_t time = 0;
  bool stream = false;
  std::optional<bool> refresh;

  bool operator==(const V2Request&) const = default;
};

// raftpb.ConfChange.
struct ConfChange {
  uint64_t id = 0;
  int type = 0;  // 0 add, 1 remove, 2 update, 3 add learner
  uint64_t node_id = 0;
  std::string context;  // etcd: the member as JSON ({"id":..,"peerURLs":[..],...})

  bool operator==(const ConfChange&) const = default;
};

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  enum class Kind {
    kEmpty,         // a normal entry without data (a new leader's no-op)
    kV2,            // a v2 request: v2 is set
    kV3,            // an InternalRaftRequest without a v2 request (a v3 or auth request)
    kConfChange,    // conf_change is set
    kConfChangeV2,  // raftpb.ConfChangeV2 (etcd 3.4's server never proposes one)
  };
  Kind kind = Kind::kEmpty;
  V2Request v2;
  ConfChange conf_change;

  bool operator==(const Entry&) const = default;
};

struct HardState {
  uint64_t term = 0;
  uint64_t vote = 0;
  uint64_t commit = 0;

  bool operator==(const HardState&) const = default;
};

struct Member {
  std::string member_dir;  // <data-dir>/member
  std::string snap_file;   // the snap file used; "" when none
  uint64_t snap_index = 0;
  uint64_t snap_term = 0;
  std::vector<uint64_t> snap_voters;
  std::vector<uint64_t> snap_learners;
  std::string store_json;  // the v2 store image of the snap file; "" without one
  uint64_t member_id = 0;  // from the WAL's metadata record
  uint64_t cluster_id = 0;
  HardState hard_state;  // the last state record of the WAL
  // Every entry after snap_index, in index order without gaps; an entry written later at the
  // same index replaces the earlier one and those after it, as etcd reads its WAL.
  std::vector<Entry> entries;
  // What was tolerated, one line each naming the file: a torn WAL tail dropped, a broken snap
  // file passed over, a file that does not belong.
  std::vector<std::string> warnings;
  bool has_v3_backend = false;  // member/snap/db exists
};

// Reads the member in `data_dir` (the directory given to etcd as --data-dir). The error is one
// line naming the file (and the offset where it helps): not an etcd data dir, an etcd 2.x or 0.4
// layout, a WAL record that fails its CRC before the tail, a WAL that does not reach back to the
// snapshot, a broken snap file with no older one to fall back to, an entry that decodes as
// nothing etcd writes.
Result<Member> read_member(const std::string& data_dir);

}  // namespace kvd::etcd_data
