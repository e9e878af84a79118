#!/usr/bin/env python3
"""Memory per idle TLS client: kvd against etcd 3.4. Run by hand, not in CI; see bench/README.md.

For each server in turn (ROUNDS times, the order alternating): start one member serving clients
over https only on free 127.0.0.1 ports (certificates made by tests/e2e/tls_certs.py), read its
RSS, open WATCHERS TLS connections that each send a long-poll watch (GET ?wait=true, what confd
keeps open per key) and stay idle, wait until the server's RSS has been stable for a second, read
it again. Prints the memory each watcher costs (KiB) per round and the medians.

Environment (defaults in brackets): KVD_BIN [build/server/kvd], ETCD_BIN [/usr/bin/etcd],
WATCHERS [1000], ROUNDS [3], BENCH_DIR [/var/tmp].
"""
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import harness  # noqa: E402
import tls_certs  # noqa: E402

KVD_BIN = os.environ.get("KVD_BIN", os.path.join(REPO, "build", "server", "kvd"))
ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
WATCHERS = int(os.environ.get("WATCHERS", "1000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def stable_rss(pid):
    """RSS once two readings a second apart agree within 0.1 MiB (at most 20 s)."""
    last = rss_mib(pid)
    for _ in range(20):
        time.sleep(1)
        now = rss_mib(pid)
        if abs(now - last) < 0.1:
            return now
        last = now
    return last


def measure(kind, binary, work, cert, key, ca):
    client, peer = harness.free_port(), harness.free_port()
    data = os.path.join(work, f"{kind}-data")
    cmd = [binary, "--name", kind, "--data-dir", data,
           "--listen-client-urls", f"https://127.0.0.1:{client}",
           "--advertise-client-urls", f"https://127.0.0.1:{client}",
           "--listen-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-cluster", f"{kind}=http://127.0.0.1:{peer}",
           "--cert-file", cert, "--key-file", key, "--enable-v2"]
    log = open(os.path.join(work, f"{kind}.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=ca)
    conns = []
    try:
        for _ in range(200):
            try:
                with ctx.wrap_socket(socket.create_connection(("127.0.0.1", client), timeout=2),
                                     server_hostname="127.0.0.1") as s:
                    s.sendall(b"GET /version HTTP/1.0\r\n\r\n")
                    if s.recv(100).split(b" ")[1:2] == [b"200"]:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"{kind} did not answer over https; log: {log.name}")
        before = stable_rss(proc.pid)
        for i in range(WATCHERS):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", client)),
                                server_hostname="127.0.0.1")
            s.sendall(f"GET /v2/keys/w{i}?wait=true HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            conns.append(s)
        after = stable_rss(proc.pid)
        if proc.poll() is not None:
            raise SystemExit(f"{kind} exited; log: {log.name}")
        return before, after
    finally:
        for s in conns:
            s.close()
        proc.kill()
        proc.wait()
        log.close()


def main():
    for b in (KVD_BIN, ETCD_BIN):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"not an executable: {b}")
    work = tempfile.mkdtemp(prefix="kvd-bench-tlsw.", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    try:
        pki = tls_certs.Pki(os.path.join(work, "pki"))
        cert, key = pki.issue("server")
        per = {"kvd": [], "etcd": []}
        print(f"bench: kvd={KVD_BIN} etcd={ETCD_BIN} watchers={WATCHERS} rounds={ROUNDS}")
        for r in range(ROUNDS):
            order = [("kvd", KVD_BIN), ("etcd", ETCD_BIN)]
            if r % 2:
                order.reverse()
            for kind, binary in order:
                before, after = measure(kind, binary, work, cert, key, pki.ca)
                kib = (after - before) * 1024 / WATCHERS
                per[kind].append(kib)
                print(f"round {r + 1} {kind:5} RSS {before:7.1f} MiB idle, {after:7.1f} MiB with "
                      f"{WATCHERS} TLS watchers: {kib:6.1f} KiB each", flush=True)
        k, e = statistics.median(per["kvd"]), statistics.median(per["etcd"])
        print()
        print("| metric | kvd | etcd | ratio kvd/etcd |")
        print("|---|---:|---:|---:|")
        print(f"| memory per idle TLS watcher (KiB, median of {ROUNDS}, lower is better) | "
              f"{k:.1f} | {e:.1f} | {k / e:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
