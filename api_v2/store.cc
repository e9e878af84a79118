// The v2 store: etcd 3.4 v2store semantics (shared spec v2-keys-api.md §5-§9) over a tree of
// nodes, with every mutation driven by a replicated Command so that members stay identical.
//
// Data structures and costs:
//   - Each directory keeps its children in a std::map by name: O(depth * log fanout) lookups and
//     a deterministic (byte-wise sorted) listing order, which also serves `sorted`.
//   - Nodes with a TTL sit in ttl_ ordered by (deadline, key): kExpire pops from the front.
//   - Watchers are indexed by their exact key; an event visits only the watcher lists of its
//     key's ancestors (and of removed descendants for deletes), never the whole watcher set.
//   - The event history is a deque of the last kHistoryCapacity events, each shared with any
//     pending watcher delivery. Cluster-internal writes take a history slot (as they do in etcd,
//     where they live under a hidden prefix) but can never match a keys watch.
//
// Watch callbacks are collected while a command is applied and run once the store is consistent
// again, so a callback may call back into the store (get, watch, unwatch).
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
//   (str = u32 length + bytes). The image is produced whole in memory; recover() validates all of
//   it before touching the store.
#include "api_v2/store.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <set>
#include <unordered_map>
#include <utility>

#include "api_v2/render.h"

namespace kvd::v2 {
namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;
// etcd treats deadlines before 2000-01-01T00:00:00Z as "no TTL" when creating a node.
constexpr int64_t kMinExpireNs = 946'684'800LL * kNsPerSecond;
constexpr char kImageMagic[] = "KVDSTORE";
constexpr uint8_t kImageVersion = 1;

struct Node {
  std::string key;  // full path; "/" for the root
  bool dir = false;
  std::string value;                 // files only
  std::optional<int64_t> expire_ns;  // Invariant: set <=> the node is in Store::Impl::ttl_
  uint64_t created_index = 0;
  uint64_t modified_index = 0;
  Node* parent = nullptr;
  std::map<std::string, std::unique_ptr<Node>, std::less<>> children;  // dirs only

  std::string_view name() const {
    std::string_view k = key;
    return k.substr(k.rfind('/') + 1);
  }
  bool hidden() const {
    std::string_view n = name();
    return !n.empty() && n[0] == '_';
  }
};

struct TtlOrder {
  bool operator()(const Node* a, const Node* b) const {
    if (*a->expire_ns != *b->expire_ns) return *a->expire_ns < *b->expire_ns;
    return a->key < b->key;
  }
};

// Go's path.Clean(path.Join("/", p)).
std::string clean_key(std::string_view p) {
  std::string out = "/";
  size_t i = 0;
  while (i < p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view part = p.substr(i, j - i);
    i = j + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (out.size() > 1) out.resize(out.rfind('/') == 0 ? 1 : out.rfind('/'));
      continue;
    }
    if (out.size() > 1) out.push_back('/');
    out.append(part);
  }
  return out;
}

std::string join_key(const std::string& parent, std::string_view name) {
  std::string k;
  k.reserve(parent.size() + 1 + name.size());
  k = parent;
  if (k.size() > 1) k.push_back('/');
  k.append(name);
  return k;
}

// Calls fn(component) for each component of a clean absolute key, stopping when fn returns false.
template <typename Fn>
void for_each_component(std::string_view key, Fn&& fn) {
  size_t i = 1;
  while (i < key.size()) {
    size_t j = key.find('/', i);
    if (j == std::string_view::npos) j = key.size();
    if (!fn(key.substr(i, j - i))) return;
    i = j + 1;
  }
}

// ceil((deadline - now) / 1s), truncated toward zero when negative, as etcd computes it.
int64_t ttl_seconds(int64_t deadline_ns, int64_t now_ns) {
  int64_t d = deadline_ns - now_ns;
  int64_t ttl = d / kNsPerSecond;
  if (d % kNsPerSecond > 0) ++ttl;
  return ttl;
}

// Whether a change at key_path is hidden from a watcher at watch_path (a '_' component below
// the watched path). A watcher deeper than the key (a removed descendant) always sees it.
bool hidden_from(std::string_view watch_path, std::string_view key_path) {
  if (watch_path.size() > key_path.size()) return false;
  std::string_view rest = key_path.substr(watch_path.size());
  return (!rest.empty() && rest[0] == '_') || rest.find("/_") != std::string_view::npos;
}

// Lets the watcher map be searched with a string_view (no allocation per ancestor visited).
struct KeyHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// ---- binary image helpers ----

void put_u8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
// Little-endian, built in a register-sized buffer and appended at once (save() writes a few of
// these per node of a store that may hold millions).
template <size_t N>
void put_le(std::string& out, uint64_t v) {
  char buf[N];
  for (size_t i = 0; i < N; ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out.append(buf, N);
}
void put_u32(std::string& out, uint32_t v) { put_le<4>(out, v); }
void put_u64(std::string& out, uint64_t v) { put_le<8>(out, v); }
void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u8(uint8_t* v) {
    if (in_.empty()) return false;
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
  bool u32(uint32_t* v) {
    if (in_.size() < 4) return false;
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) r |= static_cast<uint32_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(4);
    *v = r;
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
    uint32_t n;
    if (!u32(&n) || in_.size() < n) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool skip(std::string_view expected) {
    if (!starts_with(in_, expected)) return false;
    in_.remove_prefix(expected.size());
    return true;
  }
  size_t remaining() const { return in_.size(); }

 private:
  std::string_view in_;
};

void put_view(std::string& out, const NodeView& v) {
  put_str(out, v.key);
  put_u8(out, v.dir ? 1 : 0);
  put_str(out, v.value);
  put_u8(out, v.expiration_ns ? 1 : 0);
  if (v.expiration_ns) put_u64(out, static_cast<uint64_t>(*v.expiration_ns));
  put_u64(out, static_cast<uint64_t>(v.ttl));
  put_u64(out, v.modified_index);
  put_u64(out, v.created_index);
}

bool read_view(Reader& r, NodeView* v) {
  bool has_exp = false;
  if (!r.str(&v->key) || !r.boolean(&v->dir) || !r.str(&v->value) || !r.boolean(&has_exp))
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

struct Store::Impl {
  struct Watcher {
    WatcherId id = 0;
    std::string key;
    bool recursive = false;
    bool stream = false;
    uint64_t since_index = 0;
    WatchCallback cb;
    bool cancelled = false;  // unwatch()ed: pending deliveries are dropped
  };
  using WatcherList = std::list<std::shared_ptr<Watcher>>;

  struct HistoryEntry {
    uint64_t index = 0;
    std::shared_ptr<const Event> event;  // null for a cluster-internal record
  };

  struct Delivery {
    std::shared_ptr<Watcher> watcher;
    std::shared_ptr<const Event> event;
  };

  std::unique_ptr<Node> root = std::make_unique<Node>();
  // Invariant: every index in the tree and the history is <= index.
  uint64_t index = 0;
  std::set<Node*, TtlOrder> ttl;
  std::map<std::string, std::string> internal;
  StoreStats stats;  // gets_* excluded: they are counted in the atomics below
  // Reads run concurrently with each other (Store::get is const), so they count here.
  mutable std::atomic<uint64_t> gets_success{0}, gets_fail{0};
  // stats with the read counters folded in.
  StoreStats full_stats() const {
    StoreStats s = stats;
    s.gets_success += gets_success.load(std::memory_order_relaxed);
    s.gets_fail += gets_fail.load(std::memory_order_relaxed);
    return s;
  }
  // Invariant: size <= kHistoryCapacity, indexes strictly increasing.
  std::deque<HistoryEntry> history;

  std::unordered_map<std::string, WatcherList, KeyHash, std::equal_to<>> watchers;
  std::unordered_map<WatcherId, std::pair<std::string, WatcherList::iterator>> watcher_pos;
  WatcherId next_watcher_id = 1;
  std::vector<Delivery> pending;
  int64_t now_ns = 0;  // time of the command being applied

  Impl() {
    root->key = "/";
    root->dir = true;
  }

  // ---- tree ----

  std::variant<Node*, Error> find(std::string_view key) {
    auto found = std::as_const(*this).find(key);
    if (auto* e = std::get_if<Error>(&found)) return *e;
    return const_cast<Node*>(std::get<const Node*>(found));
  }
  std::variant<const Node*, Error> find(std::string_view key) const {
    const Node* cur = root.get();
    std::optional<Error> err;
    for_each_component(key, [&](std::string_view c) {
      if (!cur->dir) {
        err = Error{ErrorCode::kNotDir, cur->key, index};
        return false;
      }
      auto it = cur->children.find(c);
      if (it == cur->children.end()) {
        err = Error{ErrorCode::kKeyNotFound, join_key(cur->key, c), index};
        return false;
      }
      cur = it->second.get();
      return true;
    });
    if (err) return *err;
    return cur;
  }

  void set_expiration(NodeView& v, const Node* n, int64_t now) const {
    if (n->expire_ns) {
      v.expiration_ns = n->expire_ns;
      v.ttl = ttl_seconds(*n->expire_ns, now);
    }
  }

  static std::string view_key(const Node* n) { return n->key == "/" ? std::string() : n->key; }

  // etcd's node.Repr: a dir lists its (visible) children only when recursive.
  NodeView repr(const Node* n, bool recursive, int64_t now) const {
    NodeView v;
    v.key = view_key(n);
    v.dir = n->dir;
    if (!n->dir) v.value = n->value;
    v.modified_index = n->modified_index;
    v.created_index = n->created_index;
    set_expiration(v, n, now);
    if (n->dir && recursive) list_children(v, n, true, now);
    return v;
  }

  void list_children(NodeView& v, const Node* n, bool recursive, int64_t now) const {
    v.nodes.reserve(n->children.size());
    for (const auto& [name, child] : n->children) {
      if (child->hidden()) continue;
      v.nodes.push_back(repr(child.get(), recursive, now));
    }
  }

  void ttl_erase(Node* n) {
    if (n->expire_ns) ttl.erase(n);
  }

  void set_ttl(Node* n, std::optional<int64_t> expire_ns) {
    ttl_erase(n);
    n->expire_ns = expire_ns;
    if (expire_ns) ttl.insert(n);
  }

  // Removes n and its subtree, calling notify_watchers(ev, path, deleted) for every removed node,
  // children before parents as etcd does. REQUIRES: n is not the root.
  void remove_subtree(Node* n, const std::shared_ptr<const Event>& ev) {
    notify_removed(n, ev);
    Node* parent = n->parent;
    auto it = parent->children.find(n->name());
    parent->children.erase(it);
  }

  void notify_removed(Node* n, const std::shared_ptr<const Event>& ev) {
    for (auto& [name, child] : n->children) notify_removed(child.get(), ev);
    if (ev && !watchers.empty()) notify_watchers(ev, n->key, true);
    ttl_erase(n);
  }

  // ---- history and watchers ----

  void add_history(uint64_t idx, std::shared_ptr<const Event> ev) {
    history.push_back(HistoryEntry{idx, std::move(ev)});
    if (history.size() > kHistoryCapacity) history.pop_front();
  }

  void notify(const std::shared_ptr<const Event>& ev) {
    add_history(ev->node.modified_index, ev);
    if (watchers.empty()) return;
    const std::string& key = ev->node.key;
    notify_watchers(ev, "/", false);
    for (size_t i = 1; i <= key.size(); ++i) {
      if (i == key.size() || key[i] == '/') {
        if (i > 1) notify_watchers(ev, std::string_view(key).substr(0, i), false);
      }
    }
  }

  void notify_watchers(const std::shared_ptr<const Event>& ev, std::string_view path,
                       bool deleted) {
    auto it = watchers.find(path);
    if (it == watchers.end()) return;
    WatcherList& list = it->second;
    const std::string& ev_key = ev->node.key;
    bool original = ev_key == path;
    bool visible = original || !hidden_from(path, ev_key);
    for (auto w = list.begin(); w != list.end();) {
      Watcher& watcher = **w;
      if (visible && (watcher.recursive || original || deleted) &&
          ev->node.modified_index >= watcher.since_index) {
        pending.push_back(Delivery{*w, ev});
        if (!watcher.stream) {
          watcher_pos.erase(watcher.id);
          w = list.erase(w);
          continue;
        }
      }
      ++w;
    }
    if (list.empty()) watchers.erase(it);
  }

  void dispatch() {
    if (pending.empty()) return;
    std::vector<Delivery> batch;
    batch.swap(pending);
    for (auto& d : batch) {
      if (d.watcher->cancelled) continue;
      d.watcher->cb(*d.event);
    }
  }

  // ---- operations (etcd's v2store, including its statistics quirks) ----

  std::variant<Event, Error> internal_create(std::string path, bool dir, const std::string& value,
                                             bool unique, bool replace,
                                             std::optional<int64_t> expire_ns, Action action) {
    uint64_t cur = index, next = index + 1;
    if (unique) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "/%020llu", static_cast<unsigned long long>(next));
      path = clean_key(path + buf);
    }
    if (path == "/") return Error{ErrorCode::kRootReadOnly, "/", cur};
    if (expire_ns && *expire_ns < kMinExpireNs) expire_ns.reset();

    size_t slash = path.rfind('/');
    std::string_view dir_name = std::string_view(path).substr(0, slash);
    std::string_view node_name = std::string_view(path).substr(slash + 1);

    // Walk to the parent, creating missing directories with the new index.
    Node* d = root.get();
    std::optional<Error> err;
    for_each_component(dir_name, [&](std::string_view c) {
      auto it = d->children.find(c);
      if (it != d->children.end()) {
        if (!it->second->dir) {
          err = Error{ErrorCode::kNotDir, it->second->key, cur};
          return false;
        }
        d = it->second.get();
        return true;
      }
      auto nd = std::make_unique<Node>();
      nd->key = join_key(d->key, c);
      nd->dir = true;
      nd->created_index = nd->modified_index = next;
      nd->parent = d;
      Node* raw = nd.get();
      d->children.emplace(std::string(c), std::move(nd));
      d = raw;
      return true;
    });
    if (err) {
      ++stats.sets_fail;  // etcd counts a failed walk as a failed set whatever the operation
      return *err;
    }

    Event ev;
    ev.action = action;
    ev.node.key = path;
    ev.node.modified_index = ev.node.created_index = next;

    auto existing = d->children.find(node_name);
    if (existing != d->children.end()) {
      Node* n = existing->second.get();
      if (!replace) return Error{ErrorCode::kNodeExist, path, cur};
      if (n->dir) return Error{ErrorCode::kNotFile, path, cur};
      ev.prev_node = repr(n, false, now_ns);
      ttl_erase(n);
      d->children.erase(existing);
    }

    auto n = std::make_unique<Node>();
    n->key = path;
    n->dir = dir;
    if (!dir) {
      n->value = value;
      ev.node.value = value;
    } else {
      ev.node.dir = true;
    }
    n->created_index = n->modified_index = next;
    n->parent = d;
    Node* raw = n.get();
    d->children.emplace(std::string(node_name), std::move(n));
    if (expire_ns) {
      set_ttl(raw, expire_ns);
      set_expiration(ev.node, raw, now_ns);
    }
    index = next;
    ev.etcd_index = index;
    return ev;
  }

  Event finish(Event ev, bool refresh) {
    ev.refresh = refresh;
    auto shared = std::make_shared<const Event>(ev);
    if (refresh) {
      add_history(shared->node.modified_index, shared);
    } else {
      notify(shared);
    }
    return ev;
  }

  std::variant<Event, Error> set(const Command& cmd) {
    std::string path = clean_key(cmd.key);
    auto found = find(path);
    if (auto* e = std::get_if<Error>(&found)) {
      if (e->code != ErrorCode::kKeyNotFound || cmd.refresh) {
        ++stats.sets_fail;
        return *e;
      }
    }
    std::string value = cmd.value;
    if (cmd.refresh) value = std::get<Node*>(found)->value;
    auto res = internal_create(path, cmd.dir, value, false, true, cmd.expire_at_ns, Action::kSet);
    if (auto* e = std::get_if<Error>(&res)) {
      ++stats.sets_fail;
      return *e;
    }
    ++stats.sets_success;
    return finish(std::move(std::get<Event>(res)), cmd.refresh);
  }

  std::variant<Event, Error> create(const Command& cmd, bool unique) {
    auto res = internal_create(clean_key(cmd.key), cmd.dir, cmd.value, unique, false,
                               cmd.expire_at_ns, Action::kCreate);
    if (auto* e = std::get_if<Error>(&res)) {
      ++stats.create_fail;
      return *e;
    }
    ++stats.create_success;
    return finish(std::move(std::get<Event>(res)), false);
  }

  std::variant<Event, Error> update(const Command& cmd) {
    std::string path = clean_key(cmd.key);
    if (path == "/") {
      ++stats.update_success;  // etcd's deferred counter misses this early return
      return Error{ErrorCode::kRootReadOnly, "/", index};
    }
    uint64_t next = index + 1;
    auto found = find(path);
    if (auto* e = std::get_if<Error>(&found)) {
      ++stats.update_fail;
      return *e;
    }
    Node* n = std::get<Node*>(found);
    if (n->dir && !cmd.value.empty()) {
      ++stats.update_success;  // etcd's deferred counter misses this early return
      return Error{ErrorCode::kNotFile, path, index};
    }
    std::string value = cmd.refresh ? n->value : cmd.value;
    Event ev;
    ev.action = Action::kUpdate;
    ev.node.key = path;
    ev.node.modified_index = next;
    ev.node.created_index = n->created_index;
    ev.etcd_index = next;
    ev.prev_node = repr(n, false, now_ns);
    if (n->dir) {
      // A directory keeps its modifiedIndex; only the event carries the new one.
      ev.node.dir = true;
    } else {
      n->value = value;
      n->modified_index = next;
      ev.node.value = std::move(value);
    }
    set_ttl(n, cmd.expire_at_ns);
    set_expiration(ev.node, n, now_ns);
    index = next;
    ++stats.update_success;
    return finish(std::move(ev), cmd.refresh);
  }

  static std::optional<std::string> compare_failure(const Node* n, const std::string& prev_value,
                                                    uint64_t prev_index) {
    bool index_ok = prev_index == 0 || n->modified_index == prev_index;
    bool value_ok = prev_value.empty() || n->value == prev_value;
    if (index_ok && value_ok) return std::nullopt;
    std::string pi = std::to_string(prev_index), mi = std::to_string(n->modified_index);
    if (!index_ok && value_ok) return "[" + pi + " != " + mi + "]";
    if (index_ok) return "[" + prev_value + " != " + n->value + "]";
    return "[" + prev_value + " != " + n->value + "] [" + pi + " != " + mi + "]";
  }

  std::variant<Event, Error> compare_and_swap(const Command& cmd) {
    std::string path = clean_key(cmd.key);
    if (path == "/") {
      ++stats.compare_and_swap_success;  // etcd's deferred counter misses this early return
      return Error{ErrorCode::kRootReadOnly, "/", index};
    }
    auto found = find(path);
    if (auto* e = std::get_if<Error>(&found)) {
      ++stats.compare_and_swap_fail;
      return *e;
    }
    Node* n = std::get<Node*>(found);
    if (n->dir) {
      ++stats.compare_and_swap_fail;
      return Error{ErrorCode::kNotFile, path, index};
    }
    if (auto cause = compare_failure(n, cmd.prev_value.value_or(""), cmd.prev_index)) {
      ++stats.compare_and_swap_fail;
      return Error{ErrorCode::kTestFailed, *cause, index};
    }
    std::string value = cmd.refresh ? n->value : cmd.value;
    ++index;
    Event ev;
    ev.action = Action::kCompareAndSwap;
    ev.node.key = path;
    ev.node.modified_index = index;
    ev.node.created_index = n->created_index;
    ev.etcd_index = index;
    ev.prev_node = repr(n, false, now_ns);
    n->value = value;
    n->modified_index = index;
    set_ttl(n, cmd.expire_at_ns);
    ev.node.value = std::move(value);
    set_expiration(ev.node, n, now_ns);
    ++stats.compare_and_swap_success;
    return finish(std::move(ev), cmd.refresh);
  }

  std::variant<Event, Error> remove(const Command& cmd) {
    std::string path = clean_key(cmd.key);
    if (path == "/") {
      ++stats.delete_success;  // etcd's deferred counter misses this early return
      return Error{ErrorCode::kRootReadOnly, "/", index};
    }
    bool recursive = cmd.recursive;
    bool dir = cmd.dir || recursive;
    auto found = find(path);
    if (auto* e = std::get_if<Error>(&found)) {
      ++stats.delete_fail;
      return *e;
    }
    Node* n = std::get<Node*>(found);
    if (n->dir) {
      if (!dir) {
        ++stats.delete_fail;
        return Error{ErrorCode::kNotFile, n->key, index};
      }
      if (!n->children.empty() && !recursive) {
        ++stats.delete_fail;
        return Error{ErrorCode::kDirNotEmpty, n->key, index};
      }
    }
    uint64_t next = index + 1;
    auto ev = std::make_shared<Event>();
    ev->action = Action::kDelete;
    ev->node.key = path;
    ev->node.dir = n->dir;
    ev->node.modified_index = next;
    ev->node.created_index = n->created_index;
    ev->etcd_index = next;
    ev->prev_node = repr(n, false, now_ns);
    remove_subtree(n, ev);
    index = next;
    notify(ev);
    ++stats.delete_success;
    return Event(*ev);
  }

  std::variant<Event, Error> compare_and_delete(const Command& cmd) {
    std::string path = clean_key(cmd.key);
    auto found = find(path);
    if (auto* e = std::get_if<Error>(&found)) {
      ++stats.compare_and_delete_fail;
      return *e;
    }
    Node* n = std::get<Node*>(found);
    if (n->dir) {
      ++stats.compare_and_delete_success;  // etcd's deferred counter misses this early return
      // etcd's keys root is its internal "/1", which trims to an empty cause.
      return Error{ErrorCode::kNotFile, path == "/" ? std::string() : path, index};
    }
    if (auto cause = compare_failure(n, cmd.prev_value.value_or(""), cmd.prev_index)) {
      ++stats.compare_and_delete_success;  // etcd's deferred counter misses this early return
      return Error{ErrorCode::kTestFailed, *cause, index};
    }
    ++index;
    auto ev = std::make_shared<Event>();
    ev->action = Action::kCompareAndDelete;
    ev->node.key = path;
    ev->node.modified_index = index;
    ev->node.created_index = n->created_index;
    ev->etcd_index = index;
    ev->prev_node = repr(n, false, now_ns);
    remove_subtree(n, ev);
    notify(ev);
    ++stats.compare_and_delete_success;
    return Event(*ev);
  }

  Event expire(int64_t cutoff_ns) {
    while (!ttl.empty()) {
      Node* n = *ttl.begin();
      if (*n->expire_ns > cutoff_ns) break;
      ++index;
      auto ev = std::make_shared<Event>();
      ev->action = Action::kExpire;
      ev->node.key = n->key;
      ev->node.dir = n->dir;
      ev->node.modified_index = index;
      ev->node.created_index = n->created_index;
      ev->etcd_index = index;
      ev->prev_node = repr(n, false, now_ns);
      remove_subtree(n, ev);
      ++stats.expire_count;
      notify(ev);
    }
    Event summary;
    summary.action = Action::kExpire;
    summary.etcd_index = index;
    return summary;
  }

  Event record_internal(const Command& cmd) {
    // etcd writes member additions with Create and everything else with Set.
    std::string_view k = cmd.key;
    constexpr std::string_view kRaftAttributes = "raftAttributes";
    bool is_create = k.size() >= kRaftAttributes.size() &&
                     k.substr(k.size() - kRaftAttributes.size()) == kRaftAttributes;
    ++(is_create ? stats.create_success : stats.sets_success);
    internal[cmd.key] = cmd.value;
    ++index;
    add_history(index, nullptr);
    Event ev;
    ev.action = is_create ? Action::kCreate : Action::kSet;
    ev.node.key = cmd.key;
    ev.node.value = cmd.value;
    ev.node.modified_index = ev.node.created_index = index;
    ev.etcd_index = index;
    return ev;
  }

  // ---- invariants ----

  std::string check_invariants() const {
    std::string why;
    size_t ttl_nodes = 0;
    std::vector<const Node*> stack{root.get()};
    if (root->key != "/" || !root->dir || root->parent != nullptr) return "bad root";
    while (!stack.empty()) {
      const Node* n = stack.back();
      stack.pop_back();
      if (n->modified_index > index || n->created_index > index)
        return "index above store index at " + n->key;
      if (n->expire_ns) {
        ++ttl_nodes;
        if (ttl.find(const_cast<Node*>(n)) == ttl.end()) return "ttl node not indexed: " + n->key;
      }
      if (!n->dir && !n->children.empty()) return "file with children: " + n->key;
      if (n->dir && !n->value.empty()) return "dir with value: " + n->key;
      for (const auto& [name, child] : n->children) {
        if (name.empty() || name.find('/') != std::string::npos) return "bad name under " + n->key;
        if (child->key != join_key(n->key, name)) return "child key mismatch: " + child->key;
        if (child->parent != n) return "bad parent pointer: " + child->key;
        stack.push_back(child.get());
      }
    }
    if (ttl_nodes != ttl.size()) return "ttl index holds nodes not in the tree";
    if (history.size() > kHistoryCapacity) return "history over capacity";
    for (size_t i = 0; i < history.size(); ++i) {
      if (history[i].index > index) return "history index above store index";
      if (i > 0 && history[i].index <= history[i - 1].index) return "history not increasing";
    }
    size_t count = 0;
    for (const auto& [key, list] : watchers) {
      if (list.empty()) return "empty watcher list kept for " + key;
      for (const auto& w : list) {
        if (w->key != key) return "watcher filed under the wrong key";
        ++count;
      }
    }
    if (count != watcher_pos.size()) return "watcher index out of step";
    return why;
  }
};

Store::Store() : impl_(std::make_unique<Impl>()) {}
Store::~Store() = default;

std::variant<Event, Error> Store::apply(const Command& cmd) {
  Impl& s = *impl_;
  s.now_ns = cmd.now_ns;
  std::variant<Event, Error> res;
  switch (cmd.op) {
    case Op::kSet: res = s.set(cmd); break;
    case Op::kCreate: res = s.create(cmd, false); break;
    case Op::kUpdate: res = s.update(cmd); break;
    case Op::kCompareAndSwap: res = s.compare_and_swap(cmd); break;
    case Op::kDelete: res = s.remove(cmd); break;
    case Op::kCompareAndDelete: res = s.compare_and_delete(cmd); break;
    case Op::kCreateInOrder: res = s.create(cmd, true); break;
    case Op::kExpire: res = s.expire(cmd.now_ns); break;
    case Op::kInternal: res = s.record_internal(cmd); break;
    default: res = Error{ErrorCode::kRaftInternal, "unknown command", s.index}; break;
  }
  s.dispatch();
  return res;
}

std::variant<Event, Error> Store::get(std::string_view key, bool recursive, bool sorted,
                                      int64_t now_ns) const {
  (void)sorted;  // listings are always in byte-wise key order
  const Impl& s = *impl_;
  std::string path = clean_key(key);
  auto found = s.find(path);
  if (auto* e = std::get_if<Error>(&found)) {
    s.gets_fail.fetch_add(1, std::memory_order_relaxed);
    return *e;
  }
  const Node* n = std::get<const Node*>(found);
  Event ev;
  ev.action = Action::kGet;
  ev.node.key = Impl::view_key(n);
  ev.node.modified_index = n->modified_index;
  ev.node.created_index = n->created_index;
  ev.etcd_index = s.index;
  if (n->dir) {
    ev.node.dir = true;
    s.list_children(ev.node, n, recursive, now_ns);
  } else {
    ev.node.value = n->value;
  }
  s.set_expiration(ev.node, n, now_ns);
  s.gets_success.fetch_add(1, std::memory_order_relaxed);
  return ev;
}

WatchResult Store::watch(std::string_view key, bool recursive, bool stream, uint64_t since_index,
                         WatchCallback cb) {
  Impl& s = *impl_;
  std::string path = clean_key(key);
  WatchResult result;
  result.etcd_index = s.index;
  if (since_index == 0) since_index = s.index + 1;

  uint64_t start = s.history.empty() ? 0 : s.history.front().index;
  uint64_t last = s.history.empty() ? 0 : s.history.back().index;
  if (since_index < start) {
    result.error = Error{ErrorCode::kEventIndexCleared,
                         "the requested history has been cleared [" + std::to_string(start) +
                             "/" + std::to_string(since_index) + "]",
                         s.index};
    return result;
  }
  if (since_index <= last) {
    auto it = std::lower_bound(
        s.history.begin(), s.history.end(), since_index,
        [](const Impl::HistoryEntry& h, uint64_t idx) { return h.index < idx; });
    std::string prefix = path;
    if (prefix.back() != '/') prefix.push_back('/');
    for (; it != s.history.end(); ++it) {
      const Event* ev = it->event.get();
      if (ev == nullptr || ev->refresh) continue;
      bool ok = ev->node.key == path;
      if (recursive) ok = ok || starts_with(ev->node.key, prefix);
      // etcd's history scan matches a removed directory by plain string prefix.
      if ((ev->action == Action::kDelete || ev->action == Action::kExpire) && ev->prev_node &&
          ev->prev_node->dir)
        ok = ok || starts_with(path, ev->prev_node->key);
      if (ok) {
        Event found = *ev;
        found.etcd_index = s.index;
        result.event = std::move(found);
        return result;
      }
    }
  }

  auto w = std::make_shared<Impl::Watcher>();
  w->id = s.next_watcher_id++;
  w->key = path;
  w->recursive = recursive;
  w->stream = stream;
  w->since_index = since_index;
  w->cb = std::move(cb);
  auto& list = s.watchers[path];
  list.push_back(w);
  s.watcher_pos.emplace(w->id, std::make_pair(path, std::prev(list.end())));
  result.id = w->id;
  return result;
}

void Store::unwatch(WatcherId id) {
  Impl& s = *impl_;
  auto pos = s.watcher_pos.find(id);
  if (pos == s.watcher_pos.end()) return;
  auto list_it = s.watchers.find(pos->second.first);
  (*pos->second.second)->cancelled = true;
  list_it->second.erase(pos->second.second);
  if (list_it->second.empty()) s.watchers.erase(list_it);
  s.watcher_pos.erase(pos);
}

size_t Store::watcher_count() const { return impl_->watcher_pos.size(); }

uint64_t Store::index() const { return impl_->index; }

std::optional<int64_t> Store::next_expiration_ns() const {
  if (impl_->ttl.empty()) return std::nullopt;
  return *(*impl_->ttl.begin())->expire_ns;
}

const std::map<std::string, std::string>& Store::internal() const { return impl_->internal; }

StoreStats Store::stats() const { return impl_->full_stats(); }

std::string Store::stats_json() const {
  const StoreStats s = impl_->full_stats();
  std::string out;
  out.reserve(512);
  auto field = [&](const char* name, uint64_t v, bool first = false) {
    if (!first) out.push_back(',');
    out.push_back('"');
    out.append(name);
    out.append("\":");
    out.append(std::to_string(v));
  };
  out.push_back('{');
  field("getsSuccess", s.gets_success, true);
  field("getsFail", s.gets_fail);
  field("setsSuccess", s.sets_success);
  field("setsFail", s.sets_fail);
  field("deleteSuccess", s.delete_success);
  field("deleteFail", s.delete_fail);
  field("updateSuccess", s.update_success);
  field("updateFail", s.update_fail);
  field("createSuccess", s.create_success);
  field("createFail", s.create_fail);
  field("compareAndSwapSuccess", s.compare_and_swap_success);
  field("compareAndSwapFail", s.compare_and_swap_fail);
  field("compareAndDeleteSuccess", s.compare_and_delete_success);
  field("compareAndDeleteFail", s.compare_and_delete_fail);
  field("expireCount", s.expire_count);
  field("watchers", watcher_count());
  out.push_back('}');
  return out;
}

std::string Store::check_invariants() const { return impl_->check_invariants(); }

std::string Store::save(size_t size_hint) const {
  const Impl& s = *impl_;
  std::string out;
  out.reserve(size_hint + size_hint / 8 + 4096);
  out.append(kImageMagic, sizeof(kImageMagic) - 1);
  put_u8(out, kImageVersion);
  put_u64(out, s.index);
  const StoreStats stats = s.full_stats();
  for (auto field : kStatFields) put_u64(out, stats.*field);
  put_u32(out, static_cast<uint32_t>(s.internal.size()));
  for (const auto& [k, v] : s.internal) {
    put_str(out, k);
    put_str(out, v);
  }
  auto put_node = [&](const Node* n) {
    put_str(out, n->parent ? n->name() : std::string_view());
    put_u8(out, n->dir ? 1 : 0);
    if (!n->dir) put_str(out, n->value);
    put_u8(out, n->expire_ns ? 1 : 0);
    if (n->expire_ns) put_u64(out, static_cast<uint64_t>(*n->expire_ns));
    put_u64(out, n->created_index);
    put_u64(out, n->modified_index);
    if (n->dir) put_u32(out, static_cast<uint32_t>(n->children.size()));
  };
  // Pre-order walk with an explicit stack: trees may be deeper than the call stack allows.
  using It = decltype(s.root->children)::const_iterator;
  std::vector<std::pair<const Node*, It>> stack;
  put_node(s.root.get());
  stack.emplace_back(s.root.get(), s.root->children.begin());
  while (!stack.empty()) {
    auto& [node, it] = stack.back();
    if (it == node->children.end()) {
      stack.pop_back();
      continue;
    }
    const Node* child = it->second.get();
    ++it;
    put_node(child);
    if (child->dir) stack.emplace_back(child, child->children.begin());
  }
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
  }
  return out;
}

bool Store::recover(std::string_view image) {
  Reader r(image);
  uint8_t version = 0;
  if (!r.skip(std::string_view(kImageMagic, sizeof(kImageMagic) - 1)) || !r.u8(&version) ||
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
    if (!r.str(&k) || !r.str(&v)) return false;
    s.internal[std::move(k)] = std::move(v);
  }

  // Reads one node record into n (key left to the caller); returns its child count.
  auto read_node = [&](Node* n, std::string* name, uint32_t* n_children) {
    bool has_exp = false;
    if (!r.str(name) || !r.boolean(&n->dir)) return false;
    if (!n->dir && !r.str(&n->value)) return false;
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
    if (name.empty() || name.find('/') != std::string::npos || p->children.count(name) != 0)
      return false;
    child->key = join_key(p->key, name);
    child->parent = p;
    Node* raw = child.get();
    p->children.emplace(name, std::move(child));
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
