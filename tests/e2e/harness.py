"""Process harness for end-to-end tests: start real kvd and etcd members on 127.0.0.1 with free
ports, wait until they answer, kill them by PID. Standard library only (Debian's /usr/bin/python3).

Environment: KVD_BIN and KVCTL_BIN name the built binaries (set by ctest); ETCD_BIN and
ETCDCTL_BIN default to Debian's /usr/bin/etcd and /usr/bin/etcdctl.
"""
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

KVD_BIN = os.environ.get("KVD_BIN", "kvd")
KVCTL_BIN = os.environ.get("KVCTL_BIN", "kvctl")
ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN", "/usr/bin/etcdctl")

SKIP = 77  # ctest SKIP_RETURN_CODE


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have_etcd():
    return os.access(ETCD_BIN, os.X_OK)


def require_etcd():
    if not have_etcd():
        print(f"SKIP: etcd not installed at {ETCD_BIN} (apt-get install etcd-server)")
        sys.exit(SKIP)


class Process:
    """A server process of a test: `proc` (a Popen or None) writing to `log_path`."""

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)


class Member(Process):
    """One server process (kvd or etcd) with its own data dir and ports."""

    def __init__(self, kind, name="default", workdir=None, extra_args=(), client_port=None,
                 peer_port=None, env=None):
        self.kind = kind
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
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

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
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        log.close()
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
            time.sleep(0.02)
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


def request(method, url, body=None, headers=None, timeout=10.0):
    """One HTTP request on a fresh connection. Returns (status, headers dict (lower-case), bytes)."""
    assert url.startswith("http://")
    hostport, _, path = url[len("http://"):].partition("/")
    host, _, port = hostport.partition(":")
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
