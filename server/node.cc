// Node: the v2 Store and the durable log behind one strand (see node.h).
//
// Raft entry data written by this file (the log itself is storage::RaftLog's format):
//   - empty: a leader's no-op, written once per term when the member starts (etcd's election
//     entry); applies nothing.
//   - first byte 0x01: a v2::Command (command.h's encoding, whose version byte is 0x01).
//   - first byte 'Q' (0x51) then 8 bytes little-endian request id: a quorum read. etcd 3.4 sends
//     every v2 `quorum=true` GET (and /health's probe) through raft as a QGET entry, so each one
//     consumes a raft index; applying it answers the read from the store at that point of the log.
// An entry that matches none of these is corruption of our own log: a clear error naming the
// database at open(), an abort at run time.
//
// Start-up writes, like etcd on a 1-member cluster:
//   first start: entry 1 (term 1) adds the member: kInternal members/<id>/raftAttributes
//     = {"peerURLs":[...]} (etcd index 1).
//   every start, in a new term (the member's election): a no-op, then kInternal "version"
//     = "3.4.0" if the cluster version is not yet set (etcd index 2 on first start), then
//     kInternal members/<id>/attributes = {"name":..,"clientURLs":[..]} (etcd publishes its
//     attributes at each start). A fresh member thus answers its first write with etcd index 4,
//     raft index 5, raft term 2.
// These entries are written before open() returns, so a crash during start-up leaves either
// nothing or whole entries behind; either is a valid log to start from.
#include "server/node.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/uuid/detail/sha1.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "api_v2/command.h"
#include "server/node_log.h"
#include "storage/raft_log.h"

namespace kvd::server {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::system_clock;

constexpr char kReadBarrierTag = 'Q';
constexpr uint8_t kCommandTag = 0x01;
constexpr std::string_view kClusterVersion = "3.4.0";
constexpr std::string_view kVersionKey = "version";
constexpr auto kExpiryInterval = std::chrono::milliseconds(500);
constexpr uint64_t kReplayBatchBytes = 64 << 20;
const char* const kMetaMemberId = "member_id";
const char* const kMetaClusterId = "cluster_id";
const char* const kStoppedCause = "etcdserver: server stopped";

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

std::string hex_id(uint64_t id) {
  std::string out;
  static constexpr char kDigits[] = "0123456789abcdef";
  do {
    out.insert(out.begin(), kDigits[id & 0xf]);
    id >>= 4;
  } while (id != 0);
  return out;
}

std::optional<uint64_t> parse_hex_id(std::string_view s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

uint64_t sha1_prefix64(const std::string& bytes) {
  boost::uuids::detail::sha1 h;
  h.process_bytes(bytes.data(), bytes.size());
  boost::uuids::detail::sha1::digest_type digest;
  h.get_digest(digest);
  // The digest words are the big-endian 32-bit groups of the hash.
  return (static_cast<uint64_t>(digest[0]) << 32) | static_cast<uint64_t>(digest[1]);
}

std::string raft_attributes_key(uint64_t id) { return "members/" + hex_id(id) + "/raftAttributes"; }
std::string attributes_key(uint64_t id) { return "members/" + hex_id(id) + "/attributes"; }

std::string encode_read_barrier(uint64_t request_id) {
  std::string out(1, kReadBarrierTag);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((request_id >> (8 * i)) & 0xff));
  return out;
}

v2::Command internal_command(std::string key, std::string value) {
  v2::Command cmd;
  cmd.op = v2::Op::kInternal;
  cmd.now_ns = now_ns();
  cmd.key = std::move(key);
  cmd.value = std::move(value);
  return cmd;
}

v2::Error raft_error(std::string cause) {
  return v2::Error{v2::ErrorCode::kRaftInternal, std::move(cause), 0};
}

}  // namespace

uint64_t compute_member_id(std::vector<std::string> peer_urls, const std::string& token) {
  std::sort(peer_urls.begin(), peer_urls.end());
  std::string b;
  for (const auto& u : peer_urls) b += u;
  b += token;
  return sha1_prefix64(b);
}

uint64_t compute_cluster_id(std::vector<uint64_t> member_ids) {
  std::sort(member_ids.begin(), member_ids.end());
  std::string b;
  for (uint64_t id : member_ids) {
    for (int shift = 56; shift >= 0; shift -= 8) b.push_back(static_cast<char>((id >> shift) & 0xff));
  }
  return sha1_prefix64(b);
}

// Everything the Node owns. Shared so that work posted to the strand (by callers and by the WAL
// thread) keeps it alive until it has run, even after the Node handle is gone.
// REQUIRES (all members except the constants and stopped_): on strand_, once open() returned.
struct Core : std::enable_shared_from_this<Core> {
  Core(boost::asio::io_context& io, NodeConfig cfg, std::unique_ptr<storage::RaftLog> raft_log,
       std::string db)
      : strand(boost::asio::make_strand(io)),
        config(std::move(cfg)),
        db_dir(std::move(db)),
        log(std::move(raft_log)),
        expiry_timer(strand) {}

  struct ReadWaiter {
    v2::GetRequest req;
    Node::Callback cb;
  };

  boost::asio::strand<boost::asio::io_context::executor_type> strand;
  const NodeConfig config;
  const std::string db_dir;
  // Used by open() and the WAL thread only; closed by stop() once that thread has ended.
  std::unique_ptr<storage::RaftLog> log;
  v2::Store store;
  uint64_t member_id = 0;   // fixed after open()
  uint64_t cluster_id = 0;  // fixed after open()
  Clock::time_point start_time = Clock::now();
  Clock::time_point leader_since = Clock::now();

  // Created at the end of open(); the raft core will take its place.
  std::unique_ptr<LogDriver> driver;
  // Invariant: snapshot_index <= applied <= driver->committed_index()
  uint64_t applied = 0;
  uint64_t applied_term = 0;
  uint64_t snapshot_index = 0;

  uint64_t next_request_id = 0;
  std::unordered_map<uint64_t, Node::Callback> write_waiters;
  std::unordered_map<uint64_t, ReadWaiter> read_waiters;
  uint64_t expire_in_flight = 0;  // raft index of the proposed kExpire not yet applied; 0: none
  std::optional<std::string> write_error;  // once set, writes are refused with this cause
  boost::asio::steady_timer expiry_timer;
  std::atomic<bool> stopped{false};

  // --- open() ---------------------------------------------------------------------------------

  Status recover_and_start();
  Status bootstrap_ids(bool* fresh);
  Status write_start_entries(uint64_t term, uint64_t last_index);

  // --- strand ---------------------------------------------------------------------------------

  RaftStatus status() const {
    uint64_t committed = driver ? driver->committed_index() : applied;
    uint64_t term = driver ? driver->term() : applied_term;
    return RaftStatus{store.index(), committed, term};
  }

  uint64_t new_request_id() {
    uint64_t id = ++next_request_id;
    return id == 0 ? ++next_request_id : id;
  }

  // Applies one committed entry and completes its waiter. Returns false if the data is not an
  // entry this file writes.
  [[nodiscard]] bool apply_entry(const raft::Entry& e);
  void apply_committed(std::vector<raft::Entry> entries);
  void fail_writes(const Status& st);
  void fail_all_waiters(const std::string& cause);
  void maybe_snapshot();
  void schedule_expiry();
  void tick_expiry();
  void do_propose(v2::WriteRequest req, Node::Callback cb);
  void do_get(v2::GetRequest req, Node::Callback cb);
  void answer_get(const v2::GetRequest& req, const Node::Callback& cb);
  std::vector<MemberInfo> members() const;

  template <class F>
  void run_on_strand(F&& f) {
    boost::asio::post(strand, [self = shared_from_this(), f = std::forward<F>(f)]() mutable {
      f(*self);
    });
  }
};

Status Core::bootstrap_ids(bool* fresh) {
  raft::Snapshot snap;
  bool has_snapshot = log->snapshot(&snap) == raft::StorageError::kOk && !snap.empty();
  *fresh = log->last_index() == 0 && !has_snapshot;
  auto mid = log->get_meta(kMetaMemberId);
  auto cid = log->get_meta(kMetaClusterId);
  if (mid && cid) {
    auto m = parse_hex_id(*mid);
    auto c = parse_hex_id(*cid);
    if (!m || !c) {
      return Status::error(db_dir + ": malformed member or cluster id in metadata (\"" + *mid +
                           "\", \"" + *cid + "\")");
    }
    member_id = *m;
    cluster_id = *c;
    return Status::ok();
  }
  if (!*fresh) {
    return Status::error(db_dir + ": the log holds entries but no member/cluster id");
  }
  if (config.initial_cluster_state != "new") {
    return Status::error(
        "joining an existing cluster (--initial-cluster-state=" + config.initial_cluster_state +
        ") with an empty data dir is not supported yet: start with --initial-cluster-state=new");
  }
  // Peer URLs per member name, in flag order.
  std::vector<std::pair<std::string, std::vector<std::string>>> by_name;
  auto cluster = config.initial_cluster;
  if (cluster.empty()) {
    for (const auto& u : config.initial_advertise_peer_urls) cluster.emplace_back(config.name, u);
  }
  for (const auto& [name, url] : cluster) {
    auto it = std::find_if(by_name.begin(), by_name.end(),
                           [&](const auto& p) { return p.first == name; });
    if (it == by_name.end()) {
      by_name.push_back({name, {url}});
    } else {
      it->second.push_back(url);
    }
  }
  auto self = std::find_if(by_name.begin(), by_name.end(),
                           [&](const auto& p) { return p.first == config.name; });
  if (self == by_name.end()) {
    return Status::error("couldn't find local name \"" + config.name +
                         "\" in the initial cluster configuration");
  }
  if (by_name.size() > 1) {
    // TODO(raft): multi-member clusters need the raft core; until it lands a member could not
    // reach a quorum, so refuse rather than pretend.
    return Status::error("--initial-cluster names " + std::to_string(by_name.size()) +
                         " members; this kvd version runs single-member clusters only");
  }
  member_id = compute_member_id(self->second, config.initial_cluster_token);
  cluster_id = compute_cluster_id({member_id});
  if (Status st = log->put_meta(kMetaMemberId, hex_id(member_id)); !st.is_ok()) return st;
  if (Status st = log->put_meta(kMetaClusterId, hex_id(cluster_id)); !st.is_ok()) return st;

  // Entry 1, term 1: the member joins the configuration (etcd's bootstrap ConfChange).
  std::vector<std::string> urls = self->second;
  std::sort(urls.begin(), urls.end());
  nlohmann::json attrs = {{"peerURLs", urls}};
  raft::Entry add{1, 1, raft::EntryType::kNormal,
                  v2::encode(internal_command(raft_attributes_key(member_id), attrs.dump()))};
  return log->append({add}, raft::HardState{1, member_id, 1});
}

Status Core::write_start_entries(uint64_t term, uint64_t last_index) {
  std::vector<raft::Entry> entries;
  auto add = [&](std::string data) {
    entries.push_back(raft::Entry{term, last_index + entries.size() + 1, raft::EntryType::kNormal,
                                  std::move(data)});
  };
  add("");  // the new leader's no-op (Raft thesis §6.4: commits the previous terms' entries)
  if (!store.internal().count(std::string(kVersionKey))) {
    add(v2::encode(internal_command(std::string(kVersionKey), std::string(kClusterVersion))));
  }
  nlohmann::json attrs = {{"name", config.name}, {"clientURLs", config.advertise_client_urls}};
  add(v2::encode(internal_command(attributes_key(member_id), attrs.dump())));
  uint64_t last = entries.back().index;
  if (Status st = log->append(entries, raft::HardState{term, member_id, last}); !st.is_ok()) {
    return st;
  }
  for (const auto& e : entries) {
    if (!apply_entry(e)) std::abort();  // we just encoded it
  }
  return Status::ok();
}

Status Core::recover_and_start() {
  bool fresh = false;
  if (Status st = bootstrap_ids(&fresh); !st.is_ok()) return st;

  raft::Snapshot snap;
  if (log->snapshot(&snap) == raft::StorageError::kOk && !snap.empty()) {
    if (!store.recover(snap.data)) {
      return Status::error(db_dir + ": the snapshot at index " +
                           std::to_string(snap.metadata.index) + " holds a corrupt store image");
    }
    applied = snapshot_index = snap.metadata.index;
    applied_term = snap.metadata.term;
  }
  const uint64_t last = log->last_index();
  uint64_t next = applied + 1;
  while (next <= last) {
    std::vector<raft::Entry> batch;
    raft::StorageError err = log->entries(next, last + 1, kReplayBatchBytes, &batch);
    if (err != raft::StorageError::kOk || batch.empty()) {
      return Status::error(db_dir + ": cannot read log entry " + std::to_string(next) +
                           " (first index " + std::to_string(log->first_index()) + ")");
    }
    for (const auto& e : batch) {
      if (e.index != next) {
        return Status::error(db_dir + ": log entry " + std::to_string(next) + " is missing");
      }
      if (!apply_entry(e)) {
        return Status::error(db_dir + ": log entry " + std::to_string(e.index) +
                             " holds undecodable data");
      }
      ++next;
    }
  }
  uint64_t term = log->initial_state().first.term;
  uint64_t last_term = 0;
  if (log->term(last, &last_term) == raft::StorageError::kOk) term = std::max(term, last_term);
  if (!fresh) {
    spdlog::info("recovered member {} (cluster {}) at raft index {}, etcd index {}",
                 hex_id(member_id), hex_id(cluster_id), last, store.index());
  }
  // Single member: it wins the election of the next term at once.
  ++term;
  if (Status st = write_start_entries(term, last); !st.is_ok()) return st;

  std::weak_ptr<Core> weak = weak_from_this();
  LogDriver::Poster post = [weak](std::function<void()> fn) {
    if (auto self = weak.lock()) {
      boost::asio::post(self->strand, [self, fn = std::move(fn)] { fn(); });
    }
  };
  driver = std::make_unique<LogDriver>(
      log.get(), LogDriver::State{member_id, term, applied}, std::move(post),
      [this](std::vector<raft::Entry> entries) { apply_committed(std::move(entries)); },
      [this](const Status& st) { fail_writes(st); });
  next_request_id = (static_cast<uint64_t>(now_ns() / 1000000) & 0xffffffffffULL) << 16;
  return Status::ok();
}

bool Core::apply_entry(const raft::Entry& e) {
  applied = e.index;
  applied_term = e.term;
  if (e.data.empty()) return true;
  if (e.data[0] == kReadBarrierTag) {
    if (e.data.size() != 9) return false;
    uint64_t id = 0;
    for (int i = 0; i < 8; ++i) {
      id |= static_cast<uint64_t>(static_cast<uint8_t>(e.data[1 + i])) << (8 * i);
    }
    auto it = read_waiters.find(id);
    if (it != read_waiters.end()) {
      ReadWaiter w = std::move(it->second);
      read_waiters.erase(it);
      answer_get(w.req, w.cb);
    }
    return true;
  }
  v2::Command cmd;
  if (static_cast<uint8_t>(e.data[0]) != kCommandTag || !v2::decode(e.data, &cmd)) return false;
  auto result = store.apply(cmd);
  if (cmd.op == v2::Op::kExpire && e.index == expire_in_flight) expire_in_flight = 0;
  if (cmd.request_id != 0) {
    auto it = write_waiters.find(cmd.request_id);
    if (it != write_waiters.end()) {
      Node::Callback cb = std::move(it->second);
      write_waiters.erase(it);
      cb(std::move(result), status());
    }
  }
  return true;
}

void Core::apply_committed(std::vector<raft::Entry> entries) {
  for (const auto& e : entries) {
    if (e.index != applied + 1) {
      spdlog::critical("apply: entry {} committed after {}: log order broken", e.index, applied);
      std::abort();
    }
    if (!apply_entry(e)) {
      spdlog::critical("apply: raft entry {} (term {}) holds undecodable data: our own log is "
                       "corrupt",
                       e.index, e.term);
      std::abort();
    }
  }
  maybe_snapshot();
}

void Core::maybe_snapshot() {
  // Like etcd: a snapshot once more than snapshot_count entries were applied since the last.
  if (applied - snapshot_index <= config.snapshot_count || write_error) return;
  raft::Snapshot snap;
  snap.metadata.index = applied;
  snap.metadata.term = applied_term;
  snap.metadata.conf_state.voters = {member_id};
  snap.data = store.save();
  snapshot_index = applied;
  driver->save_snapshot(std::move(snap));
}

void Core::fail_writes(const Status& st) {
  spdlog::critical("writing the raft log failed: {}; this member accepts no more writes",
                   st.message());
  write_error = "etcdserver: " + st.message();
  fail_all_waiters(*write_error);
}

void Core::fail_all_waiters(const std::string& cause) {
  auto writes = std::move(write_waiters);
  auto reads = std::move(read_waiters);
  write_waiters.clear();
  read_waiters.clear();
  for (auto& [id, cb] : writes) cb(raft_error(cause), status());
  for (auto& [id, w] : reads) w.cb(raft_error(cause), status());
}

void Core::schedule_expiry() {
  expiry_timer.expires_after(kExpiryInterval);
  std::weak_ptr<Core> weak = weak_from_this();
  expiry_timer.async_wait([weak](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->tick_expiry();
  });
}

void Core::tick_expiry() {
  if (stopped.load()) return;
  // etcd's leader proposes a SYNC every 500 ms while any key has a TTL (spec v2-keys-api.md §4:
  // the raft index keeps growing on an idle cluster with TTL keys); the entry removes what is
  // due at its time.
  if (!write_error && expire_in_flight == 0 && store.next_expiration_ns()) {
    v2::Command cmd;
    cmd.op = v2::Op::kExpire;
    cmd.now_ns = now_ns();
    expire_in_flight = driver->propose(v2::encode(cmd));
  }
  schedule_expiry();
}

void Core::do_propose(v2::WriteRequest req, Node::Callback cb) {
  if (stopped.load()) return cb(raft_error(kStoppedCause), status());
  if (write_error) return cb(raft_error(*write_error), status());
  v2::Command cmd = std::move(req.cmd);
  cmd.request_id = new_request_id();
  cmd.now_ns = now_ns();
  if (req.ttl_seconds) {
    constexpr uint64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1000000000 - 1;
    uint64_t secs = std::min<uint64_t>(*req.ttl_seconds, kMaxSeconds);
    int64_t delta = static_cast<int64_t>(secs) * 1000000000;
    cmd.expire_at_ns = cmd.now_ns > std::numeric_limits<int64_t>::max() - delta
                           ? std::numeric_limits<int64_t>::max()
                           : cmd.now_ns + delta;
  }
  uint64_t id = cmd.request_id;
  if (driver->propose(v2::encode(cmd)) == 0) return cb(raft_error(kStoppedCause), status());
  write_waiters.emplace(id, std::move(cb));
}

void Core::answer_get(const v2::GetRequest& req, const Node::Callback& cb) {
  auto result = store.get(req.key, req.recursive, req.sorted, now_ns());
  std::visit([&](auto&& r) { cb(std::move(r), status()); }, std::move(result));
}

void Core::do_get(v2::GetRequest req, Node::Callback cb) {
  if (!req.quorum) return answer_get(req, cb);
  if (stopped.load()) return cb(raft_error(kStoppedCause), status());
  if (write_error) return cb(raft_error(*write_error), status());
  uint64_t id = new_request_id();
  if (driver->propose(encode_read_barrier(id)) == 0) {
    return cb(raft_error(kStoppedCause), status());
  }
  read_waiters.emplace(id, ReadWaiter{std::move(req), std::move(cb)});
}

std::vector<MemberInfo> Core::members() const {
  std::map<uint64_t, MemberInfo> by_id;
  for (const auto& [key, value] : store.internal()) {
    if (key.rfind("members/", 0) != 0) continue;
    std::string_view rest = std::string_view(key).substr(8);
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) continue;
    auto id = parse_hex_id(rest.substr(0, slash));
    if (!id) continue;
    std::string_view field = rest.substr(slash + 1);
    auto j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) continue;
    auto strings = [&](const char* name) {
      std::vector<std::string> out;
      auto it = j.find(name);
      if (it != j.end() && it->is_array()) {
        for (const auto& s : *it) {
          if (s.is_string()) out.push_back(s.get<std::string>());
        }
      }
      return out;
    };
    MemberInfo& m = by_id[*id];
    m.id = *id;
    if (field == "raftAttributes") {
      m.peer_urls = strings("peerURLs");
    } else if (field == "attributes") {
      auto n = j.find("name");
      if (n != j.end() && n->is_string()) m.name = n->get<std::string>();
      m.client_urls = strings("clientURLs");
    }
  }
  std::vector<MemberInfo> out;
  for (auto& [id, m] : by_id) out.push_back(std::move(m));
  return out;
}

// --- Node -----------------------------------------------------------------------------------

struct Node::Impl {
  std::shared_ptr<Core> core;
};

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Node::~Node() {
  if (impl_) stop();
}

Result<std::unique_ptr<Node>> Node::open(boost::asio::io_context& io, NodeConfig config) {
  if (config.data_dir.empty()) return Status::error("no data dir given");
  const fs::path member_dir = fs::path(config.data_dir) / "member";
  for (const char* etcd_dir : {"wal", "snap"}) {
    std::error_code ec;
    if (fs::exists(member_dir / etcd_dir, ec)) {
      return Status::error("data dir " + config.data_dir + " holds an etcd member (" +
                           (member_dir / etcd_dir).string() +
                           " exists); kvd cannot read etcd's files: use an empty data dir");
    }
  }
  std::error_code ec;
  fs::create_directories(member_dir, ec);
  if (ec) return Status::error("cannot create " + member_dir.string() + ": " + ec.message());
  const std::string db_dir = (member_dir / "kvd").string();
  auto opened = storage::RaftLog::open(db_dir);
  if (!opened.is_ok()) return opened.status();

  auto core = std::make_shared<Core>(io, std::move(config), std::move(opened.value()), db_dir);
  if (Status st = core->recover_and_start(); !st.is_ok()) return st;
  spdlog::info("member {} of cluster {} started at raft index {} term {}, etcd index {}",
               hex_id(core->member_id), hex_id(core->cluster_id), core->applied,
               core->driver->term(), core->store.index());
  return std::unique_ptr<Node>(new Node(std::make_unique<Impl>(Impl{std::move(core)})));
}

void Node::start() {
  impl_->core->run_on_strand([](Core& c) {
    if (!c.stopped.load()) c.schedule_expiry();
  });
}

void Node::stop() {
  Core& c = *impl_->core;
  if (c.stopped.exchange(true)) return;
  // Writes what is queued; their results are posted to the strand ahead of what follows.
  c.driver->stop();
  // Nothing reads or writes the log after the WAL thread is gone (the strand only reads it in
  // open()), so close the database now: work still queued on the strand may keep Core alive,
  // and the data dir must be free for the next open.
  c.log.reset();
  c.run_on_strand([](Core& c) {
    c.expiry_timer.cancel();
    c.fail_all_waiters(kStoppedCause);
  });
}

void Node::propose(v2::WriteRequest req, Callback cb) {
  impl_->core->run_on_strand([req = std::move(req), cb = std::move(cb)](Core& c) mutable {
    c.do_propose(std::move(req), std::move(cb));
  });
}

void Node::get(v2::GetRequest req, Callback cb) {
  impl_->core->run_on_strand([req = std::move(req), cb = std::move(cb)](Core& c) mutable {
    c.do_get(std::move(req), std::move(cb));
  });
}

void Node::watch(v2::WatchRequest req, v2::WatchCallback on_event, WatchStarted on_started) {
  impl_->core->run_on_strand([req = std::move(req), on_event = std::move(on_event),
                              on_started = std::move(on_started)](Core& c) mutable {
    v2::WatchResult r =
        c.store.watch(req.key, req.recursive, req.stream, req.wait_index, std::move(on_event));
    on_started(std::move(r), c.status());
  });
}

void Node::unwatch(v2::WatcherId id) {
  impl_->core->run_on_strand([id](Core& c) { c.store.unwatch(id); });
}

void Node::info(std::function<void(Info)> cb) {
  impl_->core->run_on_strand([cb = std::move(cb)](Core& c) {
    Info info;
    info.member_id = c.member_id;
    info.cluster_id = c.cluster_id;
    info.leader_id = c.member_id;
    info.is_leader = true;
    info.members = c.members();
    info.name = c.config.name;
    info.start_time = c.start_time;
    info.leader_since = c.leader_since;
    info.store_stats_json = c.store.stats_json();
    info.status = c.status();
    info.wal_append_calls = c.driver->append_calls();
    cb(std::move(info));
  });
}

uint64_t Node::member_id() const { return impl_->core->member_id; }
uint64_t Node::cluster_id() const { return impl_->core->cluster_id; }

}  // namespace kvd::server
