// The frames of etcd's WAL files (format at the top of etcd_member.cc): the list of WAL files of a
// directory and a decoder that reads their records in order, checking the rolling CRC across
// records and files, and telling a torn tail of the last file (a write cut short by a crash)
// from damage before it. Used by read_member and, to find record boundaries, by its tests.
//
// A WalDecoder is owned and used by one thread; the functions are pure over files.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kvd::etcd_data {

// walpb.Record types.
inline constexpr int64_t kMetadataRecord = 1;
inline constexpr int64_t kEntryRecord = 2;
inline constexpr int64_t kStateRecord = 3;
inline constexpr int64_t kCrcRecord = 4;
inline constexpr int64_t kSnapshotRecord = 5;

// A frame's length is refused from this size on (etcd's maxWALEntrySizeLimit).
inline constexpr uint64_t kMaxRecordBytes = 10 * 1024 * 1024;

// CRC-32C (Castagnoli) continued over `data` from `crc`, as Go's crc32.Update: 0 starts a new
// checksum, and update(update(0, a), b) == update(0, a + b).
uint32_t crc32c_update(uint32_t crc, std::string_view data);

struct WalFile {
  std::string path;
  std::string name;    // %016x-%016x.wal
  uint64_t seq = 0;    // the file's sequence number
  uint64_t index = 0;  // the raft index its first entry follows (entries start at index + 1)
};

// The WAL files of `wal_dir` in name order (= sequence order). A name that is not a WAL file's is
// passed over with a warning, except etcd's preallocated next files (*.tmp). Fails when the
// directory cannot be listed; an empty list is not an error.
Result<std::vector<WalFile>> list_wal_files(const std::string& wal_dir,
                                            std::vector<std::string>* warnings);

struct WalRecord {
  int64_t type = 0;
  uint32_t crc = 0;
  std::string data;
  size_t file = 0;      // index into the decoder's files
  uint64_t offset = 0;  // of the frame's length field in that file
  uint64_t end = 0;     // the offset just after the frame (and its padding)
};

// Reads the records of `files` as one stream, as etcd's decoder does: the rolling CRC starts at 0
// and continues across files; the crc record that opens each file must hold the CRC so far
// (unless it is 0, at the start of reading) and sets it. A zero length field, or the end of a
// file at a frame boundary, ends that file. Within the last file, a frame cut short by the end of
// the file, or a frame that fails to decode or to match its CRC while a whole disk sector of it
// is zeros, is a torn write: reading ends there and torn_tail() says where. Anything else that
// does not decode is an error naming the file and the offset.
class WalDecoder {
 public:
  explicit WalDecoder(std::vector<WalFile> files);
  ~WalDecoder();
  WalDecoder(const WalDecoder&) = delete;
  WalDecoder& operator=(const WalDecoder&) = delete;

  // The next record, or nullopt at the end of the last file (clean, or torn: see torn_tail()).
  Result<std::optional<WalRecord>> next();

  // After next() returned nullopt: "" when the files ended cleanly; otherwise a one-line warning
  // naming the last file and the offset of its torn frame.
  const std::string& torn_tail() const { return torn_tail_; }

  // "<path>: offset <n>" of a record read by this decoder.
  std::string where(const WalRecord& r) const;

  const std::vector<WalFile>& files() const { return files_; }

 private:
  Status open_current();
  void close_current();
  Status read_at(uint64_t offset, size_t n, std::string* out);
  Result<std::optional<WalRecord>> cut_short(uint64_t offset, const std::string& what);
  bool is_torn(uint64_t offset, std::string_view frame) const;
  std::string at(uint64_t offset) const;

  std::vector<WalFile> files_;
  size_t current_ = 0;  // the file being read; == files_.size() at the end
  int fd_ = -1;         // of files_[current_], or -1 before it is opened
  uint64_t size_ = 0;   // of files_[current_]
  uint64_t offset_ = 0; // the next frame's offset in files_[current_]
  uint32_t crc_ = 0;    // the rolling CRC of the records read so far
  std::string torn_tail_;
};

}  // namespace kvd::etcd_data
