#!/usr/bin/env python3
"""The book's story, driven through deploy/cluster.sh on free ports: members etcd0-2 and a kvd
proxy; `kvctl -C <proxy>` set/ls/rm (as the book runs it, and with --no-sync so every request
really goes through the proxy); kill -9 of two members including the leader: reads through the
proxy still succeed, a write fails with the member's timeout error (etcd's proxy passes the same
500 through) within a bounded time; one member restarted: writes through the proxy succeed
again; every key written before is intact."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_SH = os.path.join(REPO, "deploy", "cluster.sh")


def main():
    workdir = harness.new_workdir("kvd-proxy-book-")
    env = cluster.deploy_env(("ETCD0_CLIENT", "ETCD0_PEER", "ETCD1_CLIENT", "ETCD1_PEER",
                              "ETCD2_CLIENT", "ETCD2_PEER", "PROXY_PORT"), CLUSTER_DIR=workdir)
    proxy = f"http://127.0.0.1:{env['PROXY_PORT']}"
    client = {n: f"http://127.0.0.1:{env[n.upper() + '_CLIENT']}" for n in ("etcd0", "etcd1", "etcd2")}

    def sh(*args, timeout=60):
        return subprocess.run([CLUSTER_SH, *args], env=env, capture_output=True, text=True,
                              timeout=timeout)

    def kvctl(*args, sync=False, timeout=30):
        a = [harness.KVCTL_BIN] + ([] if sync else ["--no-sync"]) + ["-C", proxy, *args]
        return subprocess.run(a, capture_output=True, text=True, timeout=timeout)

    try:
        up = sh("up")
        R.check(up.returncode == 0, f"cluster.sh up: {up.stdout}{up.stderr}")
        if up.returncode != 0:
            return
        # The book's commands (kvctl syncs the member list through the proxy first).
        r = kvctl("set", "/app/upstream/py1", "10.0.0.1:32768", sync=True)
        R.check(r.returncode == 0 and r.stdout == "10.0.0.1:32768\n", f"book set: {r.stdout}{r.stderr}")
        r = kvctl("set", "/app/upstream/py2", "10.0.0.2:32768")
        R.check(r.returncode == 0, f"set through the proxy: {r.stdout}{r.stderr}")
        r = kvctl("ls", "/app/upstream", sync=True)
        R.check(sorted(r.stdout.split()) == ["/app/upstream/py1", "/app/upstream/py2"],
                f"book ls: {r.stdout!r}")
        r = kvctl("rm", "/app/upstream/py2")
        R.check(r.returncode == 0, f"rm through the proxy: {r.stdout}{r.stderr}")
        r = kvctl("ls", "/app/upstream")
        R.check(r.stdout.split() == ["/app/upstream/py1"], f"ls after rm: {r.stdout!r}")
        for i in range(20):
            st, _, _ = harness.put(proxy, f"data/k{i}", f"v{i}", catch=True)
            R.check(st in (200, 201), f"write data/k{i}: {st}")

        # Every member has applied the writes before two are killed: a follower left out of a
        # write's quorum could otherwise be the survivor and lack it until the others return.
        R.check(harness.wait_for(lambda: all(harness.get(u, "data/k19", catch=True)[0] == 200
                                             for u in client.values()), 10.0),
                "all members applied the writes")
        st = sh("status")
        R.check(st.returncode == 0 and "leader: etcd" in st.stdout and "cluster is healthy" in st.stdout,
                f"cluster.sh status: {st.stdout}")
        leader = harness.get_json(proxy, "/v2/members/leader", catch=True)[1]["name"]
        other = next(n for n in ("etcd0", "etcd1", "etcd2") if n != leader)
        survivor = next(n for n in ("etcd0", "etcd1", "etcd2") if n not in (leader, other))
        for name in (leader, other):
            k = sh("kill", name)
            R.check(k.returncode == 0, f"cluster.sh kill {name}: {k.stdout}{k.stderr}")
        print(f"killed {leader} (leader) and {other}; {survivor} survives")

        # Reads through the proxy still succeed, quickly.
        t0 = time.monotonic()
        for i in range(20):
            s, _, b = harness.get(proxy, f"data/k{i}", timeout=10.0, catch=True)
            R.check(s == 200 and json.loads(b)["node"]["value"] == f"v{i}",
                    f"read data/k{i} with two members down: {s} {b[:120]!r}")
        r = kvctl("get", "/app/upstream/py1")
        R.check(r.returncode == 0 and r.stdout == "10.0.0.1:32768\n", f"kvctl get: {r.stdout}{r.stderr}")
        R.check(time.monotonic() - t0 < 10.0, f"reads took {time.monotonic() - t0:.1f}s")

        # A write fails with the error the member gives without quorum, in bounded time.
        t0 = time.monotonic()
        s, _, b = harness.put(proxy, "data/lost", "x", timeout=30.0, catch=True)
        took = time.monotonic() - t0
        body = json.loads(b) if s else {}
        R.check(s == 500 and body.get("errorCode") == 300 and
                body.get("cause") == "etcdserver: request timed out",
                f"write without quorum: {s} {b!r}")
        R.check(took < 15.0, f"the failed write took {took:.1f}s")
        print(f"write without quorum failed after {took:.1f}s: {s} {b.decode(errors='replace')}")
        r = kvctl("set", "/data/lost2", "x", timeout=60)
        R.check(r.returncode != 0, f"kvctl set without quorum fails: {r.returncode} {r.stdout}{r.stderr}")

        # One member back: writes succeed again through the proxy.
        k = sh("start", other)
        R.check(k.returncode == 0, f"cluster.sh start {other}: {k.stdout}{k.stderr}")
        t0 = time.monotonic()
        ok = harness.wait_for(
            lambda: harness.put(proxy, "data/after", "back", timeout=10.0, catch=True)[0]
            in (200, 201), 60.0, 0.2)
        R.check(ok, "a write through the proxy succeeds after one member restarted")
        print(f"writes back {time.monotonic() - t0:.1f}s after restarting {other}")
        r = kvctl("set", "/app/upstream/py3", "10.0.0.3:32768")
        R.check(r.returncode == 0, f"kvctl set after the restart: {r.stdout}{r.stderr}")

        # Every key intact (quorum reads, through the proxy).
        for i in range(20):
            s, _, b = harness.get(proxy, f"data/k{i}", quorum=True, timeout=15.0, catch=True)
            R.check(s == 200 and json.loads(b)["node"]["value"] == f"v{i}", f"data/k{i} intact: {s}")
        r = kvctl("ls", "/app/upstream")
        R.check(sorted(r.stdout.split()) == ["/app/upstream/py1", "/app/upstream/py3"],
                f"upstream keys intact: {r.stdout!r}")
        s, _, b = harness.get(client[other], "data/k19", catch=True)
        R.check(s == 200, f"the restarted member {other} serves the data: {s}")
    finally:
        d = sh("down")
        R.check(d.returncode == 0, f"cluster.sh down: {d.stdout}{d.stderr}")
        harness.remove_workdir(workdir, R)


if __name__ == "__main__":
    main()
    R.finish()  # also after an early return: a failed `cluster.sh up` fails the test
