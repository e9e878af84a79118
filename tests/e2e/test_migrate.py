#!/usr/bin/env python3
"""kvctl migrate: an etcd 3.4 data dir into kvd (README "Disaster recovery", "Moving from etcd").

One member: a real etcd (--snapshot-count 3000) writes nested dirs, 20 hidden keys, TTL keys and
a TTL dir, in-order keys, 10,000 plain keys, 1,000 deletions (so indexes have gaps), a
compare-and-swap and a TTL refresh, crossing several snap files; it is stopped and migrated.
kvd is started on the migrated dir with etcd's own flags (same name and ports) plus
--force-new-cluster, and etcd is then restarted on its own dir; what each serves must be the
same: every node of a recursive GET with value, dir flag, createdIndex, modifiedIndex and
expiration; each hidden key; X-Etcd-Index; the member and cluster ids; and the answer to a watch
with a waitIndex inside the event history (what confd holds across a restart).

Three members, the documented path: an etcd cluster of three is stopped, member 0's data dir is
migrated, kvd starts on it with --force-new-cluster, and two fresh kvd members are added: all
three hold etcd's tree with its indexes and replicate new writes.

Refusals: a directory that is no etcd data dir, and an etcd member holding only v3 data.
"""
import json
import os
import shutil
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from cluster import Cluster  # noqa: E402

PLAIN = 10000
HIDDEN = ["/_h%d" % i for i in range(10)] + ["/app/_s%d" % i for i in range(10)]


def form(value):
    return {"body": f"value={value}".encode(),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


def parallel(fn, items, threads=16):
    """fn(item) for every item, on `threads` threads."""
    chunks = [items[i::threads] for i in range(threads)]
    ts = [threading.Thread(target=lambda c=c: [fn(x) for x in c]) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)


def write_tree(m, plain=PLAIN):
    """The tree the migration must carry; returns the index of the compare-and-swap."""
    url = m.url + "/v2/keys"
    for i in range(50):
        harness.put(m, f"/a/b{i % 5}/c/d/k{i}", f"deep{i}")
    for k in HIDDEN:
        harness.put(m, k, "hidden" + k)
    for i in range(5):
        harness.put(m, f"/ttl/k{i}", "t", query="ttl=600")
    harness.request("PUT", url + "/ttldir?dir=true&ttl=900")
    for i in range(10):
        harness.request("POST", url + "/queue", **form(f"job{i}"))
    parallel(lambda i: harness.put(m, f"/plain/k{i}", f"v{i}"), list(range(plain)))
    parallel(lambda i: harness.request("DELETE", f"{url}/plain/k{i}"),
             list(range(0, plain, 10)))
    st, _, body = harness.request("PUT", url + "/a/b0/c/d/k0?prevValue=deep0", **form("swapped"))
    harness.request("PUT", url + "/ttl/k0?ttl=900&refresh=true&prevExist=true")
    return json.loads(body)["node"]["modifiedIndex"] if st == 200 else None


def strip_ttl(tree):
    """The tree without the `ttl` countdowns (expiration stays: it is absolute)."""
    if isinstance(tree, dict):
        return {k: strip_ttl(v) for k, v in tree.items() if k != "ttl"}
    if isinstance(tree, list):
        return [strip_ttl(x) for x in tree]
    return tree


def observe(m, cas_index):
    """What a client of m sees."""
    out = {}
    status, hdrs, body = harness.get(m, "/", query="recursive=true&sorted=true", catch=True)
    out["tree"] = strip_ttl(json.loads(body)["node"]) if status == 200 else status
    out["index"] = hdrs.get("x-etcd-index")
    out["cluster"] = hdrs.get("x-etcd-cluster-id")
    out["hidden"] = {k: harness.get(m, k, catch=True)[2] for k in HIDDEN}
    _, j, _ = harness.get_json(m, "/v2/members")
    out["members"] = sorted(x["id"] for x in j["members"])
    # A watcher that last saw the index before the compare-and-swap.
    _, _, body = harness.get(m, "/a", query=f"wait=true&recursive=true&waitIndex={cas_index}",
                             catch=True)
    out["watch"] = body
    return out


def kvctl(*args):
    p = subprocess.run([harness.KVCTL_BIN, *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def as_kvd(etcd_member, data_dir, extra):
    """A kvd member with etcd_member's name, ports and flags on data_dir."""
    k = harness.Member("kvd", name=etcd_member.name, workdir=etcd_member.workdir,
                       client_port=etcd_member.client_port, peer_port=etcd_member.peer_port)
    k.data_dir = data_dir
    k.log_path = os.path.join(etcd_member.workdir, f"{etcd_member.name}.kvd.log")
    k.extra_args = list(extra)
    return k


def one_member(R, workdir):
    e = harness.Member("etcd", name="m0", workdir=workdir, extra_args=["--snapshot-count", "3000"])
    kvd = None
    try:
        e.start()
        cas_index = write_tree(e)
        R.check(cas_index is not None, "etcd took the writes")
        e.stop()
        snaps = sorted(os.listdir(os.path.join(e.data_dir, "member", "snap")))
        R.check(sum(1 for s in snaps if s.endswith(".snap")) >= 1,
                f"etcd wrote snap files ({snaps})")
        dst = os.path.join(workdir, "m0.kvd")
        rc, out, err = kvctl("migrate", "--etcd-data-dir", e.data_dir, "--data-dir", dst)
        R.check(rc == 0 and "migrated etcd member" in out, f"migrate: rc {rc}: {out}{err}")
        print(out.strip())

        kvd = as_kvd(e, dst, ["--force-new-cluster"])
        kvd.start()
        got = observe(kvd, cas_index)
        kvd.stop()
        e.start()  # etcd on its own data dir, the same flags
        want = observe(e, cas_index)
        e.stop()
        for key in ["index", "cluster", "members", "hidden", "watch"]:
            R.check(got[key] == want[key], f"one member: {key}: kvd {str(got[key])[:160]} "
                                           f"etcd {str(want[key])[:160]}")
        n = len(json.dumps(want["tree"]))
        R.check(isinstance(want["tree"], dict) and b"compareAndSwap" in want["watch"] and
                all(b'"value":"hidden' in v for v in want["hidden"].values()),
                f"one member: etcd serves the tree, the watch and the hidden keys after its "
                f"restart (index {want['index']})")
        R.check(got["tree"] == want["tree"],
                f"one member: the recursive tree, every node with its indexes and expiration "
                f"({n} bytes of JSON)")
    finally:
        e.kill()
        if kvd:
            kvd.kill()


def three_members(R):
    with Cluster("etcd", n=3, snapshot_count=500, results=R) as ec:
        e0 = ec.members[0]
        write_tree(e0, plain=2000)
        before = ec.converged()
        R.check(before is not None, "three etcd members converged")
        hidden = {k: harness.get(e0, k)[2] for k in HIDDEN}
        for m in ec.members:
            m.stop()
        dst = os.path.join(ec.workdir, "m0.kvd")
        rc, out, err = kvctl("migrate", "--etcd-data-dir", e0.data_dir, "--data-dir", dst)
        R.check(rc == 0, f"migrate member 0: rc {rc}: {out}{err}")
        with Cluster("kvd", n=0, results=R, workdir=ec.workdir) as kc:
            k0 = as_kvd(e0, dst, ["--force-new-cluster"])
            kc.members.append(k0)
            k0.start()
            kc.learn_id(k0)
            R.check(len(harness.get_json(k0, "/v2/members")[1]["members"]) == 1,
                    "the migrated member is alone")
            live = kc.grow(k0, ["kvdnew0", "kvdnew1"], R)
            after = kc.converged(among=live)
            R.check(after is not None, "the three kvd members converged")
            if after and before:
                R.check(strip_ttl(after[1]) == strip_ttl(before[1]),
                        "three members: etcd's tree with its indexes on every kvd member")
            R.check(all(harness.get(live[2], k)[2] == v for k, v in hidden.items()),
                    "three members: the hidden keys replicated")
            harness.put(live[1], "/after-migration", "x")
            R.check(kc.converged(among=live) is not None, "a new write replicates to all three")


def refusals(R, workdir):
    rc, _, err = kvctl("migrate", "--etcd-data-dir", workdir, "--data-dir",
                       os.path.join(workdir, "x.kvd"))
    R.check(rc != 0 and workdir in err, f"not an etcd data dir: {err.strip()}")
    e = harness.Member("etcd", name="v3", workdir=workdir)
    try:
        e.start()
        env = dict(os.environ, ETCDCTL_API="3")
        for i in range(10):
            subprocess.run(["etcdctl", "--endpoints", e.url, "put", f"k{i}", "v"], env=env,
                           capture_output=True, timeout=30, check=True)
        e.stop()
        rc, _, err = kvctl("migrate", "--etcd-data-dir", e.data_dir, "--data-dir",
                           os.path.join(workdir, "v3.kvd"))
        R.check(rc != 0 and "v3 data only" in err, f"v3-only data refused: {err.strip()}")
    finally:
        e.kill()


def main():
    harness.require_etcd()
    R = harness.Results()
    workdir = harness.new_workdir("migrate")
    try:
        one_member(R, workdir)
        refusals(R, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    three_members(R)
    R.finish()


if __name__ == "__main__":
    main()
