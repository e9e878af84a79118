// Writes etcd's WAL frames and snap files (the format at the top of etcd_data/etcd_member.cc) for
// tests that build a member from scratch or extend a real one: a record type etcd never writes,
// a second WAL file, entries of every kind.
//
// Test code; one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "etcd_data/etcd.pb.h"
#include "etcd_data/wal_decoder.h"

namespace kvd::etcd_data::testing {

// One frame: the length field (with the padding count), the walpb.Record, the zero padding.
inline std::string wal_frame(int64_t type, uint32_t crc, const std::string& data, bool with_data) {
  pb::Record rec;
  rec.set_type(type);
  rec.set_crc(crc);
  if (with_data) rec.set_data(data);
  const std::string body = rec.SerializeAsString();
  const uint64_t pad = (8 - body.size() % 8) % 8;
  uint64_t len = body.size();
  if (pad != 0) len |= (0x80 | pad) << 56;
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  return out + body + std::string(pad, '\0');
}

// The records of one WAL file, with the rolling CRC carried from the file before.
class WalWriter {
 public:
  explicit WalWriter(uint32_t prev_crc = 0) : crc_(prev_crc) {}

  WalWriter& crc_record() {
    bytes_ += wal_frame(kCrcRecord, crc_, "", false);
    return *this;
  }
  WalWriter& record(int64_t type, const std::string& data) {
    crc_ = crc32c_update(crc_, data);
    bytes_ += wal_frame(type, crc_, data, true);
    return *this;
  }
  WalWriter& metadata(uint64_t member_id, uint64_t cluster_id) {
    pb::Metadata md;
    md.set_node_id(member_id);
    md.set_cluster_id(cluster_id);
    return record(kMetadataRecord, md.SerializeAsString());
  }
  WalWriter& snapshot(uint64_t index, uint64_t term) {
    pb::WalSnapshot s;
    s.set_index(index);
    s.set_term(term);
    return record(kSnapshotRecord, s.SerializeAsString());
  }
  WalWriter& state(uint64_t term, uint64_t vote, uint64_t commit) {
    pb::HardState hs;
    hs.set_term(term);
    hs.set_vote(vote);
    hs.set_commit(commit);
    return record(kStateRecord, hs.SerializeAsString());
  }
  WalWriter& entry(uint64_t term, uint64_t index, int type, const std::string& data) {
    pb::Entry e;
    e.set_type(type);
    e.set_term(term);
    e.set_index(index);
    if (!data.empty()) e.set_data(data);
    return record(kEntryRecord, e.SerializeAsString());
  }
  // A new file's opening, as etcd's Create (the first file) and cut (the next ones) write it.
  WalWriter& start_file(uint64_t member_id, uint64_t cluster_id) {
    return crc_record().metadata(member_id, cluster_id);
  }

  const std::string& bytes() const { return bytes_; }
  uint32_t crc() const { return crc_; }

 private:
  uint32_t crc_;
  std::string bytes_;
};

// A snap file: snappb.snapshot{crc, raftpb.Snapshot{store_json, {conf_state, index, term}}}.
inline std::string snap_file_bytes(uint64_t index, uint64_t term,
                                   const std::vector<uint64_t>& voters,
                                   const std::string& store_json) {
  pb::RaftSnapshot snap;
  snap.set_data(store_json);
  snap.mutable_metadata()->set_index(index);
  snap.mutable_metadata()->set_term(term);
  for (uint64_t v : voters) snap.mutable_metadata()->mutable_conf_state()->add_voters(v);
  pb::SnapFile file;
  file.set_data(snap.SerializeAsString());
  file.set_crc(crc32c_update(0, file.data()));
  return file.SerializeAsString();
}

// etcdserverpb.Request as etcd's v2 server marshals it (every non-nullable field).
inline pb::Request v2_request(uint64_t id, const std::string& method, const std::string& path,
                              const std::string& val) {
  pb::Request r;
  r.set_id(id);
  r.set_method(method);
  r.set_path(path);
  r.set_val(val);
  r.set_dir(false);
  r.set_prev_value("");
  r.set_prev_index(0);
  r.set_expiration(0);
  r.set_wait(false);
  r.set_since(0);
  r.set_recursive(false);
  r.set_sorted(false);
  r.set_quorum(false);
  r.set_time(0);
  r.set_stream(false);
  return r;
}

}  // namespace kvd::etcd_data::testing
