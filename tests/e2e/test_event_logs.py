#!/usr/bin/env python3
"""The events an operator needs from the log, as etcd logs them, read back as zap JSON lines
(--logger zap) with their structured fields:

  - an outage: a three-member cluster loses two members. The survivor logs each peer that
    "became inactive", then "no leader ..." within seconds (with `for`, `term` and `reachable`
    "1 of 3 voting members"), the writes that time out ("request timed out", with `requests`),
    and failed health checks ("/health error; no leader"), each rate-limited: 24 writes and 30
    health checks make at most a few lines, and the counts they report (the line's own, plus
    `suppressed`) never exceed what happened; "no leader" repeats every 10 s while it lasts. Once
    the two are back: "peer X became active" (`inactive-for`) and the leader found
    again (`without-leader`, at least the five seconds of the first report);
  - a restart: one line says where the member starts ("restarting member X in cluster Y at
    commit index C", with the snapshot and how much it replays), one says when it caught up
    (applied index >= C); the membership it replays is not logged again at info level;
  - a slow apply: with --experimental-warning-apply-duration 1ns every apply is "too long":
    "apply request took too long" with `took`, `expected-duration` and the request, at most one
    line a second, the rest counted in `suppressed`;
  - a slow disk (root, a loop-mounted ext4 the test freezes with fsfreeze): a write waits for
    the frozen disk, and the log says "slow fdatasync" with `took` over one second.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from cluster import Cluster  # noqa: E402

ZAP = ["--logger", "zap"]


def events(member, since=0):
    """The zap objects of the member's log from byte `since` on (lines that are not JSON, such
    as the harness's own, are skipped)."""
    out = []
    with open(member.log_path, "rb") as f:
        f.seek(since)
        for line in f.read().decode(errors="replace").splitlines():
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if isinstance(j, dict) and "msg" in j:
                out.append(j)
    return out


def log_size(member):
    return os.path.getsize(member.log_path)


def with_msg(evs, prefix):
    return [e for e in evs if e["msg"].startswith(prefix)]


def seconds(go_duration):
    """A Go duration string ("1.5s", "250ms", "2m3s", "993.3µs") in seconds."""
    total, num = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
    i = 0
    while i < len(go_duration):
        c = go_duration[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        for u in ("ms", "µs", "us", "ns", "h", "m", "s"):
            if go_duration.startswith(u, i):
                total += float(num) * units[u]
                num = ""
                i += len(u)
                break
        else:
            raise ValueError(go_duration)
    return total


def outage(R):
    with Cluster("kvd", n=3, results=R, extra_args=ZAP) as c:
        harness.put(c.members[0], "/warm", "x")
        lead = c.leader()
        survivor = next(m for m in c.members if m is not lead)
        gone = [m for m in c.members if m is not survivor]
        mark = log_size(survivor)
        for m in gone:
            c.kill(m)
        lost_at = time.monotonic()

        # 24 writes (each times out after the request timeout) and 30 health checks.
        results = []

        def write(i):
            results.append(harness.put(survivor, f"/out{i}", "v", catch=True)[0])
        writers = [threading.Thread(target=write, args=(i,)) for i in range(24)]
        for t in writers:
            t.start()
        health_failed = 0
        for _ in range(30):
            status, _, _ = harness.request("GET", survivor.url + "/health", timeout=5.0)
            health_failed += status == 503
        for t in writers:
            t.join(timeout=30)
        R.check(len(results) == 24 and all(s != 201 for s in results),
                f"24 writes without a quorum fail ({sorted(set(results))})")

        def reported(prefix, pred=lambda e: True):
            return [e for e in with_msg(events(survivor, mark), prefix) if pred(e)]
        R.check(harness.wait_for(lambda: reported("no leader"), 15.0),
                "the survivor says it has no leader")
        evs = events(survivor, mark)
        inactive = with_msg(evs, "peer ")
        R.check(sum("became inactive" in e["msg"] for e in inactive) == 2,
                f"each lost peer 'became inactive', once ({[e['msg'] for e in inactive]})")
        nl = with_msg(evs, "no leader")[0]
        R.check(nl["level"] == "warn" and 4.5 <= seconds(nl["for"]) <= 15 and
                nl["reachable"].startswith("1 of 3 voting members") and "term" in nl,
                f"'no leader' with its fields after about 5 s: {nl}")
        timeouts = with_msg(evs, "request timed out")
        reported_timeouts = sum(e["requests"] + e.get("suppressed", 0) for e in timeouts)
        R.check(1 <= len(timeouts) <= 3 and 1 <= reported_timeouts <= 24 and
                all(e["timeout"] == "7s" and e["leader"] == "none" for e in timeouts),
                f"24 timed-out writes: {len(timeouts)} lines reporting {reported_timeouts} "
                f"({timeouts[:1]})")
        # Health checks failed at start-up too (before the first election), and a line then
        # holds back those within the next 10 s: count over the whole log, against the
        # member's own count of failures.
        health = with_msg(events(survivor), "/health error;")
        _, _, body = harness.request("GET", survivor.url + "/metrics")
        failures = [float(line.split()[1]) for line in body.decode().splitlines()
                    if line.startswith("etcd_server_health_failures ")]
        told = sum(1 + e.get("suppressed", 0) for e in health)
        R.check(health_failed == 30 and failures and 1 <= len(health) <= 4 and
                told <= failures[0],
                f"{failures} failed health checks (30 in the outage): {len(health)} lines "
                f"reporting {told}")

        for m in gone:
            c.restart(m, wait=False)
        R.check(harness.wait_for(lambda: reported("raft: ", lambda e: "has a leader again"
                                                  in e["msg"]), 40.0),
                "the survivor logs that the cluster has a leader again")
        back = reported("raft: ", lambda e: "has a leader again" in e["msg"])[0]
        R.check(seconds(back["without-leader"]) >= 5.0 and
                seconds(back["without-leader"]) <= time.monotonic() - lost_at + 1,
                f"... with how long it had none ({back['without-leader']})")
        R.check(harness.wait_for(
            lambda: len(reported("peer ", lambda e: "became active" in e["msg"])) == 2, 20.0),
            "each peer 'became active' again, with inactive-for")
        act = reported("peer ", lambda e: "became active" in e["msg"])
        R.check(all(seconds(e["inactive-for"]) >= 1.0 and e["url"] for e in act),
                f"... ({[e.get('inactive-for') for e in act]})")

        # The restarted members' own lines.
        r = gone[0]
        R.check(harness.wait_for(lambda: with_msg(events(r), "member ") and any(
            "caught up" in e["msg"] for e in events(r)), 20.0), "the restarted member caught up")
        evs = events(r)
        restarts = with_msg(evs, "restarting member ")
        last_start = max(i for i, e in enumerate(evs) if e["msg"].startswith("kvd Version"))
        after = evs[last_start:]
        restart = with_msg(after, "restarting member ")
        caught = [e for e in after if "caught up with its log" in e["msg"]]
        started = with_msg(after, "member ")
        R.check(len(restarts) == 1 and len(restart) == 1 and "at commit index" in restart[0]["msg"]
                and {"term", "last-index", "snapshot-index", "replaying"} <= restart[0].keys(),
                f"one line says where the restart starts: {restart}")
        commit = int(restart[0]["msg"].rsplit(" ", 1)[1]) if restart else -1
        applied = int(caught[0]["msg"].split("applied index ")[1].split(",")[0]) if caught else -1
        R.check(len(caught) == 1 and applied >= commit > 0,
                f"one line says it caught up, at applied index {applied} >= {commit}")
        R.check(not [e for e in started if "started at raft index" in e["msg"]] and
                not [e for e in after if e["msg"].startswith("added member")
                     and e["level"] == "info"],
                "no second 'started at' line and no replayed membership at info level")


def slow_apply(R, workdir):
    m = harness.Member("kvd", name="slowapply", workdir=workdir,
                       extra_args=ZAP + ["--experimental-warning-apply-duration", "1ns"])
    try:
        m.start()
        t0 = time.monotonic()
        for i in range(40):
            harness.put(m, f"/slow{i}", "v")
        elapsed = time.monotonic() - t0
        evs = with_msg(events(m), "apply request took too long")
        R.check(evs and all(e["level"] == "warn" and e["expected-duration"] == "1ns" and
                            seconds(e["took"]) > 0 and e["request"] for e in evs),
                f"'apply request took too long' with took, expected-duration, request: {evs[:1]}")
        R.check(1 <= len(evs) <= elapsed + 3,
                f"at most one line a second: {len(evs)} lines in {elapsed:.1f} s of 40 writes "
                f"(suppressed {sum(e.get('suppressed', 0) for e in evs)})")
    finally:
        m.kill()


def slow_disk(R, workdir):
    if os.geteuid() != 0 or not shutil.which("fsfreeze") or not shutil.which("mkfs.ext4"):
        print("note: slow-disk check skipped (needs root, fsfreeze and mkfs.ext4)")
        return
    img, mnt = os.path.join(workdir, "disk.img"), os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    subprocess.run(["truncate", "-s", "256M", img], check=True)
    subprocess.run(["mkfs.ext4", "-q", img], check=True)
    mounted = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True, text=True)
    if mounted.returncode != 0:
        print(f"note: slow-disk check skipped (cannot mount a loop device: {mounted.stderr})")
        return
    frozen = False
    m = harness.Member("kvd", name="slowdisk", workdir=workdir, extra_args=ZAP)
    m.data_dir = os.path.join(mnt, "slowdisk.data")
    try:
        m.start()
        harness.put(m, "/before", "v")
        subprocess.run(["fsfreeze", "-f", mnt], check=True, timeout=30)
        frozen = True
        answer = []
        writer = threading.Thread(target=lambda: answer.append(
            harness.put(m, "/during", "v", catch=True)[0]))
        writer.start()
        writer.join(timeout=1.5)
        R.check(writer.is_alive(), "a write waits while the disk is frozen")
        subprocess.run(["fsfreeze", "-u", mnt], check=True, timeout=30)
        frozen = False
        writer.join(timeout=30)
        R.check(answer == [201], f"... and is acknowledged once it thaws ({answer})")
        slow = with_msg(events(m), "slow fdatasync")
        R.check(slow and slow[0]["level"] == "warn" and seconds(slow[0]["took"]) >= 1.0 and
                slow[0]["expected-duration"] == "1s",
                f"'slow fdatasync' with took over 1s: {slow[:1]}")
    finally:
        if frozen:
            subprocess.run(["fsfreeze", "-u", mnt], timeout=30)
        m.kill()
        subprocess.run(["umount", mnt], timeout=60)


def main():
    R = harness.Results()
    workdir = tempfile.mkdtemp(prefix="kvd-events-")
    try:
        outage(R)
        slow_apply(R, workdir)
        slow_disk(R, workdir)
    finally:
        harness.remove_workdir(workdir, R)
    R.finish()


if __name__ == "__main__":
    main()
