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
//   pieces as it is made in steps (begin_image, image_step); recover() validates all of it
//   before touching the store.
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

// One tree node's record.
void put_node(std::string& out, std::string_view name, bool dir, std::string_view value,
              const std::optional<int64_t>& expire_ns, uint64_t created_index,
              uint64_t modified_index, size_t children) {
  put_bytes(out, name);
  put_u8(out, dir ? 1 : 0);
  if (!dir) put_bytes(out, value);
  put_u8(out, expire_ns ? 1 : 0);
  if (expire_ns) put_i64(out, *expire_ns);
  put_u64(out, created_index);
  put_u64(out, modified_index);
  if (dir) put_u32(out, static_cast<uint32_t>(children));
}

void put_history_entry(std::string& out, uint64_t index, const Event* event) {
  put_u64(out, index);
  put_u8(out, event ? 1 : 0);
  if (!event) return;
  put_u8(out, static_cast<uint8_t>(event->action));
  put_u8(out, event->refresh ? 1 : 0);
  put_u64(out, event->etcd_index);
  put_view(out, event->node);
  put_u8(out, event->prev_node ? 1 : 0);
  if (event->prev_node) put_view(out, *event->prev_node);
}

// The image's header: magic, version, index, counters, internal records.
void put_header(std::string& out, uint64_t index, const StoreStats& stats,
                const std::map<std::string, std::string>& internal) {
  out.append(kImageMagic, sizeof(kImageMagic) - 1);
  put_u8(out, kImageVersion);
  put_u64(out, index);
  for (auto field : kStatFields) put_u64(out, stats.*field);
  put_u32(out, static_cast<uint32_t>(internal.size()));
  for (const auto& [k, v] : internal) {
    put_bytes(out, k);
    put_bytes(out, v);
  }
}

}  // namespace

std::string Store::save(size_t size_hint) const {
  const Impl& s = *impl_;
  std::string out;
  out.reserve(size_hint + size_hint / 8 + 4096);
  put_header(out, s.index, s.full_stats(), s.internal);
  auto node = [&](const Node* n) {
    put_node(out, n->parent ? n->name() : std::string_view(), n->dir, n->value, n->expire_ns,
             n->created_index, n->modified_index, n->children.size());
  };
  node(s.root.get());
  for_each_below(s.root.get(), node);
  put_u32(out, static_cast<uint32_t>(s.history.size()));
  for (const auto& h : s.history) put_history_entry(out, h.index, h.event.get());
  return out;
}

// ---- an image made in steps ----
//
// The walk writes the tree in save()'s order (pre-order, children by name) as it was at the
// image's index: a directory's children are its current ones that existed then merged by name
// with those removed since (ImageWalk::removed), and a node changed since is written with its
// old fields (ImageWalk::before). Between steps the walk keeps, per directory being written, the
// name of the last child written, and finds the next one from there: the maps may have changed.

void Store::begin_image(size_t piece_bytes) {
  Impl& s = *impl_;
  auto w = std::make_unique<ImageWalk>();
  w->index = s.index;
  w->piece_bytes = std::max<size_t>(piece_bytes, 1);
  put_header(w->out, s.index, s.full_stats(), s.internal);
  w->history.reserve(s.history.size());
  for (const auto& h : s.history) w->history.emplace_back(h.index, h.event);
  s.walk = std::move(w);
}

bool Store::image_in_progress() const { return impl_->walk != nullptr; }

void Store::end_image() { impl_->walk.reset(); }

Store::ImageStep Store::image_step(size_t max_nodes,
                                   const std::function<bool(std::string_view)>& put) {
  Impl& s = *impl_;
  if (!s.walk) return ImageStep::kStopped;
  ImageWalk& w = *s.walk;
  bool ok = true;
  auto hand_over = [&](bool last) {
    size_t at = 0;
    for (; ok && w.out.size() - at >= w.piece_bytes; at += w.piece_bytes) {
      ok = put(std::string_view(w.out).substr(at, w.piece_bytes));
    }
    if (ok && last && at < w.out.size()) {
      ok = put(std::string_view(w.out).substr(at));
      at = w.out.size();
    }
    w.out.erase(0, at);
  };
  // Writes n as it was at the image's index; a directory is then entered.
  auto write = [&](const Node* n) {
    auto before = w.before.find(n);
    const ImageWalk::Before* b = before == w.before.end() ? nullptr : &before->second;
    size_t children = 0;
    if (n->dir) {
      auto made = w.made_since.find(n);
      auto removed = w.removed.find(n);
      children = n->children.size() - (made == w.made_since.end() ? 0 : made->second) +
                 (removed == w.removed.end() ? 0 : removed->second.size());
      w.stack.push_back(ImageWalk::Frame{n, std::string(), false});
    }
    put_node(w.out, n->parent ? n->name() : std::string_view(), n->dir, b ? b->value : n->value,
             b ? b->expire_ns : n->expire_ns, n->created_index,
             b ? b->modified_index : n->modified_index, children);
    if (w.out.size() >= w.piece_bytes) hand_over(false);
  };

  size_t written = 0;
  if (!w.root_written) {
    w.root_written = true;
    write(s.root.get());
    ++written;
  }
  while (ok && !w.stack.empty() && written < max_nodes) {
    ImageWalk::Frame& f = w.stack.back();
    const Node* dir = f.dir;
    // The next child by name: of the current ones that existed then, and of those removed.
    auto live = f.started ? dir->children.upper_bound(f.last) : dir->children.begin();
    while (live != dir->children.end() && !w.existed(live->second.get())) ++live;
    const Node* next = live != dir->children.end() ? live->second.get() : nullptr;
    std::string_view next_name = next ? live->first : std::string_view();
    if (auto removed = w.removed.find(dir); removed != w.removed.end()) {
      auto& gone = removed->second;
      auto g = f.started ? gone.upper_bound(f.last) : gone.begin();
      if (g != gone.end() && (!next || g->first < next_name)) {
        next = g->second.get();
        next_name = g->first;
      }
    }
    if (!next) {
      w.stack.pop_back();
      continue;
    }
    f.last.assign(next_name);
    f.started = true;
    write(next);  // may push a frame: f is not used after this
    ++written;
  }
  if (ok && w.stack.empty()) {
    put_u32(w.out, static_cast<uint32_t>(w.history.size()));
    for (const auto& [index, event] : w.history) put_history_entry(w.out, index, event.get());
    hand_over(true);
    s.walk.reset();
    return ok ? ImageStep::kDone : ImageStep::kStopped;
  }
  if (!ok) {
    s.walk.reset();
    return ImageStep::kStopped;
  }
  return ImageStep::kMore;
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

  // Commit: everything but the watchers comes from the image (an image in progress ends: the
  // nodes it was writing are gone).
  Impl& cur = *impl_;
  cur.walk.reset();
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
