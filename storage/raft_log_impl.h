// storage::RaftLog's internals, shared by raft_log.cc (the format, writes and reads),
// raft_log_open.cc (opening and checking a database) and raft_log_images.cc (store images and
// snapshots). Not part of the interface: include storage/raft_log.h instead.
#pragma once

#include "storage/raft_log.h"

#include "common/codec.h"
#include "storage/prefilled_wal.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <boost/crc.hpp>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
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
#include <shared_mutex>
#include <unistd.h>
#include <string_view>

namespace kvd::storage {
namespace raft_log_detail {

namespace fs = std::filesystem;

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr std::string_view kFormatMagic = "kvd-raft-log";
inline constexpr char kEntriesFamily[] = "entries";
inline constexpr char kImagesFamily[] = "images";

inline constexpr std::string_view kFormatKey = "format";
inline constexpr std::string_view kHardStateKey = "hard_state";
inline constexpr std::string_view kSnapshotMetaKey = "snapshot_meta";
inline constexpr std::string_view kSnapshotDataKey = "snapshot_data";
inline constexpr std::string_view kMetaPrefix = "meta/";

using codec::put_u32;
using codec::put_u64;

inline std::string entry_key(uint64_t index) {
  std::string k;
  codec::put_u64_be(k, index);
  return k;
}

inline std::string image_key(uint64_t index, uint32_t chunk) {
  std::string k = entry_key(index);
  codec::put_u32_be(k, chunk);
  return k;
}

inline bool decode_entry_key(std::string_view k, uint64_t* index) {
  codec::Reader r(k);
  return r.u64_be(index) && r.done();
}

inline std::string encode_entry(const raft::Entry& e) {
  std::string v;
  v.reserve(9 + e.data.size());
  put_u64(v, e.term);
  v.push_back(static_cast<char>(e.type));
  v.append(e.data);
  return v;
}

inline bool decode_entry(std::string_view v, uint64_t index, raft::Entry* e) {
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

inline std::string encode_format() {
  std::string v(kFormatMagic);
  put_u32(v, kFormatVersion);
  return v;
}

inline std::string encode_hard_state(const raft::HardState& hs) {
  std::string v;
  put_u64(v, hs.term);
  put_u64(v, hs.vote);
  put_u64(v, hs.commit);
  return v;
}

inline bool decode_hard_state(std::string_view v, raft::HardState* hs) {
  codec::Reader r(v);
  return r.u64(&hs->term) && r.u64(&hs->vote) && r.u64(&hs->commit) && r.done();
}

inline std::string encode_snapshot_meta(const raft::SnapshotMetadata& m, const ImageInfo& image) {
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
inline bool decode_snapshot_meta(std::string_view v, raft::SnapshotMetadata* m, ImageInfo* image,
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

inline rocksdb::Slice slice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

// One run of equal terms in the log: entries [start, next run's start) all have this term.
struct TermRun {
  uint64_t start;
  uint64_t term;
};

}  // namespace raft_log_detail

using namespace raft_log_detail;  // NOLINT: the format's own vocabulary, in the log's files

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
  bool read_only = false;  // opened with OpenOptions::read_only: never writes
  // The environment of every file operation on the database (RaftLog::OpenOptions::env), and
  // its file system. Outlive db.
  std::shared_ptr<rocksdb::Env> env;
  std::shared_ptr<rocksdb::FileSystem> file_system;
  // The WAL files' file system inside env (null when read_only), and the filter of the last
  // open's WAL replay (prefilled_wal.h).
  std::shared_ptr<PrefilledWalFs> wal_fs;
  std::unique_ptr<WriteNumberFilter> wal_filter;
  // The number the next committed write carries (WriteNumberFilter). GUARDED_BY(write_mu)
  uint64_t next_write_number = 1;
  std::shared_ptr<rocksdb::Logger> logger;
  // How db was opened, to open it again (reopen()).
  rocksdb::DBOptions db_options;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  // Held shared by every user of db and of a view (its RocksDB snapshot belongs to db) but the
  // writer, and exclusively by reopen() while it replaces db. Lock order: write_mu, then db_mu
  // (a holder of db_mu never waits for write_mu).
  mutable std::shared_mutex db_mu;
  // Null only after a reopen() that could not open the database at all (readers answer kIo).
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* meta_cf = nullptr;     // owned by db
  rocksdb::ColumnFamilyHandle* entries_cf = nullptr;  // owned by db
  rocksdb::ColumnFamilyHandle* images_cf = nullptr;   // owned by db
  rocksdb::Options image_options;                     // the images family's
  // image_options without the database's logger, for image files: build_image touches no
  // database state and may run on any thread.
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

  // After a snapshot was recorded. Entries at or below its index stay, never read again
  // (entries() reads above the snapshot only), until appends push them out one at a time as
  // they push out any other: dropping the ~16k of them at once took the WAL thread 20-50 ms,
  // and every append waited. A discarded log's entries go at once: the cache holds one log.
  void cache_compacted(bool discarded) {
    if (!discarded) return;
    std::lock_guard lk(cache_mu);
    cache.clear();
    cache_bytes = 0;
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
  // The first index of each read of entries from the database (not from the cache) under way:
  // no file holding an entry at or above one is dropped (drop_compacted_entries), since a
  // reader's view may be older than the snapshot that compacted it. GUARDED_BY(view_mu)
  mutable std::multiset<uint64_t> entry_readers;
  // Entries at or below this may have gone with their files; a read from below it that was not
  // registered in time answers kCompacted (a newer view has compacted them). GUARDED_BY(view_mu)
  uint64_t entries_dropped_to = 0;

  // Drops the table files of the log that hold only entries at or below index, which a snapshot
  // compacted: no write, so compacting 100k entries costs the appends nothing (one write
  // deleting them took the WAL thread 0.4-0.5 s, and every append waited behind it). Entries in
  // the memtable, in level-0 files or in a file that also holds later entries stay, never read,
  // until a later snapshot drops their file; open() finds any left. REQUIRES: db_mu held
  // (shared will do: RocksDB drops files concurrently with writes) or the log not yet shared
  // (open()), a snapshot at index or beyond committed.
  void drop_compacted_entries(uint64_t index) {
    uint64_t bound = index;
    {
      std::lock_guard lk(view_mu);
      if (!entry_readers.empty()) bound = std::min(bound, *entry_readers.begin() - 1);
      entries_dropped_to = std::max(entries_dropped_to, bound);
    }
    if (bound == 0 || !db) return;
    const std::string e = entry_key(bound + 1);
    rocksdb::Slice es(e);
    rocksdb::Status s = rocksdb::DeleteFilesInRange(db.get(), entries_cf, nullptr, &es, false);
    if (!s.ok()) SPDLOG_WARN("{}: dropping compacted entries up to {}: {}", dir, bound, s.ToString());
  }

  ~Impl() {
    if (db && view && !read_only) {  // (no view: open() failed before the log was loaded)
      // A clean close leaves nothing in the write-ahead log that is not also in table files
      // (so that a damaged newest WAL file loses nothing), then syncs the commit mark: the hard
      // state may hold a commit index written unsynced, durable only once the flush succeeded (a
      // mark written without it could be ahead of the log after a power cut, and the next open
      // would refuse the database).
      if (std::lock_guard wl(write_mu); !write_error) {
        rocksdb::Status s = db->Flush(rocksdb::FlushOptions(), handles);
        if (s.ok()) {
          mark(view->hard_state, /*sync=*/true);
        } else {
          SPDLOG_WARN("{}: flushing at close: {}", dir, s.ToString());
        }
      }
    }
    if (mark_fd >= 0) ::close(mark_fd);
    close_db();
  }

  // The view. REQUIRES: write_mu held (a reader uses read()).
  std::shared_ptr<const View> current() const {
    std::lock_guard lk(view_mu);
    return view;
  }

  // A reader's hold on db and the view: while it lives, reopen() cannot replace db.
  struct Reading {
    std::shared_lock<std::shared_mutex> lock;
    std::shared_ptr<const View> view;
    const View* operator->() const { return view.get(); }
    const View& operator*() const { return *view; }
  };
  Reading read() const {
    std::shared_lock lk(db_mu);
    return Reading{std::move(lk), current()};
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
    if (Status st = check_free_space(op); !st.is_ok()) return st;
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    // Consumed even if the write fails: the record may be in the WAL all the same.
    WriteNumberFilter::stamp(batch, next_write_number++);
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

  // Creates dir (a new database's) and syncs its parent directory, so that a power cut cannot
  // take the directory, and the writes acknowledged in it, away.
  Status create_dir();
  // Reads the hard state, the snapshot and the log from db into a new view, checking the
  // invariants; unless read_only, drops images no snapshot names and left-over image files.
  Status load(bool fresh, bool read_only = false);
  // Opens db from db_options and descriptors (read_only: without writing a file, for readers
  // only), or closes it (a view's RocksDB snapshot is released first; the view keeps its
  // numbers).
  Status open_db(bool read_only);
  void close_db();
  // Replaces db by a new instance of the same database (see RaftLog::resume()).
  // REQUIRES: write_mu held.
  Status reopen();
  // The commit mark (see mark()), if there is a readable one.
  std::optional<raft::HardState> read_mark() const;
  // Refuses a database that would recover behind its commit mark, naming the newest WAL file,
  // before anything in it is changed; fresh: the database is missing or empty. Ok when there
  // is no readable mark. REQUIRES: db_options and descriptors set, unless fresh; no db open.
  Status check_mark(bool fresh);

  // The commit mark: <dir>.mark holds one line, "kvd-commit-mark 1 <term> <commit> <crc>\n",
  // the numbers in 20 digits and crc the CRC-32 (8 hex digits) of what precedes it: the term and
  // commit index of the newest hard state a synced write made durable. It is overwritten in
  // place after every synced write (one pwrite of 60 bytes, synced at a clean close) and lies
  // outside the write-ahead log, so open() can tell that the log lost what it had acknowledged
  // (a damaged, truncated or removed WAL file) instead of starting with less: neither the term
  // nor the commit index ever goes back. A crash can leave the mark stale, missing, or (power
  // loss) torn, failing its CRC: that only weakens the check, since the mark is written after
  // the write it records and so is never ahead of the log.
  std::string mark_path() const { return dir + ".mark"; }
  int mark_fd = -1;          // GUARDED_BY(write_mu); opened by the first mark()
  bool mark_warned = false;  // GUARDED_BY(write_mu)
  static std::string mark_line(const raft::HardState& hs) {
    char body[64];
    std::snprintf(body, sizeof body, "kvd-commit-mark 1 %020llu %020llu",
                  static_cast<unsigned long long>(hs.term),
                  static_cast<unsigned long long>(hs.commit));
    boost::crc_32_type crc;
    crc.process_bytes(body, std::strlen(body));
    char line[80];
    std::snprintf(line, sizeof line, "%s %08x\n", body, static_cast<unsigned>(crc.checksum()));
    return line;
  }
  // REQUIRES: write_mu held; hs is durable.
  void mark(const raft::HardState& hs, bool sync) {
    if (mark_fd < 0) mark_fd = ::open(mark_path().c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    const std::string line = mark_line(hs);
    bool ok = mark_fd >= 0 &&
              ::pwrite(mark_fd, line.data(), line.size(), 0) == static_cast<ssize_t>(line.size());
    if (ok && sync) ok = ::fsync(mark_fd) == 0;
    if (!ok && !mark_warned) {
      mark_warned = true;  // once: the mark only strengthens a check at the next start
      SPDLOG_WARN("{}: cannot write the commit mark {}: {}", dir, mark_path(),
                   std::strerror(errno));
    }
  }

  // A write is refused, before RocksDB sees it, while the file system holding the database has
  // less than kReservedDiskBytes free: RocksDB must never fail a write to its WAL for lack of
  // space (the RocksDB of Debian 12 aborts the process when it later syncs a WAL whose append
  // failed), and its flushes and compactions need room of their own. Not sticky: a write is
  // accepted again as soon as space is freed. A file system that cannot say counts as roomy.
  Status check_free_space(const char* op) const {
    std::optional<uint64_t> free_bytes = free_disk_bytes(dir);
    // A prepared WAL file is space given back before anything is refused.
    if (free_bytes && *free_bytes < kReservedDiskBytes && wal_fs && wal_fs->release_spare()) {
      free_bytes = free_disk_bytes(dir);
    }
    if (!free_bytes || *free_bytes >= kReservedDiskBytes) return Status::ok();
    return fail(std::string(op) + ": no space left on device: " + std::to_string(*free_bytes) +
                " bytes free, kvd keeps " + std::to_string(kReservedDiskBytes) +
                " in reserve for the database; free some space");
  }

  // Deletes entries [lo, hi) in batch, one Delete each. Not one DeleteRange: the RocksDB of
  // Debian 12 (7.8, built with its assertions) aborts the process when a compaction whose output
  // file would hold nothing but range tombstones, all dropped, fails to write that file (an I/O
  // error, a full disk): CompactionJob::UpdateCompactionJobStats asks the failed, empty output
  // for its smallest key (assertion "internal_key.size() >= kNumInternalBytes" in
  // ExtractUserKey). A compaction opens an output only for a key it keeps, so point deletes never
  // make such a file. (A snapshot of 100000 entries adds about 1 MB to the WAL this way.)
  void delete_entries(rocksdb::WriteBatch* batch, uint64_t lo, uint64_t hi) const {
    for (uint64_t i = lo; i < hi; ++i) {
      batch->Delete(entries_cf, entry_key(i)).PermitUncheckedError();
    }
  }

  // Drops the image files whose keys all lie in [image_key(lo, 0), image_key(hi, 0)).
  void drop_images(uint64_t lo, uint64_t hi) {
    const std::string b = image_key(lo, 0), e = image_key(hi, 0);
    rocksdb::Slice bs(b), es(e);
    rocksdb::Status s = rocksdb::DeleteFilesInRange(db.get(), images_cf, &bs, &es, false);
    if (!s.ok()) SPDLOG_WARN("{}: dropping images [{}, {}): {}", dir, lo, hi, s.ToString());
  }

  // Writes the pieces produce() hands over as one image SST file at path: chunk n of index
  // under image key n, synced (an image with no piece is one empty chunk). Uses no database,
  // only the images family's table options (so it may run on any thread). A failure
  // removes the file.
  Result<ImageInfo> build_image(uint64_t index,
                                const std::function<void(const RaftLog::ImagePut&)>& produce,
                                const std::string& path) const {
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), image_file_options);
    ImageInfo info;
    info.index = index;
    rocksdb::Status s = writer.Open(path);
    const char* what = "creating";
    auto put = [&](std::string_view chunk) {
      if (s.ok()) what = "writing";
      if (s.ok() && chunk.size() > kImageChunkBytes) {
        s = rocksdb::Status::InvalidArgument("a piece of " + std::to_string(chunk.size()) +
                                             " bytes");
      }
      if (!s.ok()) return false;
      s = writer.Put(image_key(index, info.chunks), slice(chunk));
      ++info.chunks;
      info.bytes += chunk.size();
      return s.ok();
    };
    if (s.ok()) produce(put);
    if (s.ok() && info.chunks == 0) put({});
    if (s.ok()) {
      s = writer.Finish();
      what = "finishing";
    }
    if (s.ok()) return info;
    remove_file(path);
    return fail(std::string(what) + " the image " + path + ": " + s.ToString());
  }

  // The same for an image whole in memory: chunks of kImageChunkBytes.
  Result<ImageInfo> build_image(uint64_t index, std::string_view data,
                                const std::string& path) const {
    return build_image(
        index,
        [data](const RaftLog::ImagePut& put) {
          for (size_t at = 0; at < data.size(); at += kImageChunkBytes) {
            if (!put(data.substr(at, kImageChunkBytes))) return;
          }
        },
        path);
  }

  // Removes the file at path if it is there, through file_system (so that a test's file system
  // sees every change to the directory).
  void remove_file(const std::string& path) const {
    file_system->DeleteFile(path, rocksdb::IOOptions(), nullptr).PermitUncheckedError();
  }

  // Moves the image file at path into the images family (a hard link, no copy).
  Status ingest(const std::string& path) {
    std::shared_lock dl(db_mu);
    if (!db) return fail("ingesting the image " + path + ": the database is not open");
    rocksdb::IngestExternalFileOptions io;
    io.move_files = true;
    rocksdb::Status s = db->IngestExternalFile(images_cf, {path}, io);
    if (!s.ok()) return fail("ingesting the image " + path + ": " + s.ToString());
    return Status::ok();
  }
};

}  // namespace kvd::storage
