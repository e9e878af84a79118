#!/usr/bin/env python3
"""Quorum loss: of three members, two are killed (SIGKILL): once the two followers, so that the
survivor is the old leader and must step down (check quorum), once the leader and a follower,
so that the survivor is a follower that loses its leader (that cluster runs with --pre-vote=true).
Then, on the survivor:

  plain GET                -> 200 from its store, at once
  /health                  -> 503 {"health":"false"} (polled until it says so, bounded)
  /v2/members/leader       -> 503 {"message":"During election"}
  /v2/stats/leader         -> 403 {"message":"not current leader"}
  /v2/members              -> 200, all three members
  PUT and GET ?quorum=true -> 500 {"errorCode":300,...,"cause":"etcdserver: request timed out"}
                              after the request timeout (5 s + 2 x election timeout = 7 s here)
  kvctl/etcdctl cluster-health -> "cluster is unavailable", exit 5; member list -> exit 1
(with only the first of the two down, cluster-health says "cluster is degraded", exit 5)

After one killed member restarts, the survivor becomes healthy again and writes succeed without
restarting it; data written before the loss is intact. X-Raft-Term (the term of the last
applied entry) stays put during the loss; the first write after it carries a term several
elections higher without --pre-vote, one (or, after a split vote, two) higher with it. The same scenario runs against a
3-member etcd cluster: statuses, bodies, the time a write takes to fail and the tools' outputs
(normalised) must match.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
ERR_TIMEOUT = (b'{"errorCode":300,"message":"Raft Internal Error",'
               b'"cause":"etcdserver: request timed out","index":0}\n')


def run_tool(tool, args, endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    p = subprocess.run([tool, "--endpoints", endpoint] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def generic(c, text):
    for m in c.members:
        mid = c.ids.get(m.name)
        if mid:
            text = re.sub(r"\b" + mid + r"\b", "<id>", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "<addr>", text)
    return "\n".join(sorted(text.split("\n")))


def scenario(kind, survivor_role):
    out = {}
    # The follower variant runs with --pre-vote=true: the lone survivor then never wins a
    # pre-vote, so its term stays; without it (etcd's default) the term rises with each try.
    pre_vote = survivor_role == "follower"
    with cluster.Cluster(kind, 3, extra_args=[f"--pre-vote={str(pre_vote).lower()}"],
                         results=R) as c:
        steps(f"{kind} ({survivor_role} survives)", c, out, survivor_role)
    return out


def steps(kind, c, out, survivor_role):
    lead = c.leader()
    if not R.check(lead is not None, f"{kind}: a leader"):
        return
    status, _, _ = harness.put(lead, "/q/before", "kept")
    R.check(status == 201, f"{kind}: a write before the loss: {status}")
    R.check(c.converged(timeout=10) is not None, f"{kind}: converged before the loss")
    if survivor_role == "leader":
        survivor = lead
        dead = c.followers(lead)
    else:
        survivor = c.followers(lead)[0]
        # The other follower first (the degraded check below needs a leader), then the leader.
        dead = [m for m in c.members if m is not survivor and m is not lead] + [lead]
    # One member down: degraded, still a quorum.
    c.kill(dead[0])
    rc, so, se = run_tool(harness.KVCTL_BIN, ["cluster-health"], survivor.url)
    rc2, so2, se2 = run_tool(harness.ETCDCTL_BIN, ["cluster-health"], survivor.url)
    R.check((rc, so, se) == (rc2, so2, se2),
            f"{kind}: cluster-health, one member down: kvctl and etcdctl agree:\n  "
            f"{(rc, so, se)}\n  {(rc2, so2, se2)}")
    R.check(rc == 5 and so.endswith("cluster is degraded\n") and so.count("is healthy") == 2,
            f"{kind}: cluster-health says degraded, exit 5: {rc} {so!r}")
    out["cluster_health_degraded"] = (rc, generic(c, so), generic(c, se))
    c.kill(dead[1])
    t_loss = time.monotonic()

    # Reads from the local store keep working, at once.
    (status, hdrs, body), took = timed(lambda: harness.get(survivor, "/q/before", catch=True))
    R.check(status == 200 and json.loads(body)["node"]["value"] == "kept" and took < 2,
            f"{kind}: plain GET on the survivor: {status} {body[:200]!r} in {took:.2f}s")
    term_at_loss = int(hdrs.get("x-raft-term", "0"))

    # /health turns false once the survivor knows it has no quorum (check quorum: within an
    # election timeout or two; bounded here by three plus slack).
    bound = 3 * c.election_ms / 1000 + 3
    got = harness.wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
        harness.request("GET", survivor.url + "/health", timeout=3)), bound)
    took = time.monotonic() - t_loss
    R.check(got is not None, f"{kind}: /health answers 503 within {bound:.0f}s of the loss")
    if got:
        status, hdrs, body = got
        out["health"] = (status, body, hdrs.get("content-type"), hdrs.get("x-content-type-options"))
        R.check(body == b'{"health":"false"}\n',
                f"{kind}: /health body during quorum loss: {body!r}")
        print(f"{kind}: /health false {took:.2f}s after the loss", flush=True)
    (status, hdrs, body), took = timed(
        lambda: harness.try_request("GET", survivor.url + "/health", timeout=5))
    if kind.startswith("kvd"):
        R.check(status == 503 and took < 1.5,
                f"{kind}: /health answers 503 fast: {status} in {took:.2f}s")
    else:
        # The reference: etcd answers in ~20 ms, but was once seen to take over 5 s here.
        print(f"{kind}: /health again: {status} in {took:.2f}s", flush=True)
    status, _, body = harness.request("GET", survivor.url + "/v2/members/leader")
    out["members_leader"] = (status, body)
    R.check(status == 503 and body == b'{"message":"During election"}',
            f"{kind}: /v2/members/leader: {status} {body!r}")
    status, _, body = harness.request("GET", survivor.url + "/v2/stats/leader")
    out["stats_leader"] = (status, body)
    R.check(status == 403, f"{kind}: /v2/stats/leader: {status} {body!r}")
    status, j, body = harness.get_json(survivor, "/v2/members")
    R.check(status == 200 and j and len(j["members"]) == 3,
            f"{kind}: /v2/members lists all three: {status} {body[:200]!r}")
    status, j, body = harness.get_json(survivor, "/v2/stats/self")
    R.check(status == 200, f"{kind}: /v2/stats/self answers: {status}")
    # etcd's stats/self follows raft traffic, not the raft role: a member that lost its quorum
    # (its raft state changed, no append came since) says StateLeader, led by itself.
    if j:
        out["stats_self"] = (j["state"], j["leaderInfo"]["leader"] == c.ids[survivor.name])
        R.check(out["stats_self"] == ("StateLeader", True),
                f"{kind}: stats/self during the loss: {body[:300]!r}")

    # A write and a quorum read fail after the request timeout, concurrently.
    results = {}

    def attempt(name, fn):
        results[name] = timed(fn)
    threads = [
        threading.Thread(target=attempt, args=("put", lambda: harness.put(
            survivor, "/q/during", "lost?", timeout=cluster.REQUEST_TIMEOUT_S + 10,
            catch=True))),
        threading.Thread(target=attempt, args=("qget", lambda: harness.get(
            survivor, "/q/before", quorum=True, timeout=cluster.REQUEST_TIMEOUT_S + 10,
            catch=True))),
    ]
    # The tools meanwhile (they fail fast or time out on their own: 5 s total timeout).
    for t in threads:
        t.start()
    rc, so, se = run_tool(harness.KVCTL_BIN, ["cluster-health"], survivor.url)
    rc2, so2, se2 = run_tool(harness.ETCDCTL_BIN, ["cluster-health"], survivor.url)
    R.check((rc, so, se) == (rc2, so2, se2),
            f"{kind}: cluster-health: kvctl and etcdctl agree:\n  {(rc, so, se)}\n  {(rc2, so2, se2)}")
    R.check(rc == 5 and so.endswith("cluster is unavailable\n"),
            f"{kind}: cluster-health says unavailable, exit 5: {rc} {so!r}")
    out["cluster_health"] = (rc, generic(c, so), generic(c, se))
    rc, so, se = run_tool(harness.KVCTL_BIN, ["member", "list"], survivor.url)
    R.check(rc == 1 and se.startswith("Failed to get leader: "),
            f"{kind}: member list without a leader: {rc} {so!r} {se!r}")
    out["member_list"] = (rc, generic(c, so), generic(c, se))
    for t in threads:
        t.join(cluster.REQUEST_TIMEOUT_S + 15)
    for name in ("put", "qget"):
        (status, hdrs, body), took = results.get(name, ((None, {}, b"no answer"), 0))
        out[name] = (status, body, hdrs.get("x-etcd-index"), hdrs.get("content-type"))
        R.check(status == 500 and body == ERR_TIMEOUT,
                f"{kind}: {name} during quorum loss: {status} {body!r}")
        R.check(cluster.REQUEST_TIMEOUT_S - 0.5 <= took <= cluster.REQUEST_TIMEOUT_S + 3,
                f"{kind}: {name} fails after the request timeout "
                f"({cluster.REQUEST_TIMEOUT_S:.0f}s): {took:.2f}s")
        print(f"{kind}: {name} -> {status} after {took:.2f}s", flush=True)

    # X-Raft-Term is the term of the last applied entry: unchanged while nothing commits.
    _, hdrs, _ = harness.get(survivor, "/q/before")
    term_now = int(hdrs.get("x-raft-term", "0"))
    out["term_during_loss"] = term_now == term_at_loss
    R.check(term_now == term_at_loss,
            f"{kind}: X-Raft-Term unchanged during the loss: {term_at_loss} -> {term_now}")

    # One member back: healthy again, writes succeed, no restart of the survivor.
    back = dead[0]
    t_back = time.monotonic()
    c.restart(back)
    healthy = harness.wait_for(
        lambda: harness.request("GET", survivor.url + "/health", timeout=3)[0] == 200, 20)
    R.check(healthy, f"{kind}: the survivor is healthy again after {back.name} returned "
            f"({time.monotonic() - t_back:.2f}s)")
    (status, hdrs, body), took = timed(lambda: harness.put(survivor, "/q/after", "ok",
                                                           catch=True))
    R.check(status == 201 and took < 3,
            f"{kind}: a write through the survivor succeeds: {status} {body[:200]!r} {took:.2f}s")
    # Without --pre-vote (etcd's default) the lone survivor kept campaigning, raising its term:
    # the write is committed several terms later. With it, one election after the return.
    term_after = int(hdrs.get("x-raft-term", "0"))
    if survivor_role == "follower":
        # One election once the member is back (two if that first one split its vote).
        out["term_after_recovery"] = term_at_loss < term_after <= term_at_loss + 2
        R.check(term_at_loss < term_after <= term_at_loss + 2,
                f"{kind}: with --pre-vote the term did not rise while the survivor was alone: "
                f"{term_at_loss} -> {term_after}")
    else:
        out["term_after_recovery"] = term_after > term_at_loss + 2
        R.check(term_after > term_at_loss + 2,
                f"{kind}: the term rose while the survivor campaigned: {term_at_loss} -> "
                f"{term_after}")
    status, _, body = harness.get(survivor, "/q/before", quorum=True)
    R.check(status == 200 and b'"value":"kept"' in body,
            f"{kind}: data from before the loss is intact: {status} {body[:200]!r}")
    R.check(survivor.proc.poll() is None, f"{kind}: the survivor kept running")
    live = [survivor, back]
    same = c.converged(among=live, timeout=15)
    R.check(same is not None, f"{kind}: the two live members converge")


def main():
    t0 = time.monotonic()
    for role in ("leader", "follower"):
        kvd = scenario("kvd", role)
        if not cluster.etcd_half_runs():
            continue
        etcd = scenario("etcd", role)
        cluster.check_halves_agree(
            R, kvd, etcd,
            lambda k: f"quorum loss ({role} survives), {k}: kvd and etcd answer the same")
    print(f"took {time.monotonic() - t0:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
