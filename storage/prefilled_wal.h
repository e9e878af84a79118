// Write-ahead log files written over zeros: a durable append then costs one trip to the device.
//
// Why. A synced append to a file that grows is two device writes on ext4 and xfs: the data, then
// the journal commit of the inode's new size (and of the blocks newly allocated, or of unwritten
// extents turned written, when the space was fallocate()d). Overwriting blocks that were
// written before and leaving the size as it is, fdatasync has nothing but the data to write: on
// this project's test machine 0.13 ms against 0.21-0.25 ms for a 4 KiB append. RocksDB's own
// WAL recycling (recycle_log_file_num) would give that but is switched off under point-in-time
// recovery, which the raft log needs (raft_log.cc). So this file system gives RocksDB, for each
// new WAL file, a file already written with zeros and synced ("the spare"), renamed to the WAL's
// name, and turns RocksDB's appends into positional writes from offset 0.
//
// Format and what a crash leaves. A WAL file is RocksDB's log format (db/log_format.h) followed,
// until it is closed, by the rest of the zeros. RocksDB's reader skips zeros as empty padding
// (a zero header is "a zero-length record": the rest of the 32 KiB block is dropped without
// a corruption report) up to the end of the file, so a file that a crash left with its zero tail
// recovers like one that ended there. Close truncates the tail away. What a zero tail adds to
// the usual torn-tail cases: the pages of unsynced writes may reach the disk in any order, so a
// crash can leave zeros (a lost page) followed by a later record that did reach it. Every such
// record is unsynced, and so never acknowledged, but RocksDB would replay it after the hole;
// WriteNumberFilter stops the replay at the first record whose write number does not follow
// its predecessor's, so recovery always yields a prefix of the records written, as with
// appends.
//
// The spare: <dir>/WAL-SPARE, made as <dir>/WAL-SPARE.tmp (zeros, synced) and renamed; it is a
// complete zero file under that name or not there at all. A crash leaves at most a stale
// WAL-SPARE.tmp, which open() deletes. A rename of the spare to a WAL's name is made durable by
// RocksDB itself, which fsyncs the WAL directory before its first synced write to a new WAL
// file. When no spare is ready (a WAL switch faster than the zeroing), the WAL file is RocksDB's
// ordinary growing file. A WAL that outgrows its spare grows past it the ordinary way.
//
// Thread-safety: any thread; one background thread per file system zeroes the next spare,
// joined by the destructor.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/wal_filter.h>

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace kvd::storage {

class PrefilledWalFs : public rocksdb::FileSystemWrapper {
 public:
  // The spare's name in the database directory.
  static constexpr const char* kSpareName = "WAL-SPARE";

  // WAL files in dir get spares of spare_bytes, made only while the file system has at least
  // keep_free_bytes free besides (a spare is space the database may need for other files: when
  // space runs short there is none, and release_spare() gives its space back).
  // REQUIRES: dir exists.
  PrefilledWalFs(const std::shared_ptr<rocksdb::FileSystem>& base, std::string dir,
                 uint64_t spare_bytes, uint64_t keep_free_bytes);
  ~PrefilledWalFs() override;

  static const char* kClassName() { return "PrefilledWalFs"; }
  const char* Name() const override { return kClassName(); }

  // Deletes a stale WAL-SPARE.tmp and, unless a complete spare is there, makes one now, so that
  // the WAL the database opens with gets it. An error (a full disk) is returned and changes
  // nothing else: the WAL files are then ordinary ones until a spare can be made.
  rocksdb::IOStatus prepare();

  // Deletes the spare, if there is one ready; returns whether it did. The next WAL file is an
  // ordinary one unless space allows a new spare by then.
  bool release_spare();

  rocksdb::IOStatus NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;

 private:
  class WalFile;

  // Zeroes a new spare (paced: at most 32 MiB/s, see the .cc). REQUIRES: mu_ not held; only the
  // background thread or prepare() (before the thread is started) call it.
  rocksdb::IOStatus make_spare(bool paced);
  void run();

  const std::string dir_;
  std::filesystem::path wal_dir_;  // dir_, normalized
  const std::string spare_path_;
  const uint64_t spare_bytes_;
  const uint64_t keep_free_bytes_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool spare_ready_ = false;   // GUARDED_BY(mu_): spare_path_ is a complete spare
  bool want_spare_ = false;    // GUARDED_BY(mu_): the thread should make one
  bool stop_ = false;          // GUARDED_BY(mu_)
  std::thread thread_;         // started by the first WAL file that takes the spare
};

// Bytes free for unprivileged writers on the file system holding path (nullopt: unknown).
std::optional<uint64_t> free_disk_bytes(const std::string& path);

// An Env that is env with its file system wrapped by fs (the database's files go through fs,
// everything else, clocks and threads, through env). Owns both.
std::shared_ptr<rocksdb::Env> env_with_file_system(std::shared_ptr<rocksdb::Env> env,
                                                   std::shared_ptr<rocksdb::FileSystem> fs);

// Numbers the log's writes and stops WAL replay at a hole (see the top). Every write batch
// the raft log commits carries, as RocksDB log data (WAL only, no sequence number, never in a
// table file), its write number, u64 little-endian, then kTag (last, so that a record ends in
// non-zero bytes and stands out from the zeros after it): one more than the previous
// write's since the database was opened. Replay stops at the first numbered record whose number
// is not one more than the previous numbered record's. (RocksDB's own sequence numbers cannot
// serve: ingesting an image takes one without a WAL record.) Records without a number (the
// format record written at creation, writes of earlier kvd) pass. Stateful: one per DB::Open.
class WriteNumberFilter : public rocksdb::WalFilter {
 public:
  static constexpr const char kTag[4] = {'k', 'v', 'd', 'W'};

  // Adds write number n to batch.
  static void stamp(rocksdb::WriteBatch* batch, uint64_t n);

  WalProcessingOption LogRecordFound(unsigned long long log_number,
                                     const std::string& log_file_name,
                                     const rocksdb::WriteBatch& batch,
                                     rocksdb::WriteBatch* new_batch,
                                     bool* batch_changed) override;
  const char* Name() const override { return "kvd.WriteNumberFilter"; }

  // The number of the last record replayed (0: none had one).
  uint64_t last_number() const { return last_; }

 private:
  uint64_t last_ = 0;
};

}  // namespace kvd::storage
