// WalDecoder and the WAL file list (see wal_decoder.h; the format is at the top of
// etcd_member.cc).
#include "etcd_data/wal_decoder.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "etcd_data/etcd.pb.h"
#include "etcd_data/strict_parse.h"

namespace kvd::etcd_data {

namespace {

namespace fs = std::filesystem;

// The length field, then the frame (record and padding) is aligned to 8 bytes.
constexpr uint64_t kLengthBytes = 8;
// etcd's minSectorSize: a write that tore leaves whole sectors unwritten (zeros, as the files are
// preallocated with zeros).
constexpr uint64_t kSectorBytes = 512;

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

bool is_hex16(std::string_view s) {
  return s.size() == 16 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// "%016x-%016x.wal", as etcd names them (lower-case hex).
std::optional<WalFile> parse_wal_name(const std::string& name) {
  if (name.size() != 16 + 1 + 16 + 4 || name[16] != '-' || !name.ends_with(".wal")) {
    return std::nullopt;
  }
  std::string_view v(name);
  if (!is_hex16(v.substr(0, 16)) || !is_hex16(v.substr(17, 16))) return std::nullopt;
  WalFile f;
  f.name = name;
  f.seq = std::stoull(name.substr(0, 16), nullptr, 16);
  f.index = std::stoull(name.substr(17, 16), nullptr, 16);
  return f;
}

}  // namespace

uint32_t crc32c_update(uint32_t crc, std::string_view data) {
  uint32_t c = ~crc;
  for (unsigned char b : data) c = kCrc32cTable[(c ^ b) & 0xff] ^ (c >> 8);
  return ~c;
}

Result<std::vector<WalFile>> list_wal_files(const std::string& wal_dir,
                                            std::vector<std::string>* warnings) {
  std::error_code ec;
  std::vector<WalFile> files;
  for (fs::directory_iterator it(wal_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::optional<WalFile> f = parse_wal_name(name);
    if (!f) {
      if (!name.ends_with(".tmp")) {
        warnings->push_back(it->path().string() + ": not a WAL file name; ignored");
      }
      continue;
    }
    f->path = it->path().string();
    files.push_back(std::move(*f));
  }
  if (ec) return Status::error(wal_dir + ": cannot list the WAL directory: " + ec.message());
  std::sort(files.begin(), files.end(),
            [](const WalFile& a, const WalFile& b) { return a.name < b.name; });
  return files;
}

WalDecoder::WalDecoder(std::vector<WalFile> files) : files_(std::move(files)) {}

WalDecoder::~WalDecoder() { close_current(); }

void WalDecoder::close_current() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string WalDecoder::at(uint64_t offset) const {
  return files_[current_].path + ": offset " + std::to_string(offset);
}

std::string WalDecoder::where(const WalRecord& r) const {
  return files_[r.file].path + ": offset " + std::to_string(r.offset);
}

Status WalDecoder::open_current() {
  const std::string& path = files_[current_].path;
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return Status::error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return Status::error(path + ": cannot stat: " + std::strerror(errno));
  size_ = static_cast<uint64_t>(st.st_size);
  offset_ = 0;
  return Status::ok();
}

Status WalDecoder::read_at(uint64_t offset, size_t n, std::string* out) {
  out->resize(n);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd_, out->data() + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::error(at(offset) + ": cannot read: " + std::strerror(errno));
    if (r == 0) return Status::error(at(offset) + ": the file shrank while it was read");
    done += static_cast<size_t>(r);
  }
  return Status::ok();
}

// etcd's isTornEntry: split the frame at sector boundaries of the file; a sector part that is all
// zeros was never written.
bool WalDecoder::is_torn(uint64_t offset, std::string_view frame) const {
  if (current_ + 1 != files_.size()) return false;
  uint64_t file_off = offset + kLengthBytes;
  size_t pos = 0;
  while (pos < frame.size()) {
    size_t len = std::min<size_t>(kSectorBytes - file_off % kSectorBytes, frame.size() - pos);
    std::string_view chunk = frame.substr(pos, len);
    if (std::all_of(chunk.begin(), chunk.end(), [](char c) { return c == 0; })) return true;
    pos += len;
    file_off += len;
  }
  return false;
}

// The file ends inside the frame at `offset`: a torn tail in the last file, damage elsewhere.
Result<std::optional<WalRecord>> WalDecoder::cut_short(uint64_t offset, const std::string& what) {
  if (current_ + 1 != files_.size()) {
    return Status::error(at(offset) + ": " + what + ", and it is not the last WAL file");
  }
  torn_tail_ = at(offset) + ": " + what + " (a write torn by a crash); the " +
               std::to_string(size_ - offset) +
               " bytes from there on are ignored, as etcd's repair would drop them";
  close_current();
  current_ = files_.size();
  return std::optional<WalRecord>();
}

Result<std::optional<WalRecord>> WalDecoder::next() {
  while (current_ < files_.size()) {
    if (fd_ < 0) {
      if (Status s = open_current(); !s.is_ok()) return s;
    }
    const uint64_t off = offset_;
    if (off == size_) {  // the end of the file at a frame boundary
      close_current();
      ++current_;
      continue;
    }
    if (size_ - off < kLengthBytes) return cut_short(off, "the file ends inside a length field");
    std::string len_bytes;
    if (Status s = read_at(off, kLengthBytes, &len_bytes); !s.is_ok()) return s;
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = len << 8 | static_cast<unsigned char>(len_bytes[i]);
    if (len == 0) {  // etcd's end of records: the rest of a preallocated file is zeros
      close_current();
      ++current_;
      continue;
    }
    // The low 56 bits are the record's size; a set top bit says the low 3 bits of the top byte
    // count the padding after it.
    const uint64_t rec_bytes = len & ((uint64_t{1} << 56) - 1);
    const uint64_t pad_bytes = (len >> 63) ? (len >> 56) & 7 : 0;
    if (rec_bytes >= kMaxRecordBytes - pad_bytes) {
      return Status::error(at(off) + ": a record of " + std::to_string(rec_bytes) +
                           " bytes, over etcd's limit of " + std::to_string(kMaxRecordBytes));
    }
    if (size_ - off - kLengthBytes < rec_bytes + pad_bytes) {
      return cut_short(off, "the file ends inside a record of " + std::to_string(rec_bytes) +
                                " bytes");
    }
    std::string frame;
    if (Status s = read_at(off + kLengthBytes, rec_bytes + pad_bytes, &frame); !s.is_ok()) return s;
    pb::Record rec;
    if (!parse_strict(&rec, std::string_view(frame).substr(0, rec_bytes))) {
      if (is_torn(off, frame)) return cut_short(off, "a record that does not decode");
      return Status::error(at(off) + ": a record that does not decode as walpb.Record");
    }
    if (rec.type() != kCrcRecord) {
      crc_ = crc32c_update(crc_, rec.data());
      if (rec.crc() != crc_) {
        if (is_torn(off, frame)) return cut_short(off, "a record that fails its CRC");
        return Status::error(at(off) + ": CRC mismatch (the record says " +
                             std::to_string(rec.crc()) + ", its data and the records before it " +
                             "give " + std::to_string(crc_) + ")");
      }
    } else {
      // A file opens with the CRC of the records before it; 0 when nothing was read before.
      if (crc_ != 0 && rec.crc() != crc_) {
        return Status::error(at(off) + ": CRC mismatch: the file does not continue the one " +
                             "before it (its crc record says " + std::to_string(rec.crc()) +
                             ", the records before it give " + std::to_string(crc_) + ")");
      }
      crc_ = rec.crc();
    }
    offset_ = off + kLengthBytes + rec_bytes + pad_bytes;
    WalRecord out;
    out.type = rec.type();
    out.crc = rec.crc();
    out.data = std::move(*rec.mutable_data());
    out.file = current_;
    out.offset = off;
    out.end = offset_;
    return std::optional<WalRecord>(std::move(out));
  }
  return std::optional<WalRecord>();
}

}  // namespace kvd::etcd_data
