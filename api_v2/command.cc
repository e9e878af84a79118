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

#include "common/codec.h"

namespace kvd::v2 {
namespace {

using codec::put_bytes;
using codec::put_u64;
using codec::put_u8;

constexpr uint8_t kCommandVersion = 1;

}  // namespace

std::string encode(const Command& cmd) {
  std::string out;
  out.reserve(64 + cmd.key.size() + cmd.value.size() +
              (cmd.prev_value ? cmd.prev_value->size() : 0));
  put_u8(out, kCommandVersion);
  put_u8(out, static_cast<uint8_t>(cmd.op));
  put_u64(out, cmd.request_id);
  put_u64(out, static_cast<uint64_t>(cmd.now_ns));
  put_bytes(out, cmd.key);
  put_bytes(out, cmd.value);
  put_u8(out, cmd.dir ? 1 : 0);
  put_u8(out, cmd.recursive ? 1 : 0);
  put_u8(out, cmd.refresh ? 1 : 0);
  put_u8(out, cmd.expire_at_ns ? 1 : 0);
  if (cmd.expire_at_ns) put_u64(out, static_cast<uint64_t>(*cmd.expire_at_ns));
  put_u8(out, cmd.prev_value ? 1 : 0);
  if (cmd.prev_value) put_bytes(out, *cmd.prev_value);
  put_u64(out, cmd.prev_index);
  return out;
}

bool decode(std::string_view bytes, Command* out) {
  codec::Reader r(bytes);
  uint8_t version = 0, op = 0;
  if (!r.u8(&version) || version != kCommandVersion) return false;
  if (!r.u8(&op) || op < static_cast<uint8_t>(Op::kSet) || op > static_cast<uint8_t>(Op::kAuth))
    return false;
  Command c;
  c.op = static_cast<Op>(op);
  if (!r.u64(&c.request_id) || !r.i64(&c.now_ns) || !r.bytes(&c.key) || !r.bytes(&c.value) ||
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
    if (!r.bytes(&pv)) return false;
    c.prev_value = std::move(pv);
  }
  if (!r.u64(&c.prev_index) || !r.done()) return false;
  *out = std::move(c);
  return true;
}

}  // namespace kvd::v2
