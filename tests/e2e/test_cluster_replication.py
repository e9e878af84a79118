#!/usr/bin/env python3
"""Replication on three members: a write through each member is readable on every member with
quorum=true (and, once applied, with a plain GET); every member reports the same store and
X-Etcd-Index; /v2/stats/self and /v2/stats/leader carry real figures (one leader, followers that
received appends, per-follower success counts and latencies). The same scenario runs against a
3-member etcd cluster, and the shapes of the stats answers must match. Both run with
--pre-vote=true --strict-reconfig-check=true (accepted as etcd 3.4 accepts them).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
WRITES_PER_MEMBER = 5


def shape(v):
    """A JSON value's structure: keys (in order) and types, no values."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "number"  # Go writes a float64 that happens to be whole as "0", "3"
    return type(v).__name__


def scenario(kind):
    out = {}
    # etcd 3.4's --pre-vote and --strict-reconfig-check are accepted (Go's bool syntax).
    with cluster.Cluster(kind, 3, extra_args=["--pre-vote=true",
                                              "--strict-reconfig-check=true"]) as c:
        lead = c.leader()
        R.check(lead is not None, f"{kind}: the three members agree on a leader")
        if lead is None:
            c.dump_logs()
            return out
        written = {}
        last_index = 0
        for m in c.members:
            for i in range(WRITES_PER_MEMBER):
                key = f"/rep/{m.name}/k{i}"
                status, hdrs, body = harness.put(m, key, f"{m.name}-{i}")
                ok = R.check(status == 201, f"{kind}: write {key} through {m.name}: {status} "
                             f"{body[:200]!r}")
                if ok:
                    written[key] = f"{m.name}-{i}"
                    idx = int(hdrs["x-etcd-index"])
                    R.check(idx > last_index, f"{kind}: X-Etcd-Index grows ({last_index} -> {idx})")
                    last_index = idx
        for m in c.members:
            bad = []
            for key, value in written.items():
                status, hdrs, body = harness.get(m, key, quorum=True)
                got = json.loads(body).get("node", {}).get("value") if status == 200 else None
                if got != value or int(hdrs.get("x-etcd-index", 0)) < last_index:
                    bad.append((key, status, body[:120], hdrs.get("x-etcd-index")))
            R.check(not bad, f"{kind}: every write reads back with quorum=true on {m.name}: {bad[:3]}")
        same = c.converged(timeout=10)
        R.check(same is not None, f"{kind}: the members converge to one store and X-Etcd-Index")
        if same:
            R.check(same[0] >= last_index, f"{kind}: converged index {same[0]} >= {last_index}")
            have = cluster.index_of(same[1])
            R.check(all(have.get(k) == v for k, v in written.items()),
                    f"{kind}: the converged store holds every write")
        # Plain (local) reads on followers once they applied.
        for m in c.followers(lead):
            ok = harness.wait_for(lambda m=m: all(
                json.loads(harness.get(m, k)[2]).get("node", {}).get("value") == v
                for k, v in written.items()), 10)
            R.check(ok, f"{kind}: plain GETs on follower {m.name} see every write")

        # Stats: one leader; followers name it and received appends; the leader's view of each.
        lead_id = c.ids[lead.name]

        def latencies_sampled():
            status, j, _ = harness.get_json(lead, "/v2/stats/leader")
            fol = (j or {}).get("followers", {})
            return status == 200 and len(fol) == 2 and all(
                f["latency"]["current"] > 0 for f in fol.values())
        R.check(harness.wait_for(latencies_sampled, 10),
                f"{kind}: the leader measured a latency for each follower within 10 s")
        for m in c.members:
            status, j, body = harness.get_json(m, "/v2/stats/self")
            R.check(status == 200 and j is not None, f"{kind}: stats/self on {m.name}: {status}")
            if not j:
                continue
            out.setdefault("self", shape(j))
            want_state = "StateLeader" if m is lead else "StateFollower"
            R.check(j["state"] == want_state, f"{kind}: {m.name} state {j['state']} != {want_state}")
            R.check(j["leaderInfo"]["leader"] == lead_id,
                    f"{kind}: {m.name} names leader {j['leaderInfo']['leader']} != {lead_id}")
            R.check(j["id"] == c.ids[m.name] and j["name"] == m.name,
                    f"{kind}: stats/self id and name of {m.name}: {body[:200]!r}")
            if m is not lead:
                R.check(j["recvAppendRequestCnt"] > 0,
                        f"{kind}: follower {m.name} counted received appends: {body[:300]!r}")
                out.setdefault("self_follower", shape(j))
            status, j2, body2 = harness.get_json(m, "/v2/stats/leader")
            if m is lead:
                R.check(status == 200 and j2 and j2["leader"] == lead_id,
                        f"{kind}: stats/leader on the leader: {status} {body2[:200]!r}")
                if not j2:
                    continue
                out["leader"] = shape(j2)
                fol = j2.get("followers", {})
                want = {c.ids[f.name] for f in c.followers(lead)}
                R.check(set(fol) == want, f"{kind}: stats/leader lists the followers {want}: "
                        f"{sorted(fol)}")
                for fid, fs in fol.items():
                    lat = fs["latency"]
                    R.check(fs["counts"]["success"] > 0,
                            f"{kind}: stats/leader success count for {fid}: {fs}")
                    R.check(0 < lat["minimum"] <= lat["average"] <= lat["maximum"] and
                            lat["current"] > 0 and lat["standardDeviation"] >= 0,
                            f"{kind}: stats/leader latencies for {fid} are real: {lat}")
                    R.check(lat["maximum"] < 10000,
                            f"{kind}: latencies are in milliseconds: {lat}")
            else:
                R.check(status == 403 and body2 == b'{"message":"not current leader"}',
                        f"{kind}: stats/leader on follower {m.name}: {status} {body2[:200]!r}")
        status, _, body = harness.request("GET", lead.url + "/v2/machines")
        R.check(status == 200 and body.decode() == ", ".join(sorted(m.url for m in c.members)),
                f"{kind}: /v2/machines: {body!r}")
    return out


def main():
    t0 = time.monotonic()
    kvd = scenario("kvd")
    if cluster.etcd_half_runs():
        etcd = scenario("etcd")
        for part in ("self", "self_follower", "leader"):
            # sendAppendRequestCnt and the rate fields come and go with traffic in etcd; compare
            # the fields both always have.
            a, b = kvd.get(part), etcd.get(part)
            R.check(a is not None and b is not None, f"stats {part} seen on both")
            if a is None or b is None:
                continue
            optional = {"recvPkgRate", "recvBandwidthRate", "sendPkgRate", "sendBandwidthRate"}
            a = {k: v for k, v in a.items() if k not in optional}
            b = {k: v for k, v in b.items() if k not in optional}
            if part == "leader":
                a = {"leader": a["leader"], "followers": list(a["followers"].values())[:1]}
                b = {"leader": b["leader"], "followers": list(b["followers"].values())[:1]}
            R.check(json.dumps(a) == json.dumps(b),
                    f"stats {part} has etcd's shape:\n  kvd  {json.dumps(a)}\n  etcd {json.dumps(b)}")
    print(f"took {time.monotonic() - t0:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
