#!/usr/bin/python3
"""The fault campaign: runs of a workload against a cluster in network namespaces while one
nemesis makes faults, each run's history checked for linearizability (registers), lost and
unexpected elements (a set) and watch completeness. Standard library only; needs root.

One run: a fresh Net and cluster (3 members, 5 for the bridge; a proxy in front), the workloads
started in the client namespace, the nemesis applied and healed in turn for `duration` seconds,
then everything healed (paused members resumed, killed ones restarted), the set read with a
quorum read, the watchers drained up to the last acknowledged write, and the checkers run.
Every run prints its seed and a one-line replay command; a failed run keeps its history and
the members' logs in a directory it names.

    campaign.py --kind kvd --nemesis all --runs 1 --duration 12      # the CI campaign
    campaign.py --kind kvd,etcd --nemesis all --runs 100 --duration 60 --seed 1   # the soak
    campaign.py --kind kvd --nemesis partition-leader --seed 1234 --duration 12   # one replay
    campaign.py --teeth                                               # plain reads must fail

Options: --kind (kvd, etcd or both, comma-separated: the same seeds for each), --nemesis
(comma-separated names of nemesis.NEMESES or "all"), --runs (runs per nemesis and kind),
--duration (seconds of faults per run), --seed (the first seed; run i uses seed + i), --keep
DIR (where failed runs are kept; default a new directory under /tmp), --quorum-reads off (plain
reads), --json FILE (every run's result, for the report; rewritten after each run),
--expect-violations (exit 0 only if every run found a violation: the teeth check).
Availability, per run and nemesis: the share of operations the cluster answered (2xx, or a
4xx such as a compare that failed), as opposed to timeouts, refused connections and 5xx.
Exit status: 0 if every run passed, 1 if one failed, 77 (skip) if namespaces cannot be made.
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import checker  # noqa: E402
import harness  # noqa: E402
import nemesis  # noqa: E402
import netns  # noqa: E402
import nscluster  # noqa: E402
import workload  # noqa: E402

SETTLE_S = 1.0        # load before the first fault, and between two faults (at least)
HOLD_S = (2.0, 5.0)   # how long a fault lasts (uniform)
GAP_S = (1.0, 3.0)    # healed time between two faults (uniform)
# The teeth check holds its one partition the longest: the majority needs about an election
# timeout for a new leader and its first writes, and only after that can a plain read on the
# isolated old leader be stale. With HOLD_S's shortest holds that window was under a second and
# a run in four or five saw no stale read.
TEETH_HOLD_S = (5.0, 5.0)
DRAIN_S = 30.0        # bound on the watchers catching up after the heal


def run_once(kind, nem_name, seed, duration, quorum=True, keep_root=None, log=print,
             hold=HOLD_S):
    """One run; returns its result dict (see summarize())."""
    nem = nemesis.NEMESES[nem_name]
    rnd = random.Random(seed)
    replay = (f"KVD_BIN={harness.KVD_BIN} {sys.executable} {os.path.abspath(__file__)} --kind {kind} --nemesis {nem_name} "
              f"--seed {seed} --duration {duration:g}" + ("" if quorum else " --quorum-reads off"))
    log(f"== {kind} {nem_name} seed {seed} ({duration:g} s)   replay: {replay}")
    result = {"kind": kind, "nemesis": nem_name, "seed": seed, "duration": duration,
              "replay": replay, "faults": []}
    with netns.Net(nem.members, proxy=True) as net:
        result.update(net.run_in(_scenario, net, kind, nem, rnd, duration, quorum, result, log,
                                 hold))
    if not result["ok"]:
        result["kept"] = _keep(result, keep_root)
        log(f"   FAILED: {result['why']}\n   history and logs kept in {result['kept']}")
    shutil.rmtree(result.pop("logs"), ignore_errors=True)
    return result


def _scenario(net, kind, nem, rnd, duration, quorum, result, log, hold=HOLD_S):
    c = nscluster.NsCluster(net, kind, proxy=True)
    result["workdir"] = c.workdir
    try:
        c.start()
        members = [m.url for m in c.members]
        proxy = [c.proxy.url]
        h = workload.History()
        direct = proxy if nem.proxy else members
        regs = workload.Registers(h, direct, quorum=quorum, seed=rnd.randrange(1 << 30))
        adds = workload.SetAdds(h, proxy if nem.proxy else members + proxy,
                                seed=rnd.randrange(1 << 30))
        watch_members = workload.Watchers(h, members, threads=1, first_process=200)
        watch_proxy = workload.Watchers(h, proxy, threads=1, first_process=210)
        readers = ()
        if not quorum:
            # Plain reads (the checker's teeth): readers that never write, so that none of them
            # sits out the partition in a write to the isolated leader that cannot commit, as
            # the registers' clients soon all do; they go on reading every member, the isolated
            # one too, after the majority's first writes.
            readers = (workload.Registers(h, members, quorum=False, threads=3, reads_only=True,
                                          seed=rnd.randrange(1 << 30), first_process=300),)
        loads = (regs, adds, watch_members, watch_proxy) + readers
        for w in loads:
            w.start(net.thread)
        ctx = nemesis.Context(net, c, rnd)
        t0 = time.monotonic()
        stopping = regs.stopping
        stopping.wait(SETTLE_S)
        while time.monotonic() - t0 < duration:
            what = nem.start(ctx)
            result["faults"].append(f"{time.monotonic() - t0:6.1f}s {what}")
            log(f"   {time.monotonic() - t0:5.1f}s {what}")
            stopping.wait(rnd.uniform(*hold))
            nem.stop(ctx)
            stopping.wait(rnd.uniform(*GAP_S))
        nem.stop(ctx)
        # Everything back: a leader among all members, then the load stops and is read back.
        lead = c.leader(timeout=30)
        result["recovered"] = lead is not None
        for w in (regs, adds) + readers:
            w.stop()
        adds.final_read(members)
        last = max([e.get("index") or 0 for e in h.snapshot()
                    if e.get("type") == "ok" and e.get("f") in ("write", "cas")] or [0])
        drained = harness.wait_for(
            lambda: watch_members.caught_up(last) and watch_proxy.caught_up(last), DRAIN_S)
        for w in (watch_members, watch_proxy):
            w.stop()
        events = h.snapshot()
        out = summarize(events, {**watch_members.starts, **watch_proxy.starts})
        out["drained"] = bool(drained)
        out["cleared"] = watch_members.cleared + watch_proxy.cleared
        out["history"] = events
        problems = out["problems"]
        if not result["recovered"]:
            problems.append("no leader 30 s after the heal")
        if not drained:
            problems.append(f"watchers did not reach index {last} within {DRAIN_S:g} s")
        out["ok"] = not problems
        out["why"] = "; ".join(problems)
        if not out["ok"]:
            c.dump_logs(2000)
        return out
    finally:
        # The members' logs outlive the cluster until the run is judged (run_once).
        result["logs"] = tempfile.mkdtemp(prefix="kvd-faults-logs-")
        for f in os.listdir(c.workdir):
            if f.endswith(".log"):
                shutil.copy(os.path.join(c.workdir, f), result["logs"])
        c.cleanup()


def summarize(events, starts=None):
    """The checkers' verdicts and the counts of a run's history."""
    ops = checker.operations(events)
    done = [op for op in ops if op.type in ("ok", "fail", "info")]
    # Available: the cluster answered (2xx, or 4xx such as a compare that failed); not: a
    # timeout, a refused connection, a 5xx.
    answered = {(e["process"], i) for i, e in enumerate(events)
                if e.get("type") in ("ok", "fail") and isinstance(e.get("status"), int)
                and e["status"] < 500}
    ok = sum(1 for op in ops if op.ret is not None and (op.process, op.ret) in answered)
    regs = checker.check_registers([e for e in events if str(e.get("key", "")).startswith("/reg")])
    set_events = [e for e in events if e.get("key") == "/set" and e.get("f") != "watch_event"]
    sets = checker.check_set(set_events)
    wi = checker.watch_inputs([e for e in events if str(e.get("key", "")).startswith("/reg")])
    watch = checker.check_watch(**wi, starts=starts)
    problems = []
    if regs["valid"] is not True:
        problems.append(f"registers {regs['valid']}: " + "; ".join(
            f"{k}: {regs['keys'][k].get('explanation', '')[:400]}"
            for k in regs["invalid"] + regs["unknown"]))
    if sets["valid"] is not True:
        problems.append(f"set: {sets.get('explanation', sets['valid'])}")
    if not watch["valid"]:
        problems.append(f"watch: {watch.get('explanation')}")
    return {
        "ops": len(ops), "ok_ops": ok, "completed": len(done),
        "availability": ok / len(ops) if ops else 0.0,
        "linearizable": regs["valid"], "invalid_keys": regs["invalid"],
        "lost": len(sets["lost"]), "unexpected": len(sets["unexpected"]),
        "set_acknowledged": sets["acknowledged"], "set_ok": sets["ok"],
        "watch_valid": watch["valid"],
        "watch_events": sum(w["events"] for w in watch["watchers"].values()),
        "watch_missing": sum(len(w["missing"]) for w in watch["watchers"].values()),
        "problems": problems,
    }


def _keep(result, keep_root):
    root = keep_root or tempfile.mkdtemp(prefix="kvd-faults-")
    d = os.path.join(root, f"{result['kind']}-{result['nemesis']}-{result['seed']}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "history.json"), "w") as f:
        json.dump(result.get("history", []), f)
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump({k: v for k, v in result.items() if k != "history"}, f, indent=1, default=str)
    for f in os.listdir(result["logs"]):
        shutil.copy(os.path.join(result["logs"], f), d)
    return d


def table(results):
    """The campaign table: one line per (kind, nemesis)."""
    rows = {}
    for r in results:
        row = rows.setdefault((r["kind"], r["nemesis"]), {
            "runs": 0, "ops": 0, "ok_ops": 0, "violations": 0, "lost": 0, "unexpected": 0,
            "watch_missing": 0, "resyncs": 0, "failed": 0})
        row["runs"] += 1
        for k in ("ops", "ok_ops", "lost", "unexpected", "watch_missing"):
            row[k] += r.get(k, 0)
        row["resyncs"] += len(r.get("cleared", []))
        row["violations"] += 1 if r.get("linearizable") is not True else 0
        row["failed"] += 0 if r["ok"] else 1
    lines = [f"{'kind':5} {'nemesis':20} {'runs':>4} {'ops':>7} {'avail':>6} {'nonlin':>6} "
             f"{'lost':>4} {'unexp':>5} {'wmiss':>5} {'resync':>6} {'failed':>6}"]
    for (kind, nem), row in sorted(rows.items()):
        avail = row["ok_ops"] / row["ops"] if row["ops"] else 0
        lines.append(f"{kind:5} {nem:20} {row['runs']:4} {row['ops']:7} {avail:6.1%} "
                     f"{row['violations']:6} {row['lost']:4} {row['unexpected']:5} "
                     f"{row['watch_missing']:5} {row['resyncs']:6} {row['failed']:6}")
    return "\n".join(lines)


def _write_json(path, results):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", default="kvd")
    ap.add_argument("--nemesis", default="all")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", default=None)
    ap.add_argument("--quorum-reads", default="on", choices=("on", "off"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--expect-violations", action="store_true")
    ap.add_argument("--teeth", action="store_true",
                    help="partition-leader with plain reads: every run must be non-linearizable")
    a = ap.parse_args(argv)
    why = netns.unavailable()
    if why:
        print(f"SKIP: {why}")
        return harness.SKIP
    if a.teeth:
        a.nemesis, a.quorum_reads, a.expect_violations = "partition-leader", "off", True
    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    print(f"campaign seed {seed}", flush=True)
    results = []
    i = 0
    for run in range(a.runs):
        for nem in nemesis.choose(a.nemesis, seed + run):
            i += 1
            for kind in a.kind.split(","):  # the same seed for each kind
                r = run_once(kind, nem, seed + i, a.duration, quorum=a.quorum_reads == "on",
                             hold=TEETH_HOLD_S if a.teeth else HOLD_S,
                             keep_root=a.keep, log=lambda s: print(s, flush=True))
                r_short = {k: v for k, v in r.items() if k != "history"}
                results.append(r_short)
                print(f"   {kind} {nem}: {r['ops']} ops, availability {r['availability']:.1%}, "
                      f"linearizable {r['linearizable']}, lost {r['lost']}, unexpected "
                      f"{r['unexpected']}, watch events {r['watch_events']} (missing "
                      f"{r['watch_missing']}, resyncs {len(r.get('cleared', []))}), "
                      f"{'ok' if r['ok'] else 'FAILED'}", flush=True)
                if a.json:  # after every run: a soak stopped early keeps what it did
                    _write_json(a.json, results)
    print(table(results))
    if a.expect_violations:
        caught = sum(1 for r in results if r["linearizable"] is False)
        print(f"{caught} passed, {len(results) - caught} failed  (runs whose plain reads were "
              f"found non-linearizable)")
        return 0 if caught == len(results) else 1
    failed = sum(1 for r in results if not r["ok"])
    print(f"{len(results) - failed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
