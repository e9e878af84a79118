// PrefilledWalFs and ContiguousWalFilter: see prefilled_wal.h for the why and the crash cases.
#include "storage/prefilled_wal.h"

#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>

namespace kvd::storage {

namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

constexpr size_t kZeroChunk = 1 << 20;
// A spare made in the background is written at most one chunk per interval (32 MiB/s).
constexpr auto kZeroChunkInterval = std::chrono::milliseconds(31);

// RocksDB names WAL files <number>.log (db/filename.cc, LogFileName).
bool is_wal_name(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  if (name.size() <= 4 || name.compare(name.size() - 4, 4, ".log") != 0) return false;
  for (size_t i = 0; i + 4 < name.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return false;
  }
  return true;
}

class ReopenedEnv : public rocksdb::EnvWrapper {
 public:
  ReopenedEnv(std::shared_ptr<rocksdb::Env> env, std::shared_ptr<rocksdb::FileSystem> fs)
      : EnvWrapper(env.get()), env_(std::move(env)) {
    file_system_ = std::move(fs);
  }
  const char* Name() const override { return "kvd.PrefilledWalEnv"; }

 private:
  std::shared_ptr<rocksdb::Env> env_;
};

}  // namespace

// A WAL file written over a spare: RocksDB's appends become writes at the file's logical end,
// its size is that end, and Close cuts the zeros after it off.
class PrefilledWalFs::WalFile : public rocksdb::FSWritableFile {
 public:
  WalFile(rocksdb::FileSystem* base, std::string path,
          std::unique_ptr<rocksdb::FSRandomRWFile> file, const rocksdb::FileOptions& options)
      : FSWritableFile(options), base_(base), path_(std::move(path)), file_(std::move(file)) {}
  ~WalFile() override {
    if (file_) Close(IOOptions(), nullptr).PermitUncheckedError();
  }

  IOStatus Append(const Slice& data, const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = file_->Write(size_, data, o, dbg);
    if (s.ok()) size_ += data.size();
    return s;
  }
  IOStatus Append(const Slice& data, const IOOptions& o,
                  const rocksdb::DataVerificationInfo& /*info*/, IODebugContext* dbg) override {
    return Append(data, o, dbg);
  }
  IOStatus Truncate(uint64_t size, const IOOptions& /*o*/, IODebugContext* /*dbg*/) override {
    // RocksDB truncates only files it wrote with direct I/O or preallocated itself; the zeros
    // past size read as padding either way.
    if (size < size_) size_ = size;
    return IOStatus::OK();
  }
  IOStatus Close(const IOOptions& o, IODebugContext* dbg) override {
    if (!file_) return IOStatus::OK();
    IOStatus s = file_->Close(o, dbg);
    file_.reset();
    // Not synced: a crash before the truncation is durable leaves the zero tail, which reads as
    // padding.
    // (The posix file system truncates only through an open file.)
    std::unique_ptr<rocksdb::FSWritableFile> w;
    IOStatus t = base_->ReopenWritableFile(path_, rocksdb::FileOptions(), &w, dbg);
    if (t.ok()) t = w->Truncate(size_, o, dbg);
    if (w) {
      IOStatus c = w->Close(o, dbg);
      if (t.ok()) t = c;
    }
    return s.ok() ? t : s;
  }
  IOStatus Flush(const IOOptions& o, IODebugContext* dbg) override { return file_->Flush(o, dbg); }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override { return file_->Sync(o, dbg); }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    return file_->Fsync(o, dbg);
  }
  uint64_t GetFileSize(const IOOptions& /*o*/, IODebugContext* /*dbg*/) override { return size_; }
  // The blocks are there: no fallocate, which would only add metadata to sync.
  IOStatus Allocate(uint64_t /*offset*/, uint64_t /*len*/, const IOOptions& /*o*/,
                    IODebugContext* /*dbg*/) override {
    return IOStatus::OK();
  }
  void PrepareWrite(size_t /*offset*/, size_t /*len*/, const IOOptions& /*o*/,
                    IODebugContext* /*dbg*/) override {}

 private:
  rocksdb::FileSystem* const base_;
  const std::string path_;
  std::unique_ptr<rocksdb::FSRandomRWFile> file_;
  uint64_t size_ = 0;
};

PrefilledWalFs::PrefilledWalFs(const std::shared_ptr<rocksdb::FileSystem>& base, std::string dir,
                               uint64_t spare_bytes, uint64_t keep_free_bytes)
    : FileSystemWrapper(base), dir_(std::move(dir)),
      wal_dir_(std::filesystem::path(dir_).lexically_normal()),
      spare_path_(dir_ + "/" + kSpareName), spare_bytes_(spare_bytes),
      keep_free_bytes_(keep_free_bytes) {
  if (!wal_dir_.has_filename()) wal_dir_ = wal_dir_.parent_path();  // "dir/" -> "dir"
}

PrefilledWalFs::~PrefilledWalFs() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

IOStatus PrefilledWalFs::prepare() {
  const IOOptions io;
  const std::string tmp = spare_path_ + ".tmp";
  if (target()->FileExists(tmp, io, nullptr).ok()) {
    if (IOStatus s = target()->DeleteFile(tmp, io, nullptr); !s.ok()) return s;
  }
  uint64_t size = 0;
  if (target()->GetFileSize(spare_path_, io, &size, nullptr).ok() && size == spare_bytes_) {
    std::lock_guard lk(mu_);
    spare_ready_ = true;
    return IOStatus::OK();
  }
  if (target()->FileExists(spare_path_, io, nullptr).ok()) {
    // Of another size (an earlier --max-wals setting, say): made again.
    if (IOStatus s = target()->DeleteFile(spare_path_, io, nullptr); !s.ok()) return s;
  }
  IOStatus s = make_spare(/*paced=*/false);
  if (s.ok()) {
    std::lock_guard lk(mu_);
    spare_ready_ = true;
  }
  return s;
}

bool PrefilledWalFs::release_spare() {
  std::lock_guard lk(mu_);
  if (!spare_ready_) return false;
  spare_ready_ = false;
  if (!target()->DeleteFile(spare_path_, IOOptions(), nullptr).ok()) return false;
  SPDLOG_WARN("rocksdb {}: disk space is short: deleted the prepared write-ahead log file "
              "({} bytes); until there is room for one again, each synced write costs two disk "
              "writes",
              dir_, spare_bytes_);
  return true;
}

IOStatus PrefilledWalFs::make_spare(bool paced) {
  const IOOptions io;
  const std::string tmp = spare_path_ + ".tmp";
  if (std::optional<uint64_t> free = free_disk_bytes(dir_);
      free && *free < spare_bytes_ + keep_free_bytes_) {
    return IOStatus::NoSpace("not preparing a write-ahead log file of " +
                             std::to_string(spare_bytes_) + " bytes: the disk has less than " +
                             std::to_string(spare_bytes_ + keep_free_bytes_) + " bytes free");
  }
  std::unique_ptr<rocksdb::FSWritableFile> f;
  IOStatus s = target()->NewWritableFile(tmp, rocksdb::FileOptions(), &f, nullptr);
  if (!s.ok()) return s;
  const std::string zeros(kZeroChunk, '\0');
  for (uint64_t done = 0; s.ok() && done < spare_bytes_;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kZeroChunk, spare_bytes_ - done));
    s = f->Append(Slice(zeros.data(), n), io, nullptr);
    // Paced: the chunk's writeback starts now, and the next waits its turn, so that the
    // appends' fsyncs never queue behind tens of megabytes of zeros.
    if (s.ok() && paced) s = f->RangeSync(done, n, io, nullptr);
    done += n;
    std::unique_lock lk(mu_);
    if (paced) cv_.wait_for(lk, kZeroChunkInterval, [&] { return stop_; });
    if (stop_) s = IOStatus::Aborted("closing");
  }
  if (s.ok()) s = f->Sync(io, nullptr);
  IOStatus c = f->Close(io, nullptr);
  if (s.ok()) s = c;
  if (s.ok()) s = target()->RenameFile(tmp, spare_path_, io, nullptr);
  if (!s.ok()) target()->DeleteFile(tmp, io, nullptr).PermitUncheckedError();
  return s;
}

void PrefilledWalFs::run() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || want_spare_; });
    if (stop_) return;
    want_spare_ = false;
    lk.unlock();
    IOStatus s = make_spare(/*paced=*/true);
    lk.lock();
    if (s.ok()) {
      spare_ready_ = true;
    } else if (!stop_) {
      // Tried again at the next WAL switch; meanwhile WAL files are ordinary ones.
      SPDLOG_WARN("rocksdb {}: cannot prepare the next write-ahead log file ({}): the next one "
                  "is an ordinary growing file (each synced write then costs two disk writes)",
                  dir_, s.ToString());
    }
  }
}

IOStatus PrefilledWalFs::NewWritableFile(const std::string& path,
                                         const rocksdb::FileOptions& options,
                                         std::unique_ptr<rocksdb::FSWritableFile>* result,
                                         IODebugContext* dbg) {
  if (!is_wal_name(path) ||
      std::filesystem::path(path).lexically_normal().parent_path() != wal_dir_) {
    return target()->NewWritableFile(path, options, result, dbg);
  }
  bool take = false;
  {
    std::lock_guard lk(mu_);
    take = spare_ready_;
    if (take) spare_ready_ = false;
  }
  if (take) {
    IOStatus s = target()->RenameFile(spare_path_, path, options.io_options, dbg);
    std::unique_ptr<rocksdb::FSRandomRWFile> rw;
    if (s.ok()) s = target()->NewRandomRWFile(path, options, &rw, dbg);
    if (s.ok()) {
      *result = std::make_unique<WalFile>(target(), path, std::move(rw), options);
      std::lock_guard lk(mu_);
      want_spare_ = true;
      if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
      cv_.notify_all();
      return s;
    }
    // The rename or the open failed (the file is the spare under the WAL's name, or still the
    // spare): an ordinary file replaces it.
    SPDLOG_WARN("rocksdb {}: cannot use the prepared write-ahead log file for {} ({}): using an "
                "ordinary one",
                dir_, path, s.ToString());
  }
  {
    std::lock_guard lk(mu_);
    want_spare_ = !spare_ready_;
    if (want_spare_ && !thread_.joinable()) thread_ = std::thread([this] { run(); });
    cv_.notify_all();
  }
  return target()->NewWritableFile(path, options, result, dbg);
}

std::optional<uint64_t> free_disk_bytes(const std::string& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

std::shared_ptr<rocksdb::Env> env_with_file_system(std::shared_ptr<rocksdb::Env> env,
                                                   std::shared_ptr<rocksdb::FileSystem> fs) {
  return std::make_shared<ReopenedEnv>(std::move(env), std::move(fs));
}

void WriteNumberFilter::stamp(rocksdb::WriteBatch* batch, uint64_t n) {
  char blob[8 + sizeof kTag];
  for (int i = 0; i < 8; ++i) blob[i] = static_cast<char>(n >> (8 * i));
  std::memcpy(blob + 8, kTag, sizeof kTag);
  batch->PutLogData(Slice(blob, sizeof blob)).PermitUncheckedError();
}

rocksdb::WalFilter::WalProcessingOption WriteNumberFilter::LogRecordFound(
    unsigned long long log_number, const std::string& log_file_name,
    const rocksdb::WriteBatch& batch, rocksdb::WriteBatch* /*new_batch*/,
    bool* /*batch_changed*/) {
  struct Finder : rocksdb::WriteBatch::Handler {
    std::optional<uint64_t> number;
    void LogData(const Slice& blob) override {
      if (blob.size() != 8 + sizeof kTag || std::memcmp(blob.data() + 8, kTag, sizeof kTag) != 0) {
        return;
      }
      uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(blob.data()[i]);
      number = n;
    }
    // Everything else is data: seen, not looked at.
    rocksdb::Status PutCF(uint32_t, const Slice&, const Slice&) override {
      return rocksdb::Status::OK();
    }
    rocksdb::Status DeleteCF(uint32_t, const Slice&) override { return rocksdb::Status::OK(); }
    rocksdb::Status SingleDeleteCF(uint32_t, const Slice&) override {
      return rocksdb::Status::OK();
    }
    rocksdb::Status DeleteRangeCF(uint32_t, const Slice&, const Slice&) override {
      return rocksdb::Status::OK();
    }
    rocksdb::Status MergeCF(uint32_t, const Slice&, const Slice&) override {
      return rocksdb::Status::OK();
    }
  } finder;
  if (!batch.Iterate(&finder).ok()) return WalProcessingOption::kCorruptedRecord;
  if (!finder.number) return WalProcessingOption::kContinueProcessing;
  if (last_ != 0 && *finder.number != last_ + 1) {
    SPDLOG_WARN("rocksdb: write-ahead log replay stops at {} (log #{}): it holds write {} but the "
                "last write replayed was {}; the writes from there on were never synced (a "
                "crash left a hole before them) and are dropped",
                log_file_name, log_number, *finder.number, last_);
    return WalProcessingOption::kStopReplay;
  }
  last_ = *finder.number;
  return WalProcessingOption::kContinueProcessing;
}

}  // namespace kvd::storage
