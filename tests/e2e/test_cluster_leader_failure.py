#!/usr/bin/env python3
"""Leader failure under load: four client threads write unique keys through all three kvd
members; the leader is killed with SIGKILL; the survivors elect a new leader within three
election timeouts and writes are acknowledged again; the old leader restarts from its data dir
and catches up. Afterwards every acknowledged write is present with its value on every member,
and all members hold identical stores (full recursive GET of /) at the same X-Etcd-Index.
Writes whose outcome is unknown (timed out while the leader was gone) may or may not be there,
as with etcd; they are only counted.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
# KVD_E2E_KIND=etcd runs the same scenario against etcd (by hand, for comparison).
KIND = os.environ.get("KVD_E2E_KIND", "kvd")


def main():
    t_start = time.monotonic()
    with cluster.Cluster(KIND, 3, results=R) as c:
        lead = c.leader()
        if not R.check(lead is not None, "three members agree on a leader"):
            c.dump_logs()
            R.finish()
        old_id = c.ids[lead.name]
        w = cluster.Writers(c.members, threads=4, prefix="lf").start()
        try:
            R.check(w.wait_acks(50, 30), f"50 writes acknowledged before the kill ({w.count()})")
            acked_before = w.count()
            c.kill(lead)
            t_kill = time.monotonic()
            survivors = [m for m in c.members if m is not lead]
            new = harness.wait_for(
                lambda: (lambda l: l if l is not None and l is not lead else None)(
                    c.agreed_leader(survivors)),
                3 * c.election_ms / 1000 + 5)
            took = time.monotonic() - t_kill
            R.check(new is not None, "the survivors agree on a new leader")
            bound = 3 * c.election_ms / 1000
            R.check(new is not None and took <= bound,
                    f"new leader within three election timeouts ({bound:.1f}s): {took:.2f}s")
            print(f"new leader {new.name if new else None} {took:.2f}s after the kill; "
                  f"{w.count() - acked_before} writes acknowledged meanwhile", flush=True)
            n0 = w.count()
            R.check(w.wait_acks(50, cluster.REQUEST_TIMEOUT_S + 20),
                    f"50 more writes acknowledged after the election ({w.count() - n0})")
            c.restart(lead)
            R.check(w.wait_acks(30, cluster.REQUEST_TIMEOUT_S + 20),
                    "writes acknowledged after the old leader restarted")
        finally:
            w.stop()
        print(f"{len(w.acked)} acknowledged, {len(w.unknown)} unknown outcome: "
              f"{w.errors[:4]}", flush=True)
        same = c.converged(timeout=20)
        R.check(same is not None, "all three members converge to one store and X-Etcd-Index")
        for m in c.members:
            d = c.dump(m)
            if d is None:
                R.check(False, f"{m.name} answers a recursive GET")
                continue
            missing = w.missing(d[1])
            R.check(not missing, f"every acknowledged write present with its value on {m.name}: "
                    f"{len(missing)} missing, e.g. {list(missing.items())[:3]}")
        if same:
            have = cluster.index_of(same[1])
            extra = [k for k in have if k.startswith("/lf/") and k not in w.acked
                     and k not in w.unknown]
            R.check(not extra, f"no key that was never written: {extra[:3]}")
        new_lead = c.leader()
        R.check(new_lead is not None and c.ids[new_lead.name] != "",
                "after the restart the three members agree on a leader")
        R.check(KIND != "kvd" or "ignoring --initial-cluster" in lead.read_log(),
                f"{lead.name} (was {old_id}) restarted from its data dir")
    print(f"took {time.monotonic() - t_start:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
