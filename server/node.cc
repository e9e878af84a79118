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
// Membership changes are raft kConfChange entries whose context is {"id":"<hex>","peerURLs":[..]}
// (etcd carries the member in its ConfChange context); applying one records the member in the
// store as etcd does (internal members/<id>/raftAttributes; a removal as removed_members/<id>),
// so the store image in a snapshot carries the member list.
//
// Start-up, like etcd:
//   first start (--initial-cluster-state new): entries 1..n (term 1, committed) add the founding
//     members, sorted by id, identically on every founder (etcd index 1..n).
//   every start: once a leader is known the member publishes kInternal
//     members/<id>/attributes = {"name":..,"clientURLs":[..]}; a new leader first commits its
//     no-op and, if unset, kInternal "version" = "3.4.0". A fresh single member thus answers its
//     first write with etcd index 4, raft index 5, raft term 2; a single member finishes these
//     entries inside open().
#include "server/node.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/uuid/detail/sha1.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "api_v2/command.h"
#include "raft/raw_node.h"
#include "server/node_log.h"
#include "server/poll_until.h"
#include "storage/raft_log.h"

namespace kvd::server {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::system_clock;
using SteadyClock = std::chrono::steady_clock;

constexpr char kReadBarrierTag = 'Q';
constexpr uint8_t kCommandTag = 0x01;
constexpr std::string_view kClusterVersion = "3.4.0";
constexpr std::string_view kVersionKey = "version";
constexpr auto kExpiryInterval = std::chrono::milliseconds(500);

// The outcome of saving a snapshot. A failure loses only compaction: the log still holds every
// entry the snapshot would have covered, so recovery stays correct.
void log_snapshot_saved(uint64_t index, Status st) {
  if (st.is_ok()) {
    spdlog::info("saved snapshot at index {}", index);
  } else {
    spdlog::error("saving snapshot at index {} failed: {}", index, st.message());
  }
}
constexpr uint64_t kReplayBatchBytes = 64 << 20;
const char* const kMetaMemberId = "member_id";
const char* const kMetaClusterId = "cluster_id";
const char* const kMetaClusterToken = "cluster_token";
const char* const kStoppedCause = "etcdserver: server stopped";
const char* const kTimeoutCause = "etcdserver: request timed out";
constexpr std::string_view kRemovedPrefix = "removed_members/";

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

// What GET <peerURL>/members answers: the cluster id header and the member list.
struct RemoteCluster {
  uint64_t cluster_id = 0;
  std::vector<MemberInfo> members;
};

// GET <peer_url>/members, bounded by timeout. For a member joining an existing cluster (etcd's
// GetClusterFromRemotePeers); runs before the member serves anything.
std::optional<RemoteCluster> fetch_remote_cluster(const std::string& peer_url,
                                                  std::chrono::milliseconds timeout,
                                                  std::string* why) {
  namespace beast = boost::beast;
  namespace http = boost::beast::http;
  using tcp = boost::asio::ip::tcp;
  std::string_view rest = peer_url;
  if (rest.rfind("http://", 0) != 0) {
    *why = "only http:// peer URLs are supported";
    return std::nullopt;
  }
  rest.remove_prefix(7);
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) {
    *why = "no port";
    return std::nullopt;
  }
  std::string host(rest.substr(0, colon));
  std::string port(rest.substr(colon + 1));
  boost::asio::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::request<http::empty_body> req{http::verb::get, "/members", 11};
  req.set(http::field::host, host);
  http::response<http::string_body> res;
  beast::error_code result = boost::asio::error::timed_out;
  stream.expires_after(timeout);
  resolver.async_resolve(host, port, [&](beast::error_code ec, tcp::resolver::results_type r) {
    if (ec) return void(result = ec);
    stream.async_connect(r, [&](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return void(result = ec);
      http::async_write(stream, req, [&](beast::error_code ec, size_t) {
        if (ec) return void(result = ec);
        http::async_read(stream, buffer, res,
                         [&](beast::error_code ec, size_t) { result = ec; });
      });
    });
  });
  ioc.run_for(timeout + std::chrono::milliseconds(100));
  if (result) {
    *why = result.message();
    return std::nullopt;
  }
  if (res.result_int() != 200) {
    *why = "status " + std::to_string(res.result_int());
    return std::nullopt;
  }
  RemoteCluster rc;
  auto header = res.find("X-Etcd-Cluster-Id");
  if (header == res.end()) {
    *why = "no X-Etcd-Cluster-Id header";
    return std::nullopt;
  }
  auto parsed_cid = parse_hex_id(std::string(header->value()));
  auto j = nlohmann::json::parse(res.body(), nullptr, /*allow_exceptions=*/false);
  if (!parsed_cid || j.is_discarded() || !j.is_array()) {
    *why = "malformed member list";
    return std::nullopt;
  }
  rc.cluster_id = *parsed_cid;
  for (const auto& m : j) {
    if (!m.is_object() || !m.contains("id") || !m["id"].is_number_unsigned()) continue;
    MemberInfo info;
    info.id = m["id"].get<uint64_t>();
    if (m.contains("name") && m["name"].is_string()) info.name = m["name"].get<std::string>();
    for (const char* field : {"peerURLs", "clientURLs"}) {
      if (!m.contains(field) || !m[field].is_array()) continue;
      for (const auto& u : m[field]) {
        if (!u.is_string()) continue;
        (std::string_view(field) == "peerURLs" ? info.peer_urls : info.client_urls)
            .push_back(u.get<std::string>());
      }
    }
    std::sort(info.peer_urls.begin(), info.peer_urls.end());
    rc.members.push_back(std::move(info));
  }
  return rc;
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

// Everything the Node owns. Shared so that work posted to the strand (by callers, the WAL thread
// and the peer link) keeps it alive until it has run, even after the Node handle is gone.
// REQUIRES (all members except the constants, `mu` and `stopped`): on strand, holding mu, once
// open() returned. Every posted task takes mu; stop() takes it too, so it never tears the raft
// core and the log down under a running task.
struct Core : std::enable_shared_from_this<Core> {
  Core(boost::asio::io_context& io, NodeConfig cfg, std::unique_ptr<storage::RaftLog> raft_log,
       std::string db)
      : strand(boost::asio::make_strand(io)),
        config(std::move(cfg)),
        db_dir(std::move(db)),
        request_timeout(std::chrono::seconds(5) + 2 * config.election_timeout),
        log(std::move(raft_log)),
        tick_timer(strand),
        snapshot_child_timer(strand),
        expiry_timer(strand) {}

  struct Waiter {
    enum class Kind { kWrite, kRead, kInternal } kind = Kind::kWrite;
    Node::Callback cb;                  // kWrite, kRead
    v2::GetRequest req;                 // kRead
    std::function<void(bool)> done;     // kInternal: true once applied, false on timeout/stop
    SteadyClock::time_point deadline;
  };
  struct ConfWaiter {
    raft::ConfChangeType type;
    uint64_t node_id = 0;
    MemberInfo member;
    Node::MemberCallback cb;
    SteadyClock::time_point deadline;
  };

  boost::asio::strand<boost::asio::io_context::executor_type> strand;
  const NodeConfig config;
  const std::string db_dir;
  const std::chrono::milliseconds request_timeout;
  // Held exclusively by every task on the strand (so by every mutation of the store and the
  // raft state), shared by plain GETs, which read the store on their caller's thread: reads run
  // in parallel with each other and cost no hop to the strand.
  std::shared_mutex mu;
  std::atomic<bool> stopped{false};

  // Read by the raft core (on the strand) and written by the WAL thread; closed by stop().
  std::unique_ptr<storage::RaftLog> log;
  std::unique_ptr<WalWriter> wal;
  std::unique_ptr<raft::RawNode> raw;  // null once stopped
  PeerLink link;
  std::map<uint64_t, std::vector<std::string>> linked_peers;  // what link knows
  std::vector<MemberInfo> remote_members;  // joining: the cluster as its members described it

  v2::Store store;
  uint64_t member_id = 0;   // fixed after open()
  uint64_t cluster_id = 0;  // fixed after open()
  std::string cluster_token;  // for ids of members added at run time
  Clock::time_point start_time = Clock::now();
  Clock::time_point leader_since = Clock::now();
  // /v2/stats/self's state and leaderInfo, kept as etcd 3.4's ServerStats does (from raft
  // traffic, not from the raft role): sending an append, and every raft state change (etcd's
  // updateLeadership calls BecomeLeader unconditionally), make it "StateLeader" led by this
  // member; receiving an append makes it "StateFollower" led by the sender. So a member that
  // lost its quorum reports StateLeader, as etcd's does.
  bool stats_leader_state = false;
  uint64_t stats_leader = 0;
  Clock::time_point stats_leader_since = Clock::now();

  // Invariant: snapshot_index <= applied <= committed
  uint64_t applied = 0;
  uint64_t applied_term = 0;
  uint64_t snapshot_index = 0;
  uint64_t committed = 0;  // as of the last Ready
  uint64_t term = 0;       // as of the last Ready
  uint64_t leader_id = 0;
  raft::Role role = raft::Role::kFollower;
  bool ready_in_flight = false;  // a Ready is being persisted: no ready() before its advance()
  bool pump_scheduled = false;
  bool removed = false;
  bool removal_noticed = false;  // on_removed ran (applied removal or a peer's refusal)
  bool members_dirty = true;

  uint64_t next_request_id = 0;
  std::unordered_map<uint64_t, Waiter> waiters;
  std::deque<std::pair<uint64_t, std::string>> stalled;  // refused by raft (no leader): retried
  std::optional<ConfWaiter> conf_waiter;
  uint64_t expire_in_flight = 0;      // request id of the proposed kExpire; 0: none
  uint64_t attributes_in_flight = 0;  // request id of this start's attribute publication
  bool attributes_published = false;
  uint64_t version_in_flight = 0;
  std::optional<std::string> write_error;  // once set, writes are refused with this cause
  uint64_t recv_append_requests = 0;
  uint64_t send_append_requests = 0;
  boost::asio::steady_timer tick_timer;
  // A store image being written by a child process (see maybe_snapshot): its pid (0: none),
  // the snapshot it belongs to, and where it writes.
  pid_t snapshot_child = 0;
  raft::SnapshotMetadata child_snapshot;
  uint64_t snapshot_index_before_child = 0;
  std::string child_image_dir;   // set by open(): the member dir
  std::string child_image_path;  // the running child's: <member dir>/snapshot-<index>.tmp
  boost::asio::steady_timer snapshot_child_timer;
  size_t last_image_bytes = 0;  // size of the last store image, to choose inline or child
  bool child_snapshots_failed = false;  // after a failure, images are made inline
  std::atomic<uint64_t> child_snapshots_saved{0};
  boost::asio::steady_timer expiry_timer;

  mutable std::mutex cache_mu;
  std::string members_json_cache;  // guarded by cache_mu: GET /members on the peer port

  // --- open() ---------------------------------------------------------------------------------

  Status recover_and_start();
  Status bootstrap_ids(bool* fresh);
  Status join_existing();
  Status start_single_member();
  Status drive_sync();

  // --- strand ---------------------------------------------------------------------------------

  // X-Raft-Term is, as etcd's RaftTimer.Term(), the term of the last applied entry, not the
  // current raft term: a member campaigning without a quorum keeps answering the old term.
  RaftStatus status() const { return RaftStatus{store.index(), committed, applied_term}; }

  void stats_become_leader() {
    if (stats_leader_state) return;
    stats_leader_state = true;
    stats_leader = member_id;
    stats_leader_since = Clock::now();
  }
  void stats_received_append(uint64_t from) {
    stats_leader_state = false;
    if (from != stats_leader) {
      stats_leader = from;
      stats_leader_since = Clock::now();
    }
  }

  // Runs fn(*this) under mu once `timer` (one of this Core's, on the strand) fires after d,
  // unless the wait was cancelled, the Core is gone or the node stopped.
  template <class Duration, class Fn>
  void run_after(boost::asio::steady_timer& timer, Duration d, Fn fn) {
    timer.expires_after(d);
    std::weak_ptr<Core> weak = weak_from_this();
    timer.async_wait([weak, fn = std::move(fn)](const boost::system::error_code& ec) mutable {
      if (ec) return;
      auto self = weak.lock();
      if (!self) return;
      std::lock_guard lock(self->mu);
      if (self->stopped.load() || !self->raw) return;
      fn(*self);
    });
  }

  uint64_t new_request_id() {
    uint64_t id = ++next_request_id;
    return id == 0 ? ++next_request_id : id;
  }

  // Applies one committed entry and completes its waiter. Returns false if the data is not an
  // entry this file writes.
  [[nodiscard]] bool apply_entry(const raft::Entry& e);
  [[nodiscard]] bool apply_conf_change(const raft::Entry& e);
  [[nodiscard]] bool apply_snapshot(const raft::Snapshot& snap);
  void note_ready(const raft::Ready& rd);
  void pump();
  void schedule_pump();
  void finish_ready(raft::Ready& rd);
  void send_messages(std::vector<raft::Message> msgs);
  void fail_writes(const Status& st);
  void fail_all_waiters(const std::string& cause);
  void expire_waiters();
  void maybe_snapshot();
  void save_snapshot(raft::Snapshot snap);
  bool start_snapshot_child(raft::Snapshot snap, uint64_t snapshot_index_before);
  void poll_snapshot_child();
  void reap_snapshot_child();
  void kill_snapshot_child();
  void maybe_publish();
  void schedule_tick();
  void on_tick();
  void schedule_expiry();
  void tick_expiry();
  uint64_t propose_internal(std::string data, std::function<void(bool)> done);
  void propose_data(uint64_t id, std::string data);
  void retry_stalled();
  void do_propose(v2::WriteRequest req, Node::Callback cb);
  void do_get(v2::GetRequest req, Node::Callback cb);
  void answer_get(const v2::GetRequest& req, const Node::Callback& cb);
  void propose_read_barrier(Waiter w);
  void do_conf_change(raft::ConfChangeType type, uint64_t id, std::vector<std::string> urls,
                      Node::MemberCallback cb);
  bool strict_reconfig_allows(raft::ConfChangeType type, uint64_t id,
                              const std::vector<MemberInfo>& all) const;
  std::vector<MemberInfo> members() const;
  std::vector<uint64_t> removed_ids() const;
  void sync_peers();
  void refresh_members_cache();
  void link_peer(uint64_t id, const std::vector<std::string>& urls);

  template <class F>
  void run_on_strand(F&& f) {
    boost::asio::post(strand, [self = shared_from_this(), f = std::forward<F>(f)]() mutable {
      std::lock_guard lock(self->mu);
      f(*self);
    });
  }
};

std::string member_context(uint64_t id, const std::vector<std::string>& urls) {
  nlohmann::json j = {{"id", hex_id(id)}, {"peerURLs", urls}};
  return j.dump();
}

std::vector<std::string> context_peer_urls(const std::string& context) {
  std::vector<std::string> out;
  auto j = nlohmann::json::parse(context, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return out;
  auto it = j.find("peerURLs");
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& u : *it) {
    if (u.is_string()) out.push_back(u.get<std::string>());
  }
  return out;
}

Status Core::bootstrap_ids(bool* fresh) {
  raft::Snapshot snap;
  bool has_snapshot = log->snapshot(&snap) == raft::StorageError::kOk && !snap.empty();
  *fresh = log->last_index() == 0 && !has_snapshot;
  auto mid = log->get_meta(kMetaMemberId);
  auto cid = log->get_meta(kMetaClusterId);
  cluster_token = log->get_meta(kMetaClusterToken).value_or(config.initial_cluster_token);
  if (mid && cid) {
    auto m = parse_hex_id(*mid);
    auto c = parse_hex_id(*cid);
    if (!m || !c) {
      return Status::error(db_dir + ": malformed member or cluster id in metadata (\"" + *mid +
                           "\", \"" + *cid + "\")");
    }
    member_id = *m;
    cluster_id = *c;
    if (!*fresh) {
      // As etcd: an existing member restarts from its data dir; the bootstrap flags no longer
      // matter.
      spdlog::info("the data dir holds member {} of cluster {}: restarting it, ignoring "
                   "--initial-cluster, --initial-cluster-state and --initial-cluster-token",
                   hex_id(member_id), hex_id(cluster_id));
      return Status::ok();
    }
  }
  if (!*fresh) {
    return Status::error(db_dir + ": the log holds entries but no member/cluster id");
  }
  if (config.initial_cluster_state == "existing") return join_existing();
  if (config.initial_cluster_state != "new") {
    return Status::error("unknown --initial-cluster-state " + config.initial_cluster_state);
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
  // The founding members, sorted by id: every founder writes the same entries 1..n.
  std::map<uint64_t, std::vector<std::string>> founders;
  for (auto& [name, urls] : by_name) {
    std::sort(urls.begin(), urls.end());
    uint64_t id = compute_member_id(urls, config.initial_cluster_token);
    if (founders.count(id)) {
      return Status::error("--initial-cluster lists the peer URLs of member " + name + " twice");
    }
    founders[id] = urls;
  }
  member_id = compute_member_id(self->second, config.initial_cluster_token);
  std::vector<uint64_t> ids;
  for (const auto& [id, urls] : founders) ids.push_back(id);
  cluster_id = compute_cluster_id(ids);
  cluster_token = config.initial_cluster_token;
  if (Status st = log->put_meta(kMetaMemberId, hex_id(member_id)); !st.is_ok()) return st;
  if (Status st = log->put_meta(kMetaClusterId, hex_id(cluster_id)); !st.is_ok()) return st;
  if (Status st = log->put_meta(kMetaClusterToken, cluster_token); !st.is_ok()) return st;

  // Entries 1..n, term 1, committed: one configuration change adding each founder with its peer
  // URLs as context (etcd's bootstrap ConfChanges). Applying them records the members.
  std::vector<raft::Entry> entries;
  for (const auto& [id, urls] : founders) {
    raft::ConfChange cc{raft::ConfChangeType::kAddNode, id, member_context(id, urls)};
    entries.push_back(raft::Entry{1, entries.size() + 1, raft::EntryType::kConfChange,
                                  raft::encode_conf_change(cc)});
  }
  const uint64_t n = entries.size();
  return log->append(entries, raft::HardState{1, raft::kNoNode, n});
}

// --initial-cluster-state existing with an empty data dir: ask the members listed in
// --initial-cluster for the cluster (as etcd does), take this member's id from the entry `member
// add` created for its peer URLs, and start with an empty log: the leader sends the log or a
// snapshot, which makes this member a voter.
Status Core::join_existing() {
  std::vector<std::string> own = config.initial_advertise_peer_urls;
  std::sort(own.begin(), own.end());
  std::string errors;
  std::optional<RemoteCluster> remote;
  for (const auto& [name, url] : config.initial_cluster) {
    if (std::find(own.begin(), own.end(), url) != own.end()) continue;
    std::string why;
    remote = fetch_remote_cluster(url, std::chrono::seconds(2), &why);
    if (remote) break;
    errors += (errors.empty() ? "" : "; ") + url + ": " + why;
  }
  if (!remote) {
    return Status::error("cannot fetch the cluster's members from --initial-cluster peers (" +
                         errors + ")");
  }
  for (const auto& m : remote->members) {
    if (m.peer_urls == own) member_id = m.id;
  }
  if (member_id == 0) {
    return Status::error("no member of the existing cluster has this member's peer URLs " +
                         nlohmann::json(own).dump() +
                         ": add it first (etcdctl member add / POST /v2/members)");
  }
  cluster_id = remote->cluster_id;
  remote_members = remote->members;
  spdlog::info("joining cluster {} as member {} ({} members)", hex_id(cluster_id),
               hex_id(member_id), remote->members.size());
  if (Status st = log->put_meta(kMetaMemberId, hex_id(member_id)); !st.is_ok()) return st;
  if (Status st = log->put_meta(kMetaClusterId, hex_id(cluster_id)); !st.is_ok()) return st;
  return log->put_meta(kMetaClusterToken, cluster_token);
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
    applied = snapshot_index = committed = snap.metadata.index;
    applied_term = snap.metadata.term;
  }
  // The raft core reads every entry at start (membership); an unreadable log is refused here
  // with the database's name rather than by the core's abort.
  const uint64_t last = log->last_index();
  for (uint64_t next = log->first_index(); next <= last;) {
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
      if (e.type == raft::EntryType::kConfChange && !raft::decode_conf_change(e.data)) {
        return Status::error(db_dir + ": log entry " + std::to_string(e.index) +
                             " holds an undecodable membership change");
      }
      ++next;
    }
  }
  const auto [hs, cs] = log->initial_state();
  term = hs.term;
  if (!fresh) {
    spdlog::info("recovered member {} (cluster {}) at raft index {} (commit {}, term {}), "
                 "etcd index {}",
                 hex_id(member_id), hex_id(cluster_id), last, hs.commit, hs.term, store.index());
  }

  raft::Config rc;
  rc.id = member_id;
  const auto hb = std::max<int64_t>(config.heartbeat_interval.count(), 1);
  rc.election_ticks = std::max<int>(2, static_cast<int>(config.election_timeout.count() / hb));
  rc.heartbeat_ticks = 1;
  rc.pre_vote = config.pre_vote;
  rc.check_quorum = true;
  rc.applied = applied;
  rc.seed = static_cast<uint64_t>(now_ns());
  raw = std::make_unique<raft::RawNode>(rc, log.get());

  // Request ids are unique across members too (a QGET proposed on one member is applied on all):
  // member id bits on top, then milliseconds, as etcd's idutil does.
  next_request_id = ((member_id & 0xffff) << 48) |
                    ((static_cast<uint64_t>(now_ns() / 1000000) & 0xffffffffffULL) << 8);

  const auto& voters = raw->status().conf_state.voters;
  if (voters.size() == 1 && voters[0] == member_id) return start_single_member();
  return Status::ok();
}

Status Core::start_single_member() {
  // One voter: it wins the election of the next term at once, so open() finishes the start-up
  // entries synchronously (no-op, cluster version, attributes) and returns a member that is
  // leader with etcd's indexes.
  raw->campaign();
  if (Status st = drive_sync(); !st.is_ok()) return st;
  if (role != raft::Role::kLeader) {
    return Status::error(db_dir + ": the single member could not become leader");
  }
  if (!store.internal().count(std::string(kVersionKey))) {
    (void)raw->propose(v2::encode(internal_command(std::string(kVersionKey),
                                                   std::string(kClusterVersion))));
  }
  nlohmann::json attrs = {{"name", config.name}, {"clientURLs", config.advertise_client_urls}};
  if (raw->propose(v2::encode(internal_command(attributes_key(member_id), attrs.dump()))) !=
      raft::Error::kOk) {
    return Status::error("the single member refused its own proposal");
  }
  if (Status st = drive_sync(); !st.is_ok()) return st;
  attributes_published = true;
  return Status::ok();
}

// Runs the Ready loop without the WAL thread or peers; for open() only.
Status Core::drive_sync() {
  for (int round = 0; round < 100000 && raw->has_ready(); ++round) {
    raft::Ready rd = raw->ready();
    note_ready(rd);
    if (rd.snapshot) {
      if (Status st = log->save_snapshot(*rd.snapshot); !st.is_ok()) return st;
    }
    if (!rd.entries.empty() || rd.hard_state) {
      if (Status st = log->append(rd.entries, rd.hard_state); !st.is_ok()) return st;
    }
    if (rd.snapshot && !apply_snapshot(*rd.snapshot)) {
      return Status::error(db_dir + ": the snapshot at index " +
                           std::to_string(rd.snapshot->metadata.index) +
                           " holds a corrupt store image");
    }
    for (const auto& e : rd.committed_entries) {
      if (!apply_entry(e)) {
        return Status::error(db_dir + ": log entry " + std::to_string(e.index) +
                             " holds undecodable data");
      }
    }
    raw->advance();
  }
  refresh_members_cache();
  return Status::ok();
}

void Core::note_ready(const raft::Ready& rd) {
  if (rd.hard_state) {
    term = rd.hard_state->term;
    committed = std::max(committed, rd.hard_state->commit);
  }
  if (rd.snapshot) committed = std::max(committed, rd.snapshot->metadata.index);
  if (rd.soft_state) {
    const raft::SoftState& ss = *rd.soft_state;
    if (ss.lead != leader_id) {
      if (ss.lead != raft::kNoNode) {
        spdlog::info("raft: {} elected leader {} at term {}", hex_id(member_id), hex_id(ss.lead),
                     term);
        leader_since = Clock::now();
      } else {
        spdlog::info("raft: {} lost leader {} at term {}", hex_id(member_id), hex_id(leader_id),
                     term);
      }
    }
    leader_id = ss.lead;
    role = ss.role;
    stats_become_leader();
  }
}

// Takes the next Ready, if any and none is in flight, and hands its persistent part to the WAL
// thread; finish_ready() does the rest (on the strand) once it is on disk. Never calls
// finish_ready() itself: a Ready with nothing to persist is finished by a posted task, so that
// pump() may run in the middle of finish_ready() (see there).
void Core::pump() {
  if (!raw || ready_in_flight || !raw->has_ready()) return;
  auto rd = std::make_shared<raft::Ready>(raw->ready());
  note_ready(*rd);
  // A configuration takes effect in raft when appended, so the leader may address a new member
  // before the change is applied: tell the link where it lives now.
  for (const auto& e : rd->entries) {
    if (e.type != raft::EntryType::kConfChange) continue;
    auto cc = raft::decode_conf_change(e.data);
    if (cc && cc->type == raft::ConfChangeType::kAddNode && cc->node_id != member_id) {
      link_peer(cc->node_id, context_peer_urls(cc->context));
    }
  }
  // A leader sends its appends before its own fsync, so that the followers' writes run in
  // parallel with it (Raft thesis §10.2.1; etcd's server does the same). This is safe: the
  // leader counts its own entries for commitment, but a commit index that depends on them
  // reaches nobody before this Ready is on disk (the next Ready is taken only after that), and
  // a leader's votes were persisted before it became one.
  if (role == raft::Role::kLeader) send_messages(std::exchange(rd->messages, {}));
  ready_in_flight = true;
  if (!rd->snapshot && rd->entries.empty() && !rd->hard_state) {
    run_on_strand([rd](Core& c) {
      if (c.raw) c.finish_ready(*rd);
    });
    return;
  }
  std::weak_ptr<Core> weak = weak_from_this();
  bool queued = wal->persist(rd->snapshot, std::move(rd->entries), rd->hard_state, rd->must_sync,
                             [weak, rd](Status st) {
                               auto self = weak.lock();
                               if (!self) return;
                               self->run_on_strand([rd, st = std::move(st)](Core& c) {
                                 if (!c.raw) return;
                                 if (!st.is_ok()) return c.fail_writes(st);
                                 c.finish_ready(*rd);
                               });
                             });
  if (!queued) fail_writes(Status::error("the raft log no longer accepts writes"));
}

// Proposals and peer messages only schedule a pump: everything that arrives before it runs goes
// into the same Ready, and nothing recurses from apply back into ready().
void Core::schedule_pump() {
  if (pump_scheduled) return;
  pump_scheduled = true;
  run_on_strand([](Core& c) {
    c.pump_scheduled = false;
    c.pump();
  });
}

void Core::finish_ready(raft::Ready& rd) {
  // Persisted: now the messages that promise it may go (Raft paper Figure 2).
  send_messages(std::move(rd.messages));
  if (rd.snapshot && !apply_snapshot(*rd.snapshot)) {
    spdlog::critical("apply: the snapshot at index {} from the leader holds a corrupt store image",
                     rd.snapshot->metadata.index);
    std::abort();
  }
  // Hand the next Ready to the WAL thread before applying this one's committed entries, so that
  // its fsync runs while they are applied (etcd applies in another goroutine for the same
  // reason). This is safe: the entries below are already durable (committed), the next Ready
  // finishes on this strand only after this function returns, so entries are still applied in
  // log order, and raft's applied index (moved by advance()) only bounds what the next Ready
  // offers for applying.
  raw->advance();
  ready_in_flight = false;
  pump();
  for (const auto& e : rd.committed_entries) {
    if (e.index <= applied) continue;  // covered by a snapshot installed in this Ready
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
  if (members_dirty) {
    sync_peers();
    refresh_members_cache();
  }
  maybe_snapshot();
  if (leader_id != raft::kNoNode) {
    retry_stalled();
    maybe_publish();
  }
  if (removed && config.on_removed) {
    removed = false;
    if (!removal_noticed) config.on_removed();
    removal_noticed = true;
  }
  schedule_pump();
}

void Core::send_messages(std::vector<raft::Message> msgs) {
  if (msgs.empty()) return;
  std::vector<raft::Message> plain;
  plain.reserve(msgs.size());
  for (auto& m : msgs) {
    if (m.type == raft::MessageType::kApp) {
      ++send_append_requests;
      stats_become_leader();
    }
    if (m.type != raft::MessageType::kSnap) {
      plain.push_back(std::move(m));
      continue;
    }
    if (!link.send_snapshot || !m.snapshot) {
      if (raw) raw->report_snapshot(m.to, false);
      continue;
    }
    auto data = std::make_shared<const std::string>(std::move(m.snapshot->data));
    m.snapshot->data.clear();
    const uint64_t to = m.to;
    spdlog::info("sending snapshot at index {} to member {}", m.snapshot->metadata.index,
                 hex_id(to));
    std::weak_ptr<Core> weak = weak_from_this();
    link.send_snapshot(std::move(m), std::move(data), [weak, to](bool ok) {
      auto self = weak.lock();
      if (!self) return;
      self->run_on_strand([to, ok](Core& c) {
        if (!c.raw) return;
        c.raw->report_snapshot(to, ok);
        c.pump();
      });
    });
  }
  if (!plain.empty() && link.send) link.send(std::move(plain));
}

bool Core::apply_snapshot(const raft::Snapshot& snap) {
  if (!store.recover(snap.data)) return false;
  applied = snapshot_index = snap.metadata.index;
  applied_term = snap.metadata.term;
  members_dirty = true;
  spdlog::info("installed the snapshot at index {} (term {}): etcd index {}", snap.metadata.index,
               snap.metadata.term, store.index());
  // A member that was removed while it was away finds itself missing from the snapshot.
  auto gone = removed_ids();
  if (std::find(gone.begin(), gone.end(), member_id) != gone.end()) {
    spdlog::critical("this member ({}) has been permanently removed from the cluster; it stops "
                     "serving. Its data dir must be removed before it can join again",
                     hex_id(member_id));
    removed = true;
  }
  return true;
}

bool Core::apply_conf_change(const raft::Entry& e) {
  auto cc = raft::decode_conf_change(e.data);
  if (!cc) return false;
  const std::string hex = hex_id(cc->node_id);
  std::vector<std::string> urls = context_peer_urls(cc->context);
  std::sort(urls.begin(), urls.end());
  switch (cc->type) {
    case raft::ConfChangeType::kAddNode:
    case raft::ConfChangeType::kUpdateNode: {
      nlohmann::json attrs = {{"peerURLs", urls}};
      v2::Command cmd = internal_command(raft_attributes_key(cc->node_id), attrs.dump());
      cmd.now_ns = 0;
      (void)store.apply(cmd);
      spdlog::info("{} member {} with peer URLs {}",
                   cc->type == raft::ConfChangeType::kAddNode ? "added" : "updated", hex,
                   nlohmann::json(urls).dump());
      break;
    }
    case raft::ConfChangeType::kRemoveNode: {
      v2::Command cmd = internal_command(std::string(kRemovedPrefix) + hex, "removed");
      cmd.now_ns = 0;
      (void)store.apply(cmd);
      spdlog::info("removed member {} from the cluster", hex);
      if (link.remove_peer && linked_peers.erase(cc->node_id)) link.remove_peer(cc->node_id);
      if (cc->node_id == member_id) {
        spdlog::critical("this member ({}) has been permanently removed from the cluster; it "
                         "stops serving. Its data dir must be removed before it can join again",
                         hex);
        removed = true;
      }
      break;
    }
  }
  members_dirty = true;
  if (conf_waiter && conf_waiter->type == cc->type && conf_waiter->node_id == cc->node_id) {
    ConfWaiter w = std::move(*conf_waiter);
    conf_waiter.reset();
    MemberChange mc;
    mc.http_status = cc->type == raft::ConfChangeType::kAddNode ? 201 : 204;
    mc.member = std::move(w.member);
    w.cb(std::move(mc));
  }
  return true;
}

bool Core::apply_entry(const raft::Entry& e) {
  if (e.type == raft::EntryType::kConfChange) {
    if (!apply_conf_change(e)) return false;
    applied = e.index;
    applied_term = e.term;
    return true;
  }
  applied = e.index;
  applied_term = e.term;
  committed = std::max(committed, e.index);
  if (e.data.empty()) return true;
  if (e.data[0] == kReadBarrierTag) {
    if (e.data.size() != 9) return false;
    uint64_t id = 0;
    for (int i = 0; i < 8; ++i) {
      id |= static_cast<uint64_t>(static_cast<uint8_t>(e.data[1 + i])) << (8 * i);
    }
    auto it = waiters.find(id);
    if (it != waiters.end() && it->second.kind == Waiter::Kind::kRead) {
      Waiter w = std::move(it->second);
      waiters.erase(it);
      answer_get(w.req, w.cb);
    } else if (it != waiters.end() && it->second.kind == Waiter::Kind::kInternal) {
      Waiter w = std::move(it->second);
      waiters.erase(it);
      w.done(true);  // a quorum probe
    }
    return true;
  }
  v2::Command cmd;
  if (static_cast<uint8_t>(e.data[0]) != kCommandTag || !v2::decode(e.data, &cmd)) return false;
  auto result = store.apply(cmd);
  if (cmd.op == v2::Op::kInternal) members_dirty = true;
  if (cmd.request_id != 0) {
    auto it = waiters.find(cmd.request_id);
    if (it != waiters.end()) {
      Waiter w = std::move(it->second);
      waiters.erase(it);
      if (w.kind == Waiter::Kind::kInternal) {
        w.done(true);
      } else if (w.kind == Waiter::Kind::kWrite) {
        w.cb(std::move(result), status());
      }
    }
  }
  return true;
}

void Core::maybe_snapshot() {
  // Like etcd: a snapshot once more than snapshot_count entries were applied since the last.
  if (!raw || applied - snapshot_index <= config.snapshot_count || write_error ||
      snapshot_child != 0) {
    return;
  }
  raft::Snapshot snap;
  snap.metadata.index = applied;
  snap.metadata.term = applied_term;
  snap.metadata.conf_state = raw->applied_conf_state();
  const uint64_t before = snapshot_index;
  snapshot_index = applied;
  if (!child_snapshots_failed && !child_image_dir.empty() &&
      last_image_bytes >= config.child_snapshot_min_bytes &&
      start_snapshot_child(std::move(snap), before)) {
    return;
  }
  snap.data = store.save(last_image_bytes);
  last_image_bytes = snap.data.size();
  save_snapshot(std::move(snap));
}

void Core::save_snapshot(raft::Snapshot snap) {
  if (!wal->save_snapshot(std::move(snap))) {
    spdlog::warn("snapshot not saved: the log no longer accepts writes");
  }
}

// A large store takes long to serialize (about 0.4 us a key), and the strand would stall every
// request meanwhile. So, as Redis does, a child process made by fork() writes the image from
// its copy-on-write view of the store at this applied index, and the strand goes on. The child
// only serializes and writes the image file (RaftLog::build_image: RocksDB's SST file writer, no
// database, no logger): tcmalloc keeps malloc usable after fork, and the child touches no lock
// another thread may hold, logs nothing and leaves with _exit(). The parent polls for it and
// hands the file to the WAL writer, whose image thread moves it into the log (the parent never
// holds the image in memory, and its bytes are written once).
bool Core::start_snapshot_child(raft::Snapshot snap, uint64_t snapshot_index_before) {
  child_image_path =
      (fs::path(child_image_dir) / ("snapshot-" + std::to_string(snap.metadata.index) + ".tmp"))
          .string();
  int fd = ::open(child_image_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    spdlog::warn("snapshot: cannot create {}: {}; writing the image inline",
                 child_image_path, std::strerror(errno));
    return false;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Hold none of the parent's sockets (a killed parent's ports must come free at once), and
    // die with it.
    if (fd > 3) ::close_range(3, static_cast<unsigned>(fd) - 1, 0);
    ::close_range(static_cast<unsigned>(fd) + 1, ~0U, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int rc = 1;
    try {
      std::string image = store.save(last_image_bytes);
      // The image file in its final form (a synced SST file, which the parent moves into the
      // log without copying it): the image's bytes are written once, here. A crash before the
      // parent records it loses nothing recorded (snapshot*.tmp files are removed at start).
      ::close(fd);
      if (log->build_image(snap.metadata.index, image, child_image_path).is_ok()) rc = 0;
    } catch (...) {
    }
    ::_exit(rc);
  }
  ::close(fd);
  if (pid < 0) {
    spdlog::warn("snapshot: fork failed: {}; writing the image inline", std::strerror(errno));
    return false;
  }
  snapshot_child = pid;
  child_snapshot = std::move(snap.metadata);
  snapshot_index_before_child = snapshot_index_before;
  poll_snapshot_child();
  return true;
}

void Core::poll_snapshot_child() {
  run_after(snapshot_child_timer, std::chrono::milliseconds(5), [](Core& c) {
    if (c.snapshot_child != 0) c.reap_snapshot_child();
  });
}

// Collects the child if it has exited and saves its image.
void Core::reap_snapshot_child() {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(snapshot_child, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return poll_snapshot_child();
  snapshot_child = 0;
  bool ok = r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  struct stat st {};
  if (ok) ok = ::stat(child_image_path.c_str(), &st) == 0 && st.st_size > 0;
  if (!ok) {
    std::error_code ec;
    fs::remove(child_image_path, ec);
    spdlog::warn("snapshot: the child writing {} failed (status {}); images are made inline "
                 "from now on",
                 child_image_path, status);
    child_snapshots_failed = true;
    snapshot_index = std::min(snapshot_index, snapshot_index_before_child);
    return;
  }
  last_image_bytes = static_cast<size_t>(st.st_size);
  // The WAL writer's image thread puts the file into the log; appends go on meanwhile.
  const uint64_t index = child_snapshot.index;
  std::weak_ptr<Core> weak = weak_from_this();
  if (!wal->save_snapshot_file(child_snapshot, child_image_path, [weak, index](Status saved) {
        const bool ok = saved.is_ok();
        log_snapshot_saved(index, std::move(saved));
        if (auto self = weak.lock(); self && ok) self->child_snapshots_saved.fetch_add(1);
      })) {
    std::error_code ec;
    fs::remove(child_image_path, ec);
    spdlog::warn("snapshot not saved: the log no longer accepts writes");
  }
}

// On stop: the image of a child still running is abandoned.
void Core::kill_snapshot_child() {
  if (snapshot_child == 0) return;
  ::kill(snapshot_child, SIGKILL);
  while (::waitpid(snapshot_child, nullptr, 0) < 0 && errno == EINTR) {
  }
  snapshot_child = 0;
  std::error_code ec;
  fs::remove(child_image_path, ec);
}

void Core::fail_writes(const Status& st) {
  if (write_error) return;
  spdlog::critical("writing the raft log failed: {}; this member accepts no more writes",
                   st.message());
  write_error = "etcdserver: " + st.message();
  fail_all_waiters(*write_error);
}

void Core::fail_all_waiters(const std::string& cause) {
  auto all = std::move(waiters);
  waiters.clear();
  stalled.clear();
  expire_in_flight = attributes_in_flight = version_in_flight = 0;
  for (auto& [id, w] : all) {
    if (w.kind == Waiter::Kind::kInternal) {
      w.done(false);
    } else {
      w.cb(raft_error(cause), status());
    }
  }
  if (conf_waiter) {
    ConfWaiter w = std::move(*conf_waiter);
    conf_waiter.reset();
    w.cb(MemberChange{500, "Internal Server Error", {}});
  }
}

// etcd answers a request that did not complete within its request timeout with 300 "request
// timed out" (its outcome is then unknown: the entry may still commit).
void Core::expire_waiters() {
  const auto now = SteadyClock::now();
  std::vector<Waiter> due;
  for (auto it = waiters.begin(); it != waiters.end();) {
    if (it->second.deadline <= now) {
      due.push_back(std::move(it->second));
      it = waiters.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& w : due) {
    if (w.kind == Waiter::Kind::kInternal) {
      w.done(false);
    } else {
      w.cb(raft_error(kTimeoutCause), status());
    }
  }
  if (!stalled.empty()) {
    std::erase_if(stalled, [&](const auto& p) { return !waiters.count(p.first); });
  }
  if (conf_waiter && conf_waiter->deadline <= now) {
    ConfWaiter w = std::move(*conf_waiter);
    conf_waiter.reset();
    spdlog::warn("membership change of member {} timed out", hex_id(w.node_id));
    w.cb(MemberChange{500, "Internal Server Error", {}});
  }
}

void Core::propose_data(uint64_t id, std::string data) {
  if (raw->propose(data) != raft::Error::kOk) stalled.emplace_back(id, std::move(data));
  schedule_pump();
}

// Proposals raft refused (no leader, a transfer in progress) wait for a leader, as etcd's do, and
// time out like any other request.
void Core::retry_stalled() {
  if (!raw || stalled.empty()) return;
  auto pending = std::move(stalled);
  stalled.clear();
  for (auto& [id, data] : pending) {
    if (!waiters.count(id)) continue;
    if (raw->propose(data) != raft::Error::kOk) stalled.emplace_back(id, std::move(data));
  }
  schedule_pump();
}

uint64_t Core::propose_internal(std::string data, std::function<void(bool)> done) {
  uint64_t id = new_request_id();
  v2::Command cmd;
  if (!v2::decode(data, &cmd)) std::abort();  // encoded by this file
  cmd.request_id = id;
  Waiter w;
  w.kind = Waiter::Kind::kInternal;
  w.done = std::move(done);
  w.deadline = SteadyClock::now() + request_timeout;
  waiters.emplace(id, std::move(w));
  propose_data(id, v2::encode(cmd));
  return id;
}

// After each start a member publishes its name and client URLs (etcd's publish); the leader sets
// the cluster version once it has applied everything before its term.
void Core::maybe_publish() {
  if (!raw || write_error || removed || leader_id == raft::kNoNode) return;
  std::weak_ptr<Core> weak = weak_from_this();
  if (!attributes_published && attributes_in_flight == 0) {
    nlohmann::json attrs = {{"name", config.name}, {"clientURLs", config.advertise_client_urls}};
    attributes_in_flight = propose_internal(
        v2::encode(internal_command(attributes_key(member_id), attrs.dump())), [weak](bool ok) {
          if (auto self = weak.lock()) {
            self->attributes_in_flight = 0;
            if (ok) {
              self->attributes_published = true;
              spdlog::info("published the attributes of member {} to the cluster",
                           hex_id(self->member_id));
            }
          }
        });
  }
  if (role == raft::Role::kLeader && version_in_flight == 0 && applied_term == term &&
      !store.internal().count(std::string(kVersionKey))) {
    version_in_flight = propose_internal(
        v2::encode(internal_command(std::string(kVersionKey), std::string(kClusterVersion))),
        [weak](bool) {
          if (auto self = weak.lock()) self->version_in_flight = 0;
        });
  }
}

void Core::schedule_tick() {
  run_after(tick_timer, config.heartbeat_interval, [](Core& c) { c.on_tick(); });
}

void Core::on_tick() {
  raw->tick();
  expire_waiters();
  maybe_publish();
  pump();
  schedule_tick();
}

void Core::schedule_expiry() {
  run_after(expiry_timer, kExpiryInterval, [](Core& c) { c.tick_expiry(); });
}

void Core::tick_expiry() {
  if (stopped.load() || !raw) return;
  // etcd's leader proposes a SYNC every 500 ms while any key has a TTL (spec v2-keys-api.md §4:
  // the raft index keeps growing on an idle cluster with TTL keys); the entry removes what is
  // due at its time. Only the leader's clock decides; followers apply what it proposed.
  if (!write_error && role == raft::Role::kLeader && expire_in_flight == 0 &&
      store.next_expiration_ns()) {
    v2::Command cmd;
    cmd.op = v2::Op::kExpire;
    cmd.now_ns = now_ns();
    std::weak_ptr<Core> weak = weak_from_this();
    expire_in_flight = propose_internal(v2::encode(cmd), [weak](bool) {
      if (auto self = weak.lock()) self->expire_in_flight = 0;
    });
  }
  schedule_expiry();
}

void Core::do_propose(v2::WriteRequest req, Node::Callback cb) {
  if (stopped.load() || !raw) return cb(raft_error(kStoppedCause), status());
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
  const uint64_t id = cmd.request_id;
  Waiter w;
  w.kind = Waiter::Kind::kWrite;
  w.cb = std::move(cb);
  w.deadline = SteadyClock::now() + request_timeout;
  waiters.emplace(id, std::move(w));
  propose_data(id, v2::encode(cmd));
}

void Core::answer_get(const v2::GetRequest& req, const Node::Callback& cb) {
  auto result = store.get(req.key, req.recursive, req.sorted, now_ns());
  std::visit([&](auto&& r) { cb(std::move(r), status()); }, std::move(result));
}

void Core::do_get(v2::GetRequest req, Node::Callback cb) {
  if (!req.quorum) return answer_get(req, cb);
  if (stopped.load() || !raw) return cb(raft_error(kStoppedCause), status());
  if (write_error) return cb(raft_error(*write_error), status());
  Waiter w;
  w.kind = Waiter::Kind::kRead;
  w.cb = std::move(cb);
  w.req = std::move(req);
  w.deadline = SteadyClock::now() + request_timeout;
  propose_read_barrier(std::move(w));
}

// Proposes an empty read barrier; w is answered when it is applied (ReadIndex's log variant).
void Core::propose_read_barrier(Waiter w) {
  const uint64_t id = new_request_id();
  waiters.emplace(id, std::move(w));
  propose_data(id, encode_read_barrier(id));
}

// --strict-reconfig-check, as etcd 3.4's mayAddMember and mayRemoveMember. A member is started
// once it published its name. Adding needs a quorum of the grown cluster started (a one-member
// cluster may always grow) and every peer connected for health_interval (etcd's
// isConnectedFullySince HealthInterval). Removing needs a quorum of the remaining members
// started and, unless the member to remove is down (not connected), enough connected members
// left for a quorum. Logs why it refuses.
bool Core::strict_reconfig_allows(raft::ConfChangeType type, uint64_t id,
                                  const std::vector<MemberInfo>& all) const {
  const auto now = SteadyClock::now();
  auto connected_now = [&](uint64_t peer) {
    return peer == member_id || (link.connected && link.connected(peer));
  };
  auto connected_long_enough = [&](uint64_t peer) {
    if (peer == member_id) return true;
    if (!link.active_since) return connected_now(peer);
    auto since = link.active_since(peer);
    return since && *since <= now - config.health_interval;
  };
  if (type == raft::ConfChangeType::kAddNode) {
    size_t members = 1;  // the new one
    size_t started = 0;
    bool all_connected = true;
    for (const auto& m : all) {
      ++members;
      if (!m.name.empty()) ++started;
      if (!connected_long_enough(m.id)) all_connected = false;
    }
    if (!(started == 1 && members == 2) && started < members / 2 + 1) {
      spdlog::warn("rejecting member add: not enough started members ({} of {})", started,
                   members - 1);
      return false;
    }
    if (!all_connected) {
      spdlog::warn("rejecting member add: unhealthy cluster (not every member has been "
                   "connected for {} ms)",
                   config.health_interval.count());
      return false;
    }
    return true;
  }
  if (type == raft::ConfChangeType::kRemoveNode) {
    size_t members = 0;
    size_t started = 0;
    for (const auto& m : all) {
      if (m.id == id) continue;
      ++members;
      if (!m.name.empty()) ++started;
    }
    if (started < members / 2 + 1) {
      spdlog::warn("rejecting member remove: not enough started members ({} of {} would remain)",
                   started, members);
      return false;
    }
    // A member that is down is not part of the active quorum: removing it is safe.
    if (id != member_id && !connected_now(id)) return true;
    size_t active = 0;
    for (const auto& m : all) {
      if (connected_now(m.id)) ++active;
    }
    if (active < 2 + (all.size() - 1) / 2) {
      spdlog::warn("rejecting member remove: not enough connected members ({} of {})", active,
                   all.size());
      return false;
    }
  }
  return true;
}

void Core::do_conf_change(raft::ConfChangeType type, uint64_t id, std::vector<std::string> urls,
                          Node::MemberCallback cb) {
  if (stopped.load() || !raw || write_error) return cb(MemberChange{500, "Internal Server Error", {}});
  const auto all = members();
  const auto gone = removed_ids();
  const bool is_removed = std::find(gone.begin(), gone.end(), id) != gone.end();
  const MemberInfo* target = nullptr;
  for (const auto& m : all) {
    if (m.id == id) target = &m;
  }
  std::sort(urls.begin(), urls.end());
  // etcd runs --strict-reconfig-check (mayAddMember / mayRemoveMember) before the change is
  // validated against the member list, so an unhealthy cluster answers 500 even for a change
  // that would then be refused with 404, 409 or 410.
  if (config.strict_reconfig_check && !strict_reconfig_allows(type, id, all)) {
    return cb(MemberChange{500, "Internal Server Error", {}});
  }
  if (type != raft::ConfChangeType::kAddNode && !target) {
    if (is_removed) return cb(MemberChange{410, "Member permanently removed: " + hex_id(id), {}});
    return cb(MemberChange{404, "No such member: " + hex_id(id), {}});
  }
  for (const auto& m : all) {
    if (target && m.id == target->id) continue;
    for (const auto& u : m.peer_urls) {
      if (std::find(urls.begin(), urls.end(), u) != urls.end()) {
        return cb(MemberChange{409, "membership: peerURL exists", {}});
      }
    }
  }
  if (conf_waiter) return cb(MemberChange{500, "Internal Server Error", {}});
  if (type == raft::ConfChangeType::kAddNode) {
    // etcd: a member added at run time hashes its peer URLs, the token and the time.
    id = compute_member_id(urls, cluster_token +
                                     std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                        Clock::now().time_since_epoch())
                                                        .count()));
  }
  raft::ConfChange cc{type, id,
                      type == raft::ConfChangeType::kRemoveNode ? "" : member_context(id, urls)};
  if (raft::Error err = raw->propose_conf_change(cc); err != raft::Error::kOk) {
    spdlog::warn("membership change of member {} refused: {}", hex_id(id), raft::to_string(err));
    return cb(MemberChange{500, "Internal Server Error", {}});
  }
  ConfWaiter w;
  w.type = type;
  w.node_id = id;
  w.member.id = id;
  w.member.peer_urls = urls;
  w.cb = std::move(cb);
  w.deadline = SteadyClock::now() + request_timeout;
  conf_waiter = std::move(w);
  schedule_pump();
}

std::vector<uint64_t> Core::removed_ids() const {
  std::vector<uint64_t> out;
  for (const auto& [key, value] : store.internal()) {
    if (key.rfind(kRemovedPrefix, 0) != 0) continue;
    if (auto id = parse_hex_id(std::string_view(key).substr(kRemovedPrefix.size()))) {
      out.push_back(*id);
    }
  }
  return out;
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
  for (uint64_t id : removed_ids()) by_id.erase(id);
  std::vector<MemberInfo> out;
  for (auto& [id, m] : by_id) {
    if (!m.peer_urls.empty()) out.push_back(std::move(m));
  }
  return out;
}

void Core::link_peer(uint64_t id, const std::vector<std::string>& urls) {
  if (id == member_id || urls.empty()) return;
  auto it = linked_peers.find(id);
  if (it == linked_peers.end()) {
    linked_peers[id] = urls;
    if (link.add_peer) link.add_peer(id, urls);
  } else if (it->second != urls) {
    it->second = urls;
    if (link.update_peer) link.update_peer(id, urls);
  }
}

// Tells the link about every member the store knows (after a conf change or a snapshot).
void Core::sync_peers() {
  for (const auto& m : members()) link_peer(m.id, m.peer_urls);
  // Every removed id, linked or not: the link refuses their connections as removed members.
  for (uint64_t id : removed_ids()) {
    linked_peers.erase(id);
    if (link.remove_peer && id != member_id) link.remove_peer(id);
  }
}

void Core::refresh_members_cache() {
  members_dirty = false;
  std::string out = "[";
  bool first = true;
  for (const auto& m : members()) {
    if (!first) out += ',';
    first = false;
    nlohmann::ordered_json j;
    j["id"] = m.id;
    j["peerURLs"] = m.peer_urls;
    j["name"] = m.name;
    j["clientURLs"] = m.client_urls;
    out += j.dump();
  }
  out += "]\n";
  std::lock_guard lock(cache_mu);
  members_json_cache = std::move(out);
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
  {
    std::lock_guard lock(core->mu);
    // An image a child was writing when the process died is of no use: the snapshot it belonged
    // to was never recorded.
    core->child_image_dir = member_dir.string();
    for (auto it = fs::directory_iterator(member_dir, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.rfind("snapshot", 0) == 0 && name.size() > 4 &&
          name.compare(name.size() - 4, 4, ".tmp") == 0) {
        std::error_code rm;
        fs::remove(it->path(), rm);
      }
    }
    ec.clear();
    if (Status st = core->recover_and_start(); !st.is_ok()) return st;
    std::weak_ptr<Core> weak = core;
    core->wal = std::make_unique<WalWriter>(
        core->log.get(), [](uint64_t, Status) {},
        log_snapshot_saved);
    core->refresh_members_cache();
    spdlog::info("member {} of cluster {} started at raft index {} term {}, etcd index {}",
                 hex_id(core->member_id), hex_id(core->cluster_id), core->applied, core->term,
                 core->store.index());
  }
  return std::unique_ptr<Node>(new Node(std::make_unique<Impl>(Impl{std::move(core)})));
}

void Node::attach_peers(PeerLink link) {
  impl_->core->run_on_strand([link = std::move(link)](Core& c) mutable {
    c.link = std::move(link);
    c.linked_peers.clear();
    for (const auto& m : c.remote_members) c.link_peer(m.id, m.peer_urls);
    c.sync_peers();
  });
}

void Node::start() {
  impl_->core->run_on_strand([](Core& c) {
    if (c.stopped.load() || !c.raw) return;
    c.schedule_expiry();
    c.schedule_tick();
    c.maybe_publish();
    c.pump();
  });
}

void Node::stop() {
  Core& c = *impl_->core;
  {
    std::lock_guard lock(c.mu);
    if (c.stopped.exchange(true)) return;
    c.kill_snapshot_child();
    c.snapshot_child_timer.cancel();
    // Writes what is queued; its completions find the raft core gone and do nothing.
    if (c.wal) c.wal->stop();
    c.raw.reset();
    // The data dir must be free for the next open, even while queued work keeps Core alive.
    c.wal.reset();
    c.log.reset();
  }
  c.run_on_strand([](Core& c) {
    c.tick_timer.cancel();
    c.expiry_timer.cancel();
    c.fail_all_waiters(kStoppedCause);
  });
}

void Node::transfer_leadership_for_stop(std::chrono::milliseconds timeout,
                                        std::function<void()> done) {
  impl_->core->run_on_strand([timeout, done = std::move(done)](Core& c) mutable {
    if (c.stopped.load() || !c.raw || c.role != raft::Role::kLeader) return done();
    const raft::NodeStatus st = c.raw->status();
    uint64_t to = raft::kNoNode;
    uint64_t best_match = 0;
    for (const auto& [id, pr] : st.progress) {
      if (id == c.member_id || (c.link.connected && !c.link.connected(id))) continue;
      if (std::find(st.conf_state.voters.begin(), st.conf_state.voters.end(), id) ==
          st.conf_state.voters.end()) {
        continue;
      }
      if (to == raft::kNoNode || pr.match_index > best_match) {
        to = id;
        best_match = pr.match_index;
      }
    }
    if (to == raft::kNoNode) return done();
    spdlog::info("stopping: handing leadership from {} to {} (term {})", hex_id(c.member_id),
                 hex_id(to), c.term);
    c.raw->transfer_leadership(to);
    c.schedule_pump();
    // Polled on the strand until someone else leads or the time is up.
    std::weak_ptr<Core> weak = c.weak_from_this();
    auto handed_over = [weak] {  // or the node is gone: nothing left to wait for
      auto self = weak.lock();
      if (!self) return true;
      std::lock_guard lock(self->mu);
      return !self->raw ||
             (self->leader_id != raft::kNoNode && self->leader_id != self->member_id);
    };
    poll_until(c.strand, std::chrono::milliseconds(10), SteadyClock::now() + timeout,
               handed_over, [weak, done = std::move(done)] {
                 if (auto self = weak.lock()) {
                   std::lock_guard lock(self->mu);
                   if (self->raw && self->leader_id != raft::kNoNode &&
                       self->leader_id != self->member_id) {
                     spdlog::info("stopping: member {} leads now", hex_id(self->leader_id));
                   } else if (self->raw) {
                     spdlog::warn("stopping: leadership was not handed over in time (no other "
                                  "member took it); the others elect a leader after their "
                                  "election timeout");
                   }
                 }
                 done();
               });
  });
}

void Node::propose(v2::WriteRequest req, Callback cb) {
  impl_->core->run_on_strand([req = std::move(req), cb = std::move(cb)](Core& c) mutable {
    c.do_propose(std::move(req), std::move(cb));
  });
}

void Node::get(v2::GetRequest req, Callback cb) {
  if (!req.quorum) {
    // A local read (etcd v2's default): straight from the store, under the shared lock, on
    // this thread. cb runs after the lock is released.
    Core& c = *impl_->core;
    StoreResult result;
    RaftStatus st;
    {
      std::shared_lock lock(c.mu);
      result = c.store.get(req.key, req.recursive, req.sorted, now_ns());
      st = c.status();
    }
    return cb(std::move(result), st);
  }
  impl_->core->run_on_strand([req = std::move(req), cb = std::move(cb)](Core& c) mutable {
    c.do_get(std::move(req), std::move(cb));
  });
}

void Node::probe_quorum(std::chrono::milliseconds timeout, std::function<void(bool)> cb) {
  impl_->core->run_on_strand([timeout, cb = std::move(cb)](Core& c) mutable {
    if (c.stopped.load() || !c.raw || c.write_error) return cb(false);
    Core::Waiter w;
    w.kind = Core::Waiter::Kind::kInternal;
    w.done = std::move(cb);
    w.deadline = SteadyClock::now() + timeout;
    c.propose_read_barrier(std::move(w));
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

void Node::add_member(std::vector<std::string> peer_urls, MemberCallback cb) {
  impl_->core->run_on_strand([urls = std::move(peer_urls), cb = std::move(cb)](Core& c) mutable {
    c.do_conf_change(raft::ConfChangeType::kAddNode, 0, std::move(urls), std::move(cb));
  });
}

void Node::remove_member(uint64_t id, MemberCallback cb) {
  impl_->core->run_on_strand([id, cb = std::move(cb)](Core& c) mutable {
    c.do_conf_change(raft::ConfChangeType::kRemoveNode, id, {}, std::move(cb));
  });
}

void Node::update_member(uint64_t id, std::vector<std::string> peer_urls, MemberCallback cb) {
  impl_->core->run_on_strand(
      [id, urls = std::move(peer_urls), cb = std::move(cb)](Core& c) mutable {
        c.do_conf_change(raft::ConfChangeType::kUpdateNode, id, std::move(urls), std::move(cb));
      });
}

boost::asio::any_io_executor Node::executor() const { return impl_->core->strand; }

void Node::step(raft::Message m) {
  impl_->core->run_on_strand([m = std::move(m)](Core& c) mutable {
    if (!c.raw) return;
    if (m.type == raft::MessageType::kApp) {
      ++c.recv_append_requests;
      c.stats_received_append(m.from);
    }
    if (raft::Error err = c.raw->step(std::move(m)); err != raft::Error::kOk) {
      spdlog::debug("raft refused a peer message: {}", raft::to_string(err));
    }
    c.schedule_pump();
  });
}

void Node::step_snapshot(raft::Message m, std::string data) {
  impl_->core->run_on_strand([m = std::move(m), data = std::move(data)](Core& c) mutable {
    if (!c.raw || !m.snapshot) return;
    m.snapshot->data = std::move(data);
    spdlog::info("received snapshot at index {} (term {}) from member {}",
                 m.snapshot->metadata.index, m.snapshot->metadata.term, hex_id(m.from));
    if (raft::Error err = c.raw->step(std::move(m)); err != raft::Error::kOk) {
      spdlog::warn("raft refused a snapshot: {}", raft::to_string(err));
    }
    c.pump();
  });
}

void Node::report_unreachable(uint64_t peer) {
  impl_->core->run_on_strand([peer](Core& c) {
    if (!c.raw) return;
    c.raw->report_unreachable(peer);
  });
}

void Node::report_removed_by(uint64_t peer) {
  impl_->core->run_on_strand([peer](Core& c) {
    if (!c.raw || c.removal_noticed) return;
    c.removal_noticed = true;
    spdlog::critical("this member ({}) has been permanently removed from the cluster (member {} "
                     "refused it as removed); it stops serving. Its data dir must be removed "
                     "before it can join again",
                     hex_id(c.member_id), hex_id(peer));
    if (c.config.on_removed) c.config.on_removed();
  });
}

std::string Node::members_json() const {
  std::lock_guard lock(impl_->core->cache_mu);
  return impl_->core->members_json_cache;
}

void Node::info(std::function<void(Info)> cb) {
  impl_->core->run_on_strand([cb = std::move(cb)](Core& c) {
    Info info;
    info.member_id = c.member_id;
    info.cluster_id = c.cluster_id;
    info.leader_id = c.leader_id;
    info.is_leader = c.role == raft::Role::kLeader && c.leader_id == c.member_id;
    info.members = c.members();
    info.removed_ids = c.removed_ids();
    info.name = c.config.name;
    info.start_time = c.start_time;
    info.leader_since = c.leader_since;
    info.stats_state_leader = c.stats_leader_state;
    info.stats_leader = c.stats_leader;
    info.stats_leader_since = c.stats_leader_since;
    info.recv_append_requests = c.recv_append_requests;
    info.send_append_requests = c.send_append_requests;
    info.store_stats_json = c.store.stats_json();
    info.status = c.status();
    info.wal_append_calls = c.wal ? c.wal->append_calls() : 0;
    info.child_snapshots = c.child_snapshots_saved.load();
    if (info.is_leader && c.link.stats) info.follower_stats = c.link.stats();
    cb(std::move(info));
  });
}

uint64_t Node::member_id() const { return impl_->core->member_id; }
uint64_t Node::cluster_id() const { return impl_->core->cluster_id; }

}  // namespace kvd::server
