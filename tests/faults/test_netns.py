#!/usr/bin/env python3
"""The fault harness as a scenario: a three-member kvd cluster and a kvd proxy, each in a
network namespace of its own, driven from a thread in the client namespace (netns.py,
nscluster.py). The cluster forms and takes a write from the client namespace, directly and
through the proxy. Isolating the leader: the majority elects a new leader and takes a write,
the old leader refuses a quorum read and still serves its stale value locally; healed, the
three converge. A one-way drop from the leader to a follower, then 20% packet loss everywhere:
writes are still acknowledged and, healed, present on every member. SIGSTOP of the leader: the
others elect a new one; SIGCONT: it rejoins and catches up. kill -9 of a follower, writes, a
restart from its data dir: it catches up; so it does after a SIGTERM. Every fault is also checked on the network alone,
with UDP datagrams between the namespaces; first, without servers, so are bridge(), a partition
with the client in a group, a lossy node, the namespace of the threads, and the removal of
stale namespaces and of everything after an exception. Then the same scenario against etcd (if
installed), to show the harness does not depend on the server. No namespace outlives the run.

Needs root, iproute2 and iptables (exit 77, a skip, without them). Every wait is a poll with a
deadline; none sleeps to synchronise.
"""
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
import nscluster  # noqa: E402  (puts tests/e2e on the path)
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
UDP_PORT = 9999  # the probes' port in every node (the servers use 2379 and 2380)
LOSS = 0.2


def delivered(net, src, dst, count=1):
    """How many of `count` UDP datagrams from node src reach node dst: the network alone, no
    server. Sent in batches that a receive buffer holds, each drained until all of it arrived
    or 0.3 s pass without a datagram (the bounded wait that tells a loss)."""
    rx = net.run_in(socket.socket, socket.AF_INET, socket.SOCK_DGRAM, node=dst)
    tx = net.run_in(socket.socket, socket.AF_INET, socket.SOCK_DGRAM, node=src)
    got = 0
    with rx, tx:
        rx.bind((net.address(dst), UDP_PORT))
        rx.settimeout(0.3)
        for first in range(0, count, 50):
            batch = min(50, count - first)
            for _ in range(batch):
                tx.sendto(b"probe", (net.address(dst), UDP_PORT))
            try:
                for _ in range(batch):
                    rx.recv(64)
                    got += 1
            except socket.timeout:
                pass
    return got


def check_links(net, kind, expect):
    """Checks that each (src, dst) of `expect` delivers a datagram exactly when expect says."""
    for (src, dst), up in expect.items():
        got = delivered(net, src, dst)
        R.check(got == (1 if up else 0),
                f"{kind}: {src} -> {dst} {'delivers' if up else 'drops'} ({got} of 1 arrived)")


def write_eventually(targets, key, value, timeout):
    """Writes key=value through targets in turn until one acknowledges it, within `timeout`;
    returns the target that did, or None."""
    deadline = time.monotonic() + timeout
    turn = itertools.count()

    def attempt():
        target = targets[next(turn) % len(targets)]
        left = deadline - time.monotonic()
        status, _, _ = harness.put(target, key, value, catch=True,
                                   timeout=max(0.5, min(cluster.REQUEST_TIMEOUT_S + 2, left)))
        return target if status in (200, 201) else None
    return harness.wait_for(attempt, timeout)


def value_on(m, key):
    """The value m serves locally (no quorum) at key, or None."""
    status, j, _ = harness.get_json(m, f"/v2/keys/{key.lstrip('/')}", catch=True)
    return j["node"].get("value") if status == 200 and j else None


def check_converged(c, kind, what, keys, timeout=30):
    """Waits (bounded by `timeout` for the leader, as much again for the data) until the three
    members agree on a leader and hold one store; checks it has `keys` ({key: value})."""
    lead = c.leader(among=c.members, timeout=timeout)
    R.check(lead is not None, f"{kind}: after {what} the three members agree on a leader")
    same = c.converged(among=c.members, timeout=timeout)
    have = cluster.index_of(same[1]) if same else {}
    R.check(same is not None and all(have.get(k) == v for k, v in keys.items()),
            f"{kind}: after {what} the three members converge with {keys}: "
            f"{[(k, have.get(k)) for k in keys] if same else 'no common store'}")
    return lead


class Clock:
    """Prints each step of the scenario with the time of day (to read beside the member logs)
    and the seconds since the last step."""

    def __init__(self, kind):
        self.kind = kind
        self.t = time.monotonic()

    def step(self, text):
        now = time.monotonic()
        print(f"{time.strftime('%H:%M:%S')} {self.kind}: {text} ({now - self.t:.2f} s)",
              flush=True)
        self.t = now


def scenario(net, kind):
    clock = Clock(kind)
    client_ns = os.path.join(netns.NETNS_DIR, net.ns[netns.CLIENT])
    R.check(os.stat("/proc/thread-self/ns/net").st_ino == os.stat(client_ns).st_ino,
            f"{kind}: the scenario thread runs in the client namespace")
    with nscluster.NsCluster(net, kind, proxy=True, results=R) as c:
        lead = c.leader()
        if not R.check(lead is not None, f"{kind}: three members in namespaces agree on a leader"):
            return
        clock.step(f"formed, leader {lead.name}")
        status, _, body = harness.put(lead, "/faults/a", "1")
        R.check(status == 201, f"{kind}: a write from the client namespace: {status} {body!r}")
        status, _, body = harness.put(c.proxy, "/faults/p", "1")
        R.check(status == 201, f"{kind}: a write through the proxy: {status} {body!r}")
        check_links(net, kind, {(a, b): True for a, b in
                                [(netns.CLIENT, lead.name), (lead.name, netns.CLIENT),
                                 ("n0", "n1"), ("n1", "n2"), ("n2", "n0"), (netns.PROXY, "n1")]})

        # The leader isolated: a new leader in the majority; the old one answers no quorum read.
        old = lead
        others = [m for m in c.members if m is not old]
        net.isolate(old.name)
        check_links(net, kind, {(old.name, others[0].name): False,
                                (others[1].name, old.name): False,
                                (netns.PROXY, old.name): False,
                                (netns.CLIENT, old.name): True, (old.name, netns.CLIENT): True,
                                (others[0].name, others[1].name): True})
        clock.step(f"isolated {old.name}")
        new = harness.wait_for(lambda: (lambda m: m if m is not old else None)(
            c.agreed_leader(others)), 3 * c.election_ms / 1000 + 5)
        if not R.check(new is not None, f"{kind}: the majority elects a new leader"):
            return
        clock.step(f"majority elected {new.name}")
        status, _, body = harness.put(new, "/faults/a", "2")
        R.check(status == 200, f"{kind}: the majority takes a write: {status} {body!r}")
        status, _, body = harness.get(old, "/faults/a", quorum=True, timeout=3, catch=True)
        R.check(status != 200, f"{kind}: the isolated old leader refuses a quorum read: "
                               f"{status} {body[:120]!r}")
        R.check(value_on(old, "/faults/a") == "1",
                f"{kind}: the isolated old leader serves its stale value locally")
        clock.step("majority wrote, quorum read on the old leader refused")
        R.check(write_eventually([c.proxy], "/faults/p", "2", 30) is not None,
                f"{kind}: the proxy reaches the majority")
        clock.step("wrote through the proxy")
        net.heal()
        R.check(all(not net.rules(n) for n in net.nodes), f"{kind}: heal leaves no rule")
        lead = check_converged(c, kind, "heal", {"/faults/a": "2", "/faults/p": "2"})
        clock.step("healed and converged")

        # One way: the leader's packets to a follower are lost, the follower's arrive.
        if lead is None:
            return
        f = c.followers(lead)[0]
        net.drop_one_way(lead.name, f.name)
        check_links(net, kind, {(lead.name, f.name): False, (f.name, lead.name): True})
        R.check(write_eventually(c.members, "/faults/b", "1", 40) is not None,
                f"{kind}: a write is acknowledged while {lead.name} -> {f.name} drops")
        clock.step(f"wrote with {lead.name} -> {f.name} dropped")
        net.heal()
        check_converged(c, kind, "the one-way drop", {"/faults/b": "1"})
        clock.step("healed and converged")

        # Random loss on every packet.
        net.lossy("all", LOSS)
        got = delivered(net, "n0", "n1", 200)
        R.check(120 <= got <= 195, f"{kind}: {LOSS:.0%} loss: {got} of 200 datagrams arrive")
        leader_before = c.agreed_leader()
        w = cluster.Writers(c.members, threads=4, prefix="lossy").start()
        t0 = time.monotonic()
        try:
            R.check(w.wait_acks(20, 90), f"{kind}: 20 writes acknowledged under {LOSS:.0%} loss "
                                         f"({w.count()})")
            took = time.monotonic() - t0
            leader_after = c.agreed_leader()
            net.heal()
        finally:
            w.stop()
        clock.step(f"{w.count()} writes acknowledged under {LOSS:.0%} loss, the first 20 in "
                   f"{took:.2f} s ({len(w.unknown)} unknown); leader "
                   f"{leader_before and leader_before.name} -> "
                   f"{leader_after and leader_after.name}")
        check_converged(c, kind, "the loss", {})
        for m in c.members:
            d = c.dump(m)
            missing = w.missing(d[1]) if d else w.acked
            R.check(not missing, f"{kind}: every write acknowledged under loss is on {m.name} "
                                 f"({len(missing)} missing)")
        clock.step("healed and converged")

        # SIGSTOP of the leader; SIGCONT.
        old = c.leader()
        old.pause()
        new = c.leader()  # among the running members: the paused one is left out
        R.check(new is not None and new is not old,
                f"{kind}: a new leader while {old.name} is stopped: {new and new.name}")
        clock.step(f"{old.name} stopped, {new and new.name} elected")
        R.check(write_eventually(c.running(), "/faults/c", "1", 30) is not None,
                f"{kind}: a write while {old.name} is stopped")
        old.resume()
        check_converged(c, kind, f"SIGCONT of {old.name}", {"/faults/c": "1"})
        R.check(value_on(old, "/faults/c") == "1", f"{kind}: {old.name} caught up after SIGCONT")
        clock.step(f"{old.name} resumed and caught up")

        # kill -9 of a follower, writes, restart from its data dir.
        victim = c.followers(c.leader())[0]
        c.kill(victim)
        for i in range(10):
            R.check(write_eventually(c.running(), f"/faults/k{i}", str(i), 20) is not None,
                    f"{kind}: write {i} while {victim.name} is down")
        c.restart(victim)
        check_converged(c, kind, f"the restart of {victim.name}",
                        {f"/faults/k{i}": str(i) for i in range(10)})
        clock.step(f"{victim.name} killed, restarted and caught up")
        status, _, body = harness.get(c.proxy, "/faults/k9", quorum=True)
        R.check(status == 200 and b'"9"' in body,
                f"{kind}: a quorum read through the proxy: {status} {body[:120]!r}")
        # SIGTERM: the member stops cleanly and comes back.
        c.kill(victim, signal.SIGTERM)
        R.check(victim.exited(), f"{kind}: {victim.name} exits on SIGTERM")
        c.restart(victim)
        check_converged(c, kind, f"SIGTERM and restart of {victim.name}", {"/faults/k9": "9"})
        clock.step(f"{victim.name} terminated, restarted")


def check_removed(net, what):
    left = set(netns.namespaces()) & {net.bridge_ns, *net.ns.values()}
    R.check(not left, f"{what}: no namespace of the net is left: {sorted(left)}")


def netns_inode():
    """The network namespace of the calling thread (its inode number)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


class Planned(Exception):
    pass


def network_only():
    """The net without servers: five members; a stale namespace of a dead run removed at setup;
    threads in namespaces; bridge(); a partition with the client in a group; one lossy node;
    everything removed after an exception."""
    start = time.monotonic()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{netns.NS_PREFIX}{dead.pid}-0-n0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    net = netns.Net(5)
    try:
        with net:
            R.check(stale not in netns.namespaces(),
                    f"setup removes {stale}, left by a process that is gone")
            devs = [*net.iface.values(), *net.bridge_port.values(), net.bridge_dev]
            R.check(all(len(d) <= 15 for d in devs), f"interface names fit in 15 bytes: {devs}")

            def with_child():
                seen = []
                t = threading.Thread(target=lambda: seen.append(netns_inode()))
                t.start()
                t.join()
                return netns_inode(), seen[0]
            client = os.stat(os.path.join(netns.NETNS_DIR, net.ns[netns.CLIENT])).st_ino
            R.check(net.run_in(with_child) == (client, client),
                    "a client thread and the threads it starts run in the client namespace")
            R.check(netns_inode() != client, "the main thread stays in the host namespace")
            try:
                net.enter()
                R.check(False, "Net.enter refuses the main thread")
            except RuntimeError:
                pass

            net.bridge()
            check_links(net, "bridge", {("n0", "n1"): True, ("n0", "n3"): False,
                                        ("n4", "n1"): False, ("n3", "n4"): True,
                                        ("n2", "n0"): True, ("n4", "n2"): True,
                                        ("n1", "n2"): True, (netns.CLIENT, "n3"): True})
            net.heal()
            net.partition([["n0", netns.CLIENT], ["n1", "n2", "n3", "n4"]])
            check_links(net, "partition", {(netns.CLIENT, "n1"): False,
                                           ("n1", netns.CLIENT): False,
                                           (netns.CLIENT, "n0"): True, ("n1", "n4"): True})
            net.heal()
            net.lossy("n4", 0.5)
            for src, dst, low, high in [("n0", "n4", 60, 140), ("n4", "n0", 60, 140),
                                        ("n0", "n1", 200, 200)]:
                got = delivered(net, src, dst, 200)
                R.check(low <= got <= high,
                        f"lossy(n4, 0.5): {src} -> {dst}: {got} of 200 arrive "
                        f"(expected {low}..{high})")
            raise Planned()
    except Planned:
        pass
    check_removed(net, "an exception inside the net")
    print(f"network only: took {time.monotonic() - start:.1f} s", flush=True)


def run(kind):
    start = time.monotonic()
    with netns.Net(3, proxy=True) as net:
        net.run_in(scenario, net, kind)
    check_removed(net, kind)
    print(f"{kind}: took {time.monotonic() - start:.1f} s", flush=True)


def main():
    netns.start_test()
    network_only()
    run("kvd")
    if cluster.etcd_half_runs():
        run("etcd")
    R.finish()


if __name__ == "__main__":
    main()
