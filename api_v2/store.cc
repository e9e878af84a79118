// The v2 store: etcd 3.4 v2store semantics (shared spec v2-keys-api.md §5-§9) over a tree of
// nodes, with every mutation driven by a replicated Command so that members stay identical. The
// data structures and the operations are in store_impl.h; snapshot images in store_image.cc.
#include "api_v2/store.h"

#include "api_v2/store_impl.h"

namespace kvd::v2 {

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
    case Op::kAuth: {
      auth::Answer a = s.apply_auth(cmd);
      Event ev;
      ev.action = Action::kSet;
      ev.node.key = "/auth";
      ev.node.value = std::move(a.body);
      ev.etcd_index = s.index;
      res = std::move(ev);
      break;
    }
    default: res = Error{ErrorCode::kRaftInternal, "unknown command", s.index}; break;
  }
  s.dispatch();
  return res;
}

auth::Answer Store::apply_auth(const Command& cmd) {
  Impl& s = *impl_;
  s.now_ns = cmd.now_ns;
  auth::Answer a = s.apply_auth(cmd);
  s.dispatch();
  return a;
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

std::string Store::Impl::check_invariants() const {
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

std::string Store::check_invariants() const { return impl_->check_invariants(); }

}  // namespace kvd::v2
