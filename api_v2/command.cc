// Command wire format (version 1), as stored in raft entries:
//
//   u8  version (= 1)
//   u8  op                       (an Op value, 1..9)
//   u64 request_id               (little-endian)
//   i64 now_ns                   (little-endian two's complement)
//   str key                      (u32 little-endian length, then the bytes)
//   str value
//   u8  dir                      (0 or 1)
//   u8  recursive                (0 or 1)
//   u8  refresh                  (0 or 1)
//   opt expire_at_ns             (u8 presence 0/1, then i64 when present)
//   opt prev_value               (u8 presence 0/1, then str when present)
//   u64 prev_index
//
// Enums and booleans are one byte; any other value is rejected, as are unknown versions, missing
// bytes and trailing bytes. An entry is written whole by the raft log, so a decoder never sees a
// partially written command unless the log itself is corrupt.

#include "api_v2/command.h"

namespace kvd::v2 {
namespace {

constexpr uint8_t kCommandVersion = 1;

void put_u8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }

void put_u64(std::string& out, uint64_t v) {
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out.append(buf, 8);
}

void put_str(std::string& out, std::string_view s) {
  uint32_t n = static_cast<uint32_t>(s.size());
  char buf[4];
  for (int i = 0; i < 4; ++i) buf[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.append(buf, 4);
  out.append(s);
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool u8(uint8_t* v) {
    if (in_.size() < 1) return false;
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool boolean(bool* v) {
    uint8_t b;
    if (!u8(&b) || b > 1) return false;
    *v = b == 1;
    return true;
  }
  bool u64(uint64_t* v) {
    if (in_.size() < 8) return false;
    uint64_t r = 0;
    for (int i = 0; i < 8; ++i) r |= static_cast<uint64_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(8);
    *v = r;
    return true;
  }
  bool i64(int64_t* v) {
    uint64_t u;
    if (!u64(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool str(std::string* s) {
    if (in_.size() < 4) return false;
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(4);
    if (in_.size() < n) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

}  // namespace

std::string encode(const Command& cmd) {
  std::string out;
  out.reserve(64 + cmd.key.size() + cmd.value.size() +
              (cmd.prev_value ? cmd.prev_value->size() : 0));
  put_u8(out, kCommandVersion);
  put_u8(out, static_cast<uint8_t>(cmd.op));
  put_u64(out, cmd.request_id);
  put_u64(out, static_cast<uint64_t>(cmd.now_ns));
  put_str(out, cmd.key);
  put_str(out, cmd.value);
  put_u8(out, cmd.dir ? 1 : 0);
  put_u8(out, cmd.recursive ? 1 : 0);
  put_u8(out, cmd.refresh ? 1 : 0);
  put_u8(out, cmd.expire_at_ns ? 1 : 0);
  if (cmd.expire_at_ns) put_u64(out, static_cast<uint64_t>(*cmd.expire_at_ns));
  put_u8(out, cmd.prev_value ? 1 : 0);
  if (cmd.prev_value) put_str(out, *cmd.prev_value);
  put_u64(out, cmd.prev_index);
  return out;
}

bool decode(std::string_view bytes, Command* out) {
  Reader r(bytes);
  uint8_t version = 0, op = 0;
  if (!r.u8(&version) || version != kCommandVersion) return false;
  if (!r.u8(&op) || op < static_cast<uint8_t>(Op::kSet) || op > static_cast<uint8_t>(Op::kInternal))
    return false;
  Command c;
  c.op = static_cast<Op>(op);
  if (!r.u64(&c.request_id) || !r.i64(&c.now_ns) || !r.str(&c.key) || !r.str(&c.value) ||
      !r.boolean(&c.dir) || !r.boolean(&c.recursive) || !r.boolean(&c.refresh))
    return false;
  bool present = false;
  if (!r.boolean(&present)) return false;
  if (present) {
    int64_t t = 0;
    if (!r.i64(&t)) return false;
    c.expire_at_ns = t;
  }
  if (!r.boolean(&present)) return false;
  if (present) {
    std::string pv;
    if (!r.str(&pv)) return false;
    c.prev_value = std::move(pv);
  }
  if (!r.u64(&c.prev_index) || !r.done()) return false;
  *out = std::move(c);
  return true;
}

}  // namespace kvd::v2
