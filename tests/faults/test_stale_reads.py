#!/usr/bin/env python3
"""No stale quorum read under partitions. kvd answers `GET /v2/keys/K?quorum=true` by Raft
ReadIndex (server/member/read_index.cc: the leader confirms its leadership with a heartbeat
round, a follower asks the leader for the read index, and the read is answered once the member
has applied it); etcd 3.4, the oracle, sends the read through the log. Three members, each in a
network namespace of its own (netns.py, nscluster.py), driven from the client namespace, with
short raft timings (heartbeat 50 ms, election 500 ms: the members' request timeout is then
5 s + 2 x 0.5 s = 6 s). For kvd, then for etcd (if installed):

 1. Isolated old leader. /k = v1 on every member; the leader is isolated; the majority elects a
    new leader (bounded wait) and takes /k = v2. A quorum GET at the old leader must not answer
    (error or timeout; a 200 would be stale: it cannot know v2), while its plain GET may serve
    v1 (recorded, not required). Healed, a quorum GET at every member returns v2.
 2. Isolated follower. A follower is isolated and /k = v3 is written through the majority; a
    quorum GET at the follower must not answer (it cannot reach the leader); healed, its
    quorum GET returns v3 within a bounded wait.
 3. Concurrency, during scenario 1's partition: reader threads issue quorum GETs of /counter
    at all three members while a writer increments /counter through the new leader. Real-time
    order: every read that succeeds returns a value >= the last value acknowledged to the
    writer before the read started (/counter = 0 on every member before the partition, so a
    stale read at the old leader would return 0, or less than the acknowledged value).

Any stale answer is printed with its member, times, the acknowledged value and the answer, and
the member log tails follow (Cluster's context manager on a failed check).

Needs root, iproute2 and iptables (exit 77, a skip, without them). Every wait is a poll or a
join with a deadline; the only sleep is the length of the concurrent phase (a duration).
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
import nscluster  # noqa: E402  (puts tests/e2e on the path)
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()

HEARTBEAT_MS = 50
ELECTION_MS = 500
MEMBER_TIMEOUT_S = 5 + 2 * ELECTION_MS / 1000  # the members' request timeout (kvd and etcd)
ISOLATED_READ_TIMEOUT_S = MEMBER_TIMEOUT_S + 3  # the member's own answer arrives first
READ_TIMEOUT_S = 2.5      # one quorum GET of the concurrent phase, and one poll after a heal
WRITE_TIMEOUT_S = 10.0
CONCURRENT_S = 4.0        # length of scenario 3's reads and writes
READERS_PER_MEMBER = 2
HEAL_BOUND_S = 20.0       # a quorum GET answers with the latest value within this of a heal


class Clock:
    """Prints each step with the seconds since the start of the kind's run."""

    def __init__(self, kind):
        self.kind = kind
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0

    def step(self, text):
        print(f"[{self.kind} {self.now():6.2f} s] {text}", flush=True)


def value_of(body):
    try:
        return json.loads(body)["node"].get("value")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def describe(status, hdrs, body, took):
    idx = hdrs.get("x-etcd-index", "-") if hdrs else "-"
    what = "transport error/timeout" if status is None else f"status {status}"
    return f"{what} after {took:.2f} s, X-Etcd-Index {idx}: {body[:110]!r}"


def timed_get(m, key, quorum, timeout):
    t = time.monotonic()
    status, hdrs, body = harness.get(m, key, quorum=quorum, timeout=timeout, catch=True)
    return status, hdrs, body, time.monotonic() - t


def all_serve(c, key, value, quorum, timeout):
    """Waits (bounded) until every member answers `value` at key (quorum or local GET);
    returns the seconds it took, or None."""
    t = time.monotonic()
    pending = list(c.members)

    def done():
        for m in list(pending):
            status, _, body = harness.get(m, key, quorum=quorum, timeout=READ_TIMEOUT_S,
                                          catch=True)
            if status == 200 and value_of(body) == value:
                pending.remove(m)
        return not pending
    return time.monotonic() - t if harness.wait_for(done, timeout) else None


def put_ok(kind, m, key, value, what):
    status, _, body = harness.put(m, key, value, timeout=WRITE_TIMEOUT_S, catch=True)
    return R.check(status in (200, 201),
                   f"{kind}: {what}: PUT {key}={value} via {m.name}: {status} {body[:120]!r}")


class Concurrent:
    """Scenario 3: one writer incrementing /counter through `writer_member`, READERS_PER_MEMBER
    reader threads per member issuing quorum GETs of /counter; each successful read is checked
    against the last value acknowledged before it started."""

    def __init__(self, kind, members, writer_member, clock):
        self.kind, self.members, self.writer_member, self.clock = kind, members, writer_member, clock
        self.lock = threading.Lock()
        self.acked = 0          # /counter = 0 acknowledged before the partition
        self.acks = [(0.0, 0)]  # (time of ack, value), for a report
        self.write_errors = []
        self.checked = {m.name: 0 for m in members}
        self.failed_reads = {m.name: 0 for m in members}
        self.stale = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.write, daemon=True, name="counter-writer")]
        for m in members:
            for i in range(READERS_PER_MEMBER):
                self.threads.append(threading.Thread(target=self.read, args=(m,), daemon=True,
                                                     name=f"reader-{m.name}-{i}"))

    def write(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            status, _, body = harness.put(self.writer_member, "/counter", str(n),
                                          timeout=WRITE_TIMEOUT_S, catch=True)
            if status in (200, 201):
                with self.lock:
                    self.acked = max(self.acked, n)
                    self.acks.append((self.clock.now(), n))
            else:
                self.write_errors.append(f"{n}: {status} {body[:80]!r}")

    def read(self, m):
        while not self.stop.is_set():
            with self.lock:
                floor = self.acked
            start = self.clock.now()
            status, hdrs, body = harness.get(m, "/counter", quorum=True, timeout=READ_TIMEOUT_S,
                                             catch=True)
            end = self.clock.now()
            if status not in (200, 404):  # an error or timeout: no answer to check
                with self.lock:
                    self.failed_reads[m.name] += 1
                continue
            v = value_of(body) if status == 200 else None  # 404: /counter missing, stale
            got = int(v) if v is not None and v.lstrip("-").isdigit() else -1
            with self.lock:
                self.checked[m.name] += 1
                if got < floor:
                    self.stale.append(f"{m.name}: read [{start:.3f}, {end:.3f}] s answered "
                                      f"{describe(status, hdrs, body, end - start)}; value "
                                      f"{got} < {floor}, acknowledged before the read started")

    def run(self):
        for t in self.threads:
            t.start()
        time.sleep(CONCURRENT_S)  # the phase's length, a duration: no synchronisation
        self.stop.set()
        for t in self.threads:
            t.join(WRITE_TIMEOUT_S + 2)
        alive = [t.name for t in self.threads if t.is_alive()]
        R.check(not alive, f"{self.kind}: scenario 3's threads end: {alive}")

    def report(self, old_leader):
        total = sum(self.checked.values())
        print(f"{self.kind}: scenario 3: {total} quorum reads checked "
              f"({', '.join(f'{k} {v}' for k, v in self.checked.items())}), failed/timed out "
              f"({', '.join(f'{k} {v}' for k, v in self.failed_reads.items())}); "
              f"{self.acked} increments acknowledged, {len(self.write_errors)} not"
              + (f" (e.g. {self.write_errors[0]})" if self.write_errors else ""), flush=True)
        for s in self.stale[:10]:
            print(f"STALE {self.kind}: {s}", flush=True)
        if self.stale:
            print(f"  acknowledgements (s, value), last 10: {self.acks[-10:]}", flush=True)
        R.check(not self.stale, f"{self.kind}: scenario 3: no quorum read older than a write "
                                f"acknowledged before it started ({len(self.stale)} stale)")
        majority_reads = total - self.checked[old_leader.name]
        R.check(majority_reads >= 10 and self.acked >= 5,
                f"{self.kind}: scenario 3 did work: {majority_reads} reads at the majority, "
                f"{self.acked} increments acknowledged")


def scenario(net, kind):
    clock = Clock(kind)
    with nscluster.NsCluster(net, kind, results=R, heartbeat_ms=HEARTBEAT_MS,
                             election_ms=ELECTION_MS) as c:
        lead = c.leader()
        if not R.check(lead is not None, f"{kind}: three members agree on a leader"):
            return
        clock.step(f"formed, leader {lead.name}")

        # --- scenario 1 (with 3 during its partition) ---
        if not (put_ok(kind, lead, "/k", "v1", "scenario 1") and
                put_ok(kind, lead, "/counter", "0", "scenario 3")):
            return
        ok = (all_serve(c, "/counter", "0", quorum=False, timeout=10) is not None and
              all_serve(c, "/k", "v1", quorum=False, timeout=10) is not None)
        if not R.check(ok, f"{kind}: every member serves /k=v1 and /counter=0"):
            return
        old = lead
        net.isolate(old.name)
        clock.step(f"isolated the leader {old.name}")
        majority = [m for m in c.members if m is not old]
        new = c.leader(among=majority)
        if not R.check(new is not None, f"{kind}: the majority elects a new leader"):
            net.heal()
            return
        clock.step(f"new leader {new.name}")
        if not put_ok(kind, new, "/k", "v2", "scenario 1, through the new leader"):
            net.heal()
            return
        clock.step("v2 acknowledged")

        out = {}

        def isolated_reads():
            out["quorum"] = timed_get(old, "/k", True, ISOLATED_READ_TIMEOUT_S)
            out["plain"] = timed_get(old, "/k", False, READ_TIMEOUT_S)
        t = threading.Thread(target=isolated_reads, daemon=True, name="isolated-reads")
        t.start()
        conc = Concurrent(kind, c.members, new, clock)
        conc.run()
        t.join(ISOLATED_READ_TIMEOUT_S + READ_TIMEOUT_S + 2)
        R.check(not t.is_alive(), f"{kind}: the reads at the old leader end")
        q = out.get("quorum", (None, {}, b"(no answer)", 0.0))
        p = out.get("plain", (None, {}, b"(no answer)", 0.0))
        print(f"{kind}: scenario 1: quorum GET /k at isolated old leader {old.name}: "
              f"{describe(*q)}", flush=True)
        print(f"{kind}: scenario 1: plain GET /k there (may be stale): {describe(*p)}",
              flush=True)
        if q[0] == 200:
            print(f"STALE {kind}: quorum GET /k at {old.name} answered 200 value "
                  f"{value_of(q[2])!r} after v2 was acknowledged through {new.name}", flush=True)
        R.check(q[0] != 200, f"{kind}: scenario 1: the isolated old leader {old.name} answers "
                             f"no quorum read ({describe(*q)})")
        conc.report(old)

        net.heal()
        clock.step("healed")
        took = all_serve(c, "/k", "v2", quorum=True, timeout=HEAL_BOUND_S)
        R.check(took is not None, f"{kind}: scenario 1: after the heal a quorum GET at every "
                                  f"member returns v2 within {HEAL_BOUND_S:g} s")
        clock.step(f"quorum GET /k = v2 at every member"
                   + (f" ({took:.2f} s after the heal)" if took is not None else " NOT seen"))

        # --- scenario 2 ---
        lead = c.leader(among=c.members, timeout=HEAL_BOUND_S)
        if not R.check(lead is not None, f"{kind}: one leader again after the heal"):
            return
        follower = c.followers(lead)[0]
        net.isolate(follower.name)
        clock.step(f"leader {lead.name}; isolated the follower {follower.name}")
        if not put_ok(kind, lead, "/k", "v3", "scenario 2, through the leader"):
            net.heal()
            return
        clock.step("v3 acknowledged")
        q = timed_get(follower, "/k", True, ISOLATED_READ_TIMEOUT_S)
        p = timed_get(follower, "/k", False, READ_TIMEOUT_S)
        print(f"{kind}: scenario 2: quorum GET /k at isolated follower {follower.name}: "
              f"{describe(*q)}", flush=True)
        print(f"{kind}: scenario 2: plain GET /k there (may be stale): {describe(*p)}",
              flush=True)
        if q[0] == 200 and value_of(q[2]) != "v3":
            print(f"STALE {kind}: quorum GET /k at {follower.name} answered value "
                  f"{value_of(q[2])!r} after v3 was acknowledged through {lead.name}", flush=True)
        R.check(q[0] != 200, f"{kind}: scenario 2: the isolated follower {follower.name} "
                             f"answers no quorum read ({describe(*q)})")
        net.heal()
        healed = time.monotonic()
        clock.step("healed")

        def fresh():
            status, _, body = harness.get(follower, "/k", quorum=True, timeout=READ_TIMEOUT_S,
                                          catch=True)
            return status == 200 and value_of(body) == "v3"
        ok = harness.wait_for(fresh, HEAL_BOUND_S)
        took = time.monotonic() - healed
        R.check(ok, f"{kind}: scenario 2: after the heal a quorum GET at {follower.name} "
                    f"returns v3 within {HEAL_BOUND_S:g} s")
        clock.step(f"quorum GET /k = v3 at {follower.name} "
                   + (f"{took:.2f} s after the heal" if ok else "NOT seen"))


def run(kind):
    start = time.monotonic()
    with netns.Net(3) as net:
        try:
            net.run_in(scenario, net, kind)
        finally:
            net.heal()  # rules go with the namespaces anyway; a failed scenario may leave them
    left = set(netns.namespaces()) & {net.bridge_ns, *net.ns.values()}
    R.check(not left, f"{kind}: no namespace of the net is left: {sorted(left)}")
    print(f"{kind}: took {time.monotonic() - start:.1f} s", flush=True)


def main():
    netns.start_test(None if os.access(harness.KVD_BIN, os.X_OK)
                     else f"kvd not built at {harness.KVD_BIN} (set KVD_BIN)")
    print(f"binary: {harness.KVD_BIN}", flush=True)
    start = time.monotonic()
    run("kvd")
    if cluster.etcd_half_runs():
        run("etcd")
    print(f"took {time.monotonic() - start:.1f} s", flush=True)
    R.finish()


if __name__ == "__main__":
    main()
