#!/usr/bin/env python3
"""kvd's proxy and a member that stops answering without closing anything (SIGSTOP: the kernel
still accepts its connections, nothing answers; a GC-like stall or a partition that drops
packets looks the same). The proxy's prober marks it silent within 1.5 s (server/proxy/
prober.h); then:
  - GETs through the proxy are answered by the other members;
  - long-poll watches that were waiting on it (with and without waitIndex) are resumed on
    another member and deliver the write made meanwhile, exactly once;
  - a write sent to it before it was found silent is answered (201, or 504 "may or may not have
    been applied"), never left hanging;
  - resumed (SIGCONT), it is used again.
etcd's proxy, run the same way for comparison, is only reported: its GETs to the paused member
wait for the client's timeout.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
DETECT_S = 1.5   # the prober's bound: kProbeInterval + kProbeTimeout
CLIENT_TIMEOUT_S = 8.0


def watch(url, key, query, out, name):
    """A long poll through the proxy; out[name] = (status, body) or the error."""
    try:
        s, _, b = harness.request("GET", f"{url}/v2/keys/{key}?wait=true{query}",
                                  timeout=CLIENT_TIMEOUT_S + 4)
        out[name] = (s, b)
    except OSError as e:
        out[name] = (None, str(e).encode())


def watchers(member):
    status, j, _ = harness.get_json(member, "/v2/stats/store", catch=True)
    return j.get("watchers", 0) if status == 200 and j else 0


def scenario(kind, kc, kp, gets):
    victim = kc.by_url(kp.endpoints()[0])
    others = [m for m in kc.members if m is not victim]
    s, h, _ = harness.put(kp.url, "sm/k", "before")
    index = int(h["x-etcd-index"])
    harness.wait_for(lambda: all(harness.get(m.url, "sm/k", catch=True)[0] == 200
                                 for m in kc.members), 10.0)
    # Two watches land on the victim (first in the proxy's order): one from an explicit
    # waitIndex, one from "now".
    results = {}
    ts = [threading.Thread(target=watch, args=(kp.url, "sm/k", f"&waitIndex={index + 1}",
                                               results, "waitIndex"), daemon=True),
          threading.Thread(target=watch, args=(kp.url, "sm/k", "", results, "now"), daemon=True)]
    for t in ts:
        t.start()
    # Both are waiting on the victim (its store counts them).
    R.check(harness.wait_for(lambda: watchers(victim) >= 2, 10.0),
            f"{kind}: the two watches wait on {victim.name}: {watchers(victim)}")
    victim.pause()
    t_pause = time.monotonic()
    # A write sent now goes to the victim if it is not yet known silent.
    w0 = time.monotonic()
    ws, _, wb = harness.put(kp.url, "sm/during", "x", timeout=CLIENT_TIMEOUT_S, catch=True)
    write_took = time.monotonic() - w0
    # GETs: answered by the others.
    get_times = []
    for i in range(gets):
        g0 = time.monotonic()
        gs, _, _ = harness.get(kp.url, "sm/k", timeout=CLIENT_TIMEOUT_S, catch=True)
        get_times.append((gs, time.monotonic() - g0))
    # The write the watches wait for, through another member.
    harness.wait_for(lambda: kc.leader(among=others, timeout=0) is not None, 15.0)
    s, h, b = harness.put(others[0].url, "sm/k", "after", timeout=15.0, catch=True)
    after_index = json.loads(b)["node"]["modifiedIndex"] if s == 200 else None
    for t in ts:
        t.join(CLIENT_TIMEOUT_S + 6)
    victim.resume()
    took_watch = time.monotonic() - t_pause
    report = {"write": (ws, round(write_took, 2)),
              "gets": [(st, round(d, 2)) for st, d in get_times],
              "watches": dict(results),
              "watch_done_after_s": round(took_watch, 2)}
    shown = {**report, "watches": {k: (v[0], v[1][:100]) for k, v in results.items()}}
    print(f"{kind}: {shown}", flush=True)
    return report, after_index


def main():
    with cluster.ProxyBench("kvd-proxy-silent-", R) as bench:
        kc = bench.cluster("kvd")
        kp = bench.proxy("kvd", kc.initial_cluster())
        kp.start(3)
        report, after_index = scenario("kvd", kc, kp, 10)
        ws, write_took = report["write"]
        R.check(ws in (201, 504), f"a write sent as the member paused: {report['write']}")
        R.check(write_took < CLIENT_TIMEOUT_S - 1, f"the write waited {write_took:.1f} s")
        bad = [(st, d) for st, d in report["gets"] if st != 200]
        R.check(not bad, f"GETs through the proxy while a member is paused: {report['gets']}")
        slowest = max(d for _, d in report["gets"])
        R.check(slowest < DETECT_S + 2.0, f"slowest GET {slowest:.1f} s (bound {DETECT_S} s + 2)")
        R.check(after_index is not None, "the write the watches wait for")
        for name in ("waitIndex", "now"):
            st, body = report["watches"].get(name, (None, b"no answer"))
            ok = False
            try:
                node = json.loads(body)["node"]
                ok = st == 200 and node["value"] == "after" and node["modifiedIndex"] == after_index
            except (ValueError, KeyError, TypeError):
                pass
            R.check(ok, f"watch ({name}) resumed on another member delivers the write at "
                        f"{after_index} once: {st} {body!r}")
        R.check(harness.wait_for(lambda: all(m.url in (kp.endpoints() or [])
                                             for m in kc.members), 10.0),
                f"the resumed member is offered again: {kp.endpoints()}")
        log = kp.read_log()
        R.check("stopped answering" in log and "answers again" in log,
                "the proxy logs the silence and the return")
        if harness.have_etcd():
            ec = bench.cluster("etcd")
            ep = bench.proxy("etcd", ec.initial_cluster())
            ep.start(3)
            etcd_report, _ = scenario("etcd", ec, ep, 1)
            print("etcd's proxy, for comparison (not checked): above")
    R.finish()


if __name__ == "__main__":
    main()
