"""Process and HTTP layer of the end-to-end tests: start real kvd and etcd processes (members
and proxies) on 127.0.0.1 with free ports, wait until they answer, kill them by PID, pause and
resume them (SIGSTOP, SIGCONT); send HTTP requests and raw bytes to them; poll for conditions
with bounded deadlines; count checks. Standard library only (Debian's /usr/bin/python3).
A member or proxy may instead be given a host address, fixed ports and a command prefix (such
as `ip netns exec NS`): tests/faults runs them so, one network namespace each.

The harness modules, each built only on the ones above it:

    harness.py     processes (Process, Member, Proxy), work dirs, free ports, etcd presence;
                   HTTP: request, try_request, put, get, get_json (a Member, a Proxy or a base
                   URL string as target); raw sockets: raw_exchange, recv_until, parse_head,
                   status_of; wait_for (the one bounded poll); Results (checks, exit status).
    cluster.py     multi-member clusters: the one Cluster class (bootstrap, join, kill,
                   restart, leader, convergence, log tails), ProxyBench (the work dir, clusters
                   and proxies of a proxy test), Writers (client load), deploy_env (the
                   environment of the deploy/ scripts), and the kvd-half/etcd-half comparison.
    difflib_v2.py  differential testing: one request to a reference etcd and to the server
                   under test (Pair), answers compared after index normalisation.
    test_*.py      one ctest each; they import the modules above and nothing from each other.

Every wait is a poll with a deadline; none sleeps to synchronise.

Environment: KVD_BIN and KVCTL_BIN name the built binaries (set by ctest); ETCD_BIN and
ETCDCTL_BIN default to Debian's /usr/bin/etcd and /usr/bin/etcdctl. KEEP=1 keeps the work dir
of a failed run that uses remove_workdir(path, results).
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

KVD_BIN = os.environ.get("KVD_BIN", "kvd")
KVCTL_BIN = os.environ.get("KVCTL_BIN", "kvctl")
ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN", "/usr/bin/etcdctl")

SKIP = 77  # ctest SKIP_RETURN_CODE

POLL_S = 0.02  # wait_for's default interval between two polls
# Default timeout of put/get: etcd's request timeout under cluster.py's default raft timings
# (cluster.REQUEST_TIMEOUT_S, 7 s) plus 8 s, so that a member's own timeout answer arrives first.
KEYS_TIMEOUT_S = 15.0


def _port_pool():
    """The ports free_port() chooses from: below the kernel's ephemeral range, so that no
    outbound connection of any process (a test running beside this one, a member dialling its
    peers) takes a server's port between its stop and its restart; above it if the range
    leaves too little room below."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    if lo - 10000 >= 4096:
        return 10000, lo
    return hi + 1, 65536


_PORT_DIR = os.path.join(tempfile.gettempdir(), f"kvd-test-ports-{os.getuid()}")


def _reserve_port(port):
    """Claims `port` for this process among all the tests of this user on this machine: a file
    named after it holds the claimant's pid; a claim whose process has exited is taken over.
    The claim lasts as long as the process, so a member restarted on its port keeps it."""
    path = os.path.join(_PORT_DIR, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or "0")
            except (OSError, ValueError):
                return False
            if pid == os.getpid():
                return False
            try:
                if pid > 0:
                    os.kill(pid, 0)
                    return False
            except ProcessLookupError:
                pass
            except PermissionError:
                return False
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def free_port():
    """A 127.0.0.1 port nothing listens on and no other test of this machine will choose while
    this process runs (see _port_pool and _reserve_port)."""
    os.makedirs(_PORT_DIR, exist_ok=True)
    first, end = _port_pool()
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(first, end)
        if not _reserve_port(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise OSError(f"no free port in [{first}, {end})")


def have_etcd():
    return os.access(ETCD_BIN, os.X_OK)


def require_etcd():
    if not have_etcd():
        print(f"SKIP: etcd not installed at {ETCD_BIN} (apt-get install etcd-server)")
        sys.exit(SKIP)


def new_workdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def remove_workdir(path, results=None):
    """Removes a test's work dir; keeps it (and says where) when KEEP=1 and a check of
    `results` (a Results) failed."""
    if results is not None and results.failed > 0 and os.environ.get("KEEP") == "1":
        print(f"work dir kept: {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


def wait_for(pred, timeout, interval=POLL_S):
    """Polls pred() every `interval` seconds until it returns a true value or `timeout` seconds
    pass; returns the last value (so a falsy result means the deadline passed). pred may raise
    OSError (a process that is down): that counts as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except OSError:
            v = None
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# --- processes ---

class Process:
    """A server process of a test: `proc` (a Popen or None) started from command_prefix +
    args(), writing to `log_path`, with `env` (None: this process's environment). The prefix
    must exec the server in place (as `ip netns exec NS` does), so that proc.pid is the
    server's and the signals below reach it."""

    proc = None
    env = None
    host = "127.0.0.1"  # the address of url and peer_url
    command_prefix = ()
    paused = False  # stopped by pause(), until resume()

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def spawn(self):
        """Starts the process without waiting for it to answer (a cluster member answers only
        once a quorum is up); its output is appended to log_path."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*self.command_prefix, *self.args()], stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        self.paused = False
        return self

    def exited(self):
        return self.proc is not None and self.proc.poll() is not None

    def kill(self, sig=signal.SIGKILL):
        """Sends sig and waits (bounded) for the exit; a paused process is resumed after sig,
        so that it can act on a SIGTERM."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            if self.paused:
                self.resume()
            self.proc.wait(timeout=30)

    def pause(self):
        """SIGSTOP: the process keeps its sockets and state but does nothing until resume()."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False


class Member(Process):
    """One server process (kvd or etcd) with its own data dir and ports (default: free ones)."""

    def __init__(self, kind, name="default", workdir=None, extra_args=(), client_port=None,
                 peer_port=None, env=None, host="127.0.0.1", command_prefix=(),
                 client_scheme="http", peer_scheme="http"):
        self.kind = kind
        self.client_scheme = client_scheme  # "https": see DEFAULT_SSL_CONTEXT
        self.peer_scheme = peer_scheme
        self.host = host
        self.command_prefix = tuple(command_prefix)
        self.name = name
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"{kind}-")
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.data_dir = os.path.join(self.workdir, f"{name}.data")
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.log_path = os.path.join(self.workdir, f"{name}.log")

    @property
    def url(self):
        return f"{self.client_scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self):
        return f"{self.peer_scheme}://{self.host}:{self.peer_port}"

    def args(self):
        binary = KVD_BIN if self.kind == "kvd" else ETCD_BIN
        a = [binary, "--name", self.name, "--data-dir", self.data_dir,
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", self.peer_url,
             "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", f"{self.name}={self.peer_url}"]
        if self.kind == "etcd":
            a += ["--enable-v2", "--log-level", "error"]
        return a + self.extra_args

    def start(self, timeout=20.0):
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20.0):
        """Polls /health (bounded) until the member answers 200; fails if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; log:\n"
                                   + self.read_log())
            try:
                status, _, _ = request("GET", self.url + "/health", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(POLL_S)
        raise RuntimeError(f"{self.kind} not ready after {timeout}s; log:\n" + self.read_log())

    def stop(self):
        self.kill(signal.SIGTERM)

    def cleanup(self):
        self.kill()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class Proxy(Process):
    """A kvd or etcd proxy (--proxy on|readonly) in front of a cluster, in `workdir`, on
    `port` of `host` (default: a free one of 127.0.0.1)."""

    def __init__(self, kind, initial_cluster, workdir, mode="on", extra_args=(), name="proxy",
                 host="127.0.0.1", port=None, command_prefix=(), scheme="http"):
        self.kind = kind
        self.scheme = scheme
        self.workdir = workdir
        self.host = host
        self.port = port or free_port()
        self.command_prefix = tuple(command_prefix)
        self.data_dir = os.path.join(workdir, f"{name}-{kind}.data")
        self.log_path = os.path.join(workdir, f"{name}-{kind}.log")
        self.initial_cluster = initial_cluster
        self.mode = mode
        self.extra_args = list(extra_args)
        self.proc = None

    @property
    def url(self):
        return f"{self.scheme}://{self.host}:{self.port}"

    def args(self):
        binary = KVD_BIN if self.kind == "kvd" else ETCD_BIN
        a = [binary, "--proxy", self.mode, "--data-dir", self.data_dir,
             "--listen-client-urls", self.url, "--initial-cluster", self.initial_cluster]
        if self.kind == "etcd":
            a += ["--log-level", "error"]
        return a + self.extra_args

    def start(self, want_endpoints=1, timeout=20.0):
        """Starts the proxy and waits (bounded) until it lists want_endpoints member URLs."""
        self.spawn()

        def ready():
            eps = self.endpoints()
            return self.exited() or (eps is not None and len(eps) >= want_endpoints)
        ok = wait_for(ready, timeout)
        if self.exited() or not ok:
            raise RuntimeError(f"{self.kind} proxy not ready; log:\n{self.read_log()}")
        return self

    def endpoints(self):
        """The member client URLs /v2/config/local/proxy lists, or None if it did not answer."""
        status, j, _ = get_json(self.url, "/v2/config/local/proxy", timeout=2.0, catch=True)
        return None if status != 200 or j is None else j.get("endpoints")


# --- HTTP ---

# The ssl.SSLContext that request() uses for https URLs when none is given (a TLS test sets it
# to one trusting its CA, with a client certificate if its servers ask for one).
DEFAULT_SSL_CONTEXT = None


def request(method, url, body=None, headers=None, timeout=10.0, ssl_context=None):
    """One HTTP request on a fresh connection. Returns (status, headers dict (lower-case), bytes).
    https URLs use ssl_context, else DEFAULT_SSL_CONTEXT."""
    tls = url.startswith("https://")
    assert tls or url.startswith("http://")
    hostport, _, path = url[len("https://" if tls else "http://"):].partition("/")
    host, _, port = hostport.partition(":")
    if tls:
        conn = http.client.HTTPSConnection(host, int(port or 443), timeout=timeout,
                                           context=ssl_context or DEFAULT_SSL_CONTEXT)
    else:
        conn = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode()
        if body is not None and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, "/" + path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def try_request(method, url, body=None, headers=None, timeout=10.0):
    """request, with a transport error (refused, reset, timeout) returned as
    (None, {}, b"<error text>") instead of raised."""
    try:
        return request(method, url, body=body, headers=headers, timeout=timeout)
    except OSError as e:
        return None, {}, str(e).encode()


def url_of(target):
    """The base URL of a target: a Member, a Proxy (anything with a `url`) or a URL string."""
    return target if isinstance(target, str) else target.url


def healthy(member):
    """Whether member's process runs and its /health answers 200 {"health":"true"}; returns
    (ok, status, body)."""
    status, _, body = try_request("GET", member.url + "/health")
    ok = member.proc is not None and member.proc.poll() is None and status == 200 \
        and b'"true"' in body
    return ok, status, body


def put(target, key, value, timeout=KEYS_TIMEOUT_S, query="", catch=False):
    """PUT value at /v2/keys/<key> of target (a Member, Proxy or base URL); query: more URL
    parameters, without the "?". Returns request's (status, headers, body); a transport error
    raises OSError, or with catch=True is returned as try_request does."""
    q = ("?" + query) if query else ""
    send = try_request if catch else request
    return send("PUT", f"{url_of(target)}/v2/keys/{key.lstrip('/')}{q}",
                body=urllib.parse.urlencode({"value": value}), timeout=timeout)


def get(target, key, quorum=False, timeout=KEYS_TIMEOUT_S, query="", catch=False):
    """GET /v2/keys/<key> of target (a Member, Proxy or base URL), with ?quorum=true if
    `quorum`, then `query` (more URL parameters, without the "?"). Errors as for put."""
    params = [p for p in (("quorum=true" if quorum else ""), query) if p]
    q = ("?" + "&".join(params)) if params else ""
    send = try_request if catch else request
    return send("GET", f"{url_of(target)}/v2/keys/{key.lstrip('/')}{q}", timeout=timeout)


def get_json(target, path, timeout=5.0, catch=False):
    """GET url_of(target) + path: (status, decoded JSON or None, raw body). A transport error
    raises OSError, or with catch=True gives (None, None, b"<error text>")."""
    status, _, body = (try_request if catch else request)("GET", url_of(target) + path,
                                                          timeout=timeout)
    if status is None:
        return None, None, body
    try:
        return status, json.loads(body), body
    except ValueError:
        return status, None, body


# --- raw sockets ---

def raw_exchange(target, data, timeout=5.0, until=None, limit=None, silence_raises=False):
    """Sends raw bytes on a fresh connection to target (a port on 127.0.0.1, or an http:// URL)
    and reads the answer as recv_until does (until, timeout, limit, silence_raises); returns the
    bytes read."""
    if isinstance(target, int):
        address = ("127.0.0.1", target)
    else:
        host, _, port = target[len("http://"):].partition(":")
        address = (host, int(port))
    s = socket.create_connection(address, timeout=timeout)
    try:
        s.sendall(data)
        return recv_until(s, until, timeout, limit=limit, silence_raises=silence_raises)
    finally:
        s.close()


def recv_until(s, until, timeout, limit=None, silence_raises=False):
    """Reads from socket s until `until` holds (bytes: that marker is in the data; a function:
    it returns true for the data; None: never), the peer closes, `limit` bytes (if given) have
    arrived, or `timeout` seconds pass; returns the data.

    By default a read that times out ends the wait with the data so far, and a connection reset
    raises. With silence_raises=True (for an answer that must come whole, or not at all) each
    read may wait `timeout` seconds, a read that times out raises socket.timeout, and a reset
    ends the data as a close does (a server may answer and then reset)."""
    if isinstance(until, bytes):
        marker = until
        until = lambda buf: marker in buf  # noqa: E731
    out = b""
    deadline = time.monotonic() + timeout
    while ((until is None or not until(out)) and (limit is None or len(out) < limit)
           and time.monotonic() < deadline):
        if not silence_raises:
            s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            if silence_raises:
                raise
            break
        except ConnectionResetError:
            if not silence_raises:
                raise
            break
        if not chunk:
            break
        out += chunk
    return out


def response_complete(buf):
    """Whether buf holds a first complete HTTP response: headers and a Content-Length body, or
    a chunked body up to its last chunk."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        return len(rest) >= int(m.group(1))
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        return rest.endswith(b"0\r\n\r\n")
    return False


def parse_head(raw):
    """(status, [(name, value)...] in order, body bytes) of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return status, headers, body


def status_of(raw):
    """The status code of a raw HTTP/1.x response, or None if raw does not start with one."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


# --- results ---

class Results:
    """Counts checks and prints the closing line ctest and CI read."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}", flush=True)
        return ok

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def run_kvctl_sides(make_target, run, before=None):
    """The kvctl-against-etcdctl set-up the kvctl tests share: etcdctl against one etcd member
    (the reference), kvctl against a second etcd member and, when KVD_BIN is built and starts,
    against a kvd member. make_target(label, tool, member, dead_port) makes each side (dead_port:
    a port nothing listens on); before(target), if given, runs on each side first; run(ref,
    others) runs the sequence. Skips without kvctl; kills every member at the end."""
    require_etcd()
    kvctl = os.environ.get("KVCTL_BIN", "kvctl")
    if not os.access(kvctl, os.X_OK):
        print(f"SKIP: kvctl not built at {kvctl}")
        sys.exit(SKIP)
    dead_port = free_port()
    members = []
    try:
        ref_member = Member("etcd").start()
        members.append(ref_member)
        etcd_member = Member("etcd").start()
        members.append(etcd_member)
        ref = make_target("etcdctl/etcd", ETCDCTL_BIN, ref_member, dead_port)
        others = [make_target("kvctl/etcd", kvctl, etcd_member, dead_port)]
        if os.access(KVD_BIN, os.X_OK):
            try:
                kvd_member = Member("kvd").start()
                members.append(kvd_member)
                others.append(make_target("kvctl/kvd", kvctl, kvd_member, dead_port))
            except RuntimeError as e:
                print(f"note: kvd did not start, comparing against etcd only: {e}")
        for t in [ref] + others:
            if before:
                before(t)
        run(ref, others)
    finally:
        for m in members:
            m.cleanup()


def wait_cluster_version(member, timeout=20.0):
    """etcd serves /v2/auth only once the cluster version is decided: polls /version (bounded)
    until it is; returns whether it was."""
    def decided():
        status, j, _ = get_json(member, "/version", timeout=2.0, catch=True)
        return status == 200 and isinstance(j, dict) \
            and j.get("etcdcluster") not in (None, "not_decided")
    return bool(wait_for(decided, timeout))
