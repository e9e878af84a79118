// The member's raft loop (Raft thesis §10.2.1 and raft/raw_node.h's contract): on the strand,
// take a Ready, apply its committed entries (apply.cc; raft hands out only entries persisted
// before), have the WAL thread persist its entries and hard state with one fsync (group commit:
// everything proposed meanwhile goes out in the next Ready), then send the messages that depend
// on them through the PeerLink and advance. While that fsync runs, entries committed meanwhile
// (a follower's acknowledgement of an earlier Ready reaching the leader) are applied and
// answered at once instead of after it. Also the ticks and the proposals (with their retries
// while there is no leader).
#include "server/member/core.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <utility>

#include <spdlog/spdlog.h>

#include "common/ids.h"

namespace kvd::server {

namespace {

// What a Ready must have on disk before its messages go and it is finished: entries, a
// snapshot, or a hard state raft wants synced (a vote, a term). A new commit index alone may be
// written lazily (raw_node.h, step 1).
bool persists(const raft::Ready& rd) {
  return rd.snapshot || !rd.entries.empty() || rd.must_sync;
}

// A leader's append without entries: it tells a follower the new commit index (or probes it).
bool commit_notice(const raft::Message& m) {
  return m.type == raft::MessageType::kApp && m.entries.empty();
}

}  // namespace

void Core::note_ready(const raft::Ready& rd) {
  if (rd.hard_state) {
    term = rd.hard_state->term;
    committed = std::max(committed, rd.hard_state->commit);
  }
  if (rd.snapshot) committed = std::max(committed, rd.snapshot->metadata.index);
  if (rd.soft_state) {
    const raft::SoftState& ss = *rd.soft_state;
    if (ss.lead != leader_id) {
      const auto now = SteadyClock::now();
      if (ss.lead != raft::kNoNode) {
        ++leader_changes;
        const auto without = leaderless_since ? now - *leaderless_since : SteadyClock::duration{};
        if (leaderless_reported) {
          // The log said there was none: say for how long, and that it is over.
          KVD_LOG_EVENT(INFO, "raft: " + hex_id(member_id) + " elected leader " +
                                  hex_id(ss.lead) + " at term " + std::to_string(term) +
                                  ": the cluster has a leader again",
                        logev::dur("without-leader", without));
        } else {
          SPDLOG_INFO("raft: {} elected leader {} at term {}", hex_id(member_id),
                      hex_id(ss.lead), term);
        }
        leader_since = Clock::now();
        leaderless_since.reset();
        leaderless_reported = false;
      } else {
        SPDLOG_INFO("raft: {} lost leader {} at term {}", hex_id(member_id), hex_id(leader_id),
                     term);
        leaderless_since = now;
        next_leaderless_report = now + kNoLeaderFirstReport;
      }
    }
    leader_id = ss.lead;
    role = ss.role;
    stats_become_leader();
  }
}

// Takes the next Ready, if any and none is in flight, hands its persistent part to the WAL
// thread and applies its committed entries; finish_ready() does the rest (on the strand) once it
// is on disk. While one is in flight, applies what was committed meanwhile. Never calls
// finish_ready() itself: a Ready with nothing to persist is finished by a posted task, so that
// pump() may run in the middle of finish_ready() (see there).
void Core::pump() {
  if (raw) issue_reads();
  if (!raw) return;
  if (ready_in_flight) {
    // The leader learns a commit from a follower's acknowledgement while its next Ready's fsync
    // runs (under load, most commits arrive so): its entries were persisted by an earlier Ready
    // and are answered now rather than ~one fsync later.
    raft::Committed meanwhile = raw->take_committed();
    if (meanwhile.empty()) return;
    take_read_states(meanwhile.read_states);
    apply_committed(meanwhile.entries);
    return;
  }
  if (!raw->has_ready()) return;
  auto rd = std::make_shared<raft::Ready>(raw->ready());
  const raft::NodeId leader_before = leader_id;
  note_ready(*rd);
  // Read states need nothing persisted: the reads they release wait only for the apply.
  take_read_states(rd->read_states);
  if (leader_id != leader_before) reissue_reads(/*all=*/true);
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
  // leader counts its own entries towards commitment only once they are on disk
  // (Raft::on_stable, at advance()), and a leader's votes were persisted before it became one.
  if (role == raft::Role::kLeader) send_now(*rd);  // held commit notices wait for finish_ready
  ready_in_flight = true;
  if (!persists(*rd)) {
    // Nothing to wait for: no hard state, or only a new commit index, which raft lets us write
    // lazily (raw_node.h, step 1). It is queued behind the writes before it, unsynced as ever,
    // ahead of the apply below (a restart, and --force-new-cluster, keep what the commit index
    // on disk covers), and the Ready goes on at once: the commit's entries are applied and
    // answered without a round trip through the WAL thread. (A write that fails makes the WAL
    // writer refuse the next one, which goes the storage_failed() way; a lost commit index is
    // learnt again.)
    if (rd->hard_state) queue_commit_index(*rd->hard_state);
    run_on_strand([rd](Core& c) {
      if (c.raw) c.finish_ready(*rd);
    });
  } else {
    persist_ready(rd);
  }
  // The committed entries were persisted by earlier Readies (raw_node.h, step 3): applied now,
  // while this Ready's fsync runs (etcd applies in another goroutine for the same reason). A
  // leader's commit notices held in rd go after these answers (finish_ready).
  apply_committed(rd->committed_entries);
}

void Core::queue_commit_index(const raft::HardState& hs) {
  auto rd = std::make_shared<raft::Ready>();
  rd->hard_state = hs;
  auto done = [](Status st) {
    if (!st.is_ok()) SPDLOG_DEBUG("writing the commit index failed: {}", st.message());
  };
  // Unsynced, it costs a few microseconds: written here when the WAL thread is idle, rather than
  // waking it for that.
  if (wal->claim()) return wal->write_claimed(*rd, done);
  wal->persist(rd, done);
}

void Core::persist_ready(std::shared_ptr<raft::Ready> rd) {
  std::weak_ptr<Core> weak = weak_from_this();
  WalWriter::Done done = [weak, rd](Status st) {
    auto self = weak.lock();
    if (!self) return;
    self->run_on_strand([rd, st = std::move(st)](Core& c) {
      if (!c.raw) return;
      if (!st.is_ok()) return c.storage_failed(rd, st);
      if (c.write_error) {
        SPDLOG_WARN("the raft log accepts writes again: this member takes writes again");
        c.write_error.reset();
        c.failed_ready.reset();
      }
      c.finish_ready(*rd);
    });
  };
  // A Ready of one entry (kLoopWriteMaxEntries) while at most one request waits and the WAL
  // thread is idle (a lone client's write, a follower's append of one) is written on this
  // loop's thread, outside the strand's lock so that plain reads go on: the loop serves nothing
  // else during that fsync, but a lone write spares the two thread wake-ups of the hand-off.
  // Under load the WAL thread writes the batches, in parallel with the applying and the reading
  // of the next requests.
  if (!rd->snapshot && rd->entries.size() <= kLoopWriteMaxEntries &&
      waiters.size() <= kLoopWriteMaxEntries && wal->claim()) {
    boost::asio::post(strand.get_inner_executor(),
                      [self = shared_from_this(), rd, done = std::move(done)] {
                        std::shared_lock lock(self->mu);
                        // Gone: Node::stop() abandoned the claim.
                        if (self->wal) self->wal->write_claimed(*rd, done);
                      });
    return;
  }
  bool queued = wal->persist(rd, std::move(done));
  if (!queued) storage_failed(rd, Status::error(wal_refusal()));
}

std::string Core::wal_refusal() const {
  std::string why = wal->refusal();
  // Empty if a resume() cleared the failure in between, or if only the image thread had
  // stopped: the general words then.
  return why.empty() ? std::string(WalWriter::kStopped) : why;
}

// A Ready that could not be written stays in flight: raft takes nothing further until it is on
// disk (nothing it promised was sent, except a leader's appends, which promise nothing), so the
// member neither acknowledges nor applies anything meanwhile, and it retries the same Ready until
// the log accepts it (a full disk freed, a transient I/O error). Requests already proposed wait
// for that or time out (their outcome is then unknown, as for any timeout); new writes, quorum
// reads and membership changes are refused at once with the error; plain reads go on.
void Core::storage_failed(std::shared_ptr<raft::Ready> rd, const Status& st) {
  if (!write_error) {
    SPDLOG_ERROR("writing the raft log failed: {}; writes are refused until it works again "
                  "(retried every {} ms)",
                  st.message(), kStorageRetryInterval.count());
  }
  write_error = "etcdserver: " + st.message();
  failed_ready = std::move(rd);
  stalled.clear();
  run_after(storage_retry_timer, kStorageRetryInterval, [](Core& c) { c.retry_storage(); });
}

void Core::retry_storage() {
  if (!failed_ready) return;
  std::weak_ptr<Core> weak = weak_from_this();
  bool queued = wal->resume([weak](Status st) {
    auto self = weak.lock();
    if (!self) return;
    self->run_on_strand([st = std::move(st)](Core& c) {
      if (!c.raw || !c.failed_ready) return;
      if (!st.is_ok()) {
        SPDLOG_DEBUG("the raft log still refuses writes: {}", st.message());
        return c.run_after(c.storage_retry_timer, kStorageRetryInterval,
                           [](Core& c) { c.retry_storage(); });
      }
      c.persist_ready(c.failed_ready);
    });
  });
  if (!queued) SPDLOG_WARN("the raft log is stopped: the write that failed is not retried");
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
  // Persisted: now the messages that promise it may go (Raft paper Figure 2). A Ready that
  // persisted nothing promises nothing; of its messages, a leader's commit notices (appends
  // without entries) go after its committed entries were applied (pump), so that the answers
  // to the requests they commit leave first: sent before, a lone write's answer waited ~45 us
  // for two sends on loopback and then for the cores the woken followers took. The rest go at
  // once: appends with entries keep replication going under load, and heartbeats and their
  // answers confirm quorum reads.
  // (A Ready taken by the pump() below may send its appends with entries before these
  // notices: a follower answers an append older than what it has with its own position, and the
  // leader ignores that answer.)
  send_now(rd);
  std::vector<raft::Message> notices = std::move(rd.messages);
  if (rd.snapshot && !apply_snapshot(*rd.snapshot)) {
    SPDLOG_CRITICAL("apply: the snapshot at index {} from the leader holds a corrupt store image",
                     rd.snapshot->metadata.index);
    std::abort();
  }
  // The next Ready goes to the WAL thread, and what this one's entries committed (a lone
  // member's, commonly) is applied meanwhile: pump().
  raw->advance();
  ready_in_flight = false;
  const uint64_t applied_before = applied;
  pump();
  send_messages(std::move(notices));
  if (applied == applied_before) after_apply();  // else pump's apply_committed() ran it
  schedule_pump();
}

void Core::apply_committed(const std::vector<raft::Entry>& ents) {
  if (ents.empty()) return;
  for (const auto& e : ents) {
    if (e.index <= applied) continue;  // covered by a snapshot installed before
    if (e.index != applied + 1) {
      SPDLOG_CRITICAL("apply: entry {} committed after {}: log order broken", e.index, applied);
      std::abort();
    }
    if (!apply_entry(e)) {
      SPDLOG_CRITICAL("apply: raft entry {} (term {}) holds undecodable data: our own log is "
                       "corrupt",
                       e.index, e.term);
      std::abort();
    }
  }
  after_apply();
}

void Core::after_apply() {
  serve_reads();
  if (members_dirty) {
    sync_peers();
    refresh_members_cache();
  }
  note_replayed();
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
}

// Only while requests wait here: a write proposed through a follower is answered by the
// follower once a notice tells it the commit, and with nothing to answer here first, holding
// the notices back would only delay that.
bool Core::holds_notices(const raft::Ready& rd) const {
  return !persists(rd) && !waiters.empty();
}

void Core::send_now(raft::Ready& rd) {
  if (!holds_notices(rd)) return send_messages(std::exchange(rd.messages, {}));
  // The notices stay in rd.messages and the rest go now, each group in its order.
  auto rest = std::stable_partition(rd.messages.begin(), rd.messages.end(), commit_notice);
  std::vector<raft::Message> now(std::make_move_iterator(rest),
                                 std::make_move_iterator(rd.messages.end()));
  rd.messages.erase(rest, rd.messages.end());
  send_messages(std::move(now));
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
    SPDLOG_INFO("sending snapshot at index {} to member {}", m.snapshot->metadata.index,
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

std::string Core::reachable_voters() const {
  if (!raw) return "";
  const auto& voters = raw->raft().conf_state().voters;
  size_t reached = 0;
  for (uint64_t id : voters) {
    if (id == member_id || (link.connected && link.connected(id))) ++reached;
  }
  return std::to_string(reached) + " of " + std::to_string(voters.size()) +
         " voting members (a quorum is " + std::to_string(voters.size() / 2 + 1) + ")";
}

void Core::report_leaderless() {
  if (leader_id != raft::kNoNode || !leaderless_since) return;
  const auto now = SteadyClock::now();
  if (now < next_leaderless_report) return;
  next_leaderless_report = now + kNoLeaderReport;
  leaderless_reported = true;
  KVD_LOG_EVENT(WARN, "no leader: writes and quorum reads cannot complete",
                logev::dur("for", now - *leaderless_since), logev::num("term", raw->raft().term()),
                logev::str("reachable", reachable_voters()),
                logev::num("pending-requests", waiters.size()));
}

void Core::note_replayed() {
  if (replay_until == 0 || applied < replay_until) return;
  replay_until = 0;
  KVD_LOG_EVENT(INFO,
                "member " + hex_id(member_id) + " caught up with its log: applied index " +
                    std::to_string(applied) + ", etcd index " + std::to_string(store.index()),
                logev::dur("took", SteadyClock::now() - replay_start));
}

void Core::schedule_tick() {
  run_after(tick_timer, config.heartbeat_interval, [](Core& c) { c.on_tick(); });
}

// etcd's initial election tick advance (NodeConfig::initial_election_tick_advance): polled
// every 50 ms for up to 5 s (etcd's bound), on the strand.
void Core::advance_ticks_when_connected(int polls_left) {
  if (raw->raft().lead() != raft::kNoNode) return;  // a leader was heard from: nothing to gain
  const auto& voters = raw->raft().conf_state().voters;
  const int election_ticks = static_cast<int>(config.election_timeout / config.heartbeat_interval);
  size_t connected = 1;  // this member
  for (uint64_t id : voters) {
    if (id != member_id && link.connected && link.connected(id)) ++connected;
  }
  // A cluster being founded has had no leader, and every member starts at the same term with
  // the same log: the member with the lowest id calls the first election as soon as it reaches
  // every voter, instead of waiting out a random timeout (any member may campaign at any time
  // in Raft; one chosen member avoids split votes). The others advance as below and vote.
  if (founding && voters.size() > 1 && connected == voters.size() &&
      raw->raft().term() <= 1 && member_id == *std::min_element(voters.begin(), voters.end())) {
    raw->campaign();
    pump();
    return;
  }
  if (voters.size() <= 1 || connected >= voters.size() / 2 + 1) {
    // A lone member may campaign at the next tick; with peers, two ticks short of the
    // election timeout leave a leader's heartbeat time to arrive first.
    const int ticks = election_ticks - (voters.size() <= 1 ? 1 : 2);
    for (int i = 0; i < ticks; ++i) raw->tick();
    pump();
    return;
  }
  if (polls_left <= 0) return;
  run_after(tick_advance_timer, std::chrono::milliseconds(50),
            [polls_left](Core& c) { c.advance_ticks_when_connected(polls_left - 1); });
}

void Core::on_tick() {
  raw->tick();
  report_leaderless();
  expire_waiters();
  reissue_reads(/*all=*/false);
  maybe_publish();
  pump();
  schedule_tick();
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
  propose_waited(id, std::move(w), v2::encode(cmd));
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
  propose_waited(id, std::move(w), v2::encode(cmd));
  return id;
}

}  // namespace kvd::server
