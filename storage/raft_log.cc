// storage::RaftLog on RocksDB.
//
// On-disk format (format version 1). The directory is one RocksDB database with three column
// families; every integer is fixed-width, little-endian unless said otherwise.
//
//   column family "default" (small records):
//     "format"        "kvd-raft-log" + u32 version. Written (synced) first when the database is
//                     created; open() refuses a database without it (unless the database holds
//                     no record at all: that is a creation interrupted by a crash) or with another
//                     version.
//     "hard_state"    u64 term, u64 vote, u64 commit.
//     "snapshot_meta" u64 index, u64 term, u64 voter count n, n x u64 voter id, then u64 image
//                     bytes, u32 image chunks: the image is in "images". Without these last two
//                     fields (as written by earlier kvd) the image is "snapshot_data".
//     "snapshot_data" the state machine image, opaque (earlier kvd; removed by the next snapshot).
//     "applied"       u64: an applied index, written by earlier kvd; ignored.
//     "meta/" + key   free-form metadata (put_meta), value as given.
//   in the directory, LOG and LOG.old: RocksDB's info log (raft_log_open.cc, ForwardingLogger),
//     never read back.
//   in the directory, WAL-SPARE: the next WAL file, zeros, made ahead (prefilled_wal.h); each
//     WAL file (*.log) is written over such zeros, and every write batch carries its write
//     number as RocksDB log data (WriteNumberFilter), so that replay stops at a hole.
//   beside the directory, <dir>.mark: the commit mark (raft_log_impl.h, Impl::mark), the term
//     and commit index that synced writes made durable, checked by open() against the log it
//     recovers.
//   column family "entries" (the log):
//     key   u64 index, BIG-endian, so that RocksDB's bytewise order is index order.
//     value u64 term, u8 type (raft::EntryType), then the entry data.
//   column family "images" (state machine images):
//     key   u64 snapshot index, u32 chunk number, both BIG-endian.
//     value chunk bytes (1 MiB, the last one shorter); the image is the chunks in order.
//     Each image is one SST file built with SstFileWriter and ingested (moved) into the family,
//     which takes no other writes and is never compacted: an image is written once, and
//     dropped as a whole file (DeleteFilesInRange) once a later snapshot replaces it.
//
// Invariants (checked by open(), kept by every write):
//   - the entries present above the snapshot index are exactly [snapshot index + 1, last index],
//     without a gap; entries at or below it are compacted ones whose table files were not
//     dropped yet (see save_snapshot below), never read;
//   - terms never decrease along the log, and the first entry's term >= the snapshot's term.
//
// Atomicity and durability: each public write is one rocksdb::WriteBatch written with
// WriteOptions::sync, so it is entirely in RocksDB's write-ahead log and fsynced before the call
// returns, or it is not there at all after a crash. append() puts the new entries, deletes the
// entries of a replaced suffix (a Delete each: Impl::delete_entries says why not DeleteRange) and
// puts the hard state in one batch; save_snapshot()
// puts the snapshot metadata (and deletes the entries above its index of a log it discards) in
// one batch, after the image it names was ingested (an SST file is synced before ingestion, and
// ingestion syncs the MANIFEST); the entries it covers are not deleted by a write, their table
// files are dropped whole once no reader needs them (Impl::drop_compacted_entries).
//
// What a crash can leave behind:
//   - a torn last record in RocksDB's WAL (*.log): the write it belonged to was never acknowledged,
//     because acknowledgement comes after the fsync. Open uses WALRecoveryMode::kPointInTimeRecovery,
//     which replays the WAL up to the last intact record and drops the rest; RocksDB's report of
//     the dropped bytes is forwarded to spdlog as a warning. Recovery stops at the first damaged
//     record, so damage inside the WAL also loses the records after it; the invariants above are
//     re-checked afterwards, so a log that lost its middle is refused rather than served.
//   - a database created without its "format" record: recognized because it holds no record.
//   - an image ingested without the snapshot metadata naming it, or a replaced image not yet
//     dropped: open() drops every image but the snapshot's; an image file being built
//     (image-<index>.sst.tmp) is removed.
//   - orphan SST or WAL files of an interrupted flush or compaction: RocksDB ignores and deletes
//     them (they are not in the MANIFEST).
//   - kvd-resume-probe, resume()'s probe of the disk: RocksDB ignores it; the next probe
//     overwrites and removes it.
//   - a WAL file with the zeros it was prepared with after its last record (read as padding),
//     or with a hole of zeros before a later unsynced record (replay stops at the hole), or a
//     half-made WAL-SPARE.tmp (deleted at open): see prefilled_wal.h.
// Anything else that does not decode (a corrupt SST block, MANIFEST or CURRENT, a record of the
// wrong size, an entry whose key does not match its position) makes open() fail with a message
// naming the database directory and, where RocksDB reports it, the file.

#include "storage/raft_log_impl.h"

namespace kvd::storage {

Status RaftLog::append(const std::vector<raft::Entry>& entries,
                       const std::optional<raft::HardState>& hs, bool sync) {
  Impl& m = *impl_;
  std::lock_guard wl(m.write_mu);
  if (entries.empty() && !hs) return Status::ok();
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].index != entries[i - 1].index + 1 || entries[i].term < entries[i - 1].term) {
      return m.fail("append: entries are not consecutive with non-decreasing terms (entry " +
                    std::to_string(entries[i - 1].index) + " term " +
                    std::to_string(entries[i - 1].term) + " then entry " +
                    std::to_string(entries[i].index) + " term " + std::to_string(entries[i].term) +
                    ")");
    }
  }
  Impl::View next = *m.current();
  rocksdb::WriteBatch batch;
  // Entries at or below the snapshot are already covered by it (as MemoryStorage::append).
  size_t skip = 0;
  while (skip < entries.size() && entries[skip].index <= next.snapshot.index) ++skip;
  if (skip < entries.size()) {
    const uint64_t start = entries[skip].index;
    const uint64_t new_last = entries.back().index;
    if (start > next.last_index + 1) {
      return m.fail("append: entry " + std::to_string(start) + " would leave a gap after entry " +
                    std::to_string(next.last_index));
    }
    const uint64_t prev_term =
        start - 1 == next.snapshot.index ? next.snapshot.term : next.term_at(start - 1);
    if (entries[skip].term < prev_term) {
      return m.fail("append: entry " + std::to_string(start) + " has term " +
                    std::to_string(entries[skip].term) + ", lower than entry " +
                    std::to_string(start - 1) + "'s term " + std::to_string(prev_term));
    }
    // Entries [start, new_last] are overwritten by the puts; a longer old suffix goes too.
    m.delete_entries(&batch, new_last + 1, next.last_index + 1);
    for (size_t i = skip; i < entries.size(); ++i) {
      batch.Put(m.entries_cf, entry_key(entries[i].index), encode_entry(entries[i]))
          .PermitUncheckedError();
    }
    while (!next.runs.empty() && next.runs.back().start >= start) next.runs.pop_back();
    for (size_t i = skip; i < entries.size(); ++i) {
      if (next.runs.empty() || next.runs.back().term != entries[i].term) {
        next.runs.push_back({entries[i].index, entries[i].term});
      }
    }
    next.last_index = new_last;
  }
  if (hs) {
    batch.Put(m.meta_cf, slice(kHardStateKey), encode_hard_state(*hs)).PermitUncheckedError();
    next.hard_state = *hs;
  }
  if (batch.Count() == 0) return Status::ok();
  const bool synced = sync || !entries.empty();
  const raft::HardState durable = next.hard_state;
  Status st = m.commit(&batch, std::move(next), "append", synced);
  if (st.is_ok() && skip < entries.size()) m.cache_appended(entries, skip);
  if (st.is_ok() && synced) m.mark(durable, /*sync=*/false);
  return st;
}

Status RaftLog::save_snapshot(const raft::Snapshot& snap) {
  if (snap.metadata.index == 0) return impl_->fail("save_snapshot: snapshot index 0");
  if (const uint64_t stored = impl_->read()->snapshot.index; snap.metadata.index < stored) {
    return impl_->fail("save_snapshot: snapshot at " + std::to_string(snap.metadata.index) +
                       " is older than the stored one at " + std::to_string(stored));
  }
  Result<ImageInfo> image = write_image(snap.metadata.index, snap.data);
  if (!image.is_ok()) return image.status();
  return save_snapshot(snap.metadata, image.value());
}

std::pair<raft::HardState, raft::ConfState> RaftLog::initial_state() const {
  auto v = impl_->read();
  return {v->hard_state, v->snapshot.conf_state};
}

raft::StorageError RaftLog::entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                                    std::vector<raft::Entry>* out) const {
  auto v = impl_->read();
  if (lo <= v->snapshot.index) return raft::StorageError::kCompacted;
  if (hi > v->last_index + 1) return raft::StorageError::kUnavailable;
  if (lo >= hi) return raft::StorageError::kOk;
  if (impl_->cached_entries(*v, lo, hi, max_bytes, out)) return raft::StorageError::kOk;
  if (!impl_->db) return raft::StorageError::kIo;  // a failed resume() could not reopen it
  // Registered so that the files of [lo, hi) stay (Impl::drop_compacted_entries).
  struct Register {
    Impl& m;
    const uint64_t lo;
    bool held = false;
    Register(Impl& impl, uint64_t first) : m(impl), lo(first) {
      std::lock_guard lk(m.view_mu);
      if (lo <= m.entries_dropped_to) return;
      m.entry_readers.insert(lo);
      held = true;
    }
    ~Register() {
      if (!held) return;
      std::lock_guard lk(m.view_mu);
      m.entry_readers.erase(m.entry_readers.find(lo));
    }
  } reg(*impl_, lo);
  if (!reg.held) return raft::StorageError::kCompacted;

  rocksdb::ReadOptions ro;
  ro.snapshot = v->db_snapshot.get();
  const std::string upper = entry_key(hi);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->entries_cf));
  uint64_t want = lo;
  uint64_t bytes = 0;
  raft::Entry e;
  for (it->Seek(entry_key(lo)); it->Valid() && want < hi; it->Next(), ++want) {
    uint64_t index = 0;
    std::string_view val(it->value().data(), it->value().size());
    if (!decode_entry_key(std::string_view(it->key().data(), it->key().size()), &index) ||
        index != want || !decode_entry(val, index, &e)) {
      SPDLOG_ERROR("{}: raft log entry {} is missing or malformed", impl_->dir, want);
      return raft::StorageError::kIo;
    }
    bytes += e.data.size();
    if (want > lo && bytes > max_bytes) return raft::StorageError::kOk;
    out->push_back(std::move(e));
  }
  if (!it->status().ok()) {
    SPDLOG_ERROR("{}: reading raft log entries [{}, {}): {}", impl_->dir, lo, hi,
                  it->status().ToString());
    return raft::StorageError::kIo;
  }
  if (want != hi) {
    SPDLOG_ERROR("{}: raft log entry {} is missing", impl_->dir, want);
    return raft::StorageError::kIo;
  }
  return raft::StorageError::kOk;
}

raft::StorageError RaftLog::term(uint64_t i, uint64_t* out) const {
  auto v = impl_->read();
  if (i < v->snapshot.index) return raft::StorageError::kCompacted;
  if (i > v->last_index) return raft::StorageError::kUnavailable;
  *out = i == v->snapshot.index ? v->snapshot.term : v->term_at(i);
  return raft::StorageError::kOk;
}

uint64_t RaftLog::first_index() const { return impl_->read()->snapshot.index + 1; }

uint64_t RaftLog::last_index() const { return impl_->read()->last_index; }

Status RaftLog::resume() {
  Impl& m = *impl_;
  std::lock_guard wl(m.write_mu);
  if (!m.write_error) return Status::ok();
  if (Status st = m.reopen(); !st.is_ok()) {
    return m.fail("resume after \"" + *m.write_error + "\": " + st.message());
  }
  SPDLOG_INFO("{}: writes accepted again after: {}", m.dir, *m.write_error);
  m.write_error.reset();
  return Status::ok();
}

Status RaftLog::put_meta(const std::string& key, const std::string& value) {
  Impl& m = *impl_;
  std::lock_guard wl(m.write_mu);
  rocksdb::WriteBatch batch;
  batch.Put(m.meta_cf, std::string(kMetaPrefix) + key, value).PermitUncheckedError();
  return m.commit(&batch, std::nullopt, "put_meta");
}

std::optional<std::string> RaftLog::get_meta(const std::string& key) const {
  auto reading = impl_->read();
  if (!impl_->db) return std::nullopt;
  std::string value;
  rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->meta_cf, std::string(kMetaPrefix) + key, &value);
  if (s.ok()) return value;
  if (!s.IsNotFound()) SPDLOG_ERROR("{}: reading meta \"{}\": {}", impl_->dir, key, s.ToString());
  return std::nullopt;
}

}  // namespace kvd::storage
