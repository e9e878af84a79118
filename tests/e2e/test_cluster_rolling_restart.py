#!/usr/bin/env python3
"""Rolling restart under continuous writes: each of the three kvd members in turn is stopped
(SIGTERM, as a service manager does), restarted from its data dir, and waited for until it has
rejoined (healthy, knows the leader, has applied everything the leader had when it came back).
Writes from four client threads continue throughout. Afterwards no acknowledged write is lost
and every member holds the same store at the same X-Etcd-Index.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
# KVD_E2E_KIND=etcd runs the same scenario against etcd (by hand, for comparison).
KIND = os.environ.get("KVD_E2E_KIND", "kvd")


def local_index(m):
    d = cluster.Cluster.dump(m)
    return d[0] if d else None


def main():
    t_start = time.monotonic()
    with cluster.Cluster(KIND, 3, results=R) as c:
        R.check(c.leader() is not None, "three members agree on a leader")
        w = cluster.Writers(c.members, threads=4, prefix="roll").start()
        try:
            R.check(w.wait_acks(30, 30), "writes acknowledged before the first restart")
            # Followers first, the leader last (its stop forces an election under load).
            lead = c.leader()
            order = [m for m in c.members if m is not lead] + [lead]
            for m in order:
                t0 = time.monotonic()
                c.kill(m, signal.SIGTERM)
                # etcd shuts down cleanly, then dies of the signal itself (status -SIGTERM).
                R.check(m.proc.returncode == -signal.SIGTERM,
                        f"{m.name} ends by SIGTERM after its shutdown (exit {m.proc.returncode})")
                others = [x for x in c.members if x is not m]
                R.check(w.wait_acks(10, cluster.REQUEST_TIMEOUT_S + 20),
                        f"writes acknowledged while {m.name} is down")
                c.restart(m)
                # Rejoined: everyone agrees on a leader and m has applied what that leader had.
                lead = c.leader()
                target = local_index(lead) if lead else None
                ok = lead is not None and target is not None and harness.wait_for(
                    lambda: (local_index(m) or 0) >= target, 20)
                R.check(ok, f"{m.name} rejoined and caught up to index {target}")
                print(f"{m.name} restarted and rejoined in {time.monotonic() - t0:.2f}s "
                      f"({w.count()} writes acknowledged so far)", flush=True)
                R.check(w.wait_acks(10, cluster.REQUEST_TIMEOUT_S + 20),
                        f"writes acknowledged after {m.name} rejoined")
        finally:
            w.stop()
        print(f"{len(w.acked)} acknowledged, {len(w.unknown)} unknown outcome: {w.errors[:4]}",
              flush=True)
        same = c.converged(timeout=20)
        R.check(same is not None, "all three members converge to one store and X-Etcd-Index")
        for m in c.members:
            d = c.dump(m)
            missing = w.missing(d[1]) if d else {"<no answer>": None}
            R.check(not missing, f"no acknowledged write lost on {m.name}: {len(missing)} missing, "
                    f"e.g. {list(missing.items())[:3]}")
            status, _, body = harness.request("GET", m.url + "/health")
            R.check(status == 200, f"{m.name} healthy at the end: {status} {body!r}")
    print(f"took {time.monotonic() - t_start:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
