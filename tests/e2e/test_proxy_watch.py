#!/usr/bin/env python3
"""Watches through the proxy: a recursive watch gets every event in order; a long poll gets its
headers at once and stream=true gets each event as it happens (etcd's proxy holds both back: a
listed difference); clients that leave take their member watches with them; when the member
serving a watch dies the client sees what it sees through etcd's proxy (200, empty body), and
`kvctl watch --forever` through the proxy resumes on another member without missing an event."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()


def open_watch(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


recv_until = harness.recv_until


def store_stats(m):
    """m's /v2/stats/store, or None if it does not answer 200 with JSON."""
    status, j, _ = harness.get_json(m.url, "/v2/stats/store", catch=True)
    return j if status == 200 else None


def watchers(cluster):
    total = 0
    for m in cluster.members:
        if m.proc and m.proc.poll() is None:
            j = store_stats(m)
            total += j["watchers"] if j else 0
    return total


def check_stream_and_headers(kp):
    # A long poll: the headers come before the event.
    s = open_watch(kp.port, "/v2/keys/lp?wait=true")
    head = recv_until(s, b"\r\n\r\n", 5.0)
    R.check(head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head,
            f"long-poll headers arrive before the event: {head[:80]!r}")
    harness.put(kp.url, "lp", "1", catch=True)
    rest = recv_until(s, b"0\r\n\r\n", 5.0)
    R.check(b'"action":"set"' in rest and rest.endswith(b"0\r\n\r\n"),
            f"long-poll event then the end of the body: {rest!r}")
    s.close()
    # stream=true: each event as it happens.
    s = open_watch(kp.port, "/v2/keys/st?wait=true&stream=true&recursive=true")
    recv_until(s, b"\r\n\r\n", 5.0)
    for i in range(3):
        harness.put(kp.url, f"st/{i}", str(i), catch=True)
        got = recv_until(s, f'"st/{i}"'.encode(), 5.0)
        R.check(f'"/st/{i}"'.encode() in got, f"stream event {i} arrives at once: {got!r}")
    s.close()


def check_no_leaked_watches(kp, cluster):
    # The watches of the checks before are gone once their member connections have closed.
    R.check(harness.wait_for(lambda: watchers(cluster) == 0, 10.0),
            f"earlier watches ended on the members ({watchers(cluster)} left)")
    base = watchers(cluster)
    socks = [open_watch(kp.port, f"/v2/keys/leak{i}?wait=true") for i in range(20)]
    for s in socks:
        recv_until(s, b"\r\n\r\n", 5.0)
    R.check(harness.wait_for(lambda: watchers(cluster) >= base + 20, 10.0),
            f"20 watches registered on the members ({watchers(cluster)})")
    for s in socks:
        s.close()
    R.check(harness.wait_for(lambda: watchers(cluster) == base, 10.0),
            f"client disconnects end the member watches ({watchers(cluster)} left, {base} before)")


def check_recursive_order(kp):
    proc = subprocess.Popen([harness.KVCTL_BIN, "--no-sync", "-C", kp.url, "watch", "--forever",
                             "--recursive", "/ord"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # The watch is up once a first event arrives: write a marker until it does.
        lines = []
        reader = threading.Thread(target=lambda: [lines.append(l.decode().rstrip("\n"))
                                                  for l in proc.stdout], daemon=True)
        reader.start()
        harness.wait_for(lambda: harness.put(kp.url, "ord/start", "go", catch=True)[0]
                         in (200, 201) and any("/ord/start" in l for l in lines), 10.0, 0.2)
        n = 30
        for i in range(n):
            harness.put(kp.url, f"ord/k{i % 7}", str(i), catch=True)
        harness.wait_for(lambda: str(n - 1) in lines, 10.0)
        values = [l for l in lines if l.isdigit()]
        R.check(values == [str(i) for i in range(n)], f"recursive watch in order: {values}")
    finally:
        os.kill(proc.pid, 9)
        proc.wait()


def check_member_dies_during_watch(p, cluster):
    """A long poll pending on the member in use; that member is killed. Returns (status,
    body) as the client got them."""
    eps = p.endpoints()
    victim = cluster.by_url(eps[0])
    s = open_watch(p.port, "/v2/keys/die?wait=true")
    # etcd's proxy sends nothing before the event; wait until the member has the watch.
    harness.wait_for(lambda: (store_stats(victim) or {}).get("watchers", 0) > 0, 10.0)
    victim.kill()
    # The end of a chunked body, or the tail of "Content-Length: 0" and the blank line.
    raw = recv_until(s, b"0\r\n\r\n", 10.0)
    s.close()
    status, headers, body = harness.parse_head(raw)
    hd = {n.lower(): v for n, v in headers}
    if hd.get("transfer-encoding") == "chunked":
        body = b"" if body == b"0\r\n\r\n" else body
    return status, body, victim


def check_kvctl_forever_resumes(kp, cluster):
    out_path = os.path.join(cluster.workdir, "watch-forever.out")
    out = open(out_path, "wb")
    proc = subprocess.Popen([harness.KVCTL_BIN, "--no-sync", "-C", kp.url, "watch", "--forever",
                             "--recursive", "/fe"], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out.close()

    def lines():
        with open(out_path, "rb") as f:
            return f.read().decode(errors="replace").splitlines()

    try:
        harness.wait_for(lambda: harness.put(kp.url, "fe/start", "go", catch=True)[0]
                         in (200, 201) and any("/fe/start" in l for l in lines()), 10.0, 0.2)
        acked = []
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set() and i < 400:
                st, _, _ = harness.put(kp.url, f"fe/k{i % 5}", str(i), timeout=5.0, catch=True)
                if st in (200, 201):
                    acked.append(i)
                    i += 1
                else:
                    time.sleep(0.05)  # election in progress: the same write again

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        harness.wait_for(lambda: len(acked) >= 20, 20.0)
        eps = kp.endpoints()
        victim = cluster.by_url(eps[0])
        victim.kill()
        harness.wait_for(lambda: len(acked) >= 60 or not t.is_alive(), 30.0)
        stop.set()
        t.join(timeout=20)
        last = acked[-1] if acked else -1
        ok = harness.wait_for(lambda: str(last) in lines(), 15.0)
        values = [int(l) for l in lines() if l.isdigit()]
        dedup = [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]
        R.check(ok and len(acked) >= 60, f"writes went on after the kill ({len(acked)} acked)")
        R.check(dedup == list(range(last + 1)),
                f"watch --forever saw every write in order across the kill: {dedup[:5]}...{dedup[-5:]}"
                f" ({len(dedup)} of {last + 1})")
        R.check(proc.poll() is None, "kvctl watch --forever still running")
        return victim
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 9)
        proc.wait()


def main():
    harness.require_etcd()
    with cluster.ProxyBench("kvd-proxy-watch-", R) as bench:
        kc, ec, kp, ep = bench.kvd_and_etcd()
        check_stream_and_headers(kp)
        check_no_leaked_watches(kp, kc)
        check_recursive_order(kp)
        # The member serving a watch dies: same answer through both proxies.
        ks, kb, kvictim = check_member_dies_during_watch(kp, kc)
        es, eb, evictim = check_member_dies_during_watch(ep, ec)
        R.check((ks, kb) == (es, eb) == (200, b""),
                f"watch whose member dies: kvd proxy {ks} {kb!r}, etcd proxy {es} {eb!r}")
        # Back to three, then kvctl watch --forever across the death of the member in use.
        for m in (kvictim, evictim):
            m.spawn()
        for m in (kvictim, evictim):
            m.wait_ready(30.0)
        R.check(harness.wait_for(lambda: len(kp.endpoints() or []) == 3, 40.0, 0.2),
                "kvd proxy has three endpoints again")
        check_kvctl_forever_resumes(kp, kc)
    R.finish()


if __name__ == "__main__":
    main()
