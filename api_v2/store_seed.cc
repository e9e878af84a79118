// Store::dump() and Store::seed(): the whole state as plain values (StoreSeed), for building a
// store from another server's data. seed() builds a fresh state, checks every invariant on it
// (Impl::check_invariants) and only then replaces the store's.
#include "api_v2/store.h"

#include "api_v2/store_impl.h"

namespace kvd::v2 {

StoreSeed Store::dump() const {
  const Impl& s = *impl_;
  StoreSeed out;
  out.index = s.index;
  out.stats = s.full_stats();
  out.internal = s.internal;
  for_each_below(s.root.get(), [&](const Node* n) {
    out.nodes.push_back({n->key, n->dir, n->value, n->expire_ns, n->created_index,
                         n->modified_index});
  });
  for (const auto& h : s.history) {
    StoreSeed::HistoryEntry e{h.index, std::nullopt};
    if (h.event) e.event = *h.event;
    out.history.push_back(std::move(e));
  }
  return out;
}

std::string Store::seed(const StoreSeed& seed) {
  auto fresh = std::make_unique<Impl>();
  Impl& s = *fresh;
  s.index = seed.index;
  s.stats = seed.stats;
  s.internal = seed.internal;
  std::unordered_map<std::string, Node*> dirs{{"/", s.root.get()}};
  for (const auto& n : seed.nodes) {
    if (n.key != clean_key(n.key) || n.key == "/") return "node \"" + n.key + "\": not a clean key";
    const size_t slash = n.key.rfind('/');
    const std::string parent_key = slash == 0 ? "/" : n.key.substr(0, slash);
    auto parent = dirs.find(parent_key);
    if (parent == dirs.end()) {
      return "node \"" + n.key + "\": its parent is not a directory listed before it";
    }
    const std::string name = n.key.substr(slash + 1);
    if (parent->second->children.contains(name)) return "node \"" + n.key + "\": listed twice";
    auto node = std::make_unique<Node>();
    node->key = n.key;
    node->dir = n.dir;
    if (!n.dir) node->value = n.value;
    node->expire_ns = n.expire_ns;
    node->created_index = n.created_index;
    node->modified_index = n.modified_index;
    node->parent = parent->second;
    Node* raw = node.get();
    parent->second->children.add(std::move(node));
    if (raw->expire_ns) s.ttl.insert(raw);
    if (raw->dir) dirs.emplace(raw->key, raw);
  }
  const size_t skip =
      seed.history.size() > kHistoryCapacity ? seed.history.size() - kHistoryCapacity : 0;
  for (size_t i = skip; i < seed.history.size(); ++i) {
    const auto& h = seed.history[i];
    if (!s.history.empty() && h.index <= s.history.back().index) {
      return "history entry at index " + std::to_string(h.index) + " is out of order";
    }
    s.history.push_back(Impl::HistoryEntry{
        h.index, h.event ? std::make_shared<const Event>(*h.event) : nullptr});
  }
  if (std::string why = s.check_invariants(); !why.empty()) return why;
  Impl& cur = *impl_;
  cur.walk.reset();  // an image in progress ends: the nodes it was writing are gone
  std::swap(cur.root, s.root);
  std::swap(cur.index, s.index);
  std::swap(cur.ttl, s.ttl);
  std::swap(cur.internal, s.internal);
  std::swap(cur.stats, s.stats);
  cur.gets_success.store(0, std::memory_order_relaxed);
  cur.gets_fail.store(0, std::memory_order_relaxed);
  std::swap(cur.history, s.history);
  return "";
}

}  // namespace kvd::v2
