// RaftLog::open: opening (or creating) the database and checking everything in it before the
// log is served; see the format and what a crash can leave at the top of raft_log.cc.
#include "storage/raft_log_impl.h"

#include <chrono>
#include <ctime>
#include <cstring>
#include <iterator>
#include <sstream>

namespace kvd::storage {

namespace {

// RocksDB's info log: the LOG file in the database directory (the previous one kept as
// LOG.old; past kMaxLogBytes the file starts over the same way, so the two hold at most twice
// that), written with plain stdio and its errors ignored. Not RocksDB's own file logger: in
// RocksDB 7.8 it writes through a WritableFileWriter, and once a write of the LOG fails (a full
// disk, a file system turned read-only, EIO), its next line aborts the process (the assertion
// "sync_without_flush_called_"). Warnings and errors (among them the report of a torn WAL tail
// dropped by point-in-time recovery) also go to spdlog, so that they reach the operator.
class ForwardingLogger : public rocksdb::Logger {
 public:
  static constexpr long kMaxLogBytes = 4 << 20;

  explicit ForwardingLogger(std::string dir)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL), dir_(std::move(dir)),
        path_(dir_ + "/LOG") {
    start_file();
  }
  ~ForwardingLogger() override {
    if (file_) std::fclose(file_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    char buf[1024];
    va_list copy;
    va_copy(copy, ap);
    std::vsnprintf(buf, sizeof(buf), format, copy);
    va_end(copy);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      SPDLOG_ERROR("rocksdb {}: {}", dir_, buf);
    } else if (std::strstr(buf, "opened without unique ID to verify")) {
      // Every store image kvd ingests (an SST file made by SstFileWriter) draws this notice at
      // open; it says nothing about the data, so it stays out of the warnings.
      SPDLOG_DEBUG("rocksdb {}: {}", dir_, buf);
    } else if (level >= rocksdb::InfoLogLevel::WARN_LEVEL) {
      SPDLOG_WARN("rocksdb {}: {}", dir_, buf);
    }
    const auto now = std::chrono::system_clock::now();
    const std::time_t secs = std::chrono::system_clock::to_time_t(now);
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
        1000000;
    std::tm tm{};
    localtime_r(&secs, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y/%m/%d-%H:%M:%S", &tm);
    std::lock_guard lk(mu_);
    if (!file_) return;
    std::fprintf(file_, "%s.%06lld %s\n", stamp, static_cast<long long>(micros), buf);
    std::fflush(file_);
    if (std::ftell(file_) > kMaxLogBytes) start_file();
  }

 private:
  // REQUIRES: mu_ held (or construction).
  void start_file() {
    if (file_) std::fclose(file_);
    std::rename(path_.c_str(), (path_ + ".old").c_str());
    file_ = std::fopen(path_.c_str(), "a");  // null: RocksDB's log goes nowhere but to spdlog
  }

  const std::string dir_;
  const std::string path_;
  std::mutex mu_;
  std::FILE* file_ = nullptr;  // GUARDED_BY(mu_)
};

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

Status RaftLog::Impl::load(bool fresh, bool read_only) {
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
    if (read_only) return fail("the database has no records (its creation was interrupted)");
    if (!fresh) {
      SPDLOG_WARN("{}: database without records (its creation was interrupted); initializing",
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

  // Entries at or below the snapshot's index are compacted ones whose files were not dropped
  // yet (Impl::drop_compacted_entries): never read, and dropped again below.
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, entries_cf));

  // The log: contiguous from snapshot index + 1, terms non-decreasing.
  next.last_index = next.snapshot.index;
  uint64_t last_term = next.snapshot.term;
  raft::Entry e;
  for (it->Seek(entry_key(next.snapshot.index + 1)); it->Valid(); it->Next()) {
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
  if (!read_only) {
    if (next.snapshot.index != 0) drop_compacted_entries(next.snapshot.index);
    drop_images(0, keep ? next.snapshot.index : ~uint64_t{0});
    if (keep) drop_images(next.snapshot.index + 1, ~uint64_t{0});
    std::error_code ec;
    for (auto entry = fs::directory_iterator(dir, ec); !ec && entry != fs::directory_iterator();
         entry.increment(ec)) {
      const std::string name = entry->path().filename().string();
      if (name.rfind("image-", 0) == 0 && name.size() > 8 &&
          name.compare(name.size() - 8, 8, ".sst.tmp") == 0) {
        remove_file(entry->path().string());
      }
    }
  }

  next.db_snapshot = take_db_snapshot();
  auto loaded = std::make_shared<const View>(std::move(next));
  std::lock_guard lk(view_mu);
  view = std::move(loaded);
  return Status::ok();
}

Status RaftLog::Impl::create_dir() {
  fs::path path = fs::path(dir).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();  // "a/b/"
  const fs::path parent = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) return fail("cannot create directory " + parent.string() + ": " + ec.message());
  const rocksdb::IOOptions io;
  std::unique_ptr<rocksdb::FSDirectory> parent_dir;
  rocksdb::IOStatus s = file_system->CreateDirIfMissing(path.string(), io, nullptr);
  if (s.ok()) s = file_system->NewDirectory(parent.string(), io, &parent_dir, nullptr);
  if (s.ok()) s = parent_dir->Fsync(io, nullptr);
  if (s.ok()) s = parent_dir->Close(io, nullptr);
  if (!s.ok()) return fail("cannot create directory: " + s.ToString());
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

// RocksDB's error, naming the file it is about where RocksDB does not (it names SST, WAL and
// MANIFEST files, but not CURRENT).
std::string with_file(const rocksdb::Status& s, const fs::path& dir) {
  std::string text = s.ToString();
  if (text.find(dir.string() + "/") != std::string::npos) return text;
  if (text.find("CURRENT") != std::string::npos) return text + " in " + (dir / "CURRENT").string();
  return text + " (in " + dir.string() + ", which holds: " + describe_dir_contents(dir) + ")";
}

// The newest write-ahead log file in dir ("" if none): the one a lost tail was in.
std::string newest_wal_file(const fs::path& dir) {
  std::string newest;
  uint64_t newest_number = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string stem = p.stem().string();
    if (p.extension() != ".log" || stem.empty() || stem.size() > 19 ||
        !std::all_of(stem.begin(), stem.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    if (const uint64_t number = std::stoull(stem); newest.empty() || number >= newest_number) {
      newest_number = number;
      newest = p.string();
    }
  }
  return newest;
}

// RocksDB holds an fcntl lock on <dir>/LOCK while the database is open for writing: another
// process holding it is a running member.
Status check_not_locked(const fs::path& dir) {
  const std::string lock = (dir / "LOCK").string();
  const int fd = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::ok();
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  const bool held = ::fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  ::close(fd);
  if (!held) return Status::ok();
  return Status::error(dir.string() + ": in use by a running kvd (process " +
                       std::to_string(fl.l_pid) + " holds " + lock + ")");
}

}  // namespace

Status RaftLog::Impl::open_db(bool read_only) {
  rocksdb::DB* raw = nullptr;
  handles.clear();
  wal_filter = std::make_unique<WriteNumberFilter>();  // its state is one replay's
  db_options.wal_filter = wal_filter.get();
  rocksdb::Status s =
      read_only ? rocksdb::DB::OpenForReadOnly(db_options, dir, descriptors, &handles, &raw)
                : rocksdb::DB::Open(db_options, dir, descriptors, &handles, &raw);
  if (!s.ok()) return Status::error(dir + ": cannot open RocksDB: " + with_file(s, dir));
  db.reset(raw);
  // The writes to come continue the numbers of those replayed (none: any start will do).
  if (!read_only) next_write_number = wal_filter->last_number() + 1;
  meta_cf = handles[0];
  entries_cf = handles[1];
  images_cf = handles[2];
  return Status::ok();
}

void RaftLog::Impl::close_db() {
  {
    std::lock_guard lk(view_mu);
    if (view && view->db_snapshot) {  // the view keeps its numbers for readers
      View numbers = *view;
      numbers.db_snapshot.reset();
      view = std::make_shared<const View>(std::move(numbers));
    }
  }
  if (!db) return;
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  handles.clear();
  meta_cf = entries_cf = images_cf = nullptr;
  rocksdb::Status s = db->Close();
  if (!s.ok()) SPDLOG_WARN("closing {}: {}", dir, s.ToString());
  db.reset();
}

// After a write failed in RocksDB, the database is opened anew instead of asking RocksDB to
// clear its error (DB::Resume), which the RocksDB of Debian 12 (7.8) cannot be trusted with: it
// refuses for good after a plain I/O error (EIO, EROFS are "fatal" to it until the database is
// opened again), and after a full disk it flushes the memtables but goes on writing to the WAL
// file whose append failed when no memtable held data (a flush then starts no new WAL file):
// the next write there aborts the process (WritableFileWriter's assertion
// "sync_without_flush_called_"). The new instance recovers what the WAL files hold (a write
// whose fsync failed may be there, or not: it was never acknowledged), writes it into new,
// synced table files and starts a new WAL file, so that nothing depends on a file whose write
// or fsync failed. First a probe: while the disk still fails, db stays open as it is and
// readers go on with it. If the database then cannot be opened for writing, it is opened
// read-only, so that readers still can.
Status RaftLog::Impl::reopen() {
  if (Status st = check_free_space("resume"); !st.is_ok()) return st;
  const std::string probe = dir + "/kvd-resume-probe";
  const rocksdb::IOOptions io;
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus ps =
      file_system->NewWritableFile(probe, rocksdb::FileOptions(), &file, nullptr);
  if (ps.ok()) ps = file->Append("probe", io, nullptr);
  if (ps.ok()) ps = file->Sync(io, nullptr);
  if (file) {
    rocksdb::IOStatus cs = file->Close(io, nullptr);
    if (ps.ok()) ps = cs;
  }
  remove_file(probe);
  if (!ps.ok()) return Status::error("the disk still fails: " + ps.ToString());

  std::unique_lock dl(db_mu);
  close_db();
  Status st = open_db(/*read_only=*/false);
  if (st.is_ok()) st = load(/*fresh=*/false);
  if (st.is_ok()) {
    std::lock_guard lk(cache_mu);  // the reopened log may hold the failed write: start afresh
    cache.clear();
    cache_bytes = 0;
    return Status::ok();
  }
  close_db();
  Status ro = open_db(/*read_only=*/true);
  if (ro.is_ok()) ro = load(/*fresh=*/false, /*read_only=*/true);
  if (!ro.is_ok()) {
    SPDLOG_ERROR("{}: cannot open the database even to read it: {}", dir, ro.message());
    close_db();
  }
  return st;
}

std::optional<raft::HardState> RaftLog::Impl::read_mark() const {
  std::ifstream in(mark_path(), std::ios::binary);
  if (!in) return std::nullopt;  // none yet: a new database, or one of an earlier kvd
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text);
  std::string magic, version, crc;
  raft::HardState marked{};
  if (text.size() > 80 || !(fields >> magic >> version >> marked.term >> marked.commit >> crc) ||
      mark_line(marked) != text) {  // also checks the magic, the version and the CRC
    SPDLOG_WARN("{}: ignoring the unreadable commit mark {} (torn by a crash?)", dir, mark_path());
    return std::nullopt;
  }
  return marked;
}

Status RaftLog::Impl::check_mark(bool fresh) {
  const std::optional<raft::HardState> read = read_mark();
  if (!read) return Status::ok();
  const raft::HardState& marked = *read;
  const std::string lost = mark_path() + " records term " + std::to_string(marked.term) +
                           " and commit index " + std::to_string(marked.commit) +
                           " as durable, but ";
  const std::string refusal =
      ". Refusing to start with less than this member acknowledged: restore the data dir from "
      "a backup, or remove it and add the member to its cluster again";
  if (fresh) return fail("the database is missing: " + lost + dir + " is gone or empty" + refusal);

  // What a read-write open would recover, read without changing a file: DB::Open would flush
  // the recovered memtables and delete the write-ahead log it replayed, damaged or not.
  if (!open_db(/*read_only=*/true).is_ok()) return Status::ok();  // the read-write open reports it
  std::string value;
  raft::HardState have{};
  const rocksdb::Status s = db->Get(rocksdb::ReadOptions(), meta_cf, slice(kHardStateKey), &value);
  const bool decoded = s.ok() && decode_hard_state(value, &have);
  close_db();
  if (!s.ok() && !s.IsNotFound()) return Status::ok();  // load() reports it
  if (s.ok() && !decoded) return Status::ok();           // load() reports it
  if (marked.term <= have.term && marked.commit <= have.commit) return Status::ok();

  const std::string wal = newest_wal_file(dir);
  return fail("the database lost acknowledged writes: " + lost + "only term " +
              std::to_string(have.term) + " and commit index " + std::to_string(have.commit) +
              " can be recovered; " +
              (wal.empty() ? "no write-ahead log file is left (removed?)"
                           : "the newest write-ahead log file, " + wal +
                                 ", is damaged or truncated") +
              ", or the MANIFEST " + current_manifest_path(dir) + " is" + refusal);
}

Result<std::unique_ptr<RaftLog>> RaftLog::open(const std::string& dir) {
  return open(dir, OpenOptions());
}

Result<std::unique_ptr<RaftLog>> RaftLog::open(const std::string& dir,
                                               const OpenOptions& open_options) {
  std::error_code ec;
  const fs::path path(dir);
  bool fresh = false;
  fs::file_status st = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Status::error(dir + ": " + ec.message());
  }
  if (!fs::exists(st)) {
    if (open_options.read_only) return Status::error(dir + ": no such directory");
    fresh = true;
  } else if (!fs::is_directory(st)) {
    return Status::error(dir + ": exists and is not a directory");
  } else if (fs::is_empty(path, ec)) {
    if (open_options.read_only) return Status::error(dir + ": empty, not a kvd database");
    fresh = true;
  } else if (!fs::exists(path / "CURRENT", ec)) {
    return Status::error(dir + ": not a kvd database, or a damaged one: no RocksDB CURRENT file (" +
                         (path / "CURRENT").string() +
                         " is missing; the directory holds: " + describe_dir_contents(path) + ")");
  }

  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->env = open_options.env;
  if (!impl->env) impl->env.reset(rocksdb::Env::Default(), [](rocksdb::Env*) {});  // a static
  impl->file_system = impl->env->GetFileSystem();
  if (Status ms = fresh ? impl->check_mark(/*fresh=*/true) : Status::ok(); !ms.is_ok()) return ms;

  rocksdb::Options options;
  options.env = impl->env.get();
  options.create_if_missing = fresh;
  options.create_missing_column_families = fresh;
  options.error_if_exists = false;
  options.paranoid_checks = true;
  options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  options.manual_wal_flush = false;
  // A raft log is small (compacted by snapshots) and written append-only: modest memtables
  // (16 MiB unless a test asks for less), no compression, whole-file checksums verified on open.
  options.write_buffer_size =
      open_options.write_buffer_bytes ? open_options.write_buffer_bytes : 16 << 20;
  options.max_write_buffer_number = 3;
  // The write-ahead log. Every write puts the hard state into the small default family, whose
  // memtable would otherwise keep every WAL file alive (up to 4x the memtables, 576 MiB) and make
  // a restart replay them all: past 32 MiB of WAL (twice a memtable), RocksDB flushes the
  // families holding the oldest one. (WAL file reuse, recycle_log_file_num, is not available with
  // point-in-time recovery.)
  options.max_total_wal_size = 2 * options.write_buffer_size;
  options.max_background_jobs = 2;
  options.max_open_files = 256;
  options.compression = rocksdb::kNoCompression;
  options.bottommost_compression = rocksdb::kNoCompression;

  if (fresh) {
    if (Status cs = impl->create_dir(); !cs.is_ok()) return cs;
  }
  if (!open_options.read_only) {
    // WAL files written over zeros (prefilled_wal.h): a spare a little larger than what a WAL
    // file holds before its memtable is flushed.
    const uint64_t spare_bytes = options.write_buffer_size / 4 * 5;
    auto wal_fs = std::make_shared<PrefilledWalFs>(impl->file_system, dir, spare_bytes,
                                                   kReservedDiskBytes + spare_bytes);
    impl->wal_fs = wal_fs;
    impl->env = env_with_file_system(impl->env, std::move(wal_fs));
    options.env = impl->env.get();
  }
  impl->logger = std::make_shared<ForwardingLogger>(dir);
  options.info_log = impl->logger;

  if (!fresh) {
    std::vector<std::string> families;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, dir, &families);
    if (!s.ok()) return Status::error(dir + ": cannot open RocksDB: " + with_file(s, path));
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
  impl->db_options = rocksdb::DBOptions(options);
  impl->descriptors = std::move(descriptors);
  if (open_options.read_only) {
    impl->read_only = true;
    if (Status ls = check_not_locked(path); !ls.is_ok()) return ls;
    if (Status os = impl->open_db(/*read_only=*/true); !os.is_ok()) return os;
    rocksdb::Status s = impl->db->VerifyChecksum();
    if (!s.ok()) return Status::error(dir + ": RocksDB checksum verification: " + s.ToString());
    if (Status ls = impl->load(/*fresh=*/false, /*read_only=*/true); !ls.is_ok()) return ls;
    return std::unique_ptr<RaftLog>(new RaftLog(std::move(impl)));
  }
  if (!fresh) {
    if (Status ms = impl->check_mark(/*fresh=*/false); !ms.is_ok()) return ms;
  }
  // The spare is made (or a stale one removed) only now: a refused open changes no file.
  if (rocksdb::IOStatus ps = impl->wal_fs->prepare(); !ps.ok()) {
    SPDLOG_WARN("{}: cannot prepare a write-ahead log file ({}): the first one is an ordinary "
                "growing file (each synced write then costs two disk writes)",
                dir, ps.ToString());
  }
  if (Status os = impl->open_db(/*read_only=*/false); !os.is_ok()) return os;

  // Reads every SST block: a damaged file is refused now, not found at some later read.
  rocksdb::Status s = impl->db->VerifyChecksum();
  if (!s.ok()) return Status::error(dir + ": RocksDB checksum verification: " + s.ToString());

  if (Status ls = impl->load(fresh); !ls.is_ok()) return ls;
  return std::unique_ptr<RaftLog>(new RaftLog(std::move(impl)));
}

}  // namespace kvd::storage
