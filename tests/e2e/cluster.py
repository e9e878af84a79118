"""Cluster layer of the end-to-end tests, built on harness.py (see its docstring for the layout of
the harness modules): N kvd members (or N etcd members, through the same code) on free 127.0.0.1
ports with short raft timings; find the leader, kill (SIGKILL or SIGTERM), pause (SIGSTOP,
harness.Process.pause) and restart members by PID, add members, wait for the members to converge,
and print every member's log tail when something failed. Also: ProxyBench (the clusters and proxies
of a proxy test in one work dir), Writers (client threads writing through the members), deploy_env
(the environment of the deploy/ scripts) and the comparison of a test's kvd half with its etcd
half.

    with cluster.Cluster("kvd", 3) as c:
        lead = c.leader()
        c.kill(lead)
        harness.wait_for(lambda: c.leader(among=c.running(), timeout=0), 5)

Standard library only. Every wait is a poll with a deadline; none sleeps to synchronise.
Set KVD_E2E_KEEP_LOGS=<dir> to keep every member's full log there after the test.
"""
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Raft timings for test clusters. 100/1000 ms (etcd's defaults) rather than shorter: on a loaded
# two-core machine a 500 ms election timeout sometimes fires under a compile, and every test
# bound below scales with it anyway.
HEARTBEAT_MS = 100
ELECTION_MS = 1000
# etcd's request timeout (v2-cluster-api.md §7): what a write waits before 300 "request timed out".
REQUEST_TIMEOUT_S = 5 + 2 * ELECTION_MS / 1000

# The proxy tests' clusters (ProxyBench), and the members the deploy/ scripts start for them.
PROXY_HEARTBEAT_MS = 50
PROXY_ELECTION_MS = 500
PROXY_TOKEN = "proxy-test"


class Cluster:
    """N members of one kind ("kvd" or "etcd") bootstrapped together, named <name_prefix><i>
    (default: the kind, so kvd0, kvd1, ...). Owns their processes; cleanup() kills what still
    runs (by PID) and removes the work dir, unless the work dir was given (`workdir`, shared with
    other processes of the test: its owner removes it). As a context manager it starts the
    members and prints their log tails when the block raises or, given `results`
    (harness.Results), when a check failed inside the block."""

    def __init__(self, kind, n=3, token=None, snapshot_count=None, extra_args=(),
                 heartbeat_ms=HEARTBEAT_MS, election_ms=ELECTION_MS, workdir_prefix=None,
                 results=None, workdir=None, name_prefix=None, client_scheme="http",
                 peer_scheme="http"):
        self.kind = kind
        self.client_scheme = client_scheme  # "https" needs harness.DEFAULT_SSL_CONTEXT
        self.peer_scheme = peer_scheme
        self.results = results
        self.failed_before = 0
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"{workdir_prefix or kind}-cluster-")
        self.token = token or f"tok-{os.getpid()}-{random.randrange(1 << 30)}"
        self.snapshot_count = snapshot_count
        self.extra_args = list(extra_args)
        self.members = [self.new_member_slot(f"{name_prefix or kind}{i}") for i in range(n)]
        founders = self.initial_cluster()
        for m in self.members:
            m.extra_args = self.member_args(founders, "new")
        self.ids = {}  # member name -> hex id, learnt from /v2/stats/self

    def initial_cluster(self):
        """--initial-cluster for the current members: name=peer URL, comma-separated."""
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def member_args(self, initial_cluster, state):
        a = ["--initial-cluster", initial_cluster, "--initial-cluster-state", state,
             "--initial-cluster-token", self.token,
             "--heartbeat-interval", str(self.heartbeat_ms),
             "--election-timeout", str(self.election_ms)]
        if self.snapshot_count is not None:
            a += ["--snapshot-count", str(self.snapshot_count)]
        return a + self.extra_args

    # --- processes ---

    def start(self, timeout=40.0):
        """Starts every member at once (a bootstrap needs a quorum up) and waits until each
        answers /health with 200 and knows its own id."""
        for m in self.members:
            m.spawn()
        for m in self.members:
            m.wait_ready(timeout)
        for m in self.members:
            self.learn_id(m)
        return self

    def learn_id(self, m):
        status, j, body = harness.get_json(m, "/v2/stats/self")
        if status != 200 or not j:
            raise RuntimeError(f"{m.name}: /v2/stats/self answered {status} {body[:200]!r}")
        self.ids[m.name] = j["id"]
        return j["id"]

    def new_member_slot(self, name):
        """A Member with free ports in this cluster's work dir, not started: its peer URL is what
        `member add` needs. Start it with join(). Also makes the founding members: a subclass
        that places members elsewhere (tests/faults/nscluster.py) overrides it."""
        return harness.Member(self.kind, name=name, workdir=self.workdir,
                              client_scheme=self.client_scheme, peer_scheme=self.peer_scheme)

    def join(self, m, initial_cluster, timeout=40.0):
        """Starts m as a new member of the running cluster (--initial-cluster-state existing,
        after `member add`), waits until it is healthy and learns its id."""
        m.extra_args = self.member_args(initial_cluster, "existing")
        if m not in self.members:
            self.members.append(m)
        m.spawn()
        m.wait_ready(timeout)
        self.learn_id(m)
        return m

    def grow(self, via, names, results, label=""):
        """Grows the cluster whose only member is `via` by one new member per name, one at a
        time: `member add` through via (retried while --strict-reconfig-check refuses an
        addition, 500, until every member has been connected for 5 s: etcd's HealthInterval),
        then join(). Checks each step in `results`; returns every member, via first."""
        live = [via]
        for i, name in enumerate(names):
            new = self.new_member_slot(name)
            last = []

            def add():
                st, _, body = harness.request(
                    "POST", via.url + "/v2/members",
                    body=json.dumps({"peerURLs": [new.peer_url]}).encode(),
                    headers={"Content-Type": "application/json"})
                last[:] = [st, body[:120]]
                return st == 201
            results.check(harness.wait_for(add, 20.0, interval=0.5),
                          f"{label}member add {i + 1} answered {last}")
            live.append(new)
            self.join(new, ",".join(f"{m.name}={m.peer_url}" for m in live))
        return live

    def kill(self, m, sig=signal.SIGKILL):
        m.kill(sig)

    def restart(self, m, wait=True, timeout=40.0):
        """Starts m again from its data dir (same flags; initial-cluster flags are then ignored)."""
        m.spawn()
        if wait:
            m.wait_ready(timeout)
        return m

    def running(self):
        """The members whose process runs and is not paused."""
        return [m for m in self.members
                if m.proc is not None and m.proc.poll() is None and not m.paused]

    def by_id(self, hex_id):
        for m in self.members:
            if self.ids.get(m.name) == hex_id:
                return m
        return None

    def by_url(self, client_url):
        for m in self.members:
            if m.url == client_url:
                return m
        return None

    # --- raft state ---

    @staticmethod
    def leader_id_of(m, timeout=2.0):
        """The leader id m reports on /v2/members/leader, or None (no leader, or m is down)."""
        status, j, _ = harness.get_json(m, "/v2/members/leader", timeout=timeout, catch=True)
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
        return harness.wait_for(lambda: self.agreed_leader(among), timeout)

    def followers(self, lead):
        return [m for m in self.running() if m is not lead]

    # --- data ---

    @staticmethod
    def dump(m, timeout=10.0):
        """Full recursive, sorted GET of / on m: (X-Etcd-Index, node tree) or None if m is down."""
        status, hdrs, body = harness.get(m, "/", query="recursive=true&sorted=true",
                                         timeout=timeout, catch=True)
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
        return harness.wait_for(same, timeout)

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
        if self.own_workdir:
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


def load_sample_tree(m, keys=1000):
    """Writes a tree through m: `keys` keys under 10 nested dirs (/data/d<i>/sub/k<n>), 5 TTL
    keys (/ttl/k<i>, 600 s) and 5 in-order keys under /queue."""
    for i in range(keys):
        harness.put(m, f"/data/d{i % 10}/sub/k{i}", f"v{i}")
    for i in range(5):
        harness.put(m, f"/ttl/k{i}", "t", query="ttl=600")
        harness.request("POST", m.url + "/v2/keys/queue", body=f"value=job{i}".encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})


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
                status, _, body = harness.put(m, key, value, timeout=self.timeout)
            except ConnectionRefusedError:
                time.sleep(harness.POLL_S)  # member down: nothing was sent; try the next one
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
                time.sleep(harness.POLL_S)

    def count(self):
        with self.lock:
            return len(self.acked)

    def wait_acks(self, n, timeout):
        """Waits until n more writes than now are acknowledged; returns whether they were."""
        target = self.count() + n
        return bool(harness.wait_for(lambda: self.count() >= target, timeout))

    def stop(self, timeout=None):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout if timeout is not None else self.timeout + 5)

    def missing(self, tree):
        """Acknowledged writes absent from (or different in) a recursive dump's tree."""
        have = index_of(tree)
        return {k: v for k, v in self.acked.items() if have.get(k) != v}


class ProxyBench:
    """The work dir of a proxy test, and the clusters and proxies it runs there. As a context
    manager it kills, on exit, every proxy and then every member it made (by PID) and removes
    the work dir (kept with KEEP=1 when a check of `results` failed: harness.remove_workdir)."""

    def __init__(self, workdir_prefix, results):
        self.workdir = harness.new_workdir(workdir_prefix)
        self.results = results
        self.clusters = []
        self.proxies = []

    def cluster(self, kind, name_prefix="m", timeout=40.0):
        """A started three-member cluster (proxy-test token and raft timings, members named
        <name_prefix><i>), after waiting (bounded by `timeout`) for an agreed leader."""
        c = Cluster(kind, 3, token=PROXY_TOKEN, heartbeat_ms=PROXY_HEARTBEAT_MS,
                    election_ms=PROXY_ELECTION_MS, workdir=self.workdir, name_prefix=name_prefix)
        self.clusters.append(c)
        c.start(timeout)
        c.leader(timeout=timeout)
        return c

    def proxy(self, kind, initial_cluster, **kwargs):
        """A harness.Proxy in the work dir (not started), killed on exit."""
        p = harness.Proxy(kind, initial_cluster, self.workdir, **kwargs)
        self.proxies.append(p)
        return p

    def kvd_and_etcd(self):
        """A kvd cluster (k0-k2) and an etcd cluster (e0-e2), each with a started proxy of its
        kind in front: (kvd cluster, etcd cluster, kvd proxy, etcd proxy)."""
        kc = self.cluster("kvd", name_prefix="k")
        ec = self.cluster("etcd", name_prefix="e")
        kp = self.proxy("kvd", kc.initial_cluster())
        ep = self.proxy("etcd", ec.initial_cluster())
        for p in (kp, ep):
            p.start(want_endpoints=3)
        return kc, ec, kp, ep

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.proxies:
            p.kill()
        for c in self.clusters:
            c.cleanup()
        harness.remove_workdir(self.workdir, self.results)


def deploy_env(port_vars, **extra):
    """The environment for a deploy/ script that starts its own members: this one, plus the
    binaries under test, the proxy tests' raft timings as MEMBER_FLAGS, a free port in each of
    `port_vars`, and `extra`."""
    env = dict(os.environ, KVD_BIN=harness.KVD_BIN, KVCTL_BIN=harness.KVCTL_BIN,
               MEMBER_FLAGS=f"--heartbeat-interval {PROXY_HEARTBEAT_MS} "
                            f"--election-timeout {PROXY_ELECTION_MS}", **extra)
    for var in port_vars:
        env[var] = str(harness.free_port())
    return env


# --- tests with a kvd half and an etcd half ---

def etcd_half_runs():
    """Whether a test's etcd half can run (etcd is installed); says so when it is skipped."""
    if harness.have_etcd():
        return True
    print(f"SKIP etcd half: etcd not installed at {harness.ETCD_BIN}")
    return False


def check_halves_agree(results, kvd, etcd, what):
    """Checks that the kvd half and the etcd half recorded the same value under every key of
    either; what(key) heads the message of a mismatch, followed by both values."""
    for k in sorted(set(kvd) | set(etcd)):
        results.check(kvd.get(k) == etcd.get(k),
                      f"{what(k)}\n  kvd  {kvd.get(k)}\n  etcd {etcd.get(k)}")
