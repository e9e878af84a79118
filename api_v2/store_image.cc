// Snapshot images of the v2 store: Store::save() and Store::recover().
//
// Snapshot image (save/recover), version 1, all integers little-endian:
//   "KVDSTORE" u8 version=1
//   u64 index, 15 x u64 stats counters (StoreStats declaration order)
//   u32 n, n x (str key, str value)                   internal records
//   tree, pre-order from the root; each node:
//     str name ("" for the root), u8 dir, [file: str value], u8 has_ttl [i64 deadline_ns],
//     u64 created_index, u64 modified_index, [dir: u32 child count]
//   u32 n, n x history entry: u64 index, u8 kind (0 internal, 1 event)
//     event: u8 action, u8 refresh, u64 etcd_index, view node, u8 has_prev [view prev]
//     view: str key, u8 dir, str value, u8 has_exp [i64], i64 ttl, u64 modified, u64 created
//   (str = u32 length + bytes). The image is produced whole in memory (save) or handed over in
//   pieces as it is made (save_pieces); recover() validates all of it before touching the store.
#include "api_v2/store.h"

#include <algorithm>

#include "api_v2/store_impl.h"
#include "common/codec.h"

namespace kvd::v2 {
namespace {

constexpr char kImageMagic[] = "KVDSTORE";
constexpr uint8_t kImageVersion = 1;

using codec::put_bytes;
using codec::put_i64;
using codec::put_u32;
using codec::put_u64;
using codec::put_u8;
using codec::Reader;

void put_view(std::string& out, const NodeView& v) {
  put_bytes(out, v.key);
  put_u8(out, v.dir ? 1 : 0);
  put_bytes(out, v.value);
  put_u8(out, v.expiration_ns ? 1 : 0);
  if (v.expiration_ns) put_i64(out, *v.expiration_ns);
  put_i64(out, v.ttl);
  put_u64(out, v.modified_index);
  put_u64(out, v.created_index);
}

bool read_view(Reader& r, NodeView* v) {
  bool has_exp = false;
  if (!r.bytes(&v->key) || !r.boolean(&v->dir) || !r.bytes(&v->value) || !r.boolean(&has_exp))
    return false;
  if (has_exp) {
    int64_t t;
    if (!r.i64(&t)) return false;
    v->expiration_ns = t;
  }
  return r.i64(&v->ttl) && r.u64(&v->modified_index) && r.u64(&v->created_index);
}

// The counters in image order (StoreStats declaration order).
constexpr uint64_t StoreStats::*kStatFields[] = {
    &StoreStats::gets_success,
    &StoreStats::gets_fail,
    &StoreStats::sets_success,
    &StoreStats::sets_fail,
    &StoreStats::delete_success,
    &StoreStats::delete_fail,
    &StoreStats::update_success,
    &StoreStats::update_fail,
    &StoreStats::create_success,
    &StoreStats::create_fail,
    &StoreStats::compare_and_swap_success,
    &StoreStats::compare_and_swap_fail,
    &StoreStats::compare_and_delete_success,
    &StoreStats::compare_and_delete_fail,
    &StoreStats::expire_count,
};

}  // namespace

void Store::save_image(std::string& out, const std::function<void()>& spill) const {
  const Impl& s = *impl_;
  out.append(kImageMagic, sizeof(kImageMagic) - 1);
  put_u8(out, kImageVersion);
  put_u64(out, s.index);
  const StoreStats stats = s.full_stats();
  for (auto field : kStatFields) put_u64(out, stats.*field);
  put_u32(out, static_cast<uint32_t>(s.internal.size()));
  for (const auto& [k, v] : s.internal) {
    put_bytes(out, k);
    put_bytes(out, v);
    spill();
  }
  auto put_node = [&](const Node* n) {
    put_bytes(out, n->parent ? n->name() : std::string_view());
    put_u8(out, n->dir ? 1 : 0);
    if (!n->dir) put_bytes(out, n->value);
    put_u8(out, n->expire_ns ? 1 : 0);
    if (n->expire_ns) put_i64(out, *n->expire_ns);
    put_u64(out, n->created_index);
    put_u64(out, n->modified_index);
    if (n->dir) put_u32(out, static_cast<uint32_t>(n->children.size()));
    spill();
  };
  put_node(s.root.get());
  for_each_below(s.root.get(), put_node);
  put_u32(out, static_cast<uint32_t>(s.history.size()));
  for (const auto& h : s.history) {
    put_u64(out, h.index);
    put_u8(out, h.event ? 1 : 0);
    if (!h.event) continue;
    const Event& ev = *h.event;
    put_u8(out, static_cast<uint8_t>(ev.action));
    put_u8(out, ev.refresh ? 1 : 0);
    put_u64(out, ev.etcd_index);
    put_view(out, ev.node);
    put_u8(out, ev.prev_node ? 1 : 0);
    if (ev.prev_node) put_view(out, *ev.prev_node);
    spill();
  }
}

std::string Store::save(size_t size_hint) const {
  std::string out;
  out.reserve(size_hint + size_hint / 8 + 4096);
  save_image(out, [] {});
  return out;
}

bool Store::save_pieces(size_t piece_bytes,
                        const std::function<bool(std::string_view)>& put) const {
  piece_bytes = std::max<size_t>(piece_bytes, 1);
  std::string out;
  out.reserve(piece_bytes + piece_bytes / 4);
  bool ok = true;
  // Hands over whole pieces (and, at the end, the rest); a record longer than a piece is
  // handed over in several.
  auto hand_over = [&](bool last) {
    size_t at = 0;
    for (; ok && out.size() - at >= piece_bytes; at += piece_bytes) {
      ok = put(std::string_view(out).substr(at, piece_bytes));
    }
    if (ok && last && at < out.size()) {
      ok = put(std::string_view(out).substr(at));
      at = out.size();
    }
    out.erase(0, at);
  };
  save_image(out, [&] {
    if (out.size() >= piece_bytes) hand_over(false);
  });
  hand_over(true);
  return ok;
}

bool Store::recover(std::string_view image) {
  Reader r(image);
  uint8_t version = 0;
  std::string_view magic;
  if (!r.raw(sizeof(kImageMagic) - 1, &magic) ||
      magic != std::string_view(kImageMagic, sizeof(kImageMagic) - 1) || !r.u8(&version) ||
      version != kImageVersion)
    return false;
  auto fresh = std::make_unique<Impl>();
  Impl& s = *fresh;
  if (!r.u64(&s.index)) return false;
  for (auto field : kStatFields)
    if (!r.u64(&(s.stats.*field))) return false;
  uint32_t n_internal;
  if (!r.u32(&n_internal) || n_internal > r.remaining() / 8) return false;
  for (uint32_t i = 0; i < n_internal; ++i) {
    std::string k, v;
    if (!r.bytes(&k) || !r.bytes(&v)) return false;
    s.internal[std::move(k)] = std::move(v);
  }

  // Reads one node record into n (key left to the caller); returns its child count.
  auto read_node = [&](Node* n, std::string* name, uint32_t* n_children) {
    bool has_exp = false;
    if (!r.bytes(name) || !r.boolean(&n->dir)) return false;
    if (!n->dir && !r.bytes(&n->value)) return false;
    if (!r.boolean(&has_exp)) return false;
    if (has_exp) {
      int64_t t;
      if (!r.i64(&t)) return false;
      n->expire_ns = t;
    }
    if (!r.u64(&n->created_index) || !r.u64(&n->modified_index)) return false;
    if (n->created_index > s.index || n->modified_index > s.index) return false;
    *n_children = 0;
    if (n->dir && (!r.u32(n_children) || *n_children > r.remaining() / 22)) return false;
    return true;
  };

  std::string name;
  uint32_t n_children = 0;
  Node* root = s.root.get();
  if (!read_node(root, &name, &n_children) || !name.empty() || !root->dir || root->expire_ns)
    return false;
  std::vector<std::pair<Node*, uint32_t>> stack;
  if (n_children > 0) stack.emplace_back(root, n_children);
  while (!stack.empty()) {
    auto& [parent, left] = stack.back();
    Node* p = parent;
    if (left == 0) {
      stack.pop_back();
      continue;
    }
    --left;
    auto child = std::make_unique<Node>();
    if (!read_node(child.get(), &name, &n_children)) return false;
    if (name.empty() || name.find('/') != std::string::npos || p->children.contains(name))
      return false;
    child->key = join_key(p->key, name);
    child->parent = p;
    Node* raw = child.get();
    p->children.add(std::move(child));
    if (raw->expire_ns) s.ttl.insert(raw);
    if (n_children > 0) stack.emplace_back(raw, n_children);
  }

  uint32_t n_history;
  if (!r.u32(&n_history) || n_history > kHistoryCapacity) return false;
  for (uint32_t i = 0; i < n_history; ++i) {
    uint64_t idx;
    bool is_event;
    if (!r.u64(&idx) || !r.boolean(&is_event) || idx > s.index) return false;
    if (!s.history.empty() && idx <= s.history.back().index) return false;
    if (!is_event) {
      s.history.push_back(Impl::HistoryEntry{idx, nullptr});
      continue;
    }
    auto ev = std::make_shared<Event>();
    uint8_t action;
    bool has_prev;
    if (!r.u8(&action) || action > static_cast<uint8_t>(Action::kExpire)) return false;
    ev->action = static_cast<Action>(action);
    if (!r.boolean(&ev->refresh) || !r.u64(&ev->etcd_index) || !read_view(r, &ev->node) ||
        !r.boolean(&has_prev))
      return false;
    if (has_prev) {
      ev->prev_node.emplace();
      if (!read_view(r, &*ev->prev_node)) return false;
    }
    s.history.push_back(Impl::HistoryEntry{idx, std::move(ev)});
  }
  if (r.remaining() != 0) return false;

  // Commit: everything but the watchers comes from the image.
  Impl& cur = *impl_;
  std::swap(cur.root, s.root);
  std::swap(cur.index, s.index);
  std::swap(cur.ttl, s.ttl);
  std::swap(cur.internal, s.internal);
  std::swap(cur.stats, s.stats);  // the image's counters include its reads
  cur.gets_success.store(0, std::memory_order_relaxed);
  cur.gets_fail.store(0, std::memory_order_relaxed);
  std::swap(cur.history, s.history);
  return true;
}

}  // namespace kvd::v2
