"""Multi-member clusters for end-to-end tests, built on harness.py: N kvd members (or N etcd
members, through the same code) on free 127.0.0.1 ports with short raft timings; find the leader,
kill (SIGKILL or SIGTERM) and restart members by PID, poll for conditions with bounded deadlines,
and print every member's log tail when something failed.

    with cluster.Cluster("kvd", 3) as c:
        lead = c.leader()
        c.kill(lead)
        c.wait_for(lambda: c.leader(among=c.running(), timeout=0), 5, "a new leader")

Standard library only. Every wait is a poll with a deadline; none sleeps to synchronise.
Set KVD_E2E_KEEP_LOGS=<dir> to keep every member's full log there after the test.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Raft timings for test clusters. 100/1000 ms (etcd's defaults) rather than shorter: on a loaded
# two-core machine a 500 ms election timeout sometimes fires under a compile, and every test
# bound below scales with it anyway.
HEARTBEAT_MS = 100
ELECTION_MS = 1000
# etcd's request timeout (v2-cluster-api.md §7): what a write waits before 300 "request timed out".
REQUEST_TIMEOUT_S = 5 + 2 * ELECTION_MS / 1000
POLL_S = 0.02


def wait_for(pred, timeout, what=None):
    """Polls pred() until it returns a true value or `timeout` seconds pass; returns the last
    value (so a falsy result means the deadline passed). pred may raise OSError (a member that is
    down): that counts as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except OSError:
            v = None
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(POLL_S)


def put(m, key, value, timeout=REQUEST_TIMEOUT_S + 8, query=""):
    q = ("?" + query) if query else ""
    return harness.request("PUT", f"{m.url}/v2/keys/{key.lstrip('/')}{q}",
                           body=urllib.parse.urlencode({"value": value}), timeout=timeout)


def get(m, key, quorum=False, timeout=REQUEST_TIMEOUT_S + 8, query=""):
    params = [p for p in (("quorum=true" if quorum else ""), query) if p]
    q = ("?" + "&".join(params)) if params else ""
    return harness.request("GET", f"{m.url}/v2/keys/{key.lstrip('/')}{q}", timeout=timeout)


def get_json(m, path, timeout=5.0):
    """GET m.url + path; (status, decoded JSON or None, raw body)."""
    status, _, body = harness.request("GET", m.url + path, timeout=timeout)
    try:
        return status, json.loads(body), body
    except ValueError:
        return status, None, body


class Cluster:
    """N members of one kind ("kvd" or "etcd") bootstrapped together. Owns their processes and
    one work dir; cleanup() kills what still runs (by PID) and removes the work dir. As a context
    manager it prints the members' log tails when the block raises or, given `results`
    (harness.Results), when a check failed inside the block."""

    def __init__(self, kind, n=3, token=None, snapshot_count=None, extra_args=(),
                 heartbeat_ms=HEARTBEAT_MS, election_ms=ELECTION_MS, prefix=None, results=None):
        self.kind = kind
        self.results = results
        self.failed_before = 0
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.workdir = tempfile.mkdtemp(prefix=f"{prefix or kind}-cluster-")
        self.token = token or f"tok-{os.getpid()}-{random.randrange(1 << 30)}"
        self.snapshot_count = snapshot_count
        self.extra_args = list(extra_args)
        self.members = [harness.Member(kind, name=f"{kind}{i}", workdir=self.workdir)
                        for i in range(n)]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.extra_args = self.member_args(self.initial_cluster, "new")
        self.ids = {}  # member name -> hex id, learnt from /v2/stats/self

    def member_args(self, initial_cluster, state):
        a = ["--initial-cluster", initial_cluster, "--initial-cluster-state", state,
             "--initial-cluster-token", self.token,
             "--heartbeat-interval", str(self.heartbeat_ms),
             "--election-timeout", str(self.election_ms)]
        if self.snapshot_count is not None:
            a += ["--snapshot-count", str(self.snapshot_count)]
        return a + self.extra_args

    # --- processes ---

    def spawn(self, m):
        """Starts m's process without waiting for it (log appended to m.log_path)."""
        with open(m.log_path, "ab") as log:
            m.proc = subprocess.Popen(m.args(), stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        return m

    def start(self, timeout=40.0):
        """Starts every member at once (a bootstrap needs a quorum up) and waits until each
        answers /health with 200 and knows its own id."""
        for m in self.members:
            self.spawn(m)
        for m in self.members:
            m.wait_ready(timeout)
        for m in self.members:
            self.learn_id(m)
        return self

    def learn_id(self, m):
        status, j, body = get_json(m, "/v2/stats/self")
        if status != 200 or not j:
            raise RuntimeError(f"{m.name}: /v2/stats/self answered {status} {body[:200]!r}")
        self.ids[m.name] = j["id"]
        return j["id"]

    def new_member_slot(self, name):
        """A Member with free ports in this cluster's work dir, not started: its peer URL is what
        `member add` needs. Start it with join()."""
        return harness.Member(self.kind, name=name, workdir=self.workdir)

    def join(self, m, initial_cluster, timeout=40.0):
        """Starts m as a new member of the running cluster (--initial-cluster-state existing,
        after `member add`), waits until it is healthy and learns its id."""
        m.extra_args = self.member_args(initial_cluster, "existing")
        if m not in self.members:
            self.members.append(m)
        self.spawn(m)
        m.wait_ready(timeout)
        self.learn_id(m)
        return m

    def kill(self, m, sig=signal.SIGKILL):
        m.kill(sig)

    def restart(self, m, wait=True, timeout=40.0):
        """Starts m again from its data dir (same flags; initial-cluster flags are then ignored)."""
        self.spawn(m)
        if wait:
            m.wait_ready(timeout)
        return m

    def running(self):
        return [m for m in self.members if m.proc is not None and m.proc.poll() is None]

    def by_id(self, hex_id):
        for m in self.members:
            if self.ids.get(m.name) == hex_id:
                return m
        return None

    # --- raft state ---

    @staticmethod
    def leader_id_of(m, timeout=2.0):
        """The leader id m reports on /v2/members/leader, or None (no leader, or m is down)."""
        try:
            status, j, _ = get_json(m, "/v2/members/leader", timeout=timeout)
        except OSError:
            return None
        return j["id"] if status == 200 and j else None

    def agreed_leader(self, among=None):
        """The member every member of `among` (default: the running ones) names as leader, if
        they all agree and it is one of them; else None."""
        ms = among if among is not None else self.running()
        if not ms:
            return None
        ids = {self.leader_id_of(m) for m in ms}
        if len(ids) != 1 or None in ids:
            return None
        lead = self.by_id(ids.pop())
        return lead if lead in ms else None

    def leader(self, among=None, timeout=None):
        """Waits (bounded; default three election timeouts + 5 s) for an agreed leader."""
        if timeout is None:
            timeout = 3 * self.election_ms / 1000 + 5
        return wait_for(lambda: self.agreed_leader(among), timeout)

    def followers(self, lead):
        return [m for m in self.running() if m is not lead]

    # --- data ---

    @staticmethod
    def dump(m, timeout=10.0):
        """Full recursive, sorted GET of / on m: (X-Etcd-Index, node tree) or None if m is down."""
        try:
            status, hdrs, body = harness.request(
                "GET", m.url + "/v2/keys/?recursive=true&sorted=true", timeout=timeout)
        except OSError:
            return None
        if status != 200:
            return None
        return int(hdrs.get("x-etcd-index", "-1")), json.loads(body)["node"]

    def converged(self, among=None, timeout=20.0):
        """Waits until every member of `among` returns the same dump; returns it or None."""
        ms = among if among is not None else self.running()

        def same():
            dumps = [self.dump(m) for m in ms]
            if any(d is None for d in dumps):
                return None
            return dumps[0] if all(d == dumps[0] for d in dumps) else None
        return wait_for(same, timeout)

    # --- diagnostics and cleanup ---

    def dump_logs(self, chars=3000):
        for m in self.members:
            state = "not started" if m.proc is None else (
                "running" if m.proc.poll() is None else f"exited {m.proc.returncode}")
            print(f"--- {self.kind} {m.name} ({self.ids.get(m.name, '?')}, {state}) log tail ---")
            print(m.read_log()[-chars:], flush=True)

    def cleanup(self):
        for m in self.members:
            m.kill()
        keep = os.environ.get("KVD_E2E_KEEP_LOGS")  # a dir: copy every member's log there
        if keep:
            os.makedirs(keep, exist_ok=True)
            for m in self.members:
                if os.path.exists(m.log_path):
                    shutil.copy(m.log_path, os.path.join(keep, f"{self.kind}-{m.name}.log"))
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        if self.results is not None:
            self.failed_before = self.results.failed
        try:
            return self.start()
        except BaseException:
            self.dump_logs()
            self.cleanup()
            raise

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or (self.results is not None and
                                    self.results.failed > self.failed_before):
            self.dump_logs()
        self.cleanup()


def index_of(tree):
    """Flattens a recursive GET's node tree into {key: value} for files (dirs omitted)."""
    out = {}

    def walk(n):
        if n.get("dir"):
            for c in n.get("nodes", []) or []:
                walk(c)
        else:
            out[n["key"]] = n.get("value")
    walk(tree)
    return out


class Writers:
    """Client threads writing unique keys (/<prefix>/t<thread>/<seq> = random value) through the
    given members in turn until stop(). Records each write's outcome: acknowledged (200/201:
    must survive), refused by a down member (never sent), or unknown (timeout, 5xx: may or may
    not have been applied, as with etcd)."""

    def __init__(self, members, threads=4, prefix="load", timeout=REQUEST_TIMEOUT_S + 8):
        self.members = list(members)
        self.prefix = prefix
        self.timeout = timeout
        self.acked = {}    # key -> value
        self.unknown = {}  # key -> value
        self.errors = []   # (key, what) for unknown outcomes, for the report
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True)
                        for t in range(threads)]
        self.last_ack = time.monotonic()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self, t):
        rnd = random.Random(t)
        seq = 0
        turn = t
        while not self.stopping.is_set():
            m = self.members[turn % len(self.members)]
            turn += 1
            key = f"/{self.prefix}/t{t}/{seq:06d}"
            value = f"{rnd.randrange(1 << 40):x}"
            try:
                status, _, body = put(m, key, value, timeout=self.timeout)
            except ConnectionRefusedError:
                time.sleep(POLL_S)  # member down: nothing was sent; try the next one
                continue
            except OSError as e:
                status, body = None, str(e).encode()
            seq += 1
            ok = status in (200, 201)
            with self.lock:
                if ok:
                    self.acked[key] = value
                    self.last_ack = time.monotonic()
                else:
                    self.unknown[key] = value
                    self.errors.append((key, f"{m.name}: {status} {body[:120]!r}"))
            if not ok:
                time.sleep(POLL_S)

    def count(self):
        with self.lock:
            return len(self.acked)

    def wait_acks(self, n, timeout):
        """Waits until n more writes than now are acknowledged; returns whether they were."""
        target = self.count() + n
        return bool(wait_for(lambda: self.count() >= target, timeout))

    def stop(self, timeout=None):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout if timeout is not None else self.timeout + 5)

    def missing(self, tree):
        """Acknowledged writes absent from (or different in) a recursive dump's tree."""
        have = index_of(tree)
        return {k: v for k, v in self.acked.items() if have.get(k) != v}
