// kvctl migrate: an etcd 3.4 data dir into a kvd data dir (how, and what is kept, in migrate.h).
//
// etcd's v2 store image (the snapshot's data, etcd's v2store.Save) is JSON:
//   {"Root":NODE,"WatcherHub":{"EventHistory":{"Queue":{"Events":[EVENT|null,...],"Size":n,
//    "Front":f,"Back":b,"Capacity":c},"StartIndex":..,"LastIndex":..}},"CurrentIndex":n,
//    "Stats":{"getsSuccess":..,...},"CurrentVersion":2}
//   NODE = {"Path":"/1/a","CreatedIndex":n,"ModifiedIndex":n,"ExpireTime":RFC3339,
//           "Value":"..","Children":{name:NODE,...}|null}   (a directory has Children, even {};
//           ExpireTime "0001-01-01T00:00:00Z" is no TTL)
//   EVENT = the keys API's event ({"action":..,"node":{..},"prevNode":{..}}); the history is the
//           circular queue's Size events from Front on. An event's index is its node's
//           modifiedIndex (etcd's Event.Index).
#include "offline/migrate.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "api_v2/store.h"
#include "common/go.h"
#include "common/ids.h"
#include "etcd_data/etcd_member.h"
#include "offline/backup.h"

namespace kvd::offline {

namespace {

using nlohmann::json;

constexpr std::string_view kKeysPrefix = "/1";

struct Failure {
  std::string what;
};

uint64_t u64_of(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_number_unsigned()) {
    if (it != j.end() && it->is_number_integer() && it->get<int64_t>() >= 0) {
      return it->get<uint64_t>();
    }
    throw Failure{std::string("\"") + name + "\" is missing or not a number"};
  }
  return it->get<uint64_t>();
}

std::optional<int64_t> expire_of(const json& node) {
  auto it = node.find("ExpireTime");
  if (it == node.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) throw Failure{"ExpireTime is not a string"};
  const std::string t = it->get<std::string>();
  if (t.rfind("0001-01-01T00:00:00", 0) == 0) return std::nullopt;  // Go's zero time: none
  auto ns = go::parse_rfc3339_nano(t);
  if (!ns) throw Failure{"ExpireTime \"" + t + "\" is not a time kvd can hold"};
  return ns;
}

// The tree under `node`, pre-order, into seed.nodes (the root itself is kvd's root).
void add_tree(const json& node, v2::StoreSeed& seed, bool is_root) {
  if (!node.is_object()) throw Failure{"a node is not a JSON object"};
  const std::string path = node.value("Path", "");
  const auto children = node.find("Children");
  const bool dir = children != node.end() && children->is_object();
  if (!is_root) {
    v2::StoreSeed::Node n;
    n.key = path;
    n.dir = dir;
    if (!dir) n.value = node.value("Value", "");
    try {
      n.expire_ns = expire_of(node);
      n.created_index = u64_of(node, "CreatedIndex");
      n.modified_index = u64_of(node, "ModifiedIndex");
    } catch (const Failure& f) {
      throw Failure{"node \"" + path + "\": " + f.what};
    }
    seed.nodes.push_back(std::move(n));
  }
  if (!dir) return;
  for (const auto& [name, child] : children->items()) add_tree(child, seed, false);
}

v2::NodeView view_of(const json& j) {
  v2::NodeView v;
  v.key = j.value("key", "");
  v.dir = j.value("dir", false);
  v.value = j.value("value", "");
  if (auto e = j.find("expiration"); e != j.end() && e->is_string()) {
    v.expiration_ns = go::parse_rfc3339_nano(e->get<std::string>());
  }
  v.ttl = j.value("ttl", int64_t{0});
  v.modified_index = j.value("modifiedIndex", uint64_t{0});
  v.created_index = j.value("createdIndex", uint64_t{0});
  return v;
}

std::optional<v2::Action> action_of(const std::string& name) {
  for (auto a : {v2::Action::kGet, v2::Action::kSet, v2::Action::kCreate, v2::Action::kUpdate,
                 v2::Action::kCompareAndSwap, v2::Action::kDelete, v2::Action::kCompareAndDelete,
                 v2::Action::kExpire}) {
    if (v2::action_name(a) == name) return a;
  }
  return std::nullopt;
}

// etcd's event history, oldest first.
void add_history(const json& store, v2::StoreSeed& seed, std::vector<std::string>& warnings) {
  const json* q = &store;
  for (const char* k : {"WatcherHub", "EventHistory", "Queue"}) {
    auto it = q->find(k);
    if (it == q->end() || !it->is_object()) return;  // no history: nothing to keep
    q = &*it;
  }
  const json& events = q->value("Events", json::array());
  const uint64_t size = q->value("Size", uint64_t{0});
  const uint64_t front = q->value("Front", uint64_t{0});
  const uint64_t cap = events.is_array() ? events.size() : 0;
  size_t skipped = 0;
  for (uint64_t i = 0; i < size && cap > 0; ++i) {
    const json& e = events[(front + i) % cap];
    if (!e.is_object() || !e.contains("node")) {
      ++skipped;
      continue;
    }
    auto action = action_of(e.value("action", ""));
    if (!action) {
      ++skipped;
      continue;
    }
    v2::Event ev;
    ev.action = *action;
    ev.node = view_of(e["node"]);
    if (auto p = e.find("prevNode"); p != e.end() && p->is_object()) ev.prev_node = view_of(*p);
    ev.refresh = e.value("refresh", false);
    ev.etcd_index = ev.node.modified_index;
    if (!seed.history.empty() && ev.etcd_index <= seed.history.back().index) {
      ++skipped;
      continue;
    }
    seed.history.push_back({ev.etcd_index, std::move(ev)});
  }
  if (skipped) {
    warnings.push_back(std::to_string(skipped) +
                       " events of etcd's watch history could not be kept");
  }
}

// etcd's store at its snapshot, paths and all.
v2::StoreSeed seed_of_snapshot(const std::string& image, std::vector<std::string>& warnings) {
  v2::StoreSeed seed;
  auto j = json::parse(image, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("Root")) {
    throw Failure{"its v2 store image is not etcd's JSON store"};
  }
  seed.index = u64_of(j, "CurrentIndex");
  if (auto st = j.find("Stats"); st != j.end() && st->is_object()) {
    const json& s = *st;
    auto field = [&](const char* n) { return s.value(n, uint64_t{0}); };
    seed.stats = {field("getsSuccess"),          field("getsFail"),
                  field("setsSuccess"),          field("setsFail"),
                  field("deleteSuccess"),        field("deleteFail"),
                  field("updateSuccess"),        field("updateFail"),
                  field("createSuccess"),        field("createFail"),
                  field("compareAndSwapSuccess"), field("compareAndSwapFail"),
                  field("compareAndDeleteSuccess"), field("compareAndDeleteFail"),
                  field("expireCount")};
  }
  add_tree(j["Root"], seed, true);
  add_history(j, seed, warnings);
  return seed;
}

std::optional<v2::Command> command_of(const etcd_data::V2Request& r) {
  v2::Command c;
  c.request_id = r.id;
  c.now_ns = r.time;
  c.key = r.path;
  c.value = r.val;
  c.dir = r.dir;
  c.refresh = r.refresh.value_or(false);
  if (r.expiration != 0) c.expire_at_ns = r.expiration;
  const bool conditional = r.prev_index > 0 || !r.prev_value.empty();
  if (!r.prev_value.empty()) c.prev_value = r.prev_value;
  c.prev_index = r.prev_index;
  if (r.method == "POST") {
    c.op = v2::Op::kCreateInOrder;
  } else if (r.method == "PUT") {
    if (r.prev_exist) {
      c.op = !*r.prev_exist ? v2::Op::kCreate
                            : (conditional ? v2::Op::kCompareAndSwap : v2::Op::kUpdate);
    } else {
      c.op = conditional ? v2::Op::kCompareAndSwap : v2::Op::kSet;
    }
  } else if (r.method == "DELETE") {
    c.op = conditional ? v2::Op::kCompareAndDelete : v2::Op::kDelete;
    c.recursive = r.recursive;
  } else if (r.method == "SYNC") {
    c.op = v2::Op::kExpire;
  } else {
    return std::nullopt;
  }
  return c;
}

v2::Command plain(v2::Op op, std::string key, std::string value = "") {
  v2::Command c;
  c.op = op;
  c.key = std::move(key);
  c.value = std::move(value);
  return c;
}

// A membership change as etcd's membership store writes it into the v2 store.
// `recorded`: the members with a /0/members/<id> directory (a get would count in the stats).
void apply_conf_change(v2::Store& store, const etcd_data::ConfChange& cc,
                       std::vector<uint64_t>& voters, std::set<std::string>& recorded) {
  const std::string member = "/0/members/" + hex_id(cc.node_id);
  const bool known = recorded.count(member) > 0;
  auto raft_attributes = [&] {
    auto ctx = json::parse(cc.context, nullptr, false);
    json urls = json::array();
    if (ctx.is_object() && ctx.contains("peerURLs") && ctx["peerURLs"].is_array()) {
      urls = ctx["peerURLs"];
    }
    return json{{"peerURLs", urls}}.dump();
  };
  switch (cc.type) {
    case 0:  // add
      if (known || std::count(voters.begin(), voters.end(), cc.node_id)) return;
      (void)store.apply(plain(v2::Op::kCreate, member + "/raftAttributes", raft_attributes()));
      voters.push_back(cc.node_id);
      recorded.insert(member);
      return;
    case 1: {  // remove
      if (!known) return;
      v2::Command del = plain(v2::Op::kDelete, member);
      del.dir = true;
      del.recursive = true;
      (void)store.apply(del);
      (void)store.apply(plain(v2::Op::kCreate, "/0/removed_members/" + hex_id(cc.node_id)));
      voters.erase(std::remove(voters.begin(), voters.end(), cc.node_id), voters.end());
      recorded.erase(member);
      return;
    }
    case 2:  // update
      if (known) {
        (void)store.apply(plain(v2::Op::kUpdate, member + "/raftAttributes", raft_attributes()));
      }
      return;
    default:
      throw Failure{"entry with a learner (" + hex_id(cc.node_id) +
                    "): kvd has no learners; promote or remove it in etcd first"};
  }
}

// kvd's record name for an etcd record outside the key space, or "".
std::string internal_name(const std::string& key) {
  for (const auto& [etcd, kvd] : {std::pair<std::string_view, std::string_view>{"/0/", ""},
                                  {"/2/", "auth/"}}) {
    if (key.rfind(etcd, 0) == 0) return std::string(kvd) + key.substr(etcd.size());
  }
  return "";
}

// The rebuilt etcd tree as kvd keeps it: /1 is the key space, /0 and /2 internal records.
v2::StoreSeed to_kvd(const v2::StoreSeed& full, std::vector<std::string>& warnings,
                     uint64_t* key_nodes) {
  v2::StoreSeed out;
  out.index = full.index;
  out.stats = full.stats;
  *key_nodes = 0;
  std::set<std::string> dropped;
  for (const auto& n : full.nodes) {
    if (n.key.rfind(std::string(kKeysPrefix) + "/", 0) == 0) {
      v2::StoreSeed::Node k = n;
      k.key = n.key.substr(kKeysPrefix.size());
      out.nodes.push_back(std::move(k));
      ++*key_nodes;
    } else if (n.key == "/0" || n.key == "/1" || n.key == "/2" || n.dir) {
      // etcd's own directories: kvd keeps records, not directories.
    } else if (std::string name = internal_name(n.key); !name.empty()) {
      // etcd writes a removed member's record with an empty value; kvd's says "removed".
      out.internal[name] =
          name.rfind("removed_members/", 0) == 0 && n.value.empty() ? "removed" : n.value;
    } else {
      dropped.insert(n.key);
    }
  }
  if (!dropped.empty()) {
    warnings.push_back(std::to_string(dropped.size()) + " nodes outside etcd's /0, /1 and /2 " +
                       "are not migrated (first: " + *dropped.begin() + ")");
  }
  for (const auto& h : full.history) {
    v2::StoreSeed::HistoryEntry e{h.index, std::nullopt};
    if (h.event && h.event->node.key.rfind(std::string(kKeysPrefix) + "/", 0) == 0) {
      v2::Event ev = *h.event;
      ev.node.key = ev.node.key.substr(kKeysPrefix.size());
      if (ev.prev_node) ev.prev_node->key = ev.prev_node->key.substr(kKeysPrefix.size());
      e.event = std::move(ev);
    }
    out.history.push_back(std::move(e));
  }
  return out;
}

}  // namespace

Result<MigrateReport> migrate_etcd(const std::string& etcd_data_dir, const std::string& data_dir) {
  auto read = etcd_data::read_member(etcd_data_dir);
  if (!read.is_ok()) return read.status();
  const etcd_data::Member& m = read.value();
  MigrateReport rep;
  rep.snap_file = m.snap_file;
  rep.member_id = m.member_id;
  rep.cluster_id = m.cluster_id;
  rep.warnings = m.warnings;
  const std::string where = m.snap_file.empty() ? m.member_dir : m.snap_file;

  v2::Store full;
  std::vector<uint64_t> voters = m.snap_voters;
  uint64_t index = m.snap_index, term = m.snap_term;
  try {
    v2::StoreSeed seed;
    if (!m.snap_file.empty()) {
      seed = seed_of_snapshot(m.store_json, rep.warnings);
    } else {
      // etcd's store before its first snapshot: the two directories it is created with.
      seed.nodes = {{"/0", true, "", std::nullopt, 0, 0}, {"/1", true, "", std::nullopt, 0, 0}};
    }
    if (std::string why = full.seed(seed); !why.empty()) throw Failure{"its v2 store: " + why};
    std::set<std::string> recorded;
    for (const auto& n : seed.nodes) {
      const size_t third = n.key.find('/', std::string_view("/0/members/").size());
      if (n.key.rfind("/0/members/", 0) == 0) recorded.insert(n.key.substr(0, third));
    }
    if (!m.snap_learners.empty()) {
      throw Failure{"its configuration has learners: kvd has none; promote or remove them in "
                    "etcd first"};
    }
    const uint64_t commit = std::max(m.hard_state.commit, m.snap_index);
    for (const etcd_data::Entry& e : m.entries) {
      if (e.index > commit) {
        ++rep.uncommitted;
        continue;
      }
      index = e.index;
      term = e.term;
      ++rep.applied;
      switch (e.kind) {
        case etcd_data::Entry::Kind::kEmpty:
          break;
        case etcd_data::Entry::Kind::kV3:
          ++rep.v3_skipped;
          break;
        case etcd_data::Entry::Kind::kConfChange:
          apply_conf_change(full, e.conf_change, voters, recorded);
          break;
        case etcd_data::Entry::Kind::kConfChangeV2:
          throw Failure{"entry " + std::to_string(e.index) +
                        " is a ConfChangeV2, which etcd 3.4 does not write"};
        case etcd_data::Entry::Kind::kV2:
          if (e.v2.method == "QGET") {
            (void)full.get(e.v2.path, e.v2.recursive, e.v2.sorted, e.v2.time);
          } else if (auto cmd = command_of(e.v2)) {
            (void)full.apply(*cmd);
          } else {
            rep.warnings.push_back("entry " + std::to_string(e.index) + ": v2 method \"" +
                                   e.v2.method + "\" skipped (etcd refuses it too)");
          }
          break;
      }
    }
  } catch (const Failure& f) {
    return Status::error(where + ": " + f.what);
  }
  if (index == 0) return Status::error(where + ": the etcd member holds no committed entry");

  v2::StoreSeed kvd_seed = to_kvd(full.dump(), rep.warnings, &rep.nodes);
  if (rep.nodes == 0 && rep.v3_skipped > 0) {
    return Status::error(etcd_data_dir + ": holds v3 data only (" +
                         std::to_string(rep.v3_skipped) +
                         " v3 requests, no v2 key); kvd serves the v2 API: nothing to migrate");
  }
  if (rep.v3_skipped > 0) {
    rep.warnings.push_back(std::to_string(rep.v3_skipped) +
                           " v3 requests in the WAL are not migrated (kvd serves the v2 API)");
  }
  v2::Store store;
  if (std::string why = store.seed(kvd_seed); !why.empty()) {
    return Status::error(where + ": the key space cannot be converted: " + why);
  }
  std::sort(voters.begin(), voters.end());
  if (std::find(voters.begin(), voters.end(), m.member_id) == voters.end()) {
    return Status::error(m.member_dir + ": member " + hex_id(m.member_id) +
                         " is not in its own cluster's configuration (removed?)");
  }
  rep.raft_index = index;
  rep.raft_term = term;
  rep.etcd_index = store.index();
  rep.members = voters;

  BackupContent content;
  content.member_id = m.member_id;
  content.cluster_id = m.cluster_id;
  content.snapshot.metadata.index = index;
  content.snapshot.metadata.term = term;
  content.snapshot.metadata.conf_state.voters = voters;
  content.snapshot.data = store.save();
  content.hard_state = {std::max(m.hard_state.term, term), 0, index};
  std::string from = "migrated from etcd member " + hex_id(m.member_id) + " of cluster " +
                     hex_id(m.cluster_id) + " at raft index " + std::to_string(index) + " (" +
                     etcd_data_dir + "), ";
  go::append_rfc3339_nano(from, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
  auto written = write_data_dir(content, data_dir, m.member_id, m.cluster_id, from);
  if (!written.is_ok()) return written.status();
  return rep;
}

}  // namespace kvd::offline
