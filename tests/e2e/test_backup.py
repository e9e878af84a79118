#!/usr/bin/env python3
"""kvctl backup, offline and online, and restores with --force-new-cluster (README "Disaster
recovery"). Three kvd members get 1,000 keys (nested dirs, TTL keys, in-order keys); then:
  - online: `kvctl --endpoints B backup --backup-dir DIR` is taken from a running member while
    64 client connections overwrite keys through all three members and a probe writes one key at a
    time. The restored member must hold exactly the tree at one index: for every key, the last
    acknowledged write at or below that index and nothing written after it. Writes go on while
    the backup is read; the probe's slowest write during the backup is printed beside its
    slowest before it.
  - offline: a stopped member's data dir is backed up; the restore holds every node of the
    cluster's tree with its value, dir flag, indexes and expiration time.
  - a backup starts only with --force-new-cluster (else a clear error), has its own member and
    cluster ids, and a restored member grows to two with `member add`.
  - refusals: the data dir of a running member, a backup dir that is not empty, an online
    backup without root's credentials when v2 auth is on (it holds password hashes).
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from cluster import Cluster, load_sample_tree  # noqa: E402

KEYS = 1000
WRITERS = 64  # client connections writing during the online backup
SLOTS = 40  # keys per writer thread, overwritten in turn


def nodes(tree, prefix=""):
    """{key: (value, dir, createdIndex, modifiedIndex, expiration)} of a recursive GET's tree,
    for keys under prefix."""
    out = {}

    def walk(n):
        if "key" in n and n["key"].startswith(prefix):
            out[n["key"]] = (n.get("value"), bool(n.get("dir")), n.get("createdIndex"),
                             n.get("modifiedIndex"), n.get("expiration"))
        for c in n.get("nodes", []) or []:
            walk(c)
    walk(tree)
    return out


class IndexedWriters:
    """Threads overwriting /load/t<t>/s<slot> through the members in turn; each outcome is
    recorded with the index the server gave it: acked[key] = [(modifiedIndex, value), ...];
    unknown outcomes (timeouts, 5xx) are kept apart."""

    def __init__(self, members):
        self.members = members
        self.acked = {}
        self.unknown = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.count = 0
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True)
                        for t in range(WRITERS)]

    def run(self, t):
        seq = 0
        while not self.stopping.is_set():
            m = self.members[(t + seq) % len(self.members)]
            key = f"/load/t{t}/s{seq % SLOTS}"
            value = f"{t}-{seq}"
            seq += 1
            try:
                status, _, body = harness.put(m, key, value, timeout=15.0)
            except OSError:
                status, body = None, b""
            with self.lock:
                if status in (200, 201):
                    idx = json.loads(body)["node"]["modifiedIndex"]
                    self.acked.setdefault(key, []).append((idx, value))
                    self.count += 1
                else:
                    self.unknown.add(key)

    def acks(self):
        with self.lock:
            return self.count

    def wait_acks(self, n, timeout=30.0):
        target = self.acks() + n
        return harness.wait_for(lambda: self.acks() >= target, timeout)

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)


class Probe:
    """One client writing one key at a time through m: (start, latency) of each write."""

    def __init__(self, m):
        self.m = m
        self.samples = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopping.is_set():
            t0 = time.monotonic()
            try:
                harness.put(self.m, "/probe", str(t0), timeout=15.0)
            except OSError:
                pass
            self.samples.append((t0, time.monotonic() - t0))

    def slowest(self, t_from, t_to):
        lat = [d for (t, d) in self.samples if t_from <= t + d and t <= t_to]
        return (max(lat) if lat else None), len(lat)


def kvctl(*args):
    p = subprocess.run([harness.KVCTL_BIN, *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def restore(c, name, data_dir, force=True, wait=True):
    """A kvd member started on a backup dir (its own ports)."""
    m = harness.Member("kvd", name=name, workdir=c.workdir)
    m.data_dir = data_dir
    m.extra_args = ["--force-new-cluster"] if force else []
    c.members.append(m)  # killed by the cluster's clean-up
    m.spawn()
    if wait:
        m.wait_ready(40.0)
    return m


def cluster_id(m):
    _, hdrs, _ = harness.request("GET", m.url + "/v2/members")
    return hdrs.get("x-etcd-cluster-id")


def member_ids(m):
    _, j, _ = harness.get_json(m, "/v2/members")
    return sorted(x["id"] for x in j["members"])


def check_online(R, writers, base, restored_tree):
    """The restored tree is the source's at one index E (the newest write it holds)."""
    got = nodes(restored_tree, "/load/")
    files = {k: v for k, v in got.items() if not v[1]}
    e = max((v[3] for v in files.values()), default=0)
    wrong = []
    for key, writes in writers.acked.items():
        upto = [w for w in writes if w[0] <= e]
        want = max(upto)[1] if upto else None
        have = files.get(key, (None,))[0]
        if have != want and key not in writers.unknown:
            wrong.append((key, want, have))
    extra = [k for k in files if k not in writers.acked and k not in writers.unknown]
    R.check(not wrong and not extra,
            f"online backup: every key as of index {e} ({len(files)} keys; wrong {wrong[:3]}, "
            f"unexpected {extra[:3]})")
    later = sum(1 for ws in writers.acked.values() for w in ws if w[0] > e)
    R.check(later > 0, f"online backup: writes acknowledged after its index are not in it ({later})")
    kept = nodes(restored_tree, "/data/") | nodes(restored_tree, "/ttl/") | \
        nodes(restored_tree, "/queue")
    want = nodes(base, "/data/") | nodes(base, "/ttl/") | nodes(base, "/queue")
    R.check(kept == want, f"online backup: the 1,000-key tree node by node ({len(kept)} of "
                          f"{len(want)} nodes equal: {sum(1 for k in want if kept.get(k) == want[k])})")


def main():
    R = harness.Results()
    with Cluster("kvd", n=3, snapshot_count=3000, results=R) as c:
        a, b, m3 = c.members[:3]
        load_sample_tree(a, KEYS)
        base = c.converged()
        R.check(base is not None, "the three members converged after the load")
        source_ids = member_ids(a)
        source_cid = cluster_id(a)

        # --- online, under load ---
        writers = IndexedWriters([a, b, m3])
        probe = Probe(b)
        writers.start()
        probe.thread.start()
        R.check(writers.wait_acks(3000), "the writers are under way")
        t0 = time.monotonic()
        online_dir = os.path.join(c.workdir, "online.data")
        rc, out, err = kvctl("--endpoints", b.url, "backup", "--backup-dir", online_dir)
        t1 = time.monotonic()
        R.check(rc == 0 and "backup of member" in out, f"online backup: rc {rc} {out}{err}")
        during = writers.acks()
        R.check(writers.wait_acks(1000), "writes go on after the backup")
        writers.stop()
        probe.stopping.set()
        probe.thread.join(30)
        before_worst, before_n = probe.slowest(0, t0)
        worst, n = probe.slowest(t0, t1)
        print(f"online backup took {t1 - t0:.2f} s; the probe's slowest write during it "
              f"{(worst or 0) * 1000:.1f} ms ({n} writes), before it {before_worst * 1000:.1f} ms "
              f"({before_n} writes); {during} acknowledged writes by then")
        R.check(n > 1, f"the probe's writes went on during the backup ({n})")

        final = c.converged()
        R.check(final is not None, "converged after the load")

        # --- refusals ---
        rc, _, err = kvctl("backup", "--data-dir", a.data_dir,
                           "--backup-dir", os.path.join(c.workdir, "x.data"))
        R.check(rc != 0 and "in use by a running kvd" in err,
                f"offline backup of a running member refused: {err.strip()}")
        rc, _, err = kvctl("--endpoints", b.url, "backup", "--backup-dir", online_dir)
        R.check(rc != 0 and "not empty" in err, f"a non-empty backup dir refused: {err.strip()}")

        # --- offline ---
        m3.stop()
        offline_dir = os.path.join(c.workdir, "offline.data")
        rc, out, err = kvctl("backup", "--data-dir", m3.data_dir, "--backup-dir", offline_dir)
        R.check(rc == 0 and "backup of member" in out, f"offline backup: rc {rc} {out}{err}")
        rc2, _, _ = kvctl("backup", "--data-dir", m3.data_dir, "--backup-dir",
                          os.path.join(c.workdir, "offline2.data"))
        R.check(rc2 == 0, "the source of an offline backup is unchanged and can be backed up again")

        # --- restores ---
        plain = restore(c, "plain", offline_dir, force=False, wait=False)
        plain.proc.wait(timeout=30)
        log = plain.read_log()
        R.check(plain.proc.returncode != 0 and "start it with --force-new-cluster" in log,
                f"a backup refuses to start without --force-new-cluster (exit "
                f"{plain.proc.returncode})")
        off = restore(c, "off", offline_dir)
        got = Cluster.dump(off)
        R.check(got is not None and nodes(got[1]) == nodes(final[1]),
                f"offline backup: every node with its value, indexes and expiration "
                f"({len(nodes(final[1]))} nodes)")
        R.check(member_ids(off) != source_ids and cluster_id(off) != source_cid,
                f"the restored member has a new identity ({member_ids(off)}, {cluster_id(off)})")
        R.check(len(member_ids(off)) == 1, "the restored member is alone in its cluster")
        status, _, _ = harness.put(off, "/after-restore", "x", catch=True)
        R.check(status == 201, f"the restored member is writable ({status})")

        # With v2 auth on, the backup (which holds password hashes) needs the root role.
        harness.request("PUT", off.url + "/v2/auth/users/root",
                        body=json.dumps({"user": "root", "password": "pw"}).encode(),
                        headers={"Content-Type": "application/json"})
        st, _, _ = harness.request("PUT", off.url + "/v2/auth/enable")
        R.check(st == 200, f"auth enabled on the restored member ({st})")
        st, _, body = harness.request("GET", off.url + "/kvd/backup")
        R.check(st == 401, f"an online backup without credentials is refused ({st} {body[:80]!r})")
        rc, out, err = kvctl("--endpoints", off.url, "-u", "root:pw", "backup", "--backup-dir",
                             os.path.join(c.workdir, "auth.data"))
        R.check(rc == 0, f"root's online backup: rc {rc} {out}{err}")

        on = restore(c, "on", online_dir)
        got = Cluster.dump(on)
        R.check(got is not None, "the online backup restores")
        if got is not None:
            check_online(R, writers, base[1], got[1])

        # Grow the restored member back: `member add` and a member joining it.
        on, new = c.grow(on, ["grown"], R, "restored member: ")
        harness.put(new, "/grown", "y")
        grown = c.converged(among=[on, new])
        R.check(grown is not None and len(nodes(grown[1])) == len(nodes(got[1])) + 1,
                "the joined member holds every key and replicates")
    R.finish()


if __name__ == "__main__":
    main()
