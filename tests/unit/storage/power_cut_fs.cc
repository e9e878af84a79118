// PowerCutFs (see power_cut_fs.h): the model of what is durable, kept beside the real files.
#include "tests/unit/storage/power_cut_fs.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>

namespace kvd::storage {

namespace {

namespace fs = std::filesystem;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

std::string normal(const std::string& path) {
  std::string p = fs::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string parent_of(const std::string& path) { return fs::path(path).parent_path().string(); }

// Whether path is a file of the kind (RocksDB's write-ahead log files are <number>.log).
bool is(PowerCutFs::Files files, const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  switch (files) {
    case PowerCutFs::Files::kAll: return true;
    case PowerCutFs::Files::kTable: return name.ends_with(".sst");
    case PowerCutFs::Files::kManifest:
      return name.starts_with("MANIFEST-") || name == "CURRENT" || name.ends_with(".dbtmp");
    case PowerCutFs::Files::kWal:
      return name.size() > 4 && name.ends_with(".log") &&
             std::all_of(name.begin(), name.end() - 4, [](char c) { return c >= '0' && c <= '9'; });
  }
  return false;
}

constexpr PowerCutFs::Files kKinds[] = {PowerCutFs::Files::kAll, PowerCutFs::Files::kWal,
                                        PowerCutFs::Files::kTable, PowerCutFs::Files::kManifest};

}  // namespace

class PowerCutFs::WritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  WritableFile(PowerCutFs* fs, uint64_t id, std::string path,
               std::unique_ptr<rocksdb::FSWritableFile> file)
      : FSWritableFileOwnerWrapper(std::move(file)), fs_(fs), id_(id), path_(std::move(path)) {}

  IOStatus Append(const Slice& data, const IOOptions& o, IODebugContext* dbg) override {
    return fs_->write_to(id_, path_, std::nullopt, data.size(),
                         [&] { return target()->Append(data, o, dbg); });
  }
  IOStatus Append(const Slice& data, const IOOptions& o,
                  const rocksdb::DataVerificationInfo& info, IODebugContext* dbg) override {
    return fs_->write_to(id_, path_, std::nullopt, data.size(),
                         [&] { return target()->Append(data, o, info, dbg); });
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            IODebugContext* dbg) override {
    return fs_->write_to(id_, path_, offset, data.size(),
                         [&] { return target()->PositionedAppend(data, offset, o, dbg); });
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            const rocksdb::DataVerificationInfo& info,
                            IODebugContext* dbg) override {
    return fs_->write_to(id_, path_, offset, data.size(),
                         [&] { return target()->PositionedAppend(data, offset, o, info, dbg); });
  }
  IOStatus Truncate(uint64_t size, const IOOptions& o, IODebugContext* dbg) override {
    return fs_->change(kTruncate, path_, [&] {
      IOStatus s = target()->Truncate(size, o, dbg);
      if (s.ok()) fs_->truncated(id_, size);
      return s;
    });
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    return fs_->sync_of(id_, path_, [&] { return target()->Sync(o, dbg); });
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    return fs_->sync_of(id_, path_, [&] { return target()->Fsync(o, dbg); });
  }
  // sync_file_range: nothing becomes durable (see the model at the top of the header).
  IOStatus RangeSync(uint64_t offset, uint64_t bytes, const IOOptions& o,
                     IODebugContext* dbg) override {
    return fs_->change(kSync, path_, [&] { return target()->RangeSync(offset, bytes, o, dbg); });
  }

 private:
  PowerCutFs* const fs_;
  const uint64_t id_;
  const std::string path_;
};

// RocksDB writes through one only to put a global sequence number into an ingested file (and
// syncs it before using the file).
class PowerCutFs::RandomRwFile : public rocksdb::FSRandomRWFileOwnerWrapper {
 public:
  RandomRwFile(PowerCutFs* fs, uint64_t id, std::string path,
               std::unique_ptr<rocksdb::FSRandomRWFile> file)
      : FSRandomRWFileOwnerWrapper(std::move(file)), fs_(fs), id_(id), path_(std::move(path)) {}

  IOStatus Write(uint64_t offset, const Slice& data, const IOOptions& o,
                 IODebugContext* dbg) override {
    return fs_->write_to(id_, path_, offset, data.size(),
                         [&] { return target()->Write(offset, data, o, dbg); });
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    return fs_->sync_of(id_, path_, [&] { return target()->Sync(o, dbg); });
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    return fs_->sync_of(id_, path_, [&] { return target()->Fsync(o, dbg); });
  }

 private:
  PowerCutFs* const fs_;
  const uint64_t id_;
  const std::string path_;
};

class PowerCutFs::Directory : public rocksdb::FSDirectoryWrapper {
 public:
  Directory(PowerCutFs* fs, std::string path, std::unique_ptr<rocksdb::FSDirectory> dir)
      : FSDirectoryWrapper(std::move(dir)), fs_(fs), path_(std::move(path)) {}

  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    return fs_->change(kDirSync, path_, [&] {
      IOStatus s = FSDirectoryWrapper::Fsync(o, dbg);
      if (s.ok()) fs_->synced_dir(path_);
      return s;
    });
  }
  IOStatus FsyncWithDirOptions(const IOOptions& o, IODebugContext* dbg,
                               const rocksdb::DirFsyncOptions& options) override {
    return fs_->change(kDirSync, path_, [&] {
      IOStatus s = FSDirectoryWrapper::FsyncWithDirOptions(o, dbg, options);
      if (s.ok()) fs_->synced_dir(path_);
      return s;
    });
  }

 private:
  PowerCutFs* const fs_;
  const std::string path_;
};

PowerCutFs::PowerCutFs(const std::string& root)
    : FileSystemWrapper(rocksdb::FileSystem::Default()), root_(normal(root)),
      stash_(root_ + "/.power-cut-stash") {
  fs::create_directories(stash_);
  std::lock_guard lk(mu_);
  track_tree(root_);
}

PowerCutFs::~PowerCutFs() {
  std::error_code ec;
  fs::remove_all(stash_, ec);
}

void PowerCutFs::track_tree(const std::string& path) {
  dirs_[path];
  for (const auto& e : fs::directory_iterator(path)) {
    const std::string child = e.path().string();
    const std::string name = e.path().filename().string();
    if (child == stash_ || name.starts_with("LOG")) continue;
    const uint64_t id = e.is_directory() ? add_node({0, 0, true})
                                         : add_node({e.file_size(), e.file_size(), false});
    Dir& d = dirs_[path];
    d.now[name] = d.durable[name] = id;
    if (e.is_directory()) track_tree(child);
  }
}

void PowerCutFs::cut_at(uint64_t n, Files files) {
  std::lock_guard lk(mu_);
  cut_countdown_ = n;
  cut_files_ = files;
}

void PowerCutFs::cut_now() {
  std::lock_guard lk(mu_);
  cut_ = true;
}

bool PowerCutFs::is_cut() const {
  std::lock_guard lk(mu_);
  return cut_;
}

uint64_t PowerCutFs::ops(Files files) const {
  std::lock_guard lk(mu_);
  return ops_[static_cast<int>(files)];
}

uint64_t PowerCutFs::created(Files files) const {
  std::lock_guard lk(mu_);
  return created_[static_cast<int>(files)];
}

void PowerCutFs::fail(unsigned ops, Files files, IOStatus error, uint64_t skip) {
  std::lock_guard lk(mu_);
  faults_.push_back({ops, files, std::move(error), skip});
}

void PowerCutFs::heal() {
  std::lock_guard lk(mu_);
  faults_.clear();
}

uint64_t PowerCutFs::failures() const {
  std::lock_guard lk(mu_);
  return failures_;
}

template <typename Io>
IOStatus PowerCutFs::change(Op op, const std::string& path, Io io) {
  std::lock_guard lk(mu_);
  if (!cut_ && cut_countdown_ > 0 && is(cut_files_, path) && --cut_countdown_ == 0) cut_ = true;
  if (cut_) return IOStatus::IOError("the power is off (simulated cut)", path);
  for (Fault& f : faults_) {
    if (!(f.ops & op) || !is(f.files, path)) continue;
    if (f.skip > 0) {
      --f.skip;
      continue;
    }
    ++failures_;
    return f.error;
  }
  for (Files kind : kKinds) {
    if (!is(kind, path)) continue;
    ++ops_[static_cast<int>(kind)];
    if (op == kCreate) ++created_[static_cast<int>(kind)];
  }
  return io();
}

PowerCutFs::Dir* PowerCutFs::dir_of(const std::string& path, std::string* name) {
  *name = fs::path(path).filename().string();
  if (name->starts_with("LOG")) return nullptr;  // RocksDB's info log: not modelled
  auto it = dirs_.find(parent_of(path));
  return it == dirs_.end() ? nullptr : &it->second;
}

bool PowerCutFs::durable_anywhere(uint64_t id) const {
  for (const auto& [path, d] : dirs_) {
    for (const auto& [name, node] : d.durable) {
      if (node == id) return true;
    }
  }
  return false;
}

size_t PowerCutFs::current_names(uint64_t id) const {
  size_t n = 0;
  for (const auto& [path, d] : dirs_) {
    for (const auto& [name, node] : d.now) n += node == id;
  }
  return n;
}

std::string PowerCutFs::stashed(uint64_t id) const { return stash_ + "/" + std::to_string(id); }

uint64_t PowerCutFs::add_node(Node node) {
  nodes_[next_id_] = node;
  return next_id_++;
}

template <typename Io>
IOStatus PowerCutFs::write_to(uint64_t id, const std::string& path,
                              std::optional<uint64_t> offset, size_t bytes, Io io) {
  return change(kAppend, path, [&] {
    Node& n = nodes_[id];
    // Durable bytes written over: what they were, in case the power goes before a sync.
    std::optional<Overwrite> over;
    if (offset && *offset < n.synced) {
      over = Overwrite{*offset, std::string(std::min<uint64_t>(bytes, n.synced - *offset), '\0')};
      std::ifstream in(path, std::ios::binary);
      in.seekg(static_cast<std::streamoff>(*offset));
      in.read(over->old.data(), static_cast<std::streamsize>(over->old.size()));
      if (!in) ADD_FAILURE() << "PowerCutFs: cannot read " << path << " before a write over it";
    }
    IOStatus s = io();
    if (s.ok()) n.size = offset ? std::max(n.size, *offset + bytes) : n.size + bytes;
    if (s.ok() && over) n.overwrites.push_back(std::move(*over));
    return s;
  });
}

template <typename Io>
IOStatus PowerCutFs::sync_of(uint64_t id, const std::string& path, Io io) {
  return change(kSync, path, [&] {
    IOStatus s = io();
    if (s.ok()) {
      nodes_[id].synced = nodes_[id].size;
      nodes_[id].overwrites.clear();
    }
    return s;
  });
}

void PowerCutFs::truncated(uint64_t id, uint64_t size) {
  Node& n = nodes_[id];
  n.size = size;
  n.synced = std::min(n.synced, size);
  for (Overwrite& o : n.overwrites) {
    o.old.resize(static_cast<size_t>(std::min<uint64_t>(o.old.size(),
                                                        size > o.offset ? size - o.offset : 0)));
  }
}

bool PowerCutFs::displace(Dir& d, const std::string& dir_path, const std::string& name) {
  auto it = d.now.find(name);
  if (it == d.now.end()) return false;
  const uint64_t id = it->second;
  d.now.erase(it);
  if (nodes_[id].is_dir || current_names(id) > 0 || !durable_anywhere(id)) return false;
  std::error_code ec;
  fs::rename(dir_path + "/" + name, stashed(id), ec);
  if (ec) ADD_FAILURE() << "PowerCutFs: cannot keep " << dir_path << "/" << name << ": " << ec;
  return !ec;
}

void PowerCutFs::synced_dir(const std::string& path) {
  auto it = dirs_.find(path);
  if (it == dirs_.end()) return;
  it->second.durable = it->second.now;
  drop_garbage();
}

void PowerCutFs::drop_garbage() {
  std::set<uint64_t> used;
  for (const auto& [path, d] : dirs_) {
    for (const auto& [name, id] : d.now) used.insert(id);
    for (const auto& [name, id] : d.durable) used.insert(id);
  }
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (used.count(it->first)) {
      ++it;
      continue;
    }
    std::error_code ec;
    fs::remove(stashed(it->first), ec);
    it = nodes_.erase(it);
  }
}

template <typename Wrapper, typename File, typename Open>
IOStatus PowerCutFs::open_again(const std::string& path, std::unique_ptr<File>* result,
                                Open open) {
  const std::string p = normal(path);
  return change(kCreate, p, [&] {
    std::string name;
    Dir* d = dir_of(p, &name);
    const bool existed = fs::exists(p);
    IOStatus s = open();
    if (!s.ok() || !d) return s;
    const uint64_t size = fs::file_size(p);
    uint64_t id = 0;
    if (auto it = d->now.find(name); it != d->now.end()) {
      id = it->second;
      nodes_[id].size = size;
    } else {  // a file made by other code counts as durable
      id = add_node({size, existed ? size : 0, false});
      d->now[name] = id;
      if (existed) d->durable[name] = id;
    }
    *result = std::make_unique<Wrapper>(this, id, p, std::move(*result));
    return s;
  });
}

IOStatus PowerCutFs::NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                     std::unique_ptr<rocksdb::FSWritableFile>* result,
                                     IODebugContext* dbg) {
  const std::string p = normal(path);
  return change(kCreate, p, [&] {
    std::string name;
    Dir* d = dir_of(p, &name);
    if (d) displace(*d, parent_of(p), name);
    IOStatus s = target()->NewWritableFile(path, options, result, dbg);
    if (!s.ok() || !d) return s;
    const uint64_t id = add_node({});
    d->now[name] = id;
    *result = std::make_unique<WritableFile>(this, id, p, std::move(*result));
    return s;
  });
}

IOStatus PowerCutFs::ReopenWritableFile(const std::string& path,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSWritableFile>* result,
                                        IODebugContext* dbg) {
  return open_again<WritableFile>(
      path, result, [&] { return target()->ReopenWritableFile(path, options, result, dbg); });
}

IOStatus PowerCutFs::ReuseWritableFile(const std::string&, const std::string&,
                                       const rocksdb::FileOptions&,
                                       std::unique_ptr<rocksdb::FSWritableFile>*,
                                       IODebugContext*) {
  return IOStatus::NotSupported("PowerCutFs: reusing WAL files is not modelled");
}

IOStatus PowerCutFs::NewRandomRWFile(const std::string& path, const rocksdb::FileOptions& options,
                                     std::unique_ptr<rocksdb::FSRandomRWFile>* result,
                                     IODebugContext* dbg) {
  return open_again<RandomRwFile>(
      path, result, [&] { return target()->NewRandomRWFile(path, options, result, dbg); });
}

IOStatus PowerCutFs::NewDirectory(const std::string& path, const IOOptions& options,
                                  std::unique_ptr<rocksdb::FSDirectory>* result,
                                  IODebugContext* dbg) {
  IOStatus s = target()->NewDirectory(path, options, result, dbg);
  if (s.ok()) *result = std::make_unique<Directory>(this, normal(path), std::move(*result));
  return s;
}

IOStatus PowerCutFs::DeleteFile(const std::string& path, const IOOptions& options,
                                IODebugContext* dbg) {
  const std::string p = normal(path);
  return change(kDelete, p, [&] {
    std::string name;
    Dir* d = dir_of(p, &name);
    if (d && displace(*d, parent_of(p), name)) return IOStatus::OK();  // a power cut brings it back
    return target()->DeleteFile(path, options, dbg);
  });
}

IOStatus PowerCutFs::Truncate(const std::string& path, size_t size, const IOOptions& options,
                              IODebugContext* dbg) {
  const std::string p = normal(path);
  return change(kTruncate, p, [&] {
    IOStatus s = target()->Truncate(path, size, options, dbg);
    std::string name;
    Dir* d = dir_of(p, &name);
    if (s.ok() && d && d->now.count(name)) truncated(d->now[name], size);
    return s;
  });
}

template <typename Io>
IOStatus PowerCutFs::make_dir(const std::string& path, Io io) {
  const std::string p = normal(path);
  return change(kCreate, p, [&] {
    const bool existed = fs::is_directory(p);
    IOStatus s = io();
    std::string name;
    Dir* d = dir_of(p, &name);
    if (s.ok() && !existed && d) {
      d->now[name] = add_node({0, 0, true});
      dirs_[p];
    }
    return s;
  });
}

IOStatus PowerCutFs::CreateDir(const std::string& path, const IOOptions& options,
                               IODebugContext* dbg) {
  return make_dir(path, [&] { return target()->CreateDir(path, options, dbg); });
}

IOStatus PowerCutFs::CreateDirIfMissing(const std::string& path, const IOOptions& options,
                                        IODebugContext* dbg) {
  return make_dir(path, [&] { return target()->CreateDirIfMissing(path, options, dbg); });
}

IOStatus PowerCutFs::DeleteDir(const std::string& path, const IOOptions& options,
                               IODebugContext* dbg) {
  const std::string p = normal(path);
  return change(kDelete, p, [&] {
    IOStatus s = target()->DeleteDir(path, options, dbg);
    std::string name;
    Dir* d = dir_of(p, &name);
    if (s.ok() && d) {
      d->now.erase(name);  // a power cut does not bring it back: RocksDB deletes no directory
      dirs_.erase(p);
    }
    return s;
  });
}

IOStatus PowerCutFs::RenameFile(const std::string& from, const std::string& to,
                                const IOOptions& options, IODebugContext* dbg) {
  const std::string f = normal(from), t = normal(to);
  return change(kRename, t, [&] {
    std::string from_name, to_name;
    Dir* from_dir = dir_of(f, &from_name);
    Dir* to_dir = dir_of(t, &to_name);
    const bool known = from_dir && from_dir->now.count(from_name);
    const uint64_t id = known ? from_dir->now[from_name] : 0;
    if (to_dir) displace(*to_dir, parent_of(t), to_name);
    IOStatus s = target()->RenameFile(from, to, options, dbg);
    if (!s.ok()) return s;
    if (known) from_dir->now.erase(from_name);
    if (to_dir) {
      const uint64_t size = fs::file_size(t);
      to_dir->now[to_name] = known ? id : add_node({size, size, false});
    }
    return s;
  });
}

IOStatus PowerCutFs::LinkFile(const std::string& from, const std::string& to,
                              const IOOptions& options, IODebugContext* dbg) {
  const std::string f = normal(from), t = normal(to);
  return change(kCreate, t, [&] {
    IOStatus s = target()->LinkFile(from, to, options, dbg);
    std::string from_name, to_name;
    Dir* from_dir = dir_of(f, &from_name);
    Dir* to_dir = dir_of(t, &to_name);
    if (!s.ok() || !to_dir) return s;
    if (from_dir && from_dir->now.count(from_name)) {
      to_dir->now[to_name] = from_dir->now[from_name];
    } else {
      const uint64_t size = fs::file_size(t);
      to_dir->now[to_name] = add_node({size, size, false});
    }
    return s;
  });
}

PowerCutFs::Boot PowerCutFs::power_on(uint64_t seed, bool torn) {
  constexpr uint64_t kPage = 4096;
  std::lock_guard lk(mu_);
  std::mt19937_64 rng(seed);
  Boot boot;
  std::error_code ec;
  // A directory survives if its entry in its parent is durable (the root always does). The map
  // holds a parent before its children.
  std::set<std::string> alive;
  for (const auto& [path, d] : dirs_) {
    if (path == root_) {
      alive.insert(path);
      continue;
    }
    auto parent = dirs_.find(parent_of(path));
    const std::string name = fs::path(path).filename().string();
    if (parent != dirs_.end() && alive.count(parent->first) &&
        parent->second.durable.count(name) && nodes_[parent->second.durable.at(name)].is_dir) {
      alive.insert(path);
    }
  }
  // Every file the model knows goes to the stash (a node with several names once); directories
  // that do not survive go whole.
  for (const std::string& path : alive) {
    Dir& d = dirs_[path];
    for (const auto& [name, id] : d.now) {
      const std::string p = path + "/" + name;
      auto durable = d.durable.find(name);
      if (durable == d.durable.end() || durable->second != id) ++boot.entries_undone;
      if (nodes_[id].is_dir) {
        if (!alive.count(p)) fs::remove_all(p, ec);
        continue;
      }
      if (fs::exists(stashed(id))) {
        fs::remove(p, ec);
      } else {
        fs::rename(p, stashed(id), ec);
        if (ec) ADD_FAILURE() << "PowerCutFs: " << p << " is missing: " << ec.message();
      }
    }
    for (const auto& [name, id] : d.durable) boot.entries_undone += !d.now.count(name);
  }
  // The durable files, cut back to what was synced, under their durable names.
  std::set<uint64_t> kept;
  for (const std::string& path : alive) {
    for (const auto& [name, id] : dirs_[path].durable) {
      if (nodes_[id].is_dir) continue;
      const std::string p = path + "/" + name;
      if (kept.insert(id).second) {
        if (!fs::exists(stashed(id))) {
          ADD_FAILURE() << "PowerCutFs: lost the durable file " << p;
          continue;
        }
        Node& n = nodes_[id];
        // Unsynced writes over durable bytes: undone, the latest first, each page of one
        // (torn) at random, as the disk may have taken any of them.
        if (!n.overwrites.empty()) {
          std::fstream f(stashed(id), std::ios::binary | std::ios::in | std::ios::out);
          for (auto o = n.overwrites.rbegin(); o != n.overwrites.rend(); ++o) {
            const uint64_t end = o->offset + o->old.size();
            for (uint64_t at = o->offset; at < end;) {
              const uint64_t page_end = std::min(end, (at / kPage + 1) * kPage);
              if (!torn || rng() % 2 == 0) {
                f.seekp(static_cast<std::streamoff>(at));
                f.write(o->old.data() + (at - o->offset),
                        static_cast<std::streamsize>(page_end - at));
                ++boot.pages_undone;
              }
              at = page_end;
            }
          }
          if (!f) ADD_FAILURE() << "PowerCutFs: cannot undo writes in " << stashed(id);
          n.overwrites.clear();
        }
        const uint64_t on_disk = fs::file_size(stashed(id));
        uint64_t keep = n.synced;
        if (torn && n.size > n.synced) keep += rng() % (n.size - n.synced + 1);
        keep = std::min(keep, on_disk);
        if (keep < on_disk) {
          fs::resize_file(stashed(id), keep);
          ++boot.files_shortened;
          boot.bytes_lost += on_disk - keep;
        }
        n.size = n.synced = keep;
      }
      fs::remove(p, ec);
      fs::create_hard_link(stashed(id), p, ec);
      if (ec) ADD_FAILURE() << "PowerCutFs: cannot restore " << p << ": " << ec.message();
    }
  }
  for (const auto& e : fs::directory_iterator(stash_)) fs::remove(e.path(), ec);
  for (auto it = dirs_.begin(); it != dirs_.end();) {
    if (!alive.count(it->first)) {
      it = dirs_.erase(it);
      continue;
    }
    it->second.now = it->second.durable;
    ++it;
  }
  drop_garbage();
  cut_countdown_ = 0;
  cut_ = false;
  faults_.clear();
  return boot;
}

}  // namespace kvd::storage
