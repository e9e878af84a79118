// Durable raft state in RocksDB: log entries, hard state, snapshots (metadata + state machine
// image, the image as an SST file of its own ingested into the database) and metadata.
// Implements raft::LogStorage for the core's reads; the member writes through append() and
// save_snapshot(). Only this module includes RocksDB headers; the format is at the top of
// raft_log.cc.
//
// Thread-safety: one writer thread at a time (the member's WAL thread) may call the mutating
// methods; LogStorage reads may come from the raft strand concurrently (internally synchronized).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "raft/log_storage.h"
#include "raft/types.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace kvd::storage {

// The largest chunk of an image file (each chunk one value of the file).
inline constexpr size_t kImageChunkBytes = 1 << 20;

// A store image written into the database under its snapshot index by write_image*(), not yet
// the snapshot (save_snapshot(meta, image) makes it that).
struct ImageInfo {
  uint64_t index = 0;
  uint64_t bytes = 0;
  uint32_t chunks = 0;
};

class RaftLog : public raft::LogStorage {
 public:
  // Free space a write leaves for the database's own work (memtable flushes, compactions, a new
  // WAL file): writes are refused below it (see Impl::check_free_space).
  static constexpr uint64_t kReservedDiskBytes = 64ull << 20;

  // Opens (creating if absent) the database in dir. A directory holding something that is not a
  // kvd database, an unknown format version or corrupt records fail with a message naming the
  // file; a torn last write is dropped with a warning (see raft_log.cc's format notes).
  static Result<std::unique_ptr<RaftLog>> open(const std::string& dir);
  // What open() may be given besides the directory, for tests; the defaults are kvd's.
  struct OpenOptions {
    // The environment all of the database's file I/O goes through (RocksDB's own, the image
    // files, the check of the commit mark); null: the operating system's. Tests pass one that
    // injects faults (a power cut that drops what was not synced, I/O errors, a full disk).
    std::shared_ptr<rocksdb::Env> env;
    // Memtable size in bytes (the bound on all WAL files is twice it); 0: kvd's 16 MiB. Tests
    // make it small so that memtable flushes, WAL switches and compactions come after little
    // data.
    size_t write_buffer_bytes = 0;
    // Opens an existing database without changing any of its files (no recovery flush, no
    // clean-up of left-over images), for reading a member's log from another process: a
    // backup. Refused while a kvd process holds the database (RocksDB's LOCK file), since its
    // files may then change under the reader. Every mutating method fails.
    bool read_only = false;
  };
  static Result<std::unique_ptr<RaftLog>> open(const std::string& dir, const OpenOptions& options);
  ~RaftLog() override;

  // Appends entries (replacing any conflicting suffix from entries.front().index on) and, if
  // given, the hard state, in one write. Returns once it is on disk, unless sync is false: then
  // the write is in RocksDB's WAL but not fsynced; the next synced write makes it durable with
  // itself, and a crash before that may lose it. Raft allows that only for a hard state whose
  // commit index alone changed (the commit index is recovered from the leader; etcd-io/raft
  // MustSync), so callers pass sync = false only then.
  Status append(const std::vector<raft::Entry>& entries, const std::optional<raft::HardState>& hs,
                bool sync = true);

  // Stores a snapshot and deletes the log entries it covers (index <= snapshot index), synced:
  // write_image(snap.data) then save_snapshot(snap.metadata, image). A snapshot older than the
  // stored one is refused.
  Status save_snapshot(const raft::Snapshot& snap);

  // Writes a store image as one SST file (1 MiB values) and ingests it into the database: the
  // bytes go to disk once, bypassing RocksDB's write-ahead log and memtables, and an image a
  // later snapshot replaces is dropped as a whole file. Safe on any thread, concurrently with
  // the writer thread; the image is unused until save_snapshot(meta, image).
  Result<ImageInfo> write_image(uint64_t index, std::string_view data);
  // The same in two steps, so that the file can be made elsewhere: build_image writes the image
  // file at path (synced) and touches nothing else: no database state, no logger, no thread, so
  // any thread may call it. ingest_image then moves such a file into the database (a hard
  // link, no copy); a file that is not an image of index made by build_image is refused,
  // naming it. Same thread rules as write_image.
  Status build_image(uint64_t index, std::string_view data, const std::string& path) const;
  // build_image for an image handed over in pieces as it is made (never whole in memory):
  // produce(put) calls put with each piece in order, each of at most kImageChunkBytes (it is
  // stored as one chunk); put answers false once the file failed, and produce should stop.
  using ImagePut = std::function<bool(std::string_view)>;
  Status build_image(uint64_t index, const std::function<void(const ImagePut&)>& produce,
                     const std::string& path) const;
  Result<ImageInfo> ingest_image(uint64_t index, const std::string& path);
  // Makes an image written by write_image* the snapshot at meta (meta.index == image.index) and
  // compacts the log as save_snapshot(snap) does, synced; the previous image is deleted. An image
  // at or below the stored snapshot's index is dropped instead (a newer snapshot, e.g. one from
  // the leader, was installed meanwhile): returns ok.
  Status save_snapshot(const raft::SnapshotMetadata& meta, const ImageInfo& image);
  // save_snapshot(meta, image) in two steps, so that the writer's appends need not wait while
  // the files the snapshot made useless are dropped (each drop a synced change of RocksDB's
  // manifest, 4-17 ms under load): record_snapshot does all but that; drop_replaced, on any
  // thread, drops the images below the recorded snapshot's (except one snapshot() is reading)
  // and the table files holding only entries it compacted (except those a read of entries
  // under way needs).
  Status record_snapshot(const raft::SnapshotMetadata& meta, const ImageInfo& image);
  void drop_replaced();

  // A write is refused without touching the database while the disk has less than
  // kReservedDiskBytes free. After a write failed in RocksDB (an I/O error, a disk that filled
  // anyway, a file system turned read-only), every write is refused with that error until
  // resume() succeeds: once a probe file can be written and synced again, it opens the database
  // anew (RocksDB's DB::Resume is not used: Impl::reopen says why), which writes what the WAL
  // files hold into new table files and starts a new WAL file, so that a write retried afterwards
  // is synced anew. The write that failed may be in the log afterwards, or not: it was never
  // acknowledged (the member retries it). Ok when writes are accepted again (at once when none
  // failed); the error while the disk still fails. Reads go on meanwhile, from a read-only
  // instance if the database cannot be opened for writing.
  Status resume();

  // raft::LogStorage
  std::pair<raft::HardState, raft::ConfState> initial_state() const override;
  raft::StorageError entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                             std::vector<raft::Entry>* out) const override;
  raft::StorageError term(uint64_t i, uint64_t* out) const override;
  uint64_t first_index() const override;
  uint64_t last_index() const override;
  raft::StorageError snapshot(raft::Snapshot* out) const override;

  // Free-form metadata (cluster id, member id, ...), synced.
  Status put_meta(const std::string& key, const std::string& value);
  std::optional<std::string> get_meta(const std::string& key) const;

 private:
  struct Impl;
  explicit RaftLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvd::storage
