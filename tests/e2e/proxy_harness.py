"""Helpers for the proxy end-to-end tests (tests/e2e/test_proxy_*.py): three-member kvd or etcd
clusters, kvd and etcd proxies in front of them, and small HTTP helpers. Standard library only;
processes on 127.0.0.1 with free ports, killed by PID (see harness.py)."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse

import harness

HEARTBEAT_MS = 50
ELECTION_MS = 500


def wait_for(pred, timeout, interval=0.02):
    """Polls pred() until it returns something true or timeout seconds pass; returns its last
    value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def try_request(method, url, body=None, headers=None, timeout=10.0):
    """harness.request, with a transport error returned as (None, {}, b"<error>")."""
    try:
        return harness.request(method, url, body=body, headers=headers, timeout=timeout)
    except OSError as e:
        return None, {}, str(e).encode()


def put(base, key, value, timeout=15.0):
    return try_request("PUT", f"{base}/v2/keys/{key.lstrip('/')}",
                       body=urllib.parse.urlencode({"value": value}), timeout=timeout)


def get(base, key, query="", timeout=15.0):
    return try_request("GET", f"{base}/v2/keys/{key.lstrip('/')}{query}", timeout=timeout)


def get_json(base, path, timeout=5.0):
    status, _, body = try_request("GET", base + path, timeout=timeout)
    if status != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class Cluster:
    """Three members of one kind ("kvd" or "etcd") forming one cluster."""

    def __init__(self, kind, workdir, size=3, token="proxy-test", prefix="m"):
        self.kind = kind
        self.workdir = workdir
        self.members = [harness.Member(kind, name=f"{prefix}{i}", workdir=workdir)
                        for i in range(size)]
        self.token = token
        cluster = self.initial_cluster()
        for m in self.members:
            m.extra_args = ["--initial-cluster", cluster, "--initial-cluster-state", "new",
                            "--initial-cluster-token", token,
                            "--heartbeat-interval", str(HEARTBEAT_MS),
                            "--election-timeout", str(ELECTION_MS)]

    def initial_cluster(self):
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start(self, timeout=40.0):
        for m in self.members:
            spawn(m)
        for m in self.members:
            m.wait_ready(timeout)
        wait_for(self.leader, timeout)
        return self

    def leader(self):
        """The name of the member all live members agree leads, else None."""
        names = set()
        for m in self.members:
            if m.proc is None or m.proc.poll() is not None:
                continue
            j = get_json(m.url, "/v2/members/leader", timeout=2.0)
            if not j:
                return None
            names.add(j.get("name"))
        return names.pop() if len(names) == 1 else None

    def by_url(self, client_url):
        for m in self.members:
            if m.url == client_url:
                return m
        return None

    def cleanup(self):
        for m in self.members:
            m.kill()


def spawn(member):
    """Starts a harness.Member without waiting for it to answer (a cluster member answers only
    once a quorum is up)."""
    log = open(member.log_path, "ab")
    member.proc = subprocess.Popen(member.args(), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    log.close()


class Proxy(harness.Process):
    """A kvd or etcd proxy (--proxy on|readonly) in front of a cluster."""

    def __init__(self, kind, initial_cluster, workdir, mode="on", extra_args=(), name="proxy"):
        self.kind = kind
        self.workdir = workdir
        self.port = harness.free_port()
        self.data_dir = os.path.join(workdir, f"{name}-{kind}.data")
        self.log_path = os.path.join(workdir, f"{name}-{kind}.log")
        self.initial_cluster = initial_cluster
        self.mode = mode
        self.extra_args = list(extra_args)
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def args(self):
        binary = harness.KVD_BIN if self.kind == "kvd" else harness.ETCD_BIN
        a = [binary, "--proxy", self.mode, "--data-dir", self.data_dir,
             "--listen-client-urls", self.url, "--initial-cluster", self.initial_cluster]
        if self.kind == "etcd":
            a += ["--log-level", "error"]
        return a + self.extra_args

    def start(self, want_endpoints=1, timeout=20.0):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        def ready():
            eps = self.endpoints()
            return self.exited() or (eps is not None and len(eps) >= want_endpoints)
        ok = wait_for(ready, timeout)
        if self.exited() or not ok:
            raise RuntimeError(f"{self.kind} proxy not ready; log:\n{self.read_log()}")
        return self

    def exited(self):
        return self.proc is not None and self.proc.poll() is not None

    def endpoints(self):
        j = get_json(self.url, "/v2/config/local/proxy", timeout=2.0)
        return None if j is None else j.get("endpoints")



def raw_exchange(port, data, timeout=5.0, until=None):
    """Sends raw bytes on a fresh connection and reads until `until` (bytes) is seen, the
    connection closes, or timeout. Returns the bytes read."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        return recv_until(s, until, timeout)
    finally:
        s.close()


def recv_until(s, marker, timeout):
    """Reads from socket s until marker (bytes; None: no marker) is in the data, the peer
    closes, or timeout; returns the data."""
    out = b""
    deadline = time.monotonic() + timeout
    while (marker is None or marker not in out) and time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
    return out


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


def new_workdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def remove_workdir(path, keep=False):
    if keep:
        print(f"work dir kept: {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)
