#!/usr/bin/env python3
"""Three kvd members on 127.0.0.1: a write through each member, quorum reads on each, kill -9 of
the leader, a new leader among the survivors, writes again, and the killed member catching up
after its restart. Every wait is bounded; waits poll for the event they need (cluster.py)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()


def main():
    with cluster.Cluster("kvd", 3, heartbeat_ms=50, election_ms=500, workdir_prefix="kvd-smoke",
                         results=R) as c:
        ms = c.members
        lead = c.leader()
        R.check(lead is not None, "three members agree on a leader")

        status, _, body = harness.request("GET", ms[0].url + "/v2/members")
        listed = json.loads(body)["members"] if status == 200 else []
        R.check(len(listed) == 3, f"/v2/members lists 3 members: {body[:300]!r}")
        named = harness.wait_for(lambda: all(
            x["name"] for x in harness.get_json(ms[2], "/v2/members")[1]["members"]), 10)
        R.check(named, "every member published its name")
        status, _, body = harness.request("GET", ms[1].url + "/v2/machines")
        R.check(status == 200 and body.decode().count("http://") == 3,
                f"/v2/machines lists every client URL: {body!r}")

        for i, m in enumerate(ms):
            status, _, body = harness.put(m, f"k{i}", f"v{i}")
            R.check(status in (200, 201), f"write through {m.name}: {status} {body[:200]!r}")
        for m in ms:
            for i in range(3):
                status, hdrs, body = harness.get(m, f"k{i}", quorum=True)
                ok = status == 200 and json.loads(body)["node"]["value"] == f"v{i}"
                R.check(ok, f"quorum read of k{i} on {m.name}: {status} {body[:200]!r}")
                R.check(int(hdrs.get("x-raft-term", "0")) >= 2, f"X-Raft-Term on {m.name}")

        # Kill -9 the leader: the survivors elect a new one within three election timeouts.
        if lead is None:
            R.finish()
        c.kill(lead)
        survivors = [m for m in ms if m is not lead]
        new = c.leader(among=survivors, timeout=3 * c.election_ms / 1000 + 2)
        R.check(new is not None and new is not lead, f"a new leader after killing {lead.name}")
        for i, m in enumerate(survivors):
            status, _, body = harness.put(m, f"after{i}", "x")
            R.check(status in (200, 201),
                    f"write through {m.name} after the kill: {status} {body[:200]!r}")
        for m in survivors:
            status, _, _ = harness.get(m, "after1", quorum=True)
            R.check(status == 200, f"quorum read on {m.name} after the kill: {status}")

        # The old leader restarts from its data dir and catches up.
        c.restart(lead)
        caught = harness.wait_for(lambda: harness.get(lead, "after1")[0] == 200, 10)
        R.check(caught, f"{lead.name} caught up after restart")
        R.check("ignoring --initial-cluster" in lead.read_log(),
                "a restart from an existing data dir ignores the initial-cluster flags")
    R.finish()


if __name__ == "__main__":
    main()
