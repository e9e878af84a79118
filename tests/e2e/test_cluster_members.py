#!/usr/bin/env python3
"""Membership changes end to end, with the command-line tools, while four client threads keep
writing through the founding members:

  member list and cluster-health (kvctl and etcdctl against the same cluster: identical output);
  member add NAME PEERURL (output: the ETCD_* lines), the unstarted member in member list, the
  new member started with --initial-cluster-state existing and the printed ETCD_INITIAL_CLUSTER,
  catching up to the others' store; errors (adding the same peer URL again while the new member
  is unstarted: refused as unhealthy before the peer URL is checked, as etcd does; unknown id);
  member add and remove of a member that never starts, with the other tool, same output shape;
  member remove ID of a founding member: the removed member stops serving (its process exits)
  and logs why, and stops again when restarted from its data dir; the cluster keeps serving
  writes; no acknowledged write is lost. member add is retried (bounded) while the cluster
  refuses it as unhealthy: peers connected for less than 5 s (etcd's HealthInterval).

The scenario runs on kvd (kvctl adds, etcdctl lists too) and on etcd (etcdctl adds, kvctl lists
too); after normalising names, URLs and ids, every output must be the same on both.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
TOOL_TIMEOUT = 40


def run_tool(tool, args, endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    p = subprocess.run([tool, "--endpoints", endpoint] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=TOOL_TIMEOUT)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def wait_slowly(pred, timeout, interval=0.5):
    """wait_for for a predicate that runs a command: bounded, at most one try per interval."""
    deadline = time.monotonic() + timeout
    while True:
        t = time.monotonic()
        v = pred()
        if v or t >= deadline:
            return v
        time.sleep(max(0.0, interval - (time.monotonic() - t)))


class Normalizer:
    """Replaces what differs between the two clusters (names, ports, ids) by placeholders."""

    def __init__(self, c):
        self.c = c

    def __call__(self, text):
        c = self.c
        for i, m in enumerate(c.members):
            text = text.replace(m.url, f"<client{i}>").replace(m.peer_url, f"<peer{i}>")
            mid = c.ids.get(m.name)
            if mid:
                text = re.sub(r"\b" + mid + r"\b", f"<id{i}>", text)
            text = re.sub(r"\b" + m.name + r"\b", f"<name{i}>", text)
        return text


def scenario(kind, main_tool, other_tool):
    """Returns {step: normalised (rc, stdout, stderr)} for comparison with the other kind."""
    out = {}
    with cluster.Cluster(kind, 3, results=R) as c:
        steps(kind, c, main_tool, other_tool, out)
        return {k: (v[0], generic_text(c, v[1]), generic_text(c, v[2])) for k, v in out.items()}


def steps(kind, c, main_tool, other_tool, out):
    if True:
        norm = Normalizer(c)
        lead = c.leader()
        if not R.check(lead is not None, f"{kind}: a leader"):
            return out
        founders = list(c.members)
        ep = lead.url
        ep_member = lead
        t_started = time.monotonic()

        def step(name, tool, args, endpoint=None, want_rc=0):
            rc, so, se = run_tool(tool, args, endpoint or ep)
            label = "kvctl" if tool == harness.KVCTL_BIN else "etcdctl"
            R.check(rc == want_rc, f"{kind}: {label} {' '.join(args)}: exit {rc} (want {want_rc})"
                    f"\n  stdout {so!r}\n  stderr {se!r}")
            out[name] = (rc, so, se)
            return rc, so, se

        w = cluster.Writers(founders, threads=4, prefix="mem").start()
        try:
            R.check(w.wait_acks(20, 30), f"{kind}: writes acknowledged at the start")
            # Listing: the same output from either tool against this cluster.
            step("list", main_tool, ["member", "list"])
            rc2, so2, se2 = run_tool(other_tool, ["member", "list"], ep)
            R.check((rc2, so2, se2) == out["list"],
                    f"{kind}: member list: kvctl and etcdctl agree\n  {out['list']}\n  "
                    f"{(rc2, so2, se2)}")
            R.check(out["list"][1].count("isLeader=true") == 1,
                    f"{kind}: member list marks one leader: {out['list'][1]!r}")
            step("health", main_tool, ["cluster-health"])
            rc2, so2, se2 = run_tool(other_tool, ["cluster-health"], ep)
            R.check((rc2, so2, se2) == out["health"],
                    f"{kind}: cluster-health: kvctl and etcdctl agree\n  {out['health']}\n  "
                    f"{(rc2, so2, se2)}")

            # Add a fourth member.
            slot = c.new_member_slot(f"{kind}3")
            c.members.append(slot)  # not started: only for the normaliser until it joins
            # etcd refuses an add (500) until every member has been connected for 5 s
            # (HealthInterval); the tool then reports the cluster unavailable. Retry, bounded.
            refused = []

            def try_add():
                r = run_tool(main_tool, ["member", "add", slot.name, slot.peer_url], ep)
                print(f"{kind}: {time.monotonic() - t_started:.2f}s after start: member add: {r}")
                if r[0] != 0:
                    refused.append(r)
                return r if r[0] == 0 else None
            res = wait_slowly(try_add, 20)
            for r in refused[:1]:
                R.check(r[0] == 1 and r[1] == "" and r[2].startswith(
                    "client: etcd cluster is unavailable or misconfigured; error #0: client: "
                    "etcd member http://") and "has no leader\n" in r[2],
                    f"{kind}: a refused member add is reported as etcdctl does: {r}")
            if not R.check(res is not None, f"{kind}: member add accepted within 20 s: {refused}"):
                return out
            rc, so, se = res
            print(f"{kind}: member add refused {len(refused)} times before it was accepted",
                  flush=True)
            m = re.search(r"with ID ([0-9a-f]+) to cluster", so)
            ic = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', so)
            R.check(m and ic and 'ETCD_INITIAL_CLUSTER_STATE="existing"' in so
                    and f'ETCD_NAME="{slot.name}"' in so, f"{kind}: member add output: {so!r}")
            if not (m and ic):
                return out
            new_id = m.group(1)
            c.ids[slot.name] = new_id
            out["add"] = (rc, so, se)
            R.check(sorted(norm(ic.group(1)).split(",")) ==
                    sorted(f"<name{i}>=<peer{i}>" for i in range(4)),
                    f"{kind}: ETCD_INITIAL_CLUSTER names every member and the new one: "
                    f"{norm(ic.group(1))}")
            step("list_unstarted", main_tool, ["member", "list"])
            R.check(f"{new_id}[unstarted]: peerURLs={slot.peer_url}" in
                    run_tool(main_tool, ["member", "list"], ep)[1],
                    f"{kind}: member list shows the unstarted member")
            step("health_unstarted", main_tool, ["cluster-health"], want_rc=5)
            step("add_again", main_tool, ["member", "add", "x", slot.peer_url], want_rc=1)

            t0 = time.monotonic()
            joined = c.join(slot, ic.group(1))
            R.check(c.ids[joined.name] == new_id,
                    f"{kind}: the new member has the id member add printed: "
                    f"{c.ids[joined.name]} != {new_id}")
            # Writes go on, so "caught up" is: the new member has applied what the leader had
            # applied when it joined (identical stores are checked once the writers stop).
            lead = c.leader()
            target = c.dump(lead)[0] if lead else None
            caught = target is not None and harness.wait_for(
                lambda: (c.dump(joined) or (0,))[0] >= target, 30)
            R.check(caught, f"{kind}: the new member catches up to index {target} in "
                    f"{time.monotonic() - t0:.1f}s")
            R.check(harness.wait_for(
                lambda: "[unstarted]" not in run_tool(main_tool, ["member", "list"], ep)[1], 10),
                f"{kind}: the new member published its name")
            step("list4", main_tool, ["member", "list"])
            step("health4", main_tool, ["cluster-health"])
            R.check(w.wait_acks(10, 30), f"{kind}: writes acknowledged after the join")

            # The other tool against this cluster: add a fifth member (left unstarted), then
            # remove it; the outputs have the same shape as the main tool's.
            slot2 = c.new_member_slot(f"{kind}4")
            c.members.append(slot2)
            res2 = wait_slowly(lambda: (lambda r: r if r[0] == 0 else None)(
                run_tool(other_tool, ["member", "add", slot2.name, slot2.peer_url], ep)), 20)
            R.check(res2 is not None, f"{kind}: the other tool's member add accepted")
            if res2:
                m2 = re.search(r"with ID ([0-9a-f]+) to cluster", res2[1])
                c.ids[slot2.name] = m2.group(1) if m2 else "?"
                shape = lambda t: re.sub(r'ETCD_INITIAL_CLUSTER="[^"]*"', "<IC>",
                                         re.sub(r"\b[0-9a-f]{10,16}\b", "<id>",
                                                re.sub(r"(kvd|etcd)\d", "<name>", t)))
                R.check(shape(res2[1]) == shape(out["add"][1]) and res2[2] == "",
                        f"{kind}: member add by either tool prints the same shape:\n  "
                        f"{res2[1]!r}\n  {out['add'][1]!r}")
                # member remove lists the members first, from any member: wait until every
                # member has applied the add.
                R.check(harness.wait_for(lambda: all(
                    c.ids[slot2.name] in harness.get_json(x, "/v2/members")[2].decode()
                    for x in c.running()), 10), f"{kind}: every member lists the fifth member")
                rc, so, se = run_tool(other_tool, ["member", "remove", c.ids[slot2.name]], ep)
                R.check(rc == 0 and so == f"Removed member {c.ids[slot2.name]} from cluster\n",
                        f"{kind}: the other tool removes the unstarted member: {rc} {so!r} {se!r}")
            c.members.remove(slot2)
            R.check(harness.wait_for(lambda: len(harness.get_json(ep_member, "/v2/members")[1]
                                                 ["members"]) == 4, 10),
                    f"{kind}: four members again")

            # Remove a founding follower.
            lead = c.leader()
            victim = next(x for x in founders if x is not lead)
            step("remove_unknown", main_tool, ["member", "remove", "1234"], want_rc=1)
            step("remove", main_tool, ["member", "remove", c.ids[victim.name]])
            gone = harness.wait_for(lambda: victim.proc.poll() is not None, 20)
            R.check(gone, f"{kind}: the removed member {victim.name} stops (process exits)")
            out["removed_exit"] = (victim.proc.returncode, "", "")
            log = victim.read_log()
            R.check(re.search(r"removed from the cluster|permanently removed", log) is not None,
                    f"{kind}: the removed member logs why it stops:\n{log[-800:]}")
            try:
                status = harness.request("GET", victim.url + "/v2/keys/", timeout=2)[0]
            except OSError:
                status = None
            R.check(status is None, f"{kind}: the removed member no longer serves ({status})")
            remaining = [x for x in c.members if x is not victim]
            R.check(c.leader(among=remaining) is not None,
                    f"{kind}: the remaining three agree on a leader")
            step("remove_again", main_tool, ["member", "remove", c.ids[victim.name]],
                 endpoint=remaining[0].url, want_rc=1)
            step("list_after_remove", main_tool, ["member", "list"], endpoint=remaining[0].url)
            R.check(w.wait_acks(10, 30), f"{kind}: writes acknowledged after the removal")
            # Restarted from its data dir, the removed member learns from its peers that it
            # was removed, and stops again.
            log_at = os.path.getsize(victim.log_path)
            victim.spawn()
            stopped = harness.wait_for(lambda: victim.proc.poll() is not None, 20)
            R.check(stopped, f"{kind}: the removed member, restarted, stops again")
            with open(victim.log_path, "rb") as f:
                f.seek(log_at)
                again = f.read().decode(errors="replace")
            R.check(re.search(r"removed from the cluster|permanently removed", again) is not None,
                    f"{kind}: ... and logs why:\n{again[-800:]}")
            if not stopped:
                victim.kill()
            out["removed_restart_exit"] = (victim.proc.returncode, "", "")
        finally:
            w.stop()
        remaining = [x for x in c.members if x is not victim] if "remove" in out else c.running()
        same = c.converged(among=remaining, timeout=30)
        R.check(same is not None, f"{kind}: the remaining members converge")
        if same:
            missing = w.missing(same[1])
            R.check(not missing, f"{kind}: no acknowledged write lost ({len(w.acked)} acked, "
                    f"{len(w.unknown)} unknown): missing {list(missing)[:3]}")


def generic_text(c, text):
    """What must be equal between a kvd and an etcd cluster: ids, URLs and names replaced by
    placeholders, lines sorted (the member order follows the ids, which differ)."""
    for m in c.members:
        mid = c.ids.get(m.name)
        if mid:
            text = re.sub(r"\b" + mid + r"\b", "<id>", text)
    text = re.sub(r"http://127\.0\.0\.1:\d+", "<url>", text)
    text = re.sub(r"\b(kvd|etcd)\d\b", "<name>", text)
    text = re.sub(r"isLeader=(true|false)", "isLeader=<bool>", text)
    text = re.sub(r'ETCD_INITIAL_CLUSTER="[^"]*"', lambda m: "ETCD_INITIAL_CLUSTER=" + ",".join(
        sorted(m.group(0).split('"')[1].split(","))), text)
    return "\n".join(sorted(text.split("\n")))


def main():
    t0 = time.monotonic()
    kvd = scenario("kvd", harness.KVCTL_BIN, harness.ETCDCTL_BIN)
    if cluster.etcd_half_runs():
        etcd = scenario("etcd", harness.ETCDCTL_BIN, harness.KVCTL_BIN)
        cluster.check_halves_agree(R, kvd, etcd,
                                   lambda k: f"{k}: kvd/kvctl and etcd/etcdctl print the same")
    print(f"took {time.monotonic() - t0:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
