// The member's state behind its raft strand, shared by the files that make up the member:
//   node.cc         the Node facade: open(), and each public call posted to the strand
//   bootstrap.cc    ids, the founding entries, joining an existing cluster, recovery at open()
//   raft_loop.cc    the Ready/advance loop: persist, send, apply, ticks, proposals
//   apply.cc        applying committed entries; waiters, reads, read barriers, expiry
//   membership.cc   configuration changes, the member list, --strict-reconfig-check, publishing
//   snapshotter.cc  store snapshots, written inline or made in steps
// Not part of the member's interface: include server/member/node.h instead.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "api_v2/command.h"
#include "api_v2/store.h"
#include "common/log_event.h"
#include "common/members.h"
#include "common/status.h"
#include "common/version.h"
#include "raft/raw_node.h"
#include "server/member/node.h"
#include "server/member/read_batches.h"
#include "server/member/wal_writer.h"
#include "storage/raft_log.h"

namespace kvd::server {

using Clock = std::chrono::system_clock;
using SteadyClock = std::chrono::steady_clock;

// Raft entry data tags (the formats are at the top of apply.cc).
inline constexpr char kReadBarrierTag = 'Q';
inline constexpr uint8_t kCommandTag = 0x01;
// Cluster-internal store records (api_v2 Op::kInternal), as etcd keeps them.
inline constexpr std::string_view kVersionKey = "version";
inline constexpr std::string_view kClusterVersion = version::kCluster;
inline constexpr std::string_view kRemovedPrefix = "removed_members/";
// How often a leader with TTL keys proposes their expiry.
inline constexpr auto kExpiryInterval = std::chrono::milliseconds(500);
inline constexpr const char* kStoppedCause = "etcdserver: server stopped";
inline constexpr const char* kTimeoutCause = "etcdserver: request timed out";
// A member without a leader says so after this long, and again every kNoLeaderReport.
inline constexpr auto kNoLeaderFirstReport = std::chrono::seconds(5);
inline constexpr auto kNoLeaderReport = std::chrono::seconds(10);
// How often a member whose raft log refused a write tries again.
inline constexpr auto kStorageRetryInterval = std::chrono::milliseconds(1000);
// The most entries a Ready may hold, and requests may wait at this member, for the Ready to be
// written on the strand's loop thread when the WAL thread is idle (raft_loop.cc,
// persist_ready): a lone client's write or a follower's append of one entry. Not more: at 64
// connections a write claimed whenever few requests happened to wait raised the p99 in six
// rounds of six (bench/run.sh), as the loop then reads no request during that fsync.
inline constexpr size_t kLoopWriteMaxEntries = 1;

int64_t now_ns();
// A kInternal command setting key to value, stamped with the local clock.
v2::Command internal_command(std::string key, std::string value);
v2::Error raft_error(std::string cause);
// The outcome of saving a snapshot. A failure loses only compaction: the log still holds every
// entry the snapshot would have covered, so recovery stays correct.
void log_snapshot_saved(uint64_t index, Status st);
// Whether a member that applied up to `applied` and last snapshotted at `snapshot_index` takes a
// snapshot now (snapshotter.cc): always once more than `count` entries were applied since (etcd's
// rule), and from count/2 on when it passes one of its own snapshot points (phase + k * count), so
// that the members of a cluster, each with its own phase, snapshot at different times.
bool snapshot_due(uint64_t applied, uint64_t snapshot_index, uint64_t count, uint64_t phase);
// A member's phase: its rank among the voters (by id) times count / the number of voters; 0
// when it is not a voter.
uint64_t snapshot_phase(uint64_t member_id, const std::vector<uint64_t>& voters, uint64_t count);

// Member records in the store and in configuration changes (membership.cc).
std::string raft_attributes_key(uint64_t id);
std::string attributes_key(uint64_t id);
// A configuration change's context: {"id":"<hex>","peerURLs":[..]}.
std::string member_context(uint64_t id, const std::vector<std::string>& urls);
std::vector<std::string> context_peer_urls(const std::string& context);
// The store records of a member, as etcd writes them: {"peerURLs":[..]} under raftAttributes,
// {"name":..,"clientURLs":[..]} under attributes (published by the member after each start).
std::string member_raft_attributes(const std::vector<std::string>& peer_urls);
std::string member_attributes(const std::string& name, const std::vector<std::string>& urls);
// An online backup's consistent read of the raft log: the snapshot, then every entry after it up
// to the commit index, retried if a compaction removed entries meanwhile (backup.cc). Safe on
// any thread: RaftLog's reads are.
Result<Node::Backup> read_backup(const storage::RaftLog& log);
// "[a b c]" for logs.
std::string url_list(const std::vector<std::string>& urls);

// Everything the member owns: the store, the raft core and log, waiters, timers, peers.
// Ownership: held by the Node handle (Node::Impl) and by every task posted to the strand, so that
// work posted by callers, the WAL thread and the peer link keeps it alive until it has run, even
// after the Node handle is gone.
// Threads: REQUIRES (all members except the constants, `mu`, `stopped`, `cache_mu` and what it
// guards): on the strand, holding mu, once open() returned. Every posted task takes mu
// exclusively; stop() takes it too, so it never tears the raft core and the log down under a
// running task; a plain get takes it shared from its caller's thread and reads only the store
// (and status()). members() takes cache_mu from any thread.
// The thread writing a store image's file from the pieces the strand makes (snapshotter.cc).
class ImageFileWriter;

struct Core : std::enable_shared_from_this<Core> {
  Core(boost::asio::io_context& io, NodeConfig cfg, std::unique_ptr<storage::RaftLog> raft_log,
       std::string db)
      : strand(boost::asio::make_strand(io)),
        config(std::move(cfg)),
        db_dir(std::move(db)),
        request_timeout(std::chrono::seconds(5) + 2 * config.election_timeout),
        log(std::move(raft_log)),
        tick_timer(strand),
        tick_advance_timer(strand),
        image_timer(strand),
        expiry_timer(strand),
        storage_retry_timer(strand) {}

  struct Waiter {
    enum class Kind { kWrite, kRead, kInternal, kAuth } kind = Kind::kWrite;
    Node::Callback cb;                  // kWrite, kRead
    Node::AuthCallback auth_cb;         // kAuth
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
  // Shared with online backups reading it on a thread of their own (backup.cc).
  std::shared_ptr<storage::RaftLog> log;
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
  // A member added to a one-member cluster, listed (and linked) from the moment its addition is
  // proposed until it is applied. A configuration takes effect in the raft core as soon as it
  // is in the log (thesis section 4.1), so that addition commits only with the new member's
  // vote, and the new member starts only once the cluster lists it: without this, growing a
  // one-member cluster (after --force-new-cluster, say) could never complete.
  std::optional<MemberInfo> pending_member;

  uint64_t next_request_id = 0;
  std::unordered_map<uint64_t, Waiter> waiters;
  std::deque<std::pair<uint64_t, std::string>> stalled;  // refused by raft (no leader): retried
  std::optional<ConfWaiter> conf_waiter;
  // Quorum reads by ReadIndex (read_index.cc; Raft thesis section 6.4). Each read is a kRead
  // waiter in `waiters` (so timeouts and failures treat it as any request); `reads` holds its id
  // on the way: queued for the next read_index call (one call, one heartbeat round, for every
  // read queued meanwhile), then in a batch awaiting raft's ReadState for the batch's context,
  // then awaiting the apply of the read index. An id whose waiter is gone is dropped.
  ReadBatches reads;
  uint64_t expire_in_flight = 0;      // request id of the proposed kExpire; 0: none
  uint64_t attributes_in_flight = 0;  // request id of this start's attribute publication
  bool attributes_published = false;
  uint64_t version_in_flight = 0;
  // Set while the raft log refuses writes (a full disk, an I/O error): new writes, quorum reads
  // and membership changes are refused with this cause; plain reads go on. failed_ready is the
  // Ready whose persistence failed, retried every kStorageRetryInterval until it is written.
  // Invariant: write_error set <=> failed_ready set, and then ready_in_flight.
  std::optional<std::string> write_error;
  std::shared_ptr<raft::Ready> failed_ready;
  uint64_t recv_append_requests = 0;
  uint64_t send_append_requests = 0;
  // For /metrics: leaders seen since start, and proposals that failed (timed out, dropped).
  uint64_t leader_changes = 0;
  uint64_t proposals_failed = 0;
  boost::asio::steady_timer tick_timer;
  boost::asio::steady_timer tick_advance_timer;
  // A store image being made in steps (see maybe_snapshot): the thread writing its file (null:
  // none), the snapshot it belongs to, and where it writes.
  std::shared_ptr<ImageFileWriter> image_writer;
  raft::SnapshotMetadata image_snapshot;
  std::string image_dir;         // set by open(): the member dir
  std::string image_path;        // the image in progress: <member dir>/snapshot-<index>.tmp
  boost::asio::steady_timer image_timer;
  size_t last_image_bytes = 0;  // size of the last store image, to choose inline or in steps
  std::atomic<uint64_t> stepped_snapshots_saved{0};
  boost::asio::steady_timer expiry_timer;
  boost::asio::steady_timer storage_retry_timer;

  // Events that repeat are logged at most so often (common/log_event.h).
  logev::Repeats slow_apply_log{std::chrono::seconds(1)};
  logev::Repeats timeout_log{std::chrono::seconds(5)};
  // Since when this member has known no leader (set when it loses one, and at start), and when
  // it next says so in the log (on_tick; kNoLeaderFirstReport, then every kNoLeaderReport).
  std::optional<SteadyClock::time_point> leaderless_since = SteadyClock::now();
  SteadyClock::time_point next_leaderless_report = SteadyClock::now() + kNoLeaderFirstReport;
  bool leaderless_reported = false;
  // Restarted on a data dir: the commit index it had, and when the restart began; the log says
  // once when the member has applied that far (replay_done()). 0: nothing to replay.
  uint64_t replay_until = 0;
  SteadyClock::time_point replay_start;
  // This start founded a new cluster (--initial-cluster-state new on an empty data dir): its
  // first election may be called at once (advance_ticks_when_connected).
  bool founding = false;

  mutable std::mutex cache_mu;
  std::vector<MemberInfo> members_cache;  // guarded by cache_mu: members() from any thread
  // The auth records as the client handlers check requests against them (api_v2/auth.h),
  // made again on the strand after every change of the records, before the change's waiter
  // hears of it; read from any thread.
  std::atomic<std::shared_ptr<const v2::auth::AuthState>> auth_state{
      v2::auth::AuthState::from_records({})};
  std::atomic<bool> auth_enabled{false};
  void refresh_auth() {
    auto st = v2::auth::AuthState::from_records(store.internal());
    auth_enabled.store(st->enabled(), std::memory_order_release);
    auth_state.store(std::move(st));
  }

  // --- open() ---------------------------------------------------------------------------------

  Status recover_and_start();
  Status bootstrap_ids(bool* fresh);
  Status join_existing();
  Status start_single_member();
  Status force_standalone(const raft::Snapshot& snap);
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
  // Fails a waiter with a raft error, whatever its kind.
  void fail_waiter(Waiter& w, const std::string& cause);
  void warn_slow_apply(const v2::Command& cmd, uint64_t index, std::chrono::nanoseconds took);
  // Logs, rate-limited, that n requests timed out, with what the member knows of why.
  void warn_timeouts(uint64_t n);
  // on_tick: a member without a leader for kNoLeaderFirstReport says so, and again every
  // kNoLeaderReport, with the members it reaches.
  void report_leaderless();
  std::string reachable_voters() const;
  // finish_ready: once a restarted member has applied what it had committed, says so, once.
  void note_replayed();
  void note_ready(const raft::Ready& rd);
  void pump();
  void schedule_pump();
  void finish_ready(raft::Ready& rd);
  // Applies committed entries raft handed out (all persisted here before), in order, then
  // after_apply().
  void apply_committed(const std::vector<raft::Entry>& ents);
  // What follows any apply: quorum reads now servable, membership, the snapshot threshold,
  // proposals waiting for a leader, a removal.
  void after_apply();
  void send_messages(std::vector<raft::Message> msgs);
  // Sends rd's messages, in order, except the commit notices (appends without entries) that
  // holds_notices(rd) keeps: those stay in rd.messages.
  void send_now(raft::Ready& rd);
  // Whether rd's commit notices wait until its entries are applied (finish_ready).
  bool holds_notices(const raft::Ready& rd) const;
  // Hands rd's persistent part to the WAL thread; finish_ready(rd) once it is on disk,
  // storage_failed(rd) if it could not be written.
  void persist_ready(std::shared_ptr<raft::Ready> rd);
  // Queues a write of hs (a new commit index only) to the WAL thread without waiting for it.
  void queue_commit_index(const raft::HardState& hs);
  void storage_failed(std::shared_ptr<raft::Ready> rd, const Status& st);
  // Why the WAL writer refused a write just now: the error of the write that failed, or that
  // it is stopping.
  std::string wal_refusal() const;
  void retry_storage();
  void fail_all_waiters(const std::string& cause);
  void expire_waiters();
  void maybe_snapshot();
  void save_snapshot(raft::Snapshot snap);
  std::string image_tmp_path(uint64_t index) const;
  bool start_image(raft::Snapshot snap);
  void image_step();
  void finish_image();
  void abandon_image();
  void maybe_publish();
  void schedule_tick();
  void on_tick();
  void advance_ticks_when_connected(int polls_left);
  void schedule_expiry();
  void tick_expiry();
  uint64_t propose_internal(std::string data, std::function<void(bool)> done);
  void propose_data(uint64_t id, std::string data);
  // Proposes data for request id and registers w, answered when it applies (or times out at
  // w.deadline, which REQUIRES: set).
  void propose_waited(uint64_t id, Waiter w, std::string data) {
    waiters.emplace(id, std::move(w));
    propose_data(id, std::move(data));
  }
  void retry_stalled();
  void do_propose(v2::WriteRequest req, Node::Callback cb);
  void do_get(v2::GetRequest req, Node::Callback cb);
  void answer_get(const v2::GetRequest& req, const Node::Callback& cb);
  void propose_read_barrier(Waiter w);
  void queue_read(uint64_t id, Waiter w);
  void issue_reads();
  void take_read_states(std::vector<raft::ReadState>& states);
  void serve_reads();
  void reissue_reads(bool all);
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

}  // namespace kvd::server
