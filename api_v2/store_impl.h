// The v2 store's internals, shared by store.cc (the operations) and store_image.cc (snapshot
// images): the tree of nodes, the TTL index, the event history, the watchers, and etcd's v2store
// operations on them. Not part of the store's interface: include api_v2/store.h instead.
//
//
// Data structures and costs:
//   - Each directory keeps its children in a map by name (ChildMap): O(depth * log fanout) lookups and
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
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <set>
#include <unordered_map>
#include <utility>

#include "api_v2/store.h"
#include "api_v2/store_image_walk.h"

namespace kvd::v2 {
namespace store_detail {

constexpr int64_t kNsPerSecond = 1'000'000'000;
// etcd treats deadlines before 2000-01-01T00:00:00Z as "no TTL" when creating a node.
constexpr int64_t kMinExpireNs = 946'684'800LL * kNsPerSecond;

struct Node;

// A directory's children by name (a view of each child's own key: no copy of the name).
// Most nodes are files and have none: the map exists from the first child on, so a file pays
// one pointer for it instead of an empty std::map.
class ChildMap {
 public:
  using Map = std::map<std::string_view, std::unique_ptr<Node>>;
  using iterator = Map::iterator;
  using const_iterator = Map::const_iterator;

  iterator begin() { return map().begin(); }
  iterator end() { return map().end(); }
  const_iterator begin() const { return map().begin(); }
  const_iterator end() const { return map().end(); }
  bool empty() const { return !map_ || map_->empty(); }
  size_t size() const { return map_ ? map_->size() : 0; }
  iterator find(std::string_view name) { return map().find(name); }
  const_iterator find(std::string_view name) const { return map().find(name); }
  bool contains(std::string_view name) const { return map_ && map_->count(name) != 0; }
  const_iterator upper_bound(std::string_view name) const { return map().upper_bound(name); }
  void erase(iterator it) { map_->erase(it); }
  // Takes the child at it out of the map, whole.
  std::unique_ptr<Node> take(iterator it) {
    std::unique_ptr<Node> child = std::move(it->second);
    map_->erase(it);
    return child;
  }
  // Adds child under its name (the last component of its key). REQUIRES: no child of that name.
  inline void add(std::unique_ptr<Node> child);

 private:
  // No map yet: iterators of one shared empty map, never written.
  static Map& none() {
    static Map empty;
    return empty;
  }
  Map& map() { return map_ ? *map_ : none(); }
  const Map& map() const { return map_ ? *map_ : none(); }

  std::unique_ptr<Map> map_;
};

struct Node {
  std::string key;  // full path; "/" for the root
  bool dir = false;
  std::string value;                 // files only
  std::optional<int64_t> expire_ns;  // Invariant: set <=> the node is in Store::Impl::ttl_
  uint64_t created_index = 0;
  uint64_t modified_index = 0;
  Node* parent = nullptr;
  ChildMap children;  // dirs only

  std::string_view name() const {
    std::string_view k = key;
    return k.substr(k.rfind('/') + 1);
  }
  bool hidden() const {
    std::string_view n = name();
    return !n.empty() && n[0] == '_';
  }
};

inline bool ImageWalk::existed(const Node* n) const { return n->created_index <= index; }

inline void ChildMap::add(std::unique_ptr<Node> child) {
  if (!map_) map_ = std::make_unique<Map>();
  const std::string_view name = child->name();  // stays valid: the child owns the key
  map_->emplace(name, std::move(child));
}

struct TtlOrder {
  bool operator()(const Node* a, const Node* b) const {
    if (*a->expire_ns != *b->expire_ns) return *a->expire_ns < *b->expire_ns;
    return a->key < b->key;
  }
};

// Go's path.Clean(path.Join("/", p)).
inline std::string clean_key(std::string_view p) {
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

inline std::string join_key(const std::string& parent, std::string_view name) {
  std::string k;
  k.reserve(parent.size() + 1 + name.size());
  k = parent;
  if (k.size() > 1) k.push_back('/');
  k.append(name);
  return k;
}

// Calls fn(component) for each component of a clean absolute key, stopping when fn returns false.
template <typename Fn>
inline void for_each_component(std::string_view key, Fn&& fn) {
  size_t i = 1;
  while (i < key.size()) {
    size_t j = key.find('/', i);
    if (j == std::string_view::npos) j = key.size();
    if (!fn(key.substr(i, j - i))) return;
    i = j + 1;
  }
}

// ceil((deadline - now) / 1s), truncated toward zero when negative, as etcd computes it.
inline int64_t ttl_seconds(int64_t deadline_ns, int64_t now_ns) {
  int64_t d = deadline_ns - now_ns;
  int64_t ttl = d / kNsPerSecond;
  if (d % kNsPerSecond > 0) ++ttl;
  return ttl;
}

// Whether a change at key_path is hidden from a watcher at watch_path (a '_' component below
// the watched path). A watcher deeper than the key (a removed descendant) always sees it.
inline bool hidden_from(std::string_view watch_path, std::string_view key_path) {
  if (watch_path.size() > key_path.size()) return false;
  std::string_view rest = key_path.substr(watch_path.size());
  return (!rest.empty() && rest[0] == '_') || rest.find("/_") != std::string_view::npos;
}

// Lets the watcher map be searched with a string_view (no allocation per ancestor visited).
struct KeyHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace store_detail

using namespace store_detail;  // NOLINT: the internals' own helpers, in this file and its users

// Calls fn(node) for every node under root (not root itself) in pre-order, children by name,
// with an explicit stack: trees may be deeper than the call stack allows.
template <typename Fn>
inline void for_each_below(const Node* root, Fn&& fn) {
  using It = decltype(root->children)::const_iterator;
  std::vector<std::pair<const Node*, It>> stack;
  stack.emplace_back(root, root->children.begin());
  while (!stack.empty()) {
    auto& [node, it] = stack.back();
    if (it == node->children.end()) {
      stack.pop_back();
      continue;
    }
    const Node* child = it->second.get();
    ++it;
    fn(child);
    if (child->dir) stack.emplace_back(child, child->children.begin());
  }
}

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
  std::unique_ptr<ImageWalk> walk;  // an image in progress, if any

  // ---- what an image in progress keeps of a change (no-ops without one) ----

  // n's value, modified index or TTL is about to change.
  void before_change(const Node* n) {
    if (!walk || !walk->existed(n) || walk->before.count(n)) return;
    walk->before.emplace(n, ImageWalk::Before{n->value, n->expire_ns, n->modified_index});
  }
  // A node made just now was added under parent.
  void added(const Node* parent) {
    if (walk) ++walk->made_since[parent];
  }
  // Takes the child at it out of parent: kept for the image if it belongs to it.
  void take_child(Node* parent, ChildMap::iterator it) {
    std::unique_ptr<Node> child = parent->children.take(it);
    if (!walk) return;
    if (walk->existed(child.get())) {
      const std::string_view name = child->name();
      walk->removed[parent].emplace(name, std::move(child));
    } else {
      --walk->made_since[parent];
    }
  }

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
    before_change(n);
    ttl_erase(n);
    n->expire_ns = expire_ns;
    if (expire_ns) ttl.insert(n);
  }

  // Removes n and its subtree, calling notify_watchers(ev, path, deleted) for every removed node,
  // children before parents as etcd does. REQUIRES: n is not the root.
  void remove_subtree(Node* n, const std::shared_ptr<const Event>& ev) {
    notify_removed(n, ev);
    Node* parent = n->parent;
    take_child(parent, parent->children.find(n->name()));
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
      d.watcher->cb(d.event);
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
      d->children.add(std::move(nd));
      added(d);
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
      take_child(d, existing);
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
    d->children.add(std::move(n));
    added(d);
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

  // The event of a change to the existing node n at path that becomes etcd index `at`: its
  // node's key and indexes, and the node as it was.
  Event change_event(Action action, const std::string& path, const Node* n, uint64_t at) const {
    Event ev;
    ev.action = action;
    ev.node.key = path;
    ev.node.modified_index = at;
    ev.node.created_index = n->created_index;
    ev.etcd_index = at;
    ev.prev_node = repr(n, false, now_ns);
    return ev;
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
    Event ev = change_event(Action::kUpdate, path, n, next);
    if (n->dir) {
      // A directory keeps its modifiedIndex; only the event carries the new one.
      ev.node.dir = true;
    } else {
      before_change(n);
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
    Event ev = change_event(Action::kCompareAndSwap, path, n, index);
    before_change(n);
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

  // auth.h: etcd's writes under /2, as internal records.
  auth::Answer apply_auth(const Command& cmd) {
    auto req = auth::decode_request(cmd.value);
    if (!req) return auth::Answer{500, auth::error_body("Internal Server Error")};
    auth::Decision d = auth::decide(internal, *req);
    for (auto& w : d.writes) {
      using K = auth::RecordWrite::Kind;
      if (w.failed) {
        ++(w.kind == K::kDelete ? stats.delete_fail : w.kind == K::kCreate ? stats.create_fail : stats.update_fail);
        continue;
      }
      ++(w.kind == K::kDelete ? stats.delete_success
                              : w.kind == K::kCreate ? stats.create_success : stats.update_success);
      if (!w.key.empty()) {
        if (w.kind == K::kDelete) internal.erase(w.key);
        else internal[w.key] = std::move(w.value);
      }
      ++index;
      add_history(index, nullptr);
    }
    return std::move(d.answer);
  }

  // ---- invariants ----

  // Store::check_invariants (store.cc).
  std::string check_invariants() const;
};

}  // namespace kvd::v2
