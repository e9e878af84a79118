#!/usr/bin/env python3
"""Catch-up by snapshot: three kvd members with --snapshot-count 100; a follower is killed
(SIGKILL) and stays down while the others apply enough writes for three snapshot cycles (each
compacts the log below it, so the entries the follower misses are gone). After its restart it
must receive and install a snapshot from the leader (its log and the sending leader's say so),
then hold exactly the leader's store at the leader's X-Etcd-Index, and keep replicating
normally afterwards.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
SNAPSHOT_COUNT = 100
CYCLES = 3


def saved_snapshots(m, since=0):
    """Indexes of the snapshots m logged as saved, from byte offset `since` of its log."""
    with open(m.log_path, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return [int(x) for x in re.findall(r"saved snapshot at index (\d+)", text)]


def log_size(m):
    return os.path.getsize(m.log_path)


def main():
    t_start = time.monotonic()
    with cluster.Cluster("kvd", 3, snapshot_count=SNAPSHOT_COUNT, results=R) as c:
        lead = c.leader()
        if not R.check(lead is not None, "three members agree on a leader"):
            R.finish()
        lagger = c.followers(lead)[0]
        live = [m for m in c.members if m is not lagger]
        c.kill(lagger)
        lagger_log_at = log_size(lagger)
        lead_log_at = log_size(lead)
        live_log_at = {m.name: log_size(m) for m in live}
        t0 = time.monotonic()
        w = cluster.Writers(live, threads=8, prefix="snap").start()
        try:
            enough = harness.wait_for(lambda: len(saved_snapshots(lead, lead_log_at)) >= CYCLES, 90)
        finally:
            w.stop()
        snaps = saved_snapshots(lead, lead_log_at)
        R.check(enough, f"the leader saved {CYCLES} snapshots while {lagger.name} was down: {snaps}")
        print(f"{len(w.acked)} writes in {time.monotonic() - t0:.1f}s; leader snapshots at {snaps}",
              flush=True)
        # One more write so that the leader's state is beyond its last snapshot.
        status, _, _ = harness.put(lead, "/snap/last", "x")
        R.check(status in (200, 201), f"a write after the snapshots: {status}")

        c.restart(lagger)
        want = c.converged(timeout=30)
        R.check(want is not None, f"{lagger.name} converges to the leader's store and index")
        with open(lagger.log_path, "rb") as f:
            f.seek(lagger_log_at)
            text = f.read().decode(errors="replace")
        got = re.findall(r"installed the snapshot at index (\d+)", text)
        R.check(got and int(got[-1]) >= snaps[0] if snaps else False,
                f"{lagger.name} installed a snapshot from the leader (log: {got})")
        R.check("received snapshot at index" in text,
                f"{lagger.name} logs that it received a snapshot")
        # By the leader of the moment: under load, leadership may have moved to the other live
        # member meanwhile (an election at a later term), and the new leader sends it.
        senders = []
        for m in live:
            with open(m.log_path, "rb") as f:
                f.seek(live_log_at[m.name])
                text = f.read().decode(errors="replace")
            if re.search(r"sending snapshot at index \d+ to member " + c.ids[lagger.name], text):
                senders.append(m.name)
        R.check(bool(senders), f"a leader logs sending a snapshot to {lagger.name} "
                f"({c.ids[lagger.name]}); leader before the kill: {lead.name}, logged by: {senders}")
        if want:
            missing = w.missing(want[1])
            R.check(not missing, f"every acknowledged write on the caught-up member: "
                    f"{len(missing)} missing")
            R.check(cluster.index_of(want[1]).get("/snap/last") == "x", "the last write is there")
        # Normal replication afterwards: a write through the caught-up member, read everywhere.
        status, hdrs, body = harness.put(lagger, "/snap/after", "y")
        R.check(status in (200, 201), f"write through {lagger.name} after catch-up: {status} {body[:200]!r}")
        for m in c.members:
            status, _, body = harness.get(m, "/snap/after", quorum=True)
            R.check(status == 200 and b'"value":"y"' in body,
                    f"quorum read on {m.name} after catch-up: {status} {body[:200]!r}")
        R.check(c.converged(timeout=20) is not None, "identical stores at the end")
    print(f"took {time.monotonic() - t_start:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
