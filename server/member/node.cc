// The Node facade: open() (data dir, recovery, the WAL writer) and each public call, posted to
// the member's strand as a task on Core (core.h). Plain gets are the exception: they read the
// store on the caller's thread under the shared lock.
#include "server/member/core.h"

#include <algorithm>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/ids.h"
#include "common/data_dir.h"
#include "common/private_dir.h"
#include "common/poll_until.h"

namespace kvd::server {

namespace fs = std::filesystem;

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
  const fs::path member_dir = fs::path(config.data_dir) / data_dir::kMemberDir;
  for (std::string_view etcd_dir : {data_dir::kEtcdWalDir, data_dir::kEtcdSnapDir}) {
    std::error_code ec;
    if (fs::exists(member_dir / etcd_dir, ec)) {
      return Status::error("data dir " + config.data_dir + " holds an etcd member (" +
                           (member_dir / etcd_dir).string() +
                           " exists); kvd cannot read etcd's files: use an empty data dir");
    }
  }
  // 0700 all the way down, as etcd: the log holds every value and the auth records.
  const std::string db_dir = (member_dir / data_dir::kRaftLogDir).string();
  if (Status st = make_private_dirs(db_dir); !st.is_ok()) {
    return Status::error("cannot create " + db_dir + ": " + st.message());
  }
  auto opened = storage::RaftLog::open(db_dir);
  if (!opened.is_ok()) return opened.status();

  auto core = std::make_shared<Core>(io, std::move(config), std::move(opened.value()), db_dir);
  {
    std::lock_guard lock(core->mu);
    // An image being written when the process died is of no use: the snapshot it belonged
    // to was never recorded.
    core->image_dir = member_dir.string();
    std::error_code ec;
    for (auto it = fs::directory_iterator(member_dir, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.starts_with(data_dir::kSnapshotTmpPrefix) &&
          name.ends_with(data_dir::kSnapshotTmpSuffix)) {
        std::error_code rm;
        fs::remove(it->path(), rm);
      }
    }
    ec.clear();
    if (Status st = core->recover_and_start(); !st.is_ok()) return st;
    core->wal = std::make_unique<WalWriter>(core->log.get(), log_snapshot_saved);
    core->refresh_members_cache();
    if (core->replay_until == 0) {
      SPDLOG_INFO("member {} of cluster {} started at raft index {} term {}, etcd index {}",
                  hex_id(core->member_id), hex_id(core->cluster_id), core->applied, core->term,
                  core->store.index());
    }
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
    if (c.config.initial_election_tick_advance) c.advance_ticks_when_connected(100);
    c.maybe_publish();
    c.pump();
  });
}

void Node::stop() {
  Core& c = *impl_->core;
  {
    std::lock_guard lock(c.mu);
    if (c.stopped.exchange(true)) return;
    c.abandon_image();
    c.image_timer.cancel();
    // Writes what is queued; its completions find the raft core gone and do nothing.
    if (c.wal) c.wal->stop();
    c.raw.reset();
    // The data dir must be free for the next open, even while queued work keeps Core alive.
    c.wal.reset();
    c.log.reset();
  }
  c.run_on_strand([](Core& c) {
    c.tick_timer.cancel();
    c.tick_advance_timer.cancel();
    c.expiry_timer.cancel();
    c.storage_retry_timer.cancel();
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
    SPDLOG_INFO("stopping: handing leadership from {} to {} (term {})", hex_id(c.member_id),
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
                     SPDLOG_INFO("stopping: member {} leads now", hex_id(self->leader_id));
                   } else if (self->raw) {
                     SPDLOG_WARN("stopping: leadership was not handed over in time (no other "
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

void Node::propose_auth(v2::auth::Request req, AuthCallback cb) {
  impl_->core->run_on_strand([req = std::move(req), cb = std::move(cb)](Core& c) mutable {
    if (c.stopped.load() || !c.raw) return cb(raft_error(kStoppedCause));
    if (c.write_error) return cb(raft_error(*c.write_error));
    v2::Command cmd;
    cmd.op = v2::Op::kAuth;
    cmd.request_id = c.new_request_id();
    cmd.now_ns = now_ns();
    cmd.value = v2::auth::encode_request(req);
    Core::Waiter w;
    w.kind = Core::Waiter::Kind::kAuth;
    w.auth_cb = std::move(cb);
    w.deadline = SteadyClock::now() + c.request_timeout;
    c.propose_waited(cmd.request_id, std::move(w), v2::encode(cmd));
  });
}

std::shared_ptr<const v2::auth::AuthState> Node::auth_state() const {
  return impl_->core->auth_state.load();
}

bool Node::auth_enabled() const { return impl_->core->auth_enabled.load(std::memory_order_acquire); }

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

void Node::backup(BackupCallback cb) {
  impl_->core->run_on_strand([cb = std::move(cb)](Core& c) mutable {
    if (c.stopped.load() || !c.log) return cb(Status::error(kStoppedCause));
    std::thread([log = c.log, member = c.member_id, cluster = c.cluster_id,
                 token = c.cluster_token, cb = std::move(cb)] {
      auto got = read_backup(*log);
      if (got.is_ok()) {
        got.value().member_id = member;
        got.value().cluster_id = cluster;
        got.value().cluster_token = token;
      }
      cb(std::move(got));
    }).detach();
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
      SPDLOG_DEBUG("raft refused a peer message: {}", raft::to_string(err));
    }
    c.schedule_pump();
  });
}

void Node::step_snapshot(raft::Message m, std::string data) {
  impl_->core->run_on_strand([m = std::move(m), data = std::move(data)](Core& c) mutable {
    if (!c.raw || !m.snapshot) return;
    m.snapshot->data = std::move(data);
    SPDLOG_INFO("received snapshot at index {} (term {}) from member {}",
                 m.snapshot->metadata.index, m.snapshot->metadata.term, hex_id(m.from));
    if (raft::Error err = c.raw->step(std::move(m)); err != raft::Error::kOk) {
      SPDLOG_WARN("raft refused a snapshot: {}", raft::to_string(err));
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
    SPDLOG_CRITICAL("this member ({}) has been permanently removed from the cluster (member {} "
                     "refused it as removed); it stops serving. Its data dir must be removed "
                     "before it can join again",
                     hex_id(c.member_id), hex_id(peer));
    if (c.config.on_removed) c.config.on_removed();
  });
}

std::vector<MemberInfo> Node::members() const {
  std::lock_guard lock(impl_->core->cache_mu);
  return impl_->core->members_cache;
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
    info.store_stats = c.store.stats();
    info.watchers = c.store.watcher_count();
    info.status = c.status();
    info.wal_append_calls = c.wal ? c.wal->append_calls() : 0;
    info.wal_loop_writes = c.wal ? c.wal->claimed_writes() : 0;
    info.stepped_snapshots = c.stepped_snapshots_saved.load();
    if (info.is_leader && c.link.stats) info.follower_stats = c.link.stats();
    info.applied = c.applied;
    info.leader_changes = c.leader_changes;
    info.proposals_pending = c.waiters.size();
    info.proposals_failed = c.proposals_failed;
    if (auto v = c.store.internal().find(std::string(kVersionKey)); v != c.store.internal().end()) {
      info.cluster_version = v->second;
    }
    cb(std::move(info));
  });
}

uint64_t Node::member_id() const { return impl_->core->member_id; }

uint64_t Node::cluster_id() const { return impl_->core->cluster_id; }

}  // namespace kvd::server
