// The v2 key space: a tree of directories and files with TTLs, the etcd index, the event history
// (last 1000 events) and the watchers waiting on it. Semantics are etcd 3.4's v2store (shared
// spec v2-keys-api.md), made deterministic: mutations arrive only through apply(), whose time
// comes from the command, so every member that applies the same commands holds the same tree.
//
// Threads: owned by the member's raft strand. Mutations (apply, watch, unwatch, recover) run on
// that strand only; get() is const and may run on any number of threads at once, provided no
// mutation runs meanwhile (the member holds a shared lock for gets, an exclusive one for
// everything else). Watch callbacks are invoked synchronously from apply() on the strand.
// JSON rendering of what the store returns is api_v2/render.h's.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api_v2/auth.h"
#include "api_v2/command.h"
#include "api_v2/error.h"

namespace kvd::v2 {

// A node as clients see it (etcd's NodeExtern). Field order of the JSON rendering:
// key, value, dir, expiration, ttl, nodes, modifiedIndex, createdIndex (see render_event).
struct NodeView {
  std::string key;  // "" only for the root
  bool dir = false;
  std::string value;                     // files only; always rendered for files
  std::optional<int64_t> expiration_ns;  // absolute deadline, Unix ns
  int64_t ttl = 0;                       // seconds left when the view was made; 0 = not rendered
  uint64_t modified_index = 0;           // 0 = not rendered (root)
  uint64_t created_index = 0;            // 0 = not rendered (root)
  std::vector<NodeView> nodes;           // listed children; rendered only when non-empty
};

enum class Action : uint8_t {
  kGet,
  kSet,
  kCreate,
  kUpdate,
  kCompareAndSwap,
  kDelete,
  kCompareAndDelete,
  kExpire,
};
std::string_view action_name(Action a);

struct Event {
  Action action = Action::kGet;
  NodeView node;
  std::optional<NodeView> prev_node;
  uint64_t etcd_index = 0;  // store index right after the event (X-Etcd-Index of a write)
  bool refresh = false;     // kept in history but never delivered to watchers

  // True when this event was a "set" of a key that did not exist: HTTP 201 like create.
  bool created() const;
};

using WatcherId = uint64_t;
// A watcher's delivery: the event, the same object for every watcher it goes to (a handler
// can render it once for all of them).
using WatchCallback = std::function<void(const std::shared_ptr<const Event>& event)>;

struct WatchResult {
  std::optional<Error> error;  // 401 when since_index left the history
  std::optional<Event> event;  // an event found in history: answer at once, no watcher made
  WatcherId id = 0;            // otherwise the registered watcher
  uint64_t etcd_index = 0;     // store index at registration (X-Etcd-Index of the watch)
};

// Counters for /v2/stats/store, in etcd's field order.
struct StoreStats {
  uint64_t gets_success = 0, gets_fail = 0;
  uint64_t sets_success = 0, sets_fail = 0;
  uint64_t delete_success = 0, delete_fail = 0;
  uint64_t update_success = 0, update_fail = 0;
  uint64_t create_success = 0, create_fail = 0;
  uint64_t compare_and_swap_success = 0, compare_and_swap_fail = 0;
  uint64_t compare_and_delete_success = 0, compare_and_delete_fail = 0;
  uint64_t expire_count = 0;
};

// The whole state of a store (not its watchers) as plain values: what dump() gives and seed()
// takes, for building a store from another server's data (offline/migrate.h).
struct StoreSeed {
  struct Node {
    std::string key;  // clean absolute key
    bool dir = false;
    std::string value;  // files only
    std::optional<int64_t> expire_ns;
    uint64_t created_index = 0, modified_index = 0;
  };
  struct HistoryEntry {
    uint64_t index = 0;
    std::optional<Event> event;  // nullopt: the slot of a cluster-internal record
  };
  uint64_t index = 0;
  StoreStats stats;
  std::map<std::string, std::string> internal;
  std::vector<Node> nodes;            // every node but the root, each after its parent
  std::vector<HistoryEntry> history;  // oldest first, strictly increasing indexes
};

class Store {
 public:
  static constexpr size_t kHistoryCapacity = 1000;

  Store();
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Applies a replicated command. On success the index advances (except kExpire with nothing to
  // expire) and matching watchers are notified. kExpire returns an Event with action kExpire and
  // an empty node; each expired node produced its own event for watchers and history.
  std::variant<Event, Error> apply(const Command& cmd);

  // Applies an Op::kAuth command (auth.h): the writes auth::decide chose, each bumping the index
  // and taking a history slot as a cluster-internal record, and etcd's answer to the client.
  // apply() of such a command does the same and returns the answer's body as the node's value.
  auth::Answer apply_auth(const Command& cmd);

  // A read. now_ns computes the ttl fields. Const: any number of threads may read at once, as
  // long as no mutation (apply, watch, unwatch, recover) runs meanwhile.
  std::variant<Event, Error> get(std::string_view key, bool recursive, bool sorted,
                                 int64_t now_ns) const;

  // Registers a watch on key (recursive: also its subtree). since_index 0 means "from the next
  // event". Non-stream watchers are removed after their first event; stream watchers stay until
  // unwatch().
  WatchResult watch(std::string_view key, bool recursive, bool stream, uint64_t since_index,
                    WatchCallback cb);
  void unwatch(WatcherId id);
  size_t watcher_count() const;

  uint64_t index() const;
  // Earliest deadline of any node with a TTL, if any: the leader's cue to propose kExpire.
  std::optional<int64_t> next_expiration_ns() const;

  // Cluster-internal records written with Op::kInternal (key -> value).
  const std::map<std::string, std::string>& internal() const;

  StoreStats stats() const;

  // Checks the internal invariants (tree keys and parents, indexes <= index(), TTL index matches
  // the tree, history order, watcher index). Returns "" when they hold, else what is broken.
  // For tests; O(size of the store).
  std::string check_invariants() const;

  // Whole-state image for snapshots: tree, index, internal records and event history.
  // size_hint: the expected size (say, the last image's), reserved up front so that the image
  // is not copied while it grows.
  std::string save(size_t size_hint = 0) const;
  // The image save() gives now, made in steps while later commands are applied, so that a
  // large store's image stalls nothing and needs no copy of the store: begin_image() fixes it at
  // the current index; each image_step() writes up to max_nodes more of its tree nodes (at the
  // end its history) and hands each whole piece of piece_bytes to put, in order (the pieces
  // concatenated are what save() gave at begin_image()). kDone: the rest, a shorter last piece
  // or none, was handed over and the image ended; kStopped: a put returned false, or recover()
  // or seed() replaced the state, and the image ended. What later changes replace or remove of
  // the image's nodes is kept until the image ends (end_image() ends it early).
  // REQUIRES begin_image: no image in progress; image_step: one in progress.
  enum class ImageStep { kMore, kDone, kStopped };
  void begin_image(size_t piece_bytes);
  ImageStep image_step(size_t max_nodes, const std::function<bool(std::string_view)>& put);
  void end_image();
  bool image_in_progress() const;

  // Replaces the state with a saved image. Returns false if the image is malformed (the store is
  // then unchanged). Watchers are kept.
  [[nodiscard]] bool recover(std::string_view image);

  // The state as plain values (pre-order, children by name). O(size of the store).
  StoreSeed dump() const;
  // Replaces the state with seed's (the newest kHistoryCapacity history entries). Returns ""
  // or, leaving the store unchanged, what in seed breaks the store's invariants (a node before
  // its parent or under a file, an index above seed.index, history out of order, ...).
  // Watchers are kept.
  [[nodiscard]] std::string seed(const StoreSeed& seed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvd::v2
