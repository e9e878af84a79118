// Store images as SST files of their own in the "images" family, and the snapshots naming them
// (see the format at the top of raft_log.cc).
#include "storage/raft_log_impl.h"

namespace kvd::storage {

Result<ImageInfo> RaftLog::write_image(uint64_t index, std::string_view data) {
  const std::string tmp = impl_->dir + "/image-" + std::to_string(index) + ".sst.tmp";
  Result<ImageInfo> info = impl_->build_image(index, data, tmp);
  if (!info.is_ok()) return info;
  Status st = impl_->ingest(tmp);
  impl_->remove_file(tmp);  // gone already once ingested (moved); left by a failed ingestion
  if (!st.is_ok()) return st;
  return info;
}

Status RaftLog::build_image(uint64_t index, std::string_view data, const std::string& path) const {
  Result<ImageInfo> info = impl_->build_image(index, data, path);
  return info.is_ok() ? Status::ok() : info.status();
}

Status RaftLog::build_image(uint64_t index, const std::function<void(const ImagePut&)>& produce,
                            const std::string& path) const {
  Result<ImageInfo> info = impl_->build_image(index, produce, path);
  return info.is_ok() ? Status::ok() : info.status();
}

Result<ImageInfo> RaftLog::ingest_image(uint64_t index, const std::string& path) {
  Impl& m = *impl_;
  rocksdb::SstFileReader reader(m.image_file_options);
  if (rocksdb::Status s = reader.Open(path); !s.ok()) {
    return m.fail("reading the image " + path + ": " + s.ToString());
  }
  const std::shared_ptr<const rocksdb::TableProperties> props = reader.GetTableProperties();
  ImageInfo info;
  info.index = index;
  info.chunks = props ? static_cast<uint32_t>(props->num_entries) : 0;
  info.bytes = props ? props->raw_value_size : 0;
  // Its keys must be exactly chunks 0 .. chunks-1 of this index (it is then a build_image file).
  std::unique_ptr<rocksdb::Iterator> it(reader.NewIterator(rocksdb::ReadOptions()));
  bool ok = info.chunks > 0 && props->num_entries == info.chunks;
  if (ok) {
    it->SeekToFirst();
    ok = it->Valid() && it->key() == image_key(index, 0);
  }
  if (ok) {
    it->SeekToLast();
    ok = it->Valid() && it->key() == image_key(index, info.chunks - 1);
  }
  if (!ok || !it->status().ok()) {
    return m.fail("the file " + path + " is not a store image of index " + std::to_string(index));
  }
  it.reset();
  if (Status st = m.ingest(path); !st.is_ok()) return st;
  return info;
}

Status RaftLog::save_snapshot(const raft::SnapshotMetadata& meta, const ImageInfo& image) {
  Status st = record_snapshot(meta, image);
  if (st.is_ok()) drop_replaced();
  return st;
}

Status RaftLog::record_snapshot(const raft::SnapshotMetadata& meta, const ImageInfo& image) {
  Impl& m = *impl_;
  std::lock_guard wl(m.write_mu);
  Impl::View next = *m.current();
  const uint64_t index = meta.index;
  if (index == 0) return m.fail("save_snapshot: snapshot index 0");
  if (image.index != index || image.chunks == 0) {
    return m.fail("save_snapshot: the image given is of index " + std::to_string(image.index) +
                  ", not " + std::to_string(index));
  }
  if (index <= next.snapshot.index) {
    // The same snapshot again keeps the image it has (the new one holds the same keys);
    // an older one is dropped.
    if (index < next.snapshot.index) m.drop_images(index, index + 1);
    return Status::ok();
  }
  rocksdb::WriteBatch batch;
  batch.Put(m.meta_cf, slice(kSnapshotMetaKey), encode_snapshot_meta(meta, image))
      .PermitUncheckedError();
  if (next.legacy_image) batch.Delete(m.meta_cf, slice(kSnapshotDataKey)).PermitUncheckedError();
  const uint64_t first = next.snapshot.index + 1;
  // The entries the snapshot covers are not deleted by this write: their files are dropped
  // once it is committed (drop_replaced, Impl::drop_compacted_entries).
  if (index <= next.last_index && next.term_at(index) == meta.term) {
    // The snapshot covers a prefix of our log: drop the prefix, keep the rest.
    std::vector<TermRun> runs;
    for (size_t i = 0; i < next.runs.size(); ++i) {
      const uint64_t run_end =
          i + 1 < next.runs.size() ? next.runs[i + 1].start : next.last_index + 1;
      if (run_end <= index + 1) continue;
      runs.push_back({std::max(next.runs[i].start, index + 1), next.runs[i].term});
    }
    next.runs = std::move(runs);
  } else {
    // The snapshot is beyond our log or disagrees with it (Raft thesis §5.4 / §3.10 "install
    // snapshot": discard the entire log). Entries above the snapshot's index go now, in the
    // same write: they would otherwise be read as the log after it.
    m.delete_entries(&batch, std::max(first, index + 1), next.last_index + 1);
    next.runs.clear();
    next.last_index = index;
  }
  const bool discarded = next.runs.empty();
  next.snapshot = meta;
  next.image = image;
  next.legacy_image = false;
  if (Status st = m.commit(&batch, std::move(next), "save_snapshot"); !st.is_ok()) return st;
  m.cache_compacted(discarded);
  return Status::ok();
}

void RaftLog::drop_replaced() {
  Impl& m = *impl_;
  std::shared_lock dl(m.db_mu);
  if (!m.db) return;  // a failed resume() could not reopen it; the next open drops them
  uint64_t snapshot_index, bound;
  {
    std::lock_guard lk(m.view_mu);
    snapshot_index = bound = m.view->snapshot.index;
    if (!m.image_readers.empty()) bound = std::min(bound, *m.image_readers.begin());
  }
  if (bound != 0) m.drop_images(0, bound);
  m.drop_compacted_entries(snapshot_index);  // no snapshot (index 0): drops nothing
}

raft::StorageError RaftLog::snapshot(raft::Snapshot* out) const {
  Impl& m = *impl_;
  std::shared_lock dl(m.db_mu);
  std::shared_ptr<const Impl::View> v;
  {
    std::lock_guard lk(m.view_mu);
    v = m.view;
    if (v->snapshot.index != 0 && !v->legacy_image) m.image_readers.insert(v->snapshot.index);
  }
  struct Unregister {
    Impl& m;
    const Impl::View& v;
    ~Unregister() {
      if (v.snapshot.index == 0 || v.legacy_image) return;
      std::lock_guard lk(m.view_mu);
      m.image_readers.erase(m.image_readers.find(v.snapshot.index));
    }
  } unregister{m, *v};
  out->metadata = v->snapshot;
  out->data.clear();
  if (v->snapshot.index == 0) return raft::StorageError::kOk;
  if (!m.db) return raft::StorageError::kIo;  // a failed resume() could not reopen it
  rocksdb::ReadOptions ro;
  ro.snapshot = v->db_snapshot.get();
  if (v->legacy_image) {
    rocksdb::Status s = m.db->Get(ro, m.meta_cf, slice(kSnapshotDataKey), &out->data);
    if (!s.ok()) {
      SPDLOG_ERROR("{}: reading the snapshot data: {}", m.dir, s.ToString());
      return raft::StorageError::kIo;
    }
    return raft::StorageError::kOk;
  }
  const ImageInfo& image = v->image;
  const std::string upper = image_key(image.index, image.chunks);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(m.db->NewIterator(ro, m.images_cf));
  out->data.reserve(image.bytes);
  uint32_t chunk = 0;
  for (it->Seek(image_key(image.index, 0)); it->Valid() && chunk < image.chunks;
       it->Next(), ++chunk) {
    if (it->key() != image_key(image.index, chunk)) break;
    out->data.append(it->value().data(), it->value().size());
  }
  if (!it->status().ok()) {
    SPDLOG_ERROR("{}: reading the image of the snapshot at index {}: {}", m.dir, image.index,
                  it->status().ToString());
    return raft::StorageError::kIo;
  }
  if (chunk != image.chunks || out->data.size() != image.bytes) {
    SPDLOG_ERROR("{}: the image of the snapshot at index {} is incomplete: {} of {} chunks, {} "
                  "of {} bytes",
                  m.dir, image.index, chunk, image.chunks, out->data.size(), image.bytes);
    out->data.clear();
    return raft::StorageError::kIo;
  }
  return raft::StorageError::kOk;
}

}  // namespace kvd::storage
