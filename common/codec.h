// The one binary codec of kvd's own formats: fixed-width integers, little-endian unless the name
// says _be, and byte strings as a u32 length followed by the bytes. Every format built on it
// (raft entries and commands in api_v2/command.cc, store images in api_v2/store_image.cc, the
// raft log in storage/raft_log.cc, the peer wire in server/peer/peer_wire.h, read barriers in
// server/member/apply.cc) documents its own layout at the top of the file that writes it.
//
// Pure functions over bytes; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvd::codec {

// Appends v as N little-endian bytes, built in a register-sized buffer and appended at once
// (images write a few of these per key of a store that may hold millions).
template <size_t N>
inline void put_le(std::string& out, uint64_t v) {
  char buf[N];
  for (size_t i = 0; i < N; ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out.append(buf, N);
}

inline void put_u8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
inline void put_u16(std::string& out, uint16_t v) { put_le<2>(out, v); }
inline void put_u32(std::string& out, uint32_t v) { put_le<4>(out, v); }
inline void put_u64(std::string& out, uint64_t v) { put_le<8>(out, v); }
inline void put_i64(std::string& out, int64_t v) { put_le<8>(out, static_cast<uint64_t>(v)); }
inline void put_bool(std::string& out, bool v) { out.push_back(v ? 1 : 0); }
// u32 length, then the bytes. REQUIRES: b.size() < 2^32.
inline void put_bytes(std::string& out, std::string_view b) {
  put_u32(out, static_cast<uint32_t>(b.size()));
  out.append(b);
}

// Big-endian, for RocksDB keys whose bytewise order must be numeric order.
inline void put_u32_be(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void put_u64_be(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads fields from a byte range in order. Every getter fails (returns false) instead of reading
// past the end; after one failure the reader stays failed, so a chain of getters joined by && or
// checked once at the end (ok(), done()) cannot read garbage.
class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}

  bool u8(uint8_t* v) {
    if (!need(1)) return false;
    *v = static_cast<uint8_t>(b_[pos_++]);
    return true;
  }
  bool u16(uint16_t* v) { return le(v, 2); }
  bool u32(uint32_t* v) { return le(v, 4); }
  bool u64(uint64_t* v) { return le(v, 8); }
  bool i64(int64_t* v) {
    uint64_t u = 0;
    if (!le(&u, 8)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool u64_be(uint64_t* v) {
    if (!need(8)) return false;
    uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x = (x << 8) | static_cast<uint8_t>(b_[pos_ + i]);
    pos_ += 8;
    *v = x;
    return true;
  }
  // One byte, 0 or 1; any other value fails.
  bool boolean(bool* v) {
    uint8_t x = 0;
    if (!u8(&x) || x > 1) return ok_ = false;
    *v = x == 1;
    return true;
  }
  // A u32 length and that many bytes.
  bool bytes(std::string* v) {
    std::string_view s;
    if (!view(&s)) return false;
    v->assign(s);
    return true;
  }
  // The same without copying: *v points into the reader's range.
  bool view(std::string_view* v) {
    uint32_t n = 0;
    if (!u32(&n) || !need(n)) return false;
    *v = b_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // Exactly n raw bytes (no length prefix).
  bool raw(size_t n, std::string_view* v) {
    if (!need(n)) return false;
    *v = b_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // Everything not read yet; the reader is then at the end.
  std::string_view rest() {
    std::string_view r = b_.substr(pos_);
    pos_ = b_.size();
    return r;
  }
  size_t remaining() const { return b_.size() - pos_; }
  // No failure, and every byte consumed.
  bool done() const { return ok_ && pos_ == b_.size(); }
  bool ok() const { return ok_; }

 private:
  bool need(size_t n) {
    if (!ok_ || b_.size() - pos_ < n) return ok_ = false;
    return true;
  }
  template <class T>
  bool le(T* v, int n) {
    if (!need(static_cast<size_t>(n))) return false;
    uint64_t x = 0;
    for (int i = 0; i < n; ++i) x |= uint64_t(static_cast<uint8_t>(b_[pos_ + i])) << (8 * i);
    pos_ += static_cast<size_t>(n);
    *v = static_cast<T>(x);
    return true;
  }

  std::string_view b_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace kvd::codec
