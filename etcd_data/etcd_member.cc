// read_member: an etcd 3.4 member's data dir, read as etcd reads it when it restarts
// (etcdserver.NewServer: wal.ValidSnapshotEntries, Snapshotter.LoadNewestAvailable, readWAL),
// but without writing anything: where etcd renames or truncates a damaged file, this reports a
// warning and reads around the damage the same way.
//
// The files (integers little-endian; protobuf messages as in etcd.proto):
//
//   <data-dir>/member/
//     wal/<seq>-<index>.wal   %016x-%016x: the file's sequence number (from 0, consecutive) and
//                             the raft index its first entry follows. Each file is preallocated
//                             to 64 MB of zeros and holds frames:
//                               u64 length: the low 56 bits are the record's size; when the top
//                                   bit is set, the low 3 bits of the top byte count the zero
//                                   bytes of padding after the record, so that every frame ends
//                                   on 8 bytes (a length field never straddles a sector);
//                               walpb.Record{type, crc, data}; the padding.
//                             A zero length field ends the file's records (the preallocated rest).
//                             crc is the CRC-32C (Castagnoli, as Go's crc32.Update) of the data
//                             of every record so far, rolling from the first file on (a record's
//                             type and crc are not covered). Record types:
//                               1 metadata  etcdserverpb.Metadata{NodeID, ClusterID}, at the
//                                           start of every file, always the same
//                               2 entry     raftpb.Entry{Type, Term, Index, Data}
//                               3 state     raftpb.HardState{term, vote, commit}
//                               4 crc       no data; crc = the rolling CRC of the files before
//                                           (0 in the first file). The first record of a file.
//                               5 snapshot  walpb.Snapshot{index, term}: a snap file was saved
//                                           at this index (the first file opens with {0, 0})
//                             A file starts crc, metadata, then (after the first) the current
//                             state; entries and states follow in the order raft saved them, so
//                             an entry rewritten after a leader change appears again later, and
//                             the later one replaces the earlier and every entry after it.
//                             Entry data, by Type: 0 (normal) an etcdserverpb.InternalRaftRequest
//                             (v3, auth, or a v2 Request inside) or a bare etcdserverpb.Request
//                             (how etcd 3.4 proposes v2 writes); no data is a leader's no-op.
//                             1 a raftpb.ConfChange (its context the member as JSON).
//                             2 a raftpb.ConfChangeV2 (never proposed by etcd 3.4's server).
//     wal/<n>.tmp             the next file, being preallocated; not read.
//     snap/<term>-<index>.snap
//                             %016x-%016x: a snappb.snapshot{crc, data} where crc is the CRC-32C
//                             of data, a raftpb.Snapshot{data: the v2 store as JSON, metadata:
//                             {conf_state{voters, learners}, index, term}}. etcd keeps the
//                             newest few; it saves the file, then the WAL's snapshot record.
//     snap/db                 the v3 backend (bbolt); not read, only noted (has_v3_backend).
//     snap/<index>.snap.db    a v3 backend being received from a leader; ignored.
//
// Reading, as etcd does:
//   1. every WAL file is decoded from the first; the snapshot records at or below the last
//      state's commit index are the usable snapshots.
//   2. the snap files, newest first: the first that decodes, matches its CRC and has a usable
//      snapshot record is the snapshot. A broken one is passed over with a warning (etcd renames
//      it to .broken); one without a record is passed over too. No snap file is a snapshot at 0.
//   3. the WAL is decoded again from the last file whose index is at or below the snapshot's,
//      which must be followed by consecutive files and must hold the snapshot's record; the
//      metadata record gives the ids, the last state record the hard state, the entry records
//      above the snapshot's index the entries.
//
// What a crash can leave, and what this does with it:
//   - a torn last write in the last WAL file: frames cut short by the end of the file, or a frame
//     that does not decode or fails its CRC while one of its disk sectors is all zeros. Its
//     write was never acknowledged (etcd fsyncs before it answers): dropped with a warning, as
//     etcd's repair truncates it. Damage anywhere else in the WAL is an error.
//   - non-zero bytes after a zero length field (a torn write past the end): ignored, as by etcd.
//   - a snap file without its WAL snapshot record (a crash between the two): passed over.
//   - a snap file cut short or corrupt: passed over for an older one with a warning; an error
//     when no older usable one exists.
//   - a WAL file being preallocated (*.tmp): ignored.
#include "etcd_data/etcd_member.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <utility>

#include "etcd_data/etcd.pb.h"
#include "etcd_data/strict_parse.h"
#include "etcd_data/wal_decoder.h"

namespace kvd::etcd_data {

namespace {

namespace fs = std::filesystem;

bool is_directory_at(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// Why `dir`, which has no member/ directory, is not something read_member reads.
Status explain_layout(const fs::path& dir) {
  const std::string d = dir.string();
  const bool wal = is_directory_at(dir / "wal");
  const bool snap = is_directory_at(dir / "snap");
  const fs::path name = dir.filename().empty() ? dir.parent_path().filename() : dir.filename();
  if (wal && name == "member") {
    return Status::error(d + ": a member directory; give the data dir that holds it");
  }
  if (wal || snap) {
    return Status::error(d + ": etcd 2.x layout (wal/ and snap/ at the top level, without "
                             "member/); only etcd 3.x's member/ layout can be read");
  }
  if (path_exists(dir / "log") || path_exists(dir / "conf") || is_directory_at(dir / "snapshot")) {
    return Status::error(d + ": etcd 0.4 layout (log, conf, snapshot/); only etcd 3.x's "
                             "member/ layout can be read");
  }
  if (is_directory_at(dir / "proxy")) {
    return Status::error(d + ": an etcd proxy's data dir (proxy/), which holds no keys");
  }
  std::error_code ec;
  if (fs::is_empty(dir, ec) && !ec) {
    return Status::error(d + ": not an etcd data dir (it is empty)");
  }
  return Status::error(d + ": not an etcd data dir (no member/ directory)");
}

struct SnapshotId {
  uint64_t index = 0;
  uint64_t term = 0;
};

// Pass 1 (etcd's ValidSnapshotEntries): the snapshot records at or below the last commit index.
Result<std::vector<SnapshotId>> usable_snapshots(const std::vector<WalFile>& files) {
  WalDecoder dec(files);
  std::vector<SnapshotId> snaps;
  pb::HardState state;
  for (;;) {
    Result<std::optional<WalRecord>> r = dec.next();
    if (!r.is_ok()) return r.status();
    if (!r.value()) break;
    const WalRecord& rec = *r.value();
    if (rec.type == kSnapshotRecord) {
      pb::WalSnapshot s;
      if (!parse_strict(&s, rec.data)) {
        return Status::error(dec.where(rec) + ": a snapshot record that does not decode");
      }
      snaps.push_back({s.index(), s.term()});
    } else if (rec.type == kStateRecord) {
      if (!parse_strict(&state, rec.data)) {
        return Status::error(dec.where(rec) + ": a state record that does not decode");
      }
    }
  }
  std::erase_if(snaps, [&](const SnapshotId& s) { return s.index > state.commit(); });
  return snaps;
}

Result<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return Status::error(path.string() + ": cannot open");
  std::string data(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  if (!in.read(data.data(), static_cast<std::streamsize>(data.size()))) {
    return Status::error(path.string() + ": cannot read");
  }
  return data;
}

// A snap file, checked as etcd's snap.Read does. The error names what is wrong, not the file.
Result<pb::RaftSnapshot> load_snap(const fs::path& path) {
  Result<std::string> bytes = read_file(path);
  if (!bytes.is_ok()) return bytes.status();
  if (bytes.value().empty()) return Status::error("an empty file");
  pb::SnapFile file;
  if (!parse_strict(&file, bytes.value())) {
    return Status::error("does not decode as a snappb.snapshot");
  }
  if (file.data().empty() || file.crc() == 0) return Status::error("holds no snapshot");
  const uint32_t crc = crc32c_update(0, file.data());
  if (crc != file.crc()) {
    return Status::error("CRC mismatch (the file says " + std::to_string(file.crc()) +
                         ", its data gives " + std::to_string(crc) + ")");
  }
  pb::RaftSnapshot snap;
  if (!parse_strict(&snap, file.data())) {
    return Status::error("its data does not decode as a raftpb.Snapshot");
  }
  return snap;
}

// Pass 2's start: the newest usable snap file (etcd's LoadNewestAvailable), into `m`.
Status load_newest_snapshot(const fs::path& snap_dir, const std::vector<SnapshotId>& usable,
                            Member* m) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(snap_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.ends_with(".snap")) {
      names.push_back(name);
    } else if (name != "db" && !name.ends_with(".snap.db") && !name.starts_with("tmp") &&
               !name.starts_with("db.tmp")) {
      m->warnings.push_back((snap_dir / name).string() + ": not a snap file; ignored");
    }
  }
  if (ec && path_exists(snap_dir)) {
    return Status::error(snap_dir.string() + ": cannot list: " + ec.message());
  }
  std::sort(names.rbegin(), names.rend());  // %016x-%016x: name order is (term, index) order
  std::string first_broken;
  for (const std::string& name : names) {
    const fs::path path = snap_dir / name;
    Result<pb::RaftSnapshot> snap = load_snap(path);
    if (!snap.is_ok()) {
      m->warnings.push_back(path.string() + ": " + snap.status().message() +
                            "; passed over for an older snap file");
      if (first_broken.empty()) first_broken = path.string() + ": " + snap.status().message();
      continue;
    }
    const pb::SnapshotMetadata& meta = snap.value().metadata();
    const bool recorded = std::any_of(usable.begin(), usable.end(), [&](const SnapshotId& s) {
      return s.index == meta.index() && s.term == meta.term();
    });
    if (!recorded) {
      m->warnings.push_back(path.string() + ": the snapshot at index " +
                            std::to_string(meta.index()) + " term " +
                            std::to_string(meta.term()) +
                            " has no committed snapshot record in the WAL (saved just before a "
                            "crash?); passed over");
      continue;
    }
    m->snap_file = path.string();
    m->snap_index = meta.index();
    m->snap_term = meta.term();
    m->snap_voters.assign(meta.conf_state().voters().begin(), meta.conf_state().voters().end());
    m->snap_learners.assign(meta.conf_state().learners().begin(),
                            meta.conf_state().learners().end());
    m->store_json = std::move(*snap.value().mutable_data());
    return Status::ok();
  }
  if (!first_broken.empty()) {
    return Status::error(first_broken + ", and no older usable snap file to fall back to");
  }
  return Status::ok();
}

// An entry as read from the WAL, before its data is decoded.
struct RawEntry {
  pb::Entry entry;
  std::string where;  // the record's file and offset
};

V2Request to_v2(const pb::Request& r) {
  V2Request v;
  v.id = r.id();
  v.method = r.method();
  v.path = r.path();
  v.val = r.val();
  v.dir = r.dir();
  v.prev_value = r.prev_value();
  v.prev_index = r.prev_index();
  if (r.has_prev_exist()) v.prev_exist = r.prev_exist();
  v.expiration = r.expiration();
  v.wait = r.wait();
  v.since = r.since();
  v.recursive = r.recursive();
  v.sorted = r.sorted();
  v.quorum = r.quorum();
  v.time = r.time();
  v.stream = r.stream();
  if (r.has_refresh()) v.refresh = r.refresh();
  return v;
}

// Decodes an entry's data as etcd's apply does (applyEntryNormal, applyConfChange).
Result<Entry> decode_entry(const RawEntry& raw) {
  const pb::Entry& e = raw.entry;
  Entry out;
  out.term = e.term();
  out.index = e.index();
  const std::string at = raw.where + ": entry " + std::to_string(e.index());
  switch (e.type()) {
    case 0: {
      if (e.data().empty()) {
        out.kind = Entry::Kind::kEmpty;
        return out;
      }
      // etcd tries an InternalRaftRequest first and falls back to a bare v2 Request.
      pb::InternalRaftRequest irr;
      if (parse_strict(&irr, e.data())) {
        out.kind = irr.has_v2() ? Entry::Kind::kV2 : Entry::Kind::kV3;
        if (irr.has_v2()) out.v2 = to_v2(irr.v2());
        return out;
      }
      pb::Request req;
      if (parse_strict(&req, e.data())) {
        out.kind = Entry::Kind::kV2;
        out.v2 = to_v2(req);
        return out;
      }
      return Status::error(at + ": data is neither an InternalRaftRequest nor a v2 Request");
    }
    case 1: {
      pb::ConfChange cc;
      if (!parse_strict(&cc, e.data())) {
        return Status::error(at + ": data does not decode as a raftpb.ConfChange");
      }
      out.kind = Entry::Kind::kConfChange;
      out.conf_change = {cc.id(), cc.type(), cc.node_id(), cc.context()};
      return out;
    }
    case 2:
      out.kind = Entry::Kind::kConfChangeV2;
      return out;
    default:
      return Status::error(at + ": unknown entry type " + std::to_string(e.type()));
  }
}

// Pass 2 (etcd's readWAL from the snapshot): the ids, the hard state and the raw entries.
Status read_wal_from(const fs::path& wal_dir, const std::vector<WalFile>& all, SnapshotId start,
                     Member* m, std::vector<RawEntry>* entries) {
  // The last file that starts at or below the snapshot, and the consecutive files after it.
  size_t first = all.size();
  for (size_t i = all.size(); i-- > 0;) {
    if (all[i].index <= start.index) {
      first = i;
      break;
    }
  }
  if (first == all.size()) {
    return Status::error(wal_dir.string() + ": the WAL does not reach back to the snapshot at " +
                         "index " + std::to_string(start.index) + ": its oldest file " +
                         all.front().name + " starts after index " +
                         std::to_string(all.front().index));
  }
  for (size_t i = first + 1; i < all.size(); ++i) {
    if (all[i].seq != all[i - 1].seq + 1) {
      return Status::error(wal_dir.string() + ": WAL files are not consecutive: " + all[i].name +
                           " follows " + all[i - 1].name);
    }
  }
  WalDecoder dec(std::vector<WalFile>(all.begin() + static_cast<std::ptrdiff_t>(first), all.end()));
  std::optional<std::string> metadata;
  bool matched = false;
  for (;;) {
    Result<std::optional<WalRecord>> r = dec.next();
    if (!r.is_ok()) return r.status();
    if (!r.value()) break;
    const WalRecord& rec = *r.value();
    switch (rec.type) {
      case kEntryRecord: {
        RawEntry raw;
        if (!parse_strict(&raw.entry, rec.data)) {
          return Status::error(dec.where(rec) + ": an entry record that does not decode");
        }
        const uint64_t index = raw.entry.index();
        if (index <= start.index) break;
        const uint64_t pos = index - start.index - 1;
        if (pos > entries->size()) {
          return Status::error(dec.where(rec) + ": entry " + std::to_string(index) +
                               " leaves a gap after entry " +
                               std::to_string(start.index + entries->size()));
        }
        raw.where = dec.where(rec);
        entries->resize(pos);
        entries->push_back(std::move(raw));
        break;
      }
      case kStateRecord: {
        pb::HardState hs;
        if (!parse_strict(&hs, rec.data)) {
          return Status::error(dec.where(rec) + ": a state record that does not decode");
        }
        m->hard_state = {hs.term(), hs.vote(), hs.commit()};
        break;
      }
      case kMetadataRecord: {
        if (metadata && *metadata != rec.data) {
          return Status::error(dec.where(rec) + ": a metadata record that differs from the " +
                               "first one (two members' WAL files mixed?)");
        }
        metadata = rec.data;
        break;
      }
      case kCrcRecord:
        break;  // checked by the decoder
      case kSnapshotRecord: {
        pb::WalSnapshot s;
        if (!parse_strict(&s, rec.data)) {
          return Status::error(dec.where(rec) + ": a snapshot record that does not decode");
        }
        if (s.index() == start.index) {
          if (s.term() != start.term) {
            return Status::error(dec.where(rec) + ": the snapshot record at index " +
                                 std::to_string(s.index()) + " has term " +
                                 std::to_string(s.term()) + ", the snap file term " +
                                 std::to_string(start.term));
          }
          matched = true;
        }
        break;
      }
      default:
        return Status::error(dec.where(rec) + ": unknown record type " +
                             std::to_string(rec.type));
    }
  }
  if (!dec.torn_tail().empty()) m->warnings.push_back(dec.torn_tail());
  if (!matched) {
    return Status::error(wal_dir.string() + ": the WAL does not reach back to the snapshot at " +
                         "index " + std::to_string(start.index) + " term " +
                         std::to_string(start.term) + ": no snapshot record for it from " +
                         all[first].name + " on");
  }
  if (!metadata) return Status::error(wal_dir.string() + ": no metadata record in the WAL");
  pb::Metadata md;
  if (!parse_strict(&md, *metadata)) {
    return Status::error(wal_dir.string() + ": the metadata record does not decode");
  }
  m->member_id = md.node_id();
  m->cluster_id = md.cluster_id();
  return Status::ok();
}

// The entries' data, and the raft log's shape: terms never decrease along it, and none is below
// the snapshot's.
Status decode_entries(const std::vector<RawEntry>& raw, Member* m) {
  uint64_t prev_term = m->snap_term;
  for (const RawEntry& r : raw) {
    Result<Entry> e = decode_entry(r);
    if (!e.is_ok()) return e.status();
    if (e.value().term < prev_term) {
      return Status::error(r.where + ": entry " + std::to_string(e.value().index) + " has term " +
                           std::to_string(e.value().term) + ", below the term " +
                           std::to_string(prev_term) + " before it");
    }
    prev_term = e.value().term;
    m->entries.push_back(std::move(e.value()));
  }
  if (!m->entries.empty() && m->entries.back().term > m->hard_state.term) {
    // Entries are saved before the state that goes with them: a crash between the two leaves
    // this, which etcd accepts.
    m->warnings.push_back(raw.back().where + ": the last entry's term " +
                          std::to_string(m->entries.back().term) + " is above the hard state's " +
                          std::to_string(m->hard_state.term) +
                          " (the state saved with it was lost?)");
  }
  return Status::ok();
}

}  // namespace

Result<Member> read_member(const std::string& data_dir) {
  const fs::path dir(data_dir);
  if (!is_directory_at(dir)) {
    return Status::error(data_dir +
                         (path_exists(dir) ? ": not a directory" : ": no such directory"));
  }
  const fs::path member_dir = dir / "member";
  if (!is_directory_at(member_dir)) return explain_layout(dir);
  Member m;
  m.member_dir = member_dir.string();
  const fs::path wal_dir = member_dir / "wal";
  const fs::path snap_dir = member_dir / "snap";
  if (!is_directory_at(wal_dir)) {
    if (is_directory_at(member_dir / "kvd")) {
      return Status::error(data_dir + ": a kvd data dir (member/kvd), not an etcd one");
    }
    return Status::error(m.member_dir + ": not an etcd member directory (no wal/)");
  }
  Result<std::vector<WalFile>> files = list_wal_files(wal_dir.string(), &m.warnings);
  if (!files.is_ok()) return files.status();
  if (files.value().empty()) {
    return Status::error(wal_dir.string() + ": not an etcd data dir: no WAL file in it");
  }
  Result<std::vector<SnapshotId>> usable = usable_snapshots(files.value());
  if (!usable.is_ok()) return usable.status();
  if (Status s = load_newest_snapshot(snap_dir, usable.value(), &m); !s.is_ok()) return s;
  std::vector<RawEntry> raw;
  if (Status s = read_wal_from(wal_dir, files.value(), {m.snap_index, m.snap_term}, &m, &raw);
      !s.is_ok()) {
    return s;
  }
  if (Status s = decode_entries(raw, &m); !s.is_ok()) return s;
  m.has_v3_backend = path_exists(snap_dir / "db");
  return m;
}

}  // namespace kvd::etcd_data
