// The member: owns the v2 Store and the durable raft log and is the only code that touches
// them. All state lives on one strand (the "raft strand"); HTTP handlers call the public methods
// from any thread, and every callback but a plain get()'s is invoked on that strand, so a
// handler must post its own follow-up work (writing a response) to its connection's executor.
// Plain gets read the store on the caller's thread under a shared lock that every strand task
// holds exclusively. The member answers with typed results (StoreResult, MemberChange); the
// handlers in server/ choose the HTTP statuses and render the JSON.
//
// Write path: propose() encodes a v2::Command into a raft entry and hands it to the raft core
// (raft::RawNode, forwarded to the leader when this member follows). The strand drives the core's
// Ready/advance loop (raft_loop.cc): the WAL thread persists a Ready's entries and hard state with
// one fsync (everything proposed meanwhile goes out together in the next Ready: group commit),
// then the strand sends the messages that depend on them through the PeerLink, applies committed
// entries to the Store (apply.cc) and completes each waiter (by the request id inside the
// command) with the Store's answer. A request still unanswered after the request timeout (5 s +
// 2 x election timeout, as etcd) fails with 300 "etcdserver: request timed out". Expiry: while
// the store holds TTL nodes the leader proposes Op::kExpire with its wall clock every 500 ms.
// Every snapshot_count applied entries the Store image (with the member records) is saved and
// the log below it compacted (snapshotter.cc). open() recovers the latest snapshot; the raft
// core then re-delivers the committed log after it (bootstrap.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

#include "api_v2/auth.h"
#include "api_v2/keys_request.h"
#include "api_v2/store.h"
#include "common/members.h"
#include "common/status.h"
#include "raft/message.h"
#include "server/peer/peer_link.h"

namespace kvd::server {

// A cluster as one of its members describes it (GET <peerURL>/members on its peer port).
struct RemoteCluster {
  uint64_t cluster_id = 0;
  std::vector<MemberInfo> members;
};
// Asks the member at peer_url for its cluster, within timeout; on failure *why says why.
using FetchCluster = std::function<std::optional<RemoteCluster>(
    const std::string& peer_url, std::chrono::milliseconds timeout, std::string* why)>;

struct NodeConfig {
  std::string name = "default";
  std::string data_dir;  // REQUIRES: non-empty
  std::vector<std::string> advertise_client_urls;
  std::vector<std::string> initial_advertise_peer_urls;
  // name=peerURL pairs from --initial-cluster, in flag order (one name may repeat for several
  // URLs). Ignored when the data dir already holds a member.
  std::vector<std::pair<std::string, std::string>> initial_cluster;
  std::string initial_cluster_state = "new";
  // For --initial-cluster-state existing: how to ask the listed members for the cluster
  // (server/peer_wiring.h's fetch_remote_cluster). Unset: joining fails.
  FetchCluster fetch_cluster;
  std::string initial_cluster_token = "etcd-cluster";
  uint64_t snapshot_count = 100000;
  // Store images of at least this size (judged by the previous one) are made in steps between
  // other work on the strand, and written to disk by a thread, so that the strand does not
  // stall; smaller ones inline. 0: always in steps (tests).
  size_t stepped_snapshot_min_bytes = 8 << 20;
  std::chrono::milliseconds heartbeat_interval{100};
  std::chrono::milliseconds election_timeout{1000};
  // --pre-vote (thesis section 9.6); etcd 3.4's default is off.
  bool pre_vote = false;
  // --initial-election-tick-advance: at start, once enough peers are connected for an election
  // to succeed (a lone member at once), the election clock is advanced to two ticks short of
  // the election timeout, as etcd does, so that a cluster restarted as a whole elects a leader
  // after about one heartbeat interval instead of a whole election timeout.
  bool initial_election_tick_advance = true;
  // --strict-reconfig-check: refuse membership changes that could cost the quorum, as etcd. A
  // peer counts as up for it once connected for health_interval (etcd's HealthInterval).
  bool strict_reconfig_check = true;
  // --force-new-cluster, as etcd's restartAsStandaloneNode: a member restarted on its data dir
  // keeps everything committed, drops the uncommitted tail of its log and commits, in its own
  // log, the removal of every other member: a one-member cluster with all of its data, the same
  // cluster id. Ignored for a new data dir.
  bool force_new_cluster = false;
  std::chrono::milliseconds health_interval{5000};
  // --experimental-warning-apply-duration: applying one request slower than this is logged
  // ("apply request took too long", at most one line a second).
  std::chrono::nanoseconds warning_apply_duration{std::chrono::milliseconds(100)};
  // Runs (on the strand) once this member has applied its own removal from the cluster; the
  // process should stop serving. Must not call Node methods synchronously: post them.
  std::function<void()> on_removed;
};

// The outcome of a membership change (add, remove, update), as etcd's membership package
// reports it; the members handler maps it to etcd's HTTP answer.
struct MemberChange {
  enum class Outcome {
    kDone,           // added (member is set), removed or updated
    kUnknownMember,  // no member has this id
    kRemovedMember,  // the member was removed before: ids are never reused
    kPeerUrlInUse,   // another member already has one of the peer URLs
    kFailed,         // refused (--strict-reconfig-check, another change in progress), timed
                     // out, or the member stopped
  };
  Outcome outcome = Outcome::kFailed;
  std::string message;  // what went wrong, in etcd's words ("membership: peerURL exists")
  MemberInfo member;    // the added member
};

// What every keys response reports in X-Etcd-Index / X-Raft-Index / X-Raft-Term.
struct RaftStatus {
  uint64_t etcd_index = 0;
  uint64_t raft_index = 0;  // committed raft index
  uint64_t raft_term = 0;   // term of the last applied entry (etcd's RaftTimer.Term)
};

using StoreResult = std::variant<v2::Event, v2::Error>;

class Node {
 public:
  // Opens or creates the data dir and recovers state. Fails with a message naming the file when
  // the data dir is unusable or corrupt.
  static Result<std::unique_ptr<Node>> open(boost::asio::io_context& io, NodeConfig config);
  ~Node();

  // Starts timers (expiry, snapshots). Call once after open().
  void start();
  // Stops timers, fails pending proposals with 300 "etcdserver: server stopped", flushes.
  void stop();
  // Before a graceful stop, as etcd's EtcdServer.Stop: if this member leads a cluster of
  // several, hands leadership to the most up-to-date connected follower (thesis section 3.10)
  // and waits (at most `timeout`) until another member leads. done() then runs on the strand;
  // at once when there is nothing to hand over.
  void transfer_leadership_for_stop(std::chrono::milliseconds timeout, std::function<void()> done);

  using Callback = std::function<void(StoreResult, RaftStatus)>;
  // A v2 auth change (api_v2/auth.h): its answer once applied, or a raft error (timeout,
  // stopped, storage failure).
  using AuthCallback = std::function<void(std::variant<v2::auth::Answer, v2::Error>)>;
  void propose_auth(v2::auth::Request req, AuthCallback cb);
  // The auth state as of the last applied change, and whether it has auth enabled (cheaper).
  // Safe from any thread.
  std::shared_ptr<const v2::auth::AuthState> auth_state() const;
  bool auth_enabled() const;
  // A mutation; cb runs once it is durable and applied (or failed).
  void propose(v2::WriteRequest req, Callback cb);
  // A read; quorum reads wait until everything committed before the call has been applied (cb
  // on the strand), by ReadIndex (read_index.cc: one heartbeat round, no log entry). A plain read is answered from this member's store at once: cb runs on the
  // calling thread, before get() returns.
  void get(v2::GetRequest req, Callback cb);

  // An empty read through raft (etcd's QGET, as /health sends it): cb(true) once it has been
  // committed and applied here, cb(false) if that did not happen within `timeout`.
  void probe_quorum(std::chrono::milliseconds timeout, std::function<void(bool)> cb);

  using WatchStarted = std::function<void(v2::WatchResult, RaftStatus)>;
  // Registers a watch; on_started runs first (with an immediate event, an error, or the watcher
  // id), then on_event for each later matching event (once unless req.stream).
  void watch(v2::WatchRequest req, v2::WatchCallback on_event, WatchStarted on_started);
  void unwatch(v2::WatcherId id);

  // Membership changes (raft configuration changes carrying the member's data). cb runs on the
  // strand once the change is applied, refused, or timed out.
  using MemberCallback = std::function<void(MemberChange)>;
  void add_member(std::vector<std::string> peer_urls, MemberCallback cb);
  void remove_member(uint64_t id, MemberCallback cb);
  void update_member(uint64_t id, std::vector<std::string> peer_urls, MemberCallback cb);

  // Peers. Call attach_peers() once, after open() and before start(). The inbound calls may come
  // from any thread (the transport delivers on executor()).
  void attach_peers(PeerLink link);
  boost::asio::any_io_executor executor() const;
  void step(raft::Message m);
  void step_snapshot(raft::Message m, std::string data);
  void report_unreachable(uint64_t peer);
  // `peer` refused this member as removed from the cluster: it missed the commit of its own
  // removal (the leader stops replicating to a member once it is removed). Stops like an
  // applied removal does (NodeConfig::on_removed).
  void report_removed_by(uint64_t peer);
  // The current members, sorted by id (for GET /members on the peer port). Safe from any
  // thread.
  std::vector<MemberInfo> members() const;

  // Read-only views for /v2/members, /v2/machines, /v2/stats/*; cb runs on the strand.
  struct Info {
    uint64_t member_id = 0;
    uint64_t cluster_id = 0;
    uint64_t leader_id = 0;  // 0 = no leader known
    bool is_leader = false;
    std::vector<MemberInfo> members;  // sorted by id
    std::string name;
    std::chrono::system_clock::time_point start_time;
    std::chrono::system_clock::time_point leader_since;
    // /v2/stats/self as etcd's ServerStats reports it (from raft traffic; see core.h).
    bool stats_state_leader = false;
    uint64_t stats_leader = 0;
    std::chrono::system_clock::time_point stats_leader_since;
    uint64_t recv_append_requests = 0;
    uint64_t send_append_requests = 0;
    v2::StoreStats store_stats;
    size_t watchers = 0;
    RaftStatus status;
    uint64_t wal_append_calls = 0;  // RaftLog appends (fsyncs) since open(): group commit shows here
    uint64_t wal_loop_writes = 0;   // of the persists, those written on the raft loop's thread
    uint64_t stepped_snapshots = 0;  // snapshot images made in steps and saved
    std::vector<uint64_t> removed_ids;  // members removed from the cluster (410 on DELETE)
    std::map<uint64_t, PeerStats> follower_stats;  // leader only: /v2/stats/leader
    // For /metrics (etcd_server_*).
    uint64_t applied = 0;
    uint64_t leader_changes = 0;    // leaders seen since start
    uint64_t proposals_pending = 0;
    uint64_t proposals_failed = 0;  // since start
    std::string cluster_version;    // "" until decided
  };
  void info(std::function<void(Info)> cb);

  // What an online backup (offline/backup.h) takes: the member's raft log read consistently at
  // its commit index (the last snapshot and the entries after it), on a thread of its own, so
  // the strand never waits for it and writes go on. cb runs on that thread. The read keeps the
  // log open: a stop() meanwhile frees the data dir only once the read has finished.
  struct Backup {
    raft::Snapshot snapshot;           // empty (index 0) before the first snapshot
    std::vector<raft::Entry> entries;  // snapshot.metadata.index + 1 .. hard_state.commit
    raft::HardState hard_state;        // the backup's index is its commit
    uint64_t member_id = 0;
    uint64_t cluster_id = 0;
    std::string cluster_token;
  };
  using BackupCallback = std::function<void(Result<Backup>)>;
  void backup(BackupCallback cb);

  // Fixed after open(); safe from any thread.
  uint64_t member_id() const;
  uint64_t cluster_id() const;

 private:
  struct Impl;
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// etcd's identities (bootstrap.cc): member id = first 8 bytes (big-endian) of SHA-1(sorted peer
// URLs joined + token [+ unix seconds for runtime additions]); cluster id = first 8 bytes of
// SHA-1 of the ascending member ids as 8-byte big-endian values.
uint64_t compute_member_id(std::vector<std::string> peer_urls, const std::string& token);
uint64_t compute_cluster_id(std::vector<uint64_t> member_ids);

}  // namespace kvd::server
