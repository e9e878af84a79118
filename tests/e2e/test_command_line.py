#!/usr/bin/python3
"""kvd's command line as etcd's: flag spellings (-flag v, --flag v, --flag=v), ETCD_* variables,
flag/variable conflicts, unknown flags and bad values (one line, exit 2, nothing started),
several comma-separated listen URLs, and no log line per request at info level. Each refusal
is compared with what the real etcd prints and returns for the same arguments.

Run: KVD_BIN=build/kvd /usr/bin/python3 tests/e2e/test_command_line.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

R = harness.Results()


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    env.update(extra or {})
    return env


def run_refused(binary, args, env=None):
    """Runs a command that must refuse to start, in an empty directory. Returns (exit status,
    stderr lines, entries the process left in its directory)."""
    cwd = tempfile.mkdtemp(prefix="kvd-cli-")
    try:
        p = subprocess.run([binary] + args, cwd=cwd, env=clean_env(env), capture_output=True,
                           timeout=30)
        lines = p.stderr.decode(errors="replace").splitlines()
        return p.returncode, lines, sorted(os.listdir(cwd))
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


def refusals():
    print("-- refused command lines, compared with etcd", flush=True)
    port = harness.free_port()
    cases = [
        ("unknown flag", ["--bogus-flag"], None, 2),
        ("unknown single-dash flag with value", ["-bogus=1"], None, 2),
        ("bad number", ["--snapshot-count", "abc"], None, 2),
        ("bad cluster state", ["-initial-cluster-state", "bogus"], None, 2),
        ("bad cluster state, = form", ["--initial-cluster-state=bogus"], None, 2),
        ("flag without its value", ["--name"], None, 2),
        ("flag and variable both set", ["--name", "y", "--listen-client-urls",
                                        f"http://127.0.0.1:{port}"], {"ETCD_NAME": "x"}, 1),
    ]
    for what, args, env, want_rc in cases:
        rc_e, err_e, _ = run_refused(harness.ETCD_BIN, ["--enable-v2"] + args, env)
        rc_k, err_k, left_k = run_refused(harness.KVD_BIN, args, env)
        R.check(rc_e == want_rc, f"{what}: etcd exits {rc_e}, expected {want_rc} (spec changed?)")
        R.check(rc_k == rc_e, f"{what}: kvd exits {rc_k}, etcd {rc_e}")
        # etcd's first line (after its log prefix, if any) is the message kvd prints alone.
        msg_e = err_e[0].split(" | pkg/flags: ")[-1] if err_e else ""
        R.check(len(err_k) == 1 and err_k[0].endswith(msg_e) and msg_e,
                f"{what}: kvd printed {err_k!r}; etcd's message is {msg_e!r}")
        R.check(left_k == [], f"{what}: kvd left {left_k} behind (started something)")


def wait_health(urls, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            status, _, _ = harness.request("GET", pending[0] + "/health", timeout=1.0)
            if status == 200:
                pending.pop(0)
                continue
        except OSError:
            pass
        time.sleep(0.02)
    return not pending


def start_kvd(args, env, workdir, log_path):
    log = open(log_path, "ab")
    try:
        return subprocess.Popen([harness.KVD_BIN] + args, cwd=workdir, env=clean_env(env),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def spellings():
    print("-- flag spellings, variables, several listen URLs", flush=True)
    for style in ("single-dash", "double-dash", "equals", "environment"):
        workdir = tempfile.mkdtemp(prefix="kvd-cli-")
        c1, c2, peer = harness.free_port(), harness.free_port(), harness.free_port()
        u1, u2 = f"http://127.0.0.1:{c1}", f"http://127.0.0.1:{c2}"
        peer_url = f"http://127.0.0.1:{peer}"
        settings = [("name", "etcd0"), ("data-dir", "d0"),
                    ("listen-client-urls", f"{u1},{u2}"), ("advertise-client-urls", u1),
                    ("listen-peer-urls", peer_url), ("initial-advertise-peer-urls", peer_url),
                    ("initial-cluster", f"etcd0={peer_url}"), ("initial-cluster-token", "tok-1"),
                    ("heartbeat-interval", "50"), ("election-timeout", "500")]
        args, env = [], {}
        for k, v in settings:
            if style == "single-dash":
                args += [f"-{k}", v]
            elif style == "double-dash":
                args += [f"--{k}", v]
            elif style == "equals":
                args += [f"--{k}={v}"]
            else:
                env["ETCD_" + k.upper().replace("-", "_")] = v
        proc = start_kvd(args, env, workdir, os.path.join(workdir, "log"))
        try:
            up = wait_health([u1, u2], proc)
            R.check(up, f"{style}: kvd did not answer on both {u1} and {u2}")
            if up:
                _, _, body = harness.request("GET", u2 + "/v2/members")
                members = json.loads(body)["members"]
                R.check(len(members) == 1 and members[0]["name"] == "etcd0"
                        and members[0]["clientURLs"] == [u1] and members[0]["peerURLs"] == [peer_url],
                        f"{style}: /v2/members answered {body!r}")
                status, _, _ = harness.request("PUT", u1 + "/v2/keys/k", body="value=1")
                _, _, got = harness.request("GET", u2 + "/v2/keys/k")
                R.check(status == 201 and json.loads(got)["node"]["value"] == "1",
                        f"{style}: a write on one URL not read on the other: {got!r}")
                R.check(os.path.isdir(os.path.join(workdir, "d0")),
                        f"{style}: data dir d0 not created in {os.listdir(workdir)}")
        finally:
            stop(proc)
            shutil.rmtree(workdir, ignore_errors=True)


def no_request_logging():
    print("-- no log line per request at info level", flush=True)
    workdir = tempfile.mkdtemp(prefix="kvd-cli-")
    c, peer = harness.free_port(), harness.free_port()
    url, peer_url = f"http://127.0.0.1:{c}", f"http://127.0.0.1:{peer}"
    log_path = os.path.join(workdir, "log")
    proc = start_kvd(["--name", "n", "--data-dir", "d", "--log-level", "info",
                      "--listen-client-urls", url, "--advertise-client-urls", url,
                      "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                      "--initial-cluster", f"n={peer_url}"], None, workdir, log_path)
    try:
        if not R.check(wait_health([url], proc), "kvd did not start with --log-level info"):
            return
        with open(log_path, "rb") as f:
            before = f.read().count(b"\n")
        R.check(before > 0, "kvd logged nothing at info level on start-up")
        requests = 0
        for i in range(100):
            harness.request("PUT", url + f"/v2/keys/r{i}", body="value=v")
            harness.request("GET", url + f"/v2/keys/r{i}")
            harness.request("GET", url + "/v2/keys/missing")
            requests += 3
        # The answers above came after anything a request handler could have logged.
        with open(log_path, "rb") as f:
            after = f.read().count(b"\n")
        R.check(after - before < 10,
                f"{after - before} log lines for {requests} requests at info level")
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    harness.require_etcd()
    if not os.access(harness.KVD_BIN, os.X_OK):
        R.check(False, f"kvd binary not found (KVD_BIN={harness.KVD_BIN!r})")
        R.finish()
    refusals()
    spellings()
    no_request_logging()
    R.finish()


if __name__ == "__main__":
    main()
