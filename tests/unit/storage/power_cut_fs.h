// PowerCutFs: a rocksdb::FileSystem for the storage tests that keeps, at a simulated power cut,
// what a real one keeps and nothing more, and that injects I/O errors (EIO, a full disk, a file
// system turned read-only) into chosen operations. It wraps the operating system's file system:
// the files are real, in a test's directory.
//
// The model (POSIX's guarantees; ext4 and xfs promise no more):
//   - a file's data is durable up to the size it had at its last Sync or Fsync through this file
//     system. RangeSync (sync_file_range) does not count: it syncs no metadata (the file's size)
//     and does not flush the disk's cache. Bytes written over durable ones since the last sync
//     (a write at an offset below the durable size) may or may not be there: a power cut
//     undoes them, page by page at random when torn.
//   - a directory entry (a file or directory created, renamed, linked or deleted) is durable once
//     its directory was fsynced after the change (FSDirectory::Fsync). After a power cut, a file
//     created or renamed since then is gone, one deleted since then is back, one renamed over
//     another is the other one again, and a directory created since then is gone with all in it.
//   - files and directories it did not see being made (there when it started, or written by
//     other code: RocksDB's info LOG, kvd's commit mark beside the database) are left as they
//     are: they count as durable.
//
// A power cut (cut_at) stops every file operation from a chosen one on, as a machine that lost
// power does: that one and all later ones fail without changing anything. power_on() then makes
// the files what the machine finds when it boots again: each file truncated to its durable size
// (or, torn, to a random length between that and what was written: the disk got a prefix of the
// rest) and each directory back to its durable entries; from then on everything on disk counts
// as durable and operations go through again.
//
// Thread-safety: any thread. Every operation that changes something holds one mutex across the
// real I/O, so that the model and the disk change together and a cut falls between two
// operations.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/system_clock.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace kvd::storage {

class PowerCutFs : public rocksdb::FileSystemWrapper {
 public:
  // The operations that change something, as fail() selects them (a bit mask).
  enum Op : unsigned {
    kCreate = 1,     // a new or reopened writable file, a directory, a hard link
    kAppend = 2,     // data written to a file
    kSync = 4,       // Sync, Fsync and RangeSync of a file
    kDirSync = 8,    // fsync of a directory
    kRename = 16,
    kDelete = 32,    // a file or directory deleted
    kTruncate = 64,
    kAnyWrite = 127,
  };
  // Kinds of files, for fail() and cuts. kWal: RocksDB's write-ahead log files (<number>.log);
  // kTable: table files (*.sst: memtable flushes, compactions, images); kManifest: MANIFEST-*
  // and CURRENT with its temporary file (*.dbtmp); kAll: every file and directory.
  enum class Files { kAll, kWal, kTable, kManifest };

  // Tracks root and everything under it, as durable as it is now. REQUIRES: root exists and
  // nothing under it is being written.
  explicit PowerCutFs(const std::string& root);
  ~PowerCutFs() override;

  static const char* kClassName() { return "PowerCutFs"; }
  const char* Name() const override { return kClassName(); }

  // The n-th operation that changes something on files of the kind (counting from now, n >= 1)
  // and all after it fail: the power goes off just before it. 0: no cut is planned.
  void cut_at(uint64_t n, Files files = Files::kAll);
  // The power goes off now.
  void cut_now();
  bool is_cut() const;
  // Operations that changed something on files of the kind, and files of the kind created, since
  // the start.
  uint64_t ops(Files files = Files::kAll) const;
  uint64_t created(Files files) const;

  struct Boot {
    size_t files_shortened = 0;  // files that lost written data
    uint64_t bytes_lost = 0;
    size_t entries_undone = 0;   // directory entries created, removed or renamed, undone
    size_t pages_undone = 0;     // pages of unsynced writes over durable bytes, undone
  };
  // What the machine finds at boot after a power cut (see the top). REQUIRES: no file is open
  // for writing (the database that used this file system is closed).
  Boot power_on(uint64_t seed, bool torn);

  // From the (skip + 1)-th matching operation on, every operation in ops on files fails with
  // error without changing anything, until heal().
  void fail(unsigned ops, Files files, rocksdb::IOStatus error, uint64_t skip = 0);
  void heal();
  // Operations that failed with an injected error.
  uint64_t failures() const;

  // The errors the operating system's file system gives (RocksDB's posix file system marks a
  // full disk retryable).
  static rocksdb::IOStatus eio() {
    return rocksdb::IOStatus::IOError("injected", "Input/output error");
  }
  static rocksdb::IOStatus enospc() {
    rocksdb::IOStatus s = rocksdb::IOStatus::NoSpace("injected", "No space left on device");
    s.SetRetryable(true);
    return s;
  }
  static rocksdb::IOStatus erofs() {
    return rocksdb::IOStatus::IOError("injected", "Read-only file system");
  }

  rocksdb::IOStatus NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& path,
                                       const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& path, const std::string& old_path,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(const std::string& path, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& path, const rocksdb::IOOptions& options,
                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& path, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus Truncate(const std::string& path, size_t size,
                             const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDir(const std::string& path, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDirIfMissing(const std::string& path, const rocksdb::IOOptions& options,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteDir(const std::string& path, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& from, const std::string& to,
                             const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override;

 private:
  class WritableFile;
  class RandomRwFile;
  class Directory;

  // A file or directory as the model knows it (an inode: it may have several names).
  // A write over durable bytes since the file's last sync: where, and the bytes it replaced.
  struct Overwrite {
    uint64_t offset;
    std::string old;
  };
  struct Node {
    uint64_t size = 0;    // bytes written (or found at the start)
    uint64_t synced = 0;  // of them, durable
    bool is_dir = false;
    std::vector<Overwrite> overwrites;  // oldest first
  };
  // A directory's entries the model knows: as they are now, and as a power cut leaves them.
  struct Dir {
    std::map<std::string, uint64_t> now, durable;  // name -> node id
  };

  // Runs io, which changes something, unless the power is off or an injected error applies;
  // counts it. REQUIRES: mu_ not held.
  template <typename Io>
  rocksdb::IOStatus change(Op op, const std::string& path, Io io);
  // change() for io that writes bytes to node id's file at offset (at its end: nullopt), or
  // that syncs it.
  template <typename Io>
  rocksdb::IOStatus write_to(uint64_t id, const std::string& path,
                             std::optional<uint64_t> offset, size_t bytes, Io io);
  template <typename Io>
  rocksdb::IOStatus sync_of(uint64_t id, const std::string& path, Io io);
  // change() for open, which opens the file at path for writing without truncating it (creating
  // it if missing); *result is then wrapped.
  template <typename Wrapper, typename File, typename Open>
  rocksdb::IOStatus open_again(const std::string& path, std::unique_ptr<File>* result, Open open);
  // change() for io, which makes the directory at path (or finds it there).
  template <typename Io>
  rocksdb::IOStatus make_dir(const std::string& path, Io io);
  // REQUIRES: mu_ held, for all below.
  // path's directory, if tracked, and path's name in it.
  Dir* dir_of(const std::string& path, std::string* name);
  bool durable_anywhere(uint64_t id) const;
  size_t current_names(uint64_t id) const;
  // Takes name out of d's current entries; if its node would then be lost although a power
  // cut must bring it back, moves the file to the stash (returns true).
  bool displace(Dir& d, const std::string& dir_path, const std::string& name);
  uint64_t add_node(Node node);
  void synced_dir(const std::string& path);
  void drop_garbage();
  void truncated(uint64_t id, uint64_t size);
  void track_tree(const std::string& path);
  std::string stashed(uint64_t id) const;

  const std::string root_;
  const std::string stash_;  // root_/.power-cut-stash: deleted files a power cut brings back
  mutable std::mutex mu_;
  std::map<uint64_t, Node> nodes_;  // GUARDED_BY(mu_)
  std::map<std::string, Dir> dirs_;  // GUARDED_BY(mu_); by path
  uint64_t next_id_ = 1;             // GUARDED_BY(mu_)
  uint64_t ops_[4] = {};             // GUARDED_BY(mu_); by Files
  uint64_t created_[4] = {};         // GUARDED_BY(mu_); by Files
  uint64_t cut_countdown_ = 0;       // GUARDED_BY(mu_); 0: no cut planned
  Files cut_files_ = Files::kAll;    // GUARDED_BY(mu_)
  bool cut_ = false;                 // GUARDED_BY(mu_)
  struct Fault {
    unsigned ops;
    Files files;
    rocksdb::IOStatus error;
    uint64_t skip;
  };
  std::vector<Fault> faults_;  // GUARDED_BY(mu_)
  uint64_t failures_ = 0;      // GUARDED_BY(mu_)
};

// The environment for a RaftLog on fs (RaftLog::OpenOptions::env): its files go through fs, and
// RocksDB's pauses after a background error (a second each, before a retry or a close) are cut to
// a millisecond, so that a test with hundreds of failures takes seconds.
class FaultEnv : public rocksdb::EnvWrapper {
 public:
  explicit FaultEnv(const std::shared_ptr<rocksdb::FileSystem>& fs)
      : EnvWrapper(rocksdb::NewCompositeEnv(fs)) {
    file_system_ = fs;
    system_clock_ = std::make_shared<QuickClock>(rocksdb::SystemClock::Default());
  }
  const char* Name() const override { return "FaultEnv"; }
  void SleepForMicroseconds(int micros) override { system_clock_->SleepForMicroseconds(micros); }

 private:
  class QuickClock : public rocksdb::SystemClockWrapper {
   public:
    using SystemClockWrapper::SystemClockWrapper;
    const char* Name() const override { return "QuickClock"; }
    void SleepForMicroseconds(int micros) override {
      target_->SleepForMicroseconds(std::min(micros, 1000));
    }
  };
};

}  // namespace kvd::storage
