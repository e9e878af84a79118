#!/usr/bin/env python3
"""A whole cluster killed (-9) and restarted at once, with a long election timeout (5 s) so that
the difference shows. Without --initial-election-tick-advance no member may campaign before a
whole election timeout (a randomized timeout is at least that), so the first write comes after
5 s, always. With it (the default, as etcd's) the members advance their election clocks to two
ticks short of the timeout once enough peers are connected: the first candidate's remaining
wait is then uniform-ish in [0.2 s, 5.2 s) per member, the earliest of three. Over three
restarts, at least one first write comes before 4 s unless each of the three draws of three
exceeded 3.8 s (a chance of about 1 in 100,000). etcd is run the same way and reported."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
ELECTION_MS = 5000


def first_writes_after_restarts(kind, advance, restarts):
    """Seconds from restarting every killed member to the first acknowledged write, per
    restart."""
    extra = [] if advance else ["--initial-election-tick-advance=false"]
    out = []
    with cluster.Cluster(kind, 3, election_ms=ELECTION_MS, extra_args=extra, results=R) as c:
        harness.put(c.leader(), "before", "x", timeout=20)
        for _ in range(restarts):
            for m in c.members:
                c.kill(m, signal.SIGKILL)
            t0 = time.monotonic()
            for m in c.members:
                c.restart(m, wait=False)

            def written():
                return any(harness.put(m, "after", "y", timeout=1, catch=True)[0] in (200, 201)
                           for m in c.members)
            ok = harness.wait_for(written, 30, 0.05)
            R.check(ok, f"{kind} (advance={advance}): no write within 30 s of the restart")
            out.append(round(time.monotonic() - t0, 2))
    return out


def main():
    timeout_s = ELECTION_MS / 1000
    fast = first_writes_after_restarts("kvd", True, 3)
    slow = first_writes_after_restarts("kvd", False, 1)
    print(f"kvd: first write after restarting every member: {fast} s with the tick advance, "
          f"{slow} s without (election timeout {timeout_s:g} s)")
    R.check(min(fast) < timeout_s - 1.0, f"with the tick advance: {fast} s")
    R.check(min(slow) >= timeout_s, f"--initial-election-tick-advance=false: {slow} s")
    if harness.have_etcd():
        print(f"etcd, for comparison: {first_writes_after_restarts('etcd', True, 1)} s with the "
              f"tick advance, {first_writes_after_restarts('etcd', False, 1)} s without")
    R.finish()


if __name__ == "__main__":
    main()
