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
//   - the entries present are exactly [snapshot index + 1, last index], without a gap;
//   - terms never decrease along the log, and the first entry's term >= the snapshot's term.
//
// Atomicity and durability: each public write is one rocksdb::WriteBatch written with
// WriteOptions::sync, so it is entirely in RocksDB's write-ahead log and fsynced before the call
// returns, or it is not there at all after a crash. append() puts the new entries, deletes the
// entries of a replaced suffix (DeleteRange) and puts the hard state in one batch; save_snapshot()
// puts the snapshot metadata and deletes the entries it covers in one batch, after the image it
// names was ingested (an SST file is synced before ingestion, and ingestion syncs the MANIFEST).
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
// Anything else that does not decode (a corrupt SST block, MANIFEST or CURRENT, a record of the
// wrong size, an entry whose key does not match its position) makes open() fail with a message
// naming the database directory and, where RocksDB reports it, the file.

#include "storage/raft_log.h"

#include "common/codec.h"

#include <fcntl.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <unistd.h>
#include <string_view>

namespace kvd::storage {

namespace {

namespace fs = std::filesystem;

constexpr uint32_t kFormatVersion = 1;
constexpr std::string_view kFormatMagic = "kvd-raft-log";
constexpr char kEntriesFamily[] = "entries";
constexpr char kImagesFamily[] = "images";
constexpr size_t kImageChunkBytes = 1 << 20;

constexpr std::string_view kFormatKey = "format";
constexpr std::string_view kHardStateKey = "hard_state";
constexpr std::string_view kSnapshotMetaKey = "snapshot_meta";
constexpr std::string_view kSnapshotDataKey = "snapshot_data";
constexpr std::string_view kMetaPrefix = "meta/";

using codec::put_u32;
using codec::put_u64;

std::string entry_key(uint64_t index) {
  std::string k;
  codec::put_u64_be(k, index);
  return k;
}

std::string image_key(uint64_t index, uint32_t chunk) {
  std::string k = entry_key(index);
  codec::put_u32_be(k, chunk);
  return k;
}

bool decode_entry_key(std::string_view k, uint64_t* index) {
  codec::Reader r(k);
  return r.u64_be(index) && r.done();
}

std::string encode_entry(const raft::Entry& e) {
  std::string v;
  v.reserve(9 + e.data.size());
  put_u64(v, e.term);
  v.push_back(static_cast<char>(e.type));
  v.append(e.data);
  return v;
}

bool decode_entry(std::string_view v, uint64_t index, raft::Entry* e) {
  codec::Reader r(v);
  uint8_t type = 0;
  if (!r.u64(&e->term) || !r.u8(&type)) return false;
  if (type != static_cast<uint8_t>(raft::EntryType::kNormal) &&
      type != static_cast<uint8_t>(raft::EntryType::kConfChange)) {
    return false;
  }
  e->type = static_cast<raft::EntryType>(type);
  e->index = index;
  e->data.assign(r.rest());
  return true;
}

std::string encode_format() {
  std::string v(kFormatMagic);
  put_u32(v, kFormatVersion);
  return v;
}

std::string encode_hard_state(const raft::HardState& hs) {
  std::string v;
  put_u64(v, hs.term);
  put_u64(v, hs.vote);
  put_u64(v, hs.commit);
  return v;
}

bool decode_hard_state(std::string_view v, raft::HardState* hs) {
  codec::Reader r(v);
  return r.u64(&hs->term) && r.u64(&hs->vote) && r.u64(&hs->commit) && r.done();
}

std::string encode_snapshot_meta(const raft::SnapshotMetadata& m, const ImageInfo& image) {
  std::string v;
  put_u64(v, m.index);
  put_u64(v, m.term);
  put_u64(v, m.conf_state.voters.size());
  for (raft::NodeId id : m.conf_state.voters) put_u64(v, id);
  put_u64(v, image.bytes);
  put_u32(v, image.chunks);
  return v;
}

// *legacy: the record has no image fields (the image is "snapshot_data").
bool decode_snapshot_meta(std::string_view v, raft::SnapshotMetadata* m, ImageInfo* image,
                          bool* legacy) {
  codec::Reader r(v);
  uint64_t n = 0;
  if (!r.u64(&m->index) || !r.u64(&m->term) || !r.u64(&n)) return false;
  if (r.remaining() / 8 < n || (r.remaining() != n * 8 && r.remaining() != n * 8 + 12)) {
    return false;
  }
  m->conf_state.voters.resize(n);
  for (auto& id : m->conf_state.voters) {
    if (!r.u64(&id)) return false;
  }
  *image = ImageInfo{m->index, 0, 0};
  *legacy = r.remaining() == 0;
  if (*legacy) return true;
  return r.u64(&image->bytes) && r.u32(&image->chunks) && r.done() && image->chunks > 0;
}

rocksdb::Slice slice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

// RocksDB's info log goes to its usual LOG file in the database directory; warnings and errors
// (among them the report of a torn WAL tail dropped by point-in-time recovery) are also sent to
// spdlog so that they reach the operator.
class ForwardingLogger : public rocksdb::Logger {
 public:
  ForwardingLogger(std::string dir, std::shared_ptr<rocksdb::Logger> file)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL), dir_(std::move(dir)),
        file_(std::move(file)) {}

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level >= rocksdb::InfoLogLevel::WARN_LEVEL) {
      va_list copy;
      va_copy(copy, ap);
      char buf[1024];
      std::vsnprintf(buf, sizeof(buf), format, copy);
      va_end(copy);
      if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
        spdlog::error("rocksdb {}: {}", dir_, buf);
      } else {
        spdlog::warn("rocksdb {}: {}", dir_, buf);
      }
    }
    if (file_) file_->Logv(level, format, ap);
  }
  void Flush() override {
    if (file_) file_->Flush();
  }

 protected:
  rocksdb::Status CloseImpl() override { return file_ ? file_->Close() : rocksdb::Status::OK(); }

 private:
  const std::string dir_;
  const std::shared_ptr<rocksdb::Logger> file_;
};

// One run of equal terms in the log: entries [start, next run's start) all have this term.
struct TermRun {
  uint64_t start;
  uint64_t term;
};

}  // namespace

struct RaftLog::Impl {
  // What readers see: an immutable value replaced as a whole after each write (copy-on-write),
  // together with a RocksDB snapshot taken right after that write, so that a reader's RocksDB
  // reads match the cached bounds exactly even while the next write is in flight.
  struct View {
    raft::HardState hard_state;
    raft::SnapshotMetadata snapshot;  // index 0: none
    ImageInfo image;                  // the snapshot's image in "images", unless legacy_image
    bool legacy_image = false;        // the image is the "snapshot_data" record
    // Invariant: snapshot.index <= last_index; the log holds [snapshot.index + 1, last_index].
    uint64_t last_index = 0;
    // Invariant: empty iff the log is empty; runs.front().start == snapshot.index + 1; starts
    // strictly increase, terms never decrease, all starts <= last_index.
    std::vector<TermRun> runs;
    std::shared_ptr<const rocksdb::Snapshot> db_snapshot;

    uint64_t term_at(uint64_t i) const {
      // REQUIRES: snapshot.index < i <= last_index.
      auto it = std::upper_bound(runs.begin(), runs.end(), i,
                                 [](uint64_t x, const TermRun& r) { return x < r.start; });
      return std::prev(it)->term;
    }
  };

  std::string dir;
  std::shared_ptr<rocksdb::Logger> logger;
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* meta_cf = nullptr;     // owned by db
  rocksdb::ColumnFamilyHandle* entries_cf = nullptr;  // owned by db
  rocksdb::ColumnFamilyHandle* images_cf = nullptr;   // owned by db
  rocksdb::Options image_options;                     // the images family's
  // image_options without the database's logger, for image files: build_image may run in a
  // forked child, where the logger's locks may be held by threads the child does not have.
  rocksdb::Options image_file_options;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;

  // Serializes writers (the contract allows one, but put_meta may come from elsewhere at start).
  std::mutex write_mu;
  // Set after a failed write: RocksDB may hold part of it in memory, so the cached view can no
  // longer be trusted to match; every later write fails with this message.
  std::optional<std::string> write_error;  // GUARDED_BY(write_mu)

  mutable std::mutex view_mu;
  std::shared_ptr<const View> view;  // GUARDED_BY(view_mu); never null after open

  // The newest entries written, contiguous (at most kCacheEntries of them and kCacheBytes of
  // data, at least one): entries() answers from here what the raft core reads most (committed
  // entries to apply, appends for followers that keep up) without a RocksDB iterator. Kept in
  // step with the log by the writer after each successful write; a reader checks the terms of
  // what it takes against its own view (an entry with the same index and term is the same
  // entry, Raft's Log Matching), so a write racing the read cannot hand it an entry its view
  // does not have.
  static constexpr size_t kCacheEntries = 16384;
  static constexpr size_t kCacheBytes = 16 << 20;
  mutable std::mutex cache_mu;
  std::deque<raft::Entry> cache;  // GUARDED_BY(cache_mu)
  size_t cache_bytes = 0;         // GUARDED_BY(cache_mu)

  // After entries[skip..] were written (replacing the log from entries[skip].index on).
  void cache_appended(const std::vector<raft::Entry>& entries, size_t skip) {
    std::lock_guard lk(cache_mu);
    const uint64_t start = entries[skip].index;
    if (!cache.empty() && (start < cache.front().index || start > cache.back().index + 1)) {
      cache.clear();
      cache_bytes = 0;
    }
    while (!cache.empty() && cache.back().index >= start) {
      cache_bytes -= cache.back().data.size();
      cache.pop_back();
    }
    for (size_t i = skip; i < entries.size(); ++i) {
      cache.push_back(entries[i]);
      cache_bytes += entries[i].data.size();
    }
    while (cache.size() > 1 && (cache.size() > kCacheEntries || cache_bytes > kCacheBytes)) {
      cache_bytes -= cache.front().data.size();
      cache.pop_front();
    }
  }

  // After a snapshot at index was recorded: entries up to it are gone from the log; all of
  // them when the log was discarded.
  void cache_compacted(uint64_t index, bool discarded) {
    std::lock_guard lk(cache_mu);
    while (!cache.empty() && (discarded || cache.front().index <= index)) {
      cache_bytes -= cache.front().data.size();
      cache.pop_front();
    }
  }

  // entries() from the cache: true if [lo, hi) is all there and agrees with v (out then holds
  // what the RocksDB read would give, max_bytes applied as there); false leaves out as it was.
  // REQUIRES: v.snapshot.index < lo < hi <= v.last_index + 1.
  bool cached_entries(const View& v, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                      std::vector<raft::Entry>* out) const {
    std::lock_guard lk(cache_mu);
    if (cache.empty() || lo < cache.front().index || hi > cache.back().index + 1) return false;
    const size_t before = out->size();
    auto run = std::upper_bound(v.runs.begin(), v.runs.end(), lo,
                                [](uint64_t x, const TermRun& r) { return x < r.start; });
    uint64_t bytes = 0;
    for (uint64_t i = lo; i < hi; ++i) {
      while (run != v.runs.end() && run->start <= i) ++run;
      const raft::Entry& e = cache[i - cache.front().index];
      if (e.term != std::prev(run)->term) {
        out->resize(before);
        return false;
      }
      bytes += e.data.size();
      if (i > lo && bytes > max_bytes) break;
      out->push_back(e);
    }
    return true;
  }
  // Indexes of the images snapshot() is reading now (their files must stay).
  mutable std::multiset<uint64_t> image_readers;  // GUARDED_BY(view_mu)

  ~Impl() {
    {
      std::lock_guard lk(view_mu);
      view.reset();  // releases the RocksDB snapshot before the database goes
    }
    if (db) {
      for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      rocksdb::Status s = db->Close();
      if (!s.ok()) spdlog::warn("closing {}: {}", dir, s.ToString());
    }
  }

  std::shared_ptr<const View> current() const {
    std::lock_guard lk(view_mu);
    return view;
  }

  std::shared_ptr<const rocksdb::Snapshot> take_db_snapshot() {
    rocksdb::DB* d = db.get();
    return std::shared_ptr<const rocksdb::Snapshot>(
        d->GetSnapshot(), [d](const rocksdb::Snapshot* s) { d->ReleaseSnapshot(s); });
  }

  Status fail(const std::string& what) const { return Status::error(dir + ": " + what); }

  // Writes batch (fsynced unless sync is false) and, once written, publishes next as the
  // readers' view.
  // REQUIRES: write_mu held.
  Status commit(rocksdb::WriteBatch* batch, std::optional<View> next, const char* op,
                bool sync = true) {
    if (write_error) return Status::error(*write_error);
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    rocksdb::Status s = db->Write(wo, batch);
    if (!s.ok()) {
      write_error = dir + ": " + op + ": " + s.ToString();
      return Status::error(*write_error);
    }
    if (next) {
      next->db_snapshot = take_db_snapshot();
      auto published = std::make_shared<const View>(std::move(*next));
      std::lock_guard lk(view_mu);
      view = std::move(published);
    }
    return Status::ok();
  }

  Status load(bool fresh);

  // Drops the image files whose keys all lie in [image_key(lo, 0), image_key(hi, 0)).
  void drop_images(uint64_t lo, uint64_t hi) {
    const std::string b = image_key(lo, 0), e = image_key(hi, 0);
    rocksdb::Slice bs(b), es(e);
    rocksdb::Status s = rocksdb::DeleteFilesInRange(db.get(), images_cf, &bs, &es, false);
    if (!s.ok()) spdlog::warn("{}: dropping images [{}, {}): {}", dir, lo, hi, s.ToString());
  }

  // Writes data as one image SST file at path: chunks of at most kImageChunkBytes under image
  // keys of index, synced. Uses no database, only the images family's table options (so it may
  // run in a forked child). A failure removes the file.
  Result<ImageInfo> build_image(uint64_t index, std::string_view data,
                                const std::string& path) const {
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), image_file_options);
    ImageInfo info;
    info.index = index;
    rocksdb::Status s = writer.Open(path);
    const char* what = "creating";
    // An empty image is one empty chunk.
    for (size_t at = 0; s.ok() && (at < data.size() || info.chunks == 0); at += kImageChunkBytes) {
      const std::string_view chunk = data.substr(std::min(at, data.size()), kImageChunkBytes);
      s = writer.Put(image_key(index, info.chunks), slice(chunk));
      what = "writing";
      ++info.chunks;
      info.bytes += chunk.size();
    }
    if (s.ok()) {
      s = writer.Finish();
      what = "finishing";
    }
    if (s.ok()) return info;
    std::error_code ec;
    fs::remove(path, ec);
    return fail(std::string(what) + " the image " + path + ": " + s.ToString());
  }

  // Moves the image file at path into the images family (a hard link, no copy).
  Status ingest(const std::string& path) {
    rocksdb::IngestExternalFileOptions io;
    io.move_files = true;
    rocksdb::Status s = db->IngestExternalFile(images_cf, {path}, io);
    if (!s.ok()) return fail("ingesting the image " + path + ": " + s.ToString());
    return Status::ok();
  }
};

namespace {

std::string describe_dir_contents(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (size_t i = 0; i < names.size() && i < 5; ++i) {
    if (i) out += ", ";
    out += names[i];
  }
  if (names.size() > 5) out += ", ...";
  return out;
}

}  // namespace

Status RaftLog::Impl::load(bool fresh) {
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  std::string v;

  // Format record.
  rocksdb::Status s = db->Get(ro, meta_cf, slice(kFormatKey), &v);
  if (s.IsNotFound()) {
    bool empty = true;
    for (auto* cf : {meta_cf, entries_cf}) {
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, cf));
      it->SeekToFirst();
      if (it->Valid()) empty = false;
      if (!it->status().ok()) return fail("reading RocksDB: " + it->status().ToString());
    }
    if (!empty) {
      return fail("not a kvd raft log: the RocksDB database has no \"format\" record");
    }
    if (!fresh) {
      spdlog::warn("{}: database without records (its creation was interrupted); initializing",
                   dir);
    }
    rocksdb::WriteBatch b;
    b.Put(meta_cf, slice(kFormatKey), encode_format()).PermitUncheckedError();
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = db->Write(wo, &b);
    if (!s.ok()) return fail("writing the format record: " + s.ToString());
  } else if (!s.ok()) {
    return fail("reading the format record: " + s.ToString());
  } else {
    std::string_view in(v);
    uint32_t version = 0;
    if (in.substr(0, kFormatMagic.size()) != kFormatMagic) {
      return fail("not a kvd raft log: the \"format\" record does not start with \"" +
                  std::string(kFormatMagic) + "\"");
    }
    in.remove_prefix(kFormatMagic.size());
    codec::Reader r(in);
    if (!r.u32(&version) || !r.done()) {
      return fail("malformed \"format\" record (" + std::to_string(v.size()) + " bytes)");
    }
    if (version != kFormatVersion) {
      return fail("unknown raft log format version " + std::to_string(version) +
                  " (this kvd reads version " + std::to_string(kFormatVersion) + ")");
    }
  }

  View next;
  auto read_record = [&](std::string_view key, auto decode) -> Status {
    std::string value;
    rocksdb::Status rs = db->Get(ro, meta_cf, slice(key), &value);
    if (rs.IsNotFound()) return Status::ok();
    if (!rs.ok()) return fail("reading \"" + std::string(key) + "\": " + rs.ToString());
    if (!decode(std::string_view(value))) {
      return fail("malformed \"" + std::string(key) + "\" record (" +
                  std::to_string(value.size()) + " bytes)");
    }
    return Status::ok();
  };
  if (Status st = read_record(kHardStateKey,
                              [&](std::string_view x) {
                                return decode_hard_state(x, &next.hard_state);
                              });
      !st.is_ok()) {
    return st;
  }
  if (Status st = read_record(kSnapshotMetaKey,
                              [&](std::string_view x) {
                                return decode_snapshot_meta(x, &next.snapshot, &next.image,
                                                            &next.legacy_image);
                              });
      !st.is_ok()) {
    return st;
  }

  // The log: contiguous from snapshot index + 1, terms non-decreasing.
  next.last_index = next.snapshot.index;
  uint64_t last_term = next.snapshot.term;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, entries_cf));
  raft::Entry e;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    uint64_t index = 0;
    std::string_view k(it->key().data(), it->key().size());
    if (!decode_entry_key(k, &index)) {
      return fail("malformed raft log key (" + std::to_string(k.size()) + " bytes)");
    }
    if (index != next.last_index + 1) {
      if (next.runs.empty()) {
        return fail("raft log starts at index " + std::to_string(index) +
                    " but the snapshot ends at " + std::to_string(next.snapshot.index) +
                    " (entries are missing)");
      }
      return fail("gap in the raft log: entry " + std::to_string(next.last_index) +
                  " is followed by entry " + std::to_string(index));
    }
    std::string_view val(it->value().data(), it->value().size());
    if (!decode_entry(val, index, &e)) {
      return fail("malformed raft log entry " + std::to_string(index) + " (" +
                  std::to_string(val.size()) + " bytes)");
    }
    if (e.term < last_term) {
      return fail("raft log entry " + std::to_string(index) + " has term " +
                  std::to_string(e.term) + ", lower than the preceding term " +
                  std::to_string(last_term));
    }
    if (next.runs.empty() || e.term != last_term) next.runs.push_back({index, e.term});
    last_term = e.term;
    next.last_index = index;
  }
  if (!it->status().ok()) return fail("reading the raft log: " + it->status().ToString());
  it.reset();

  // Images other than the snapshot's: ingested before a crash kept their snapshot from being
  // recorded, or replaced but not dropped yet. Image files being built are left-overs too.
  const bool keep = next.snapshot.index != 0 && !next.legacy_image;
  drop_images(0, keep ? next.snapshot.index : ~uint64_t{0});
  if (keep) drop_images(next.snapshot.index + 1, ~uint64_t{0});
  std::error_code ec;
  for (auto entry = fs::directory_iterator(dir, ec); !ec && entry != fs::directory_iterator();
       entry.increment(ec)) {
    const std::string name = entry->path().filename().string();
    if (name.rfind("image-", 0) == 0 && name.size() > 8 &&
        name.compare(name.size() - 8, 8, ".sst.tmp") == 0) {
      std::error_code rm;
      fs::remove(entry->path(), rm);
    }
  }

  next.db_snapshot = take_db_snapshot();
  view = std::make_shared<const View>(std::move(next));
  return Status::ok();
}

RaftLog::RaftLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RaftLog::~RaftLog() = default;

namespace {

// The MANIFEST file CURRENT points at ("<dir>/MANIFEST-000023"), or "<dir>/CURRENT" when CURRENT
// cannot be read or names nothing plausible.
std::string current_manifest_path(const fs::path& dir) {
  std::ifstream in(dir / "CURRENT");
  std::string name;
  if (in && std::getline(in, name) && name.rfind("MANIFEST-", 0) == 0 &&
      name.find('/') == std::string::npos) {
    return (dir / name).string();
  }
  return (dir / "CURRENT").string();
}

}  // namespace

Result<std::unique_ptr<RaftLog>> RaftLog::open(const std::string& dir) {
  std::error_code ec;
  const fs::path path(dir);
  bool fresh = false;
  fs::file_status st = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Status::error(dir + ": " + ec.message());
  }
  if (!fs::exists(st)) {
    fresh = true;
  } else if (!fs::is_directory(st)) {
    return Status::error(dir + ": exists and is not a directory");
  } else if (fs::is_empty(path, ec)) {
    fresh = true;
  } else if (!fs::exists(path / "CURRENT", ec)) {
    return Status::error(dir + ": not a kvd database (no RocksDB CURRENT file; the directory holds: " +
                         describe_dir_contents(path) + ")");
  }

  auto impl = std::make_unique<Impl>();
  impl->dir = dir;

  rocksdb::Options options;
  options.create_if_missing = fresh;
  options.create_missing_column_families = fresh;
  options.error_if_exists = false;
  options.paranoid_checks = true;
  options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  options.manual_wal_flush = false;
  // RocksDB's info LOG: at most 4 files of 4 MiB.
  options.keep_log_file_num = 4;
  options.max_log_file_size = 4 << 20;
  // The write-ahead log. Every write puts the hard state into the small default family, whose
  // memtable would otherwise keep every WAL file alive (up to 4x the memtables, 576 MiB) and make
  // a restart replay them all: past 32 MiB of WAL, RocksDB flushes the families holding the oldest
  // one. (WAL file reuse, recycle_log_file_num, is not available with point-in-time recovery.)
  options.max_total_wal_size = 32 << 20;
  options.max_background_jobs = 2;
  options.max_open_files = 256;
  // A raft log is small (compacted by snapshots) and written append-only: modest memtables, no
  // compression, whole-file checksums verified on open.
  options.write_buffer_size = 16 << 20;
  options.max_write_buffer_number = 3;
  options.compression = rocksdb::kNoCompression;
  options.bottommost_compression = rocksdb::kNoCompression;

  if (fresh) {
    fs::create_directories(path, ec);
    if (ec) return Status::error(dir + ": cannot create directory: " + ec.message());
  }
  std::shared_ptr<rocksdb::Logger> file_logger;
  if (rocksdb::Status ls = rocksdb::CreateLoggerFromOptions(dir, options, &file_logger); !ls.ok()) {
    file_logger.reset();  // RocksDB then logs nowhere; our forwarding of warnings still works
  }
  impl->logger = std::make_shared<ForwardingLogger>(dir, std::move(file_logger));
  options.info_log = impl->logger;

  if (!fresh) {
    std::vector<std::string> families;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, dir, &families);
    if (!s.ok()) return Status::error(dir + ": cannot open RocksDB: " + s.ToString());
    std::set<std::string> got(families.begin(), families.end());
    std::set<std::string> want = {rocksdb::kDefaultColumnFamilyName, kEntriesFamily,
                                  kImagesFamily};
    // A database of an earlier kvd has no "images" family yet: it is created.
    std::set<std::string> earlier = {rocksdb::kDefaultColumnFamilyName, kEntriesFamily};
    if (got == earlier) options.create_missing_column_families = true;
    if (got != want && got != earlier) {
      std::string names;
      for (const auto& f : families) names += (names.empty() ? "" : ", ") + f;
      // The family list comes from the MANIFEST that CURRENT names: a truncated or overwritten
      // MANIFEST usually still parses as a shorter list, so the damaged file is that one.
      return Status::error(dir + ": not a kvd raft log, or its MANIFEST is damaged: " +
                           current_manifest_path(path) + " lists column families [" + names +
                           "], expected [default, entries, images]");
    }
  }

  rocksdb::ColumnFamilyOptions cf_options(options);
  rocksdb::ColumnFamilyOptions image_cf_options(options);
  image_cf_options.disable_auto_compactions = true;
  impl->image_options = rocksdb::Options(rocksdb::DBOptions(options), image_cf_options);
  impl->image_file_options = impl->image_options;
  impl->image_file_options.info_log.reset();
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, cf_options},
      {kEntriesFamily, cf_options},
      {kImagesFamily, image_cf_options}};
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(options), dir, descriptors,
                                        &impl->handles, &raw);
  if (!s.ok()) return Status::error(dir + ": cannot open RocksDB: " + s.ToString());
  impl->db.reset(raw);
  impl->meta_cf = impl->handles[0];
  impl->entries_cf = impl->handles[1];
  impl->images_cf = impl->handles[2];

  // Reads every SST block: a damaged file is refused now, not found at some later read.
  s = impl->db->VerifyChecksum();
  if (!s.ok()) return Status::error(dir + ": RocksDB checksum verification: " + s.ToString());

  if (Status ls = impl->load(fresh); !ls.is_ok()) return ls;
  return std::unique_ptr<RaftLog>(new RaftLog(std::move(impl)));
}

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
    if (new_last < next.last_index) {
      batch.DeleteRange(m.entries_cf, entry_key(new_last + 1), entry_key(next.last_index + 1))
          .PermitUncheckedError();
    }
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
  Status st = m.commit(&batch, std::move(next), "append", sync || !entries.empty());
  if (st.is_ok() && skip < entries.size()) m.cache_appended(entries, skip);
  return st;
}

Status RaftLog::save_snapshot(const raft::Snapshot& snap) {
  if (snap.metadata.index == 0) return impl_->fail("save_snapshot: snapshot index 0");
  if (const uint64_t stored = impl_->current()->snapshot.index; snap.metadata.index < stored) {
    return impl_->fail("save_snapshot: snapshot at " + std::to_string(snap.metadata.index) +
                       " is older than the stored one at " + std::to_string(stored));
  }
  Result<ImageInfo> image = write_image(snap.metadata.index, snap.data);
  if (!image.is_ok()) return image.status();
  return save_snapshot(snap.metadata, image.value());
}

Result<ImageInfo> RaftLog::write_image(uint64_t index, std::string_view data) {
  const std::string tmp = impl_->dir + "/image-" + std::to_string(index) + ".sst.tmp";
  Result<ImageInfo> info = impl_->build_image(index, data, tmp);
  if (!info.is_ok()) return info;
  Status st = impl_->ingest(tmp);
  std::error_code ec;
  fs::remove(tmp, ec);  // gone already once ingested (moved); left by a failed ingestion
  if (!st.is_ok()) return st;
  return info;
}

Status RaftLog::build_image(uint64_t index, std::string_view data, const std::string& path) const {
  Result<ImageInfo> info = impl_->build_image(index, data, path);
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
  if (index <= next.last_index && next.term_at(index) == meta.term) {
    // The snapshot covers a prefix of our log: drop the prefix, keep the rest.
    batch.DeleteRange(m.entries_cf, entry_key(first), entry_key(index + 1)).PermitUncheckedError();
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
    // snapshot": discard the entire log).
    if (next.last_index >= first) {
      batch.DeleteRange(m.entries_cf, entry_key(first), entry_key(next.last_index + 1))
          .PermitUncheckedError();
    }
    next.runs.clear();
    next.last_index = index;
  }
  const bool discarded = next.runs.empty();
  next.snapshot = meta;
  next.image = image;
  next.legacy_image = false;
  if (Status st = m.commit(&batch, std::move(next), "save_snapshot"); !st.is_ok()) return st;
  m.cache_compacted(index, discarded);
  // Older images go, except one snapshot() is reading now.
  uint64_t bound = index;
  {
    std::lock_guard lk(m.view_mu);
    if (!m.image_readers.empty()) bound = std::min(bound, *m.image_readers.begin());
  }
  m.drop_images(0, bound);
  return Status::ok();
}

std::pair<raft::HardState, raft::ConfState> RaftLog::initial_state() const {
  auto v = impl_->current();
  return {v->hard_state, v->snapshot.conf_state};
}

raft::StorageError RaftLog::entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                                    std::vector<raft::Entry>* out) const {
  auto v = impl_->current();
  if (lo <= v->snapshot.index) return raft::StorageError::kCompacted;
  if (hi > v->last_index + 1) return raft::StorageError::kUnavailable;
  if (lo >= hi) return raft::StorageError::kOk;
  if (impl_->cached_entries(*v, lo, hi, max_bytes, out)) return raft::StorageError::kOk;

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
      spdlog::error("{}: raft log entry {} is missing or malformed", impl_->dir, want);
      return raft::StorageError::kIo;
    }
    bytes += e.data.size();
    if (want > lo && bytes > max_bytes) return raft::StorageError::kOk;
    out->push_back(std::move(e));
  }
  if (!it->status().ok()) {
    spdlog::error("{}: reading raft log entries [{}, {}): {}", impl_->dir, lo, hi,
                  it->status().ToString());
    return raft::StorageError::kIo;
  }
  if (want != hi) {
    spdlog::error("{}: raft log entry {} is missing", impl_->dir, want);
    return raft::StorageError::kIo;
  }
  return raft::StorageError::kOk;
}

raft::StorageError RaftLog::term(uint64_t i, uint64_t* out) const {
  auto v = impl_->current();
  if (i < v->snapshot.index) return raft::StorageError::kCompacted;
  if (i > v->last_index) return raft::StorageError::kUnavailable;
  *out = i == v->snapshot.index ? v->snapshot.term : v->term_at(i);
  return raft::StorageError::kOk;
}

uint64_t RaftLog::first_index() const { return impl_->current()->snapshot.index + 1; }

uint64_t RaftLog::last_index() const { return impl_->current()->last_index; }

raft::StorageError RaftLog::snapshot(raft::Snapshot* out) const {
  Impl& m = *impl_;
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
  rocksdb::ReadOptions ro;
  ro.snapshot = v->db_snapshot.get();
  if (v->legacy_image) {
    rocksdb::Status s = m.db->Get(ro, m.meta_cf, slice(kSnapshotDataKey), &out->data);
    if (!s.ok()) {
      spdlog::error("{}: reading the snapshot data: {}", m.dir, s.ToString());
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
    spdlog::error("{}: reading the image of the snapshot at index {}: {}", m.dir, image.index,
                  it->status().ToString());
    return raft::StorageError::kIo;
  }
  if (chunk != image.chunks || out->data.size() != image.bytes) {
    spdlog::error("{}: the image of the snapshot at index {} is incomplete: {} of {} chunks, {} "
                  "of {} bytes",
                  m.dir, image.index, chunk, image.chunks, out->data.size(), image.bytes);
    out->data.clear();
    return raft::StorageError::kIo;
  }
  return raft::StorageError::kOk;
}

Status RaftLog::put_meta(const std::string& key, const std::string& value) {
  Impl& m = *impl_;
  std::lock_guard wl(m.write_mu);
  rocksdb::WriteBatch batch;
  batch.Put(m.meta_cf, std::string(kMetaPrefix) + key, value).PermitUncheckedError();
  return m.commit(&batch, std::nullopt, "put_meta");
}

std::optional<std::string> RaftLog::get_meta(const std::string& key) const {
  std::string value;
  rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->meta_cf, std::string(kMetaPrefix) + key, &value);
  if (s.ok()) return value;
  if (!s.IsNotFound()) spdlog::error("{}: reading meta \"{}\": {}", impl_->dir, key, s.ToString());
  return std::nullopt;
}

}  // namespace kvd::storage
