"""The nemeses of the fault tests: each makes one kind of fault on a cluster in network
namespaces (nscluster.NsCluster in a netns.Net) and undoes it. Standard library only.

    nem = NEMESES["partition-leader"]
    what = nem.start(ctx)     # a line for the run's log: what was done to whom
    ...
    nem.stop(ctx)             # heal: rules removed, paused members resumed, killed ones restarted

ctx (a Context) holds the net, the cluster and the run's Random, so a seed replays the same
choices (which member, which halves) as far as the cluster's own timing (who is leader) allows.
A nemesis that needs a leader and finds none (an election in progress) picks a random member.
`members` says how many members the nemesis wants (the bridge needs five); `proxy` that its
workload goes through the proxy only (the proxy nemeses).
"""
import random
import signal


class Context:
    def __init__(self, net, cluster, rnd):
        self.net = net
        self.cluster = cluster
        self.rnd = rnd
        self.killed = []   # members to restart at stop()
        self.paused = []   # members to resume at stop()

    def leader_or_any(self):
        lead = self.cluster.leader(among=self.cluster.running(), timeout=3)
        return lead or self.rnd.choice(self.cluster.running() or self.cluster.members)

    def names(self):
        return [m.name for m in self.cluster.members]


class Nemesis:
    name = "none"
    members = 3
    proxy = False

    def start(self, ctx):
        return "nothing"

    def stop(self, ctx):
        ctx.net.heal()
        for m in ctx.paused:
            m.resume()
        ctx.paused.clear()
        for m in ctx.killed:
            ctx.cluster.restart(m, wait=False)
        ctx.killed.clear()


class PartitionHalves(Nemesis):
    name = "partition-halves"

    def start(self, ctx):
        names = ctx.names()
        ctx.rnd.shuffle(names)
        cut = len(names) // 2
        groups = [names[:cut], names[cut:]]
        ctx.net.partition(groups)
        return f"partition {groups}"


class PartitionLeader(Nemesis):
    name = "partition-leader"

    def start(self, ctx):
        lead = ctx.leader_or_any()
        ctx.net.isolate(lead.name)
        return f"isolate leader {lead.name}"


class Bridge(Nemesis):
    name = "partition-bridge"
    members = 5

    def start(self, ctx):
        middle = ctx.rnd.choice(ctx.names())
        ctx.net.bridge(middle)
        return f"bridge through {middle}"


class OneWay(Nemesis):
    name = "one-way"

    def start(self, ctx):
        lead = ctx.leader_or_any()
        other = ctx.rnd.choice([n for n in ctx.names() if n != lead.name])
        src, dst = (lead.name, other) if ctx.rnd.random() < 0.5 else (other, lead.name)
        ctx.net.drop_one_way(src, dst)
        return f"drop {src} -> {dst}"


class Kill(Nemesis):
    """kill -9 of `count` members ("all": every one), restarted at stop."""

    def __init__(self, count):
        self.count = count
        self.name = "kill-all" if count == "all" else f"kill-{count}"

    def start(self, ctx):
        running = ctx.cluster.running()
        n = len(running) if self.count == "all" else min(self.count, len(running))
        victims = ctx.rnd.sample(running, n)
        for m in victims:
            ctx.cluster.kill(m, signal.SIGKILL)
            ctx.killed.append(m)
        return f"kill -9 {[m.name for m in victims]}"


class Pause(Nemesis):
    """SIGSTOP of the leader (or a random member), SIGCONT at stop: a GC-like stall."""

    def __init__(self, leader):
        self.leader = leader
        self.name = "pause-leader" if leader else "pause-member"

    def start(self, ctx):
        m = ctx.leader_or_any() if self.leader else ctx.rnd.choice(ctx.cluster.running())
        m.pause()
        ctx.paused.append(m)
        return f"SIGSTOP {m.name}"


class Lossy(Nemesis):
    name = "lossy"

    def start(self, ctx):
        p = ctx.rnd.choice([0.1, 0.2, 0.3])
        ctx.net.lossy(ctx.names(), p)
        return f"drop {p:.0%} of the members' packets"


class ProxyMemberHang(Pause):
    """A member behind the proxy stops answering (SIGSTOP): clients only use the proxy."""
    proxy = True

    def __init__(self):
        super().__init__(leader=False)
        self.name = "proxy-member-hang"


class ProxyMemberSilent(Nemesis):
    """A member behind the proxy silently drops everything (a partition with no answer)."""
    name = "proxy-member-silent"
    proxy = True

    def start(self, ctx):
        m = ctx.rnd.choice(ctx.cluster.running())
        ctx.net.partition([[m.name], [n for n in ctx.net.nodes if n != m.name]])
        return f"{m.name} silent to all, proxy and client included"


class ProxyMemberKill(Kill):
    proxy = True

    def __init__(self):
        super().__init__(1)
        self.name = "proxy-member-kill"


NEMESES = {n.name: n for n in (
    PartitionHalves(), PartitionLeader(), Bridge(), OneWay(), Kill(1), Kill(2), Kill("all"),
    Pause(leader=True), Pause(leader=False), Lossy(), ProxyMemberHang(), ProxyMemberSilent(),
    ProxyMemberKill())}


def choose(names, seed):
    """The nemeses named (comma-separated, or "all"), in a seeded order."""
    chosen = list(NEMESES) if names in ("all", "", None) else names.split(",")
    unknown = [n for n in chosen if n not in NEMESES]
    if unknown:
        raise SystemExit(f"unknown nemesis {unknown}; known: {', '.join(NEMESES)}")
    random.Random(seed).shuffle(chosen)
    return chosen
