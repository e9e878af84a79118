"""Network layer of the fault tests: one network namespace per node of a test (the members
n0..n<N-1>, optionally a proxy node, and a client node), each joined by a veth pair to one Linux
bridge that lives in a namespace of its own; faults are iptables rules inside the node
namespaces. Standard library only (Debian's /usr/bin/python3); needs root, iproute2 and iptables.

    def scenario(net):                               # runs in the client namespace
        with nscluster.NsCluster(net, "kvd") as c:   # member n<i> on net.address("n<i>")
            lead = c.leader()
            net.isolate(lead.name)                   # a member's name is its node's name
            ...
            net.heal()

    with netns.Net(3) as net:                        # nodes n0 n1 n2 client
        net.run_in(scenario, net)

Public API (what a nemesis or a workload calls):

    unavailable()                      why namespaces cannot be made here (a skip reason), or None
    namespaces()                       the names `ip netns list` shows (to check for leftovers)
    Net(members=3, proxy=False)        nodes "n0".."n<members-1>", PROXY if proxy, CLIENT; made by
                                       __enter__ (setup()), removed by __exit__ (cleanup())
    net.members, net.nodes             the member node names; every node name
    net.address(node)                  the node's IPv4 address
    net.exec_prefix(node)              ["ip", "netns", "exec", <namespace>]: a command in the node
    net.enter(node=CLIENT)             moves the calling thread, never the main one, into the node
    net.thread(target, *args, node=CLIENT, **kwargs)  a daemon Thread (not started) that enters
                                       the node, then runs target
    net.run_in(fn, *args, node=CLIENT, **kwargs)      fn in such a thread: its value or exception
    net.partition(groups)              lists of node names: nodes of two groups exchange nothing
    net.isolate(node)                  node cut from every other node but the client
    net.bridge(middle=None)            two halves of the members, joined only through `middle`
    net.drop_one_way(src, dst)         src -> dst packets dropped, dst -> src delivered
    net.lossy(nodes, probability)      random drop of the packets to and from nodes (a name, a
                                       list of names, or "all")
    net.heal()                         removes every fault rule
    net.rules(node)                    the node's fault rules (iptables -S lines), for a report

Faults. Every fault is DROP rules in the INPUT chain of a receiver's namespace: a packet is lost on
arrival, never on departure, so a sender sees what it would see on a real network (a DROP in OUTPUT
makes a UDP send() fail with EPERM at once). A fault call returns once its rules are in place: one
iptables-restore per node concerned, run together. A partition drops by source address at both
ends, which cuts both directions. A node named in no group of a partition (by default the client;
bridge()'s middle member; the proxy unless listed) keeps reaching every node. lossy() draws once
per packet: a receiver in `nodes` drops any packet arriving on its veth with `probability`
(iptables' statistic match: netem is not in every kernel), another receiver drops only the packets
from senders in `nodes`; "all" names every node, the client included. Loopback traffic is never
touched. Faults add up until heal(), which flushes the filter table of every node.

Client threads. setns(2) moves only the calling thread, so the process's other threads (the
main one above all) stay in the host namespace. A thread runs in a node's namespace from
net.enter(node), net.thread(...) or net.run_in(...); the threads it starts begin there too
(Linux copies the creator's namespaces), so a workload started from such a thread (e.g.
cluster.Writers) reaches the members with no change, and so do the processes it starts (the
exec prefix then moves them to their own node). A socket stays in the namespace it was opened
in wherever it is used later. A thread or socket still in a namespace keeps that namespace (and
its veth) alive after cleanup() until it ends: end them before the Net exits.

Names and addresses. Namespaces are kvdf-<pid>-<seq>-<node> and kvdf-<pid>-<seq>-br (seq counts
the Nets of this process); interfaces kf<pid>n<i> (a node's end, in the node's namespace),
kf<pid>b<i> (the bridge's end) and the bridge kf<pid>br, at most 12 characters, all inside the
run's namespaces. The subnet is 10.<pid / 256 % 256>.<pid % 256>.0/24: the client is .2, the
proxy .3, member i .(10 + i). Only the run's own namespaces see these addresses, so parallel
runs cannot collide. setup() first removes the namespaces of earlier runs whose pid is gone,
with whatever still runs in them.
"""
import ctypes
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

CLIENT = "client"
PROXY = "proxy"
MEMBER_PREFIX = "n"  # member i is node "n<i>"

NS_PREFIX = "kvdf-"
NETNS_DIR = "/var/run/netns"  # where `ip netns add` mounts a namespace
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_nets_made = itertools.count()  # seq of the namespace names, per process


def _run(cmd, stdin=None):
    """Runs cmd; returns its stdout, or raises RuntimeError with its stderr when it fails."""
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def _run_all(cmds):
    """Runs (cmd, stdin) pairs concurrently, so that one fault starts at about the same moment
    on every node; raises RuntimeError naming the commands that failed."""
    procs = [(cmd, stdin, subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True))
             for cmd, stdin in cmds]
    errors = []
    for cmd, stdin, p in procs:
        _, err = p.communicate(stdin, timeout=60)
        if p.returncode != 0:
            errors.append(f"{' '.join(cmd)}: exit {p.returncode}: {err.strip()}")
    if errors:
        raise RuntimeError("; ".join(errors))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def namespaces():
    """The names `ip netns list` shows."""
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line]


def _remove_namespace(ns):
    """Kills what still runs in ns (never this process), then deletes ns."""
    for pid in _run(["ip", "netns", "pids", ns]).split():
        if int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    _run(["ip", "netns", "del", ns])


def remove_stale():
    """Removes the namespaces of earlier runs whose process is gone; returns their names."""
    stale = []
    for ns in namespaces():
        m = re.match(re.escape(NS_PREFIX) + r"(\d+)-", ns)
        if m and not _pid_alive(int(m.group(1))):
            try:
                _remove_namespace(ns)
            except RuntimeError:
                # Another test removing the same stale namespace at the same moment (ctest runs
                # the fault tests side by side): fine once it is gone.
                if ns in namespaces():
                    raise
            stale.append(ns)
    return stale


def unavailable():
    """Why network namespaces cannot be used here (a reason for a skip), or None."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "iptables", "iptables-restore"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install iproute2 iptables)"
    probe = f"{NS_PREFIX}{os.getpid()}-probe"
    try:
        _run(["ip", "netns", "add", probe])
        _run(["ip", "netns", "del", probe])
    except RuntimeError as e:
        return f"cannot make a network namespace: {e}"
    return None


SKIP = 77  # ctest's SKIP_RETURN_CODE for the fault tests (harness.SKIP)


def start_test(other_reason=None):
    """What every fault test does first: exits with SKIP, saying why, when namespaces cannot be
    used here or other_reason (a string) says the test cannot run; then makes ctest's timeout
    (SIGTERM) unwind the test, so that its namespaces and what runs in them are removed."""
    why = unavailable() or other_reason
    if why:
        print(f"SKIP: {why}")
        sys.exit(SKIP)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("SIGTERM"))


class Net:
    """The namespaces, veths and bridge of one test run, and its faults. Owned by the test's
    main thread: setup(), cleanup() and the fault methods may be called from any one thread at
    a time (they run `ip` and `iptables`, whose namespace is named on their command line)."""

    def __init__(self, members=3, proxy=False):
        pid = os.getpid()
        self.members = [f"{MEMBER_PREFIX}{i}" for i in range(members)]
        self.nodes = self.members + ([PROXY] if proxy else []) + [CLIENT]
        base = f"{NS_PREFIX}{pid}-{next(_nets_made)}-"
        self.bridge_ns = base + "br"
        self.ns = {node: base + node for node in self.nodes}
        self.bridge_dev = f"kf{pid}br"
        self.iface = {node: f"kf{pid}n{i}" for i, node in enumerate(self.nodes)}
        self.bridge_port = {node: f"kf{pid}b{i}" for i, node in enumerate(self.nodes)}
        subnet = f"10.{pid // 256 % 256}.{pid % 256}"
        self.addresses = {CLIENT: f"{subnet}.2", PROXY: f"{subnet}.3"}
        self.addresses.update({m: f"{subnet}.{10 + i}" for i, m in enumerate(self.members)})
        self.made = []  # the namespaces made so far, for cleanup()

    # --- topology ---

    def setup(self):
        """Removes stale namespaces, then makes this run's: on failure, removes what it made."""
        remove_stale()
        try:
            for ns in [self.bridge_ns, *self.ns.values()]:
                _run(["ip", "netns", "add", ns])
                self.made.append(ns)
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", self.bridge_ns, "link", "add", self.bridge_dev, "type", "bridge"])
            _run(["ip", "-n", self.bridge_ns, "link", "set", self.bridge_dev, "up"])
            for node in self.nodes:
                ns, dev, port = self.ns[node], self.iface[node], self.bridge_port[node]
                _run(["ip", "link", "add", dev, "netns", ns, "type", "veth",
                      "peer", "name", port, "netns", self.bridge_ns])
                _run(["ip", "-n", self.bridge_ns, "link", "set", port,
                      "master", self.bridge_dev, "up"])
                _run(["ip", "-n", ns, "addr", "add", f"{self.addresses[node]}/24", "dev", dev])
                _run(["ip", "-n", ns, "link", "set", dev, "up"])
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self):
        """Removes every namespace this Net made (and so its veths and bridge), killing what
        still runs in them."""
        errors = []
        while self.made:
            ns = self.made.pop()
            try:
                _remove_namespace(ns)
            except RuntimeError as e:
                errors.append(str(e))
        if errors:
            raise RuntimeError("; ".join(errors))

    def __enter__(self):
        return self.setup()

    def __exit__(self, exc_type, exc, tb):
        try:
            self.cleanup()
        except RuntimeError as e:
            if exc_type is None:
                raise
            print(f"netns cleanup: {e}", file=sys.stderr)  # the first error is the one to see

    def _node(self, node):
        if node not in self.ns:
            raise ValueError(f"no node {node!r} (nodes: {', '.join(self.nodes)})")
        return node

    def address(self, node):
        return self.addresses[self._node(node)]

    def exec_prefix(self, node):
        return ["ip", "netns", "exec", self.ns[self._node(node)]]

    # --- threads in a namespace ---

    def enter(self, node=CLIENT):
        """Moves the calling thread into node's namespace for the rest of its life; refuses the
        main thread (see the module docstring)."""
        if threading.current_thread() is threading.main_thread():
            raise RuntimeError("Net.enter moves only the calling thread: call it in a thread of "
                               "its own (Net.thread, Net.run_in), not in the main thread")
        path = os.path.join(NETNS_DIR, self.ns[self._node(node)])
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({path}): {os.strerror(err)}")
        finally:
            os.close(fd)

    def thread(self, target, *args, node=CLIENT, **kwargs):
        """A daemon thread, not started, that enters node's namespace and then runs target."""
        def body():
            self.enter(node)
            target(*args, **kwargs)
        return threading.Thread(target=body, daemon=True, name=f"{node}-{target.__name__}")

    def run_in(self, fn, *args, node=CLIENT, **kwargs):
        """Runs fn(*args, **kwargs) in a new thread in node's namespace and waits for it;
        returns its value or raises its exception."""
        out = {}

        def capture():
            try:
                out["value"] = fn(*args, **kwargs)
            except BaseException as e:  # noqa: B902 - handed to the calling thread
                out["error"] = e
        t = self.thread(capture, node=node)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out.get("value")

    # --- faults ---

    def _add_rules(self, rules):
        """Appends rules ({node: ["INPUT ...", ...]}) to the filter table of each node."""
        _run_all([(self.exec_prefix(node) + ["iptables-restore", "-w", "--noflush"],
                   "*filter\n" + "".join(f"-A {r}\n" for r in rs) + "COMMIT\n")
                  for node, rs in rules.items() if rs])

    def partition(self, groups):
        """Nodes of different groups (lists of node names) can no longer exchange packets;
        a node in no group still reaches every node."""
        group_of = {}
        for i, group in enumerate(groups):
            for node in group:
                if group_of.setdefault(self._node(node), i) != i:
                    raise ValueError(f"{node} is in two groups of {groups}")
        self._add_rules({node: [f"INPUT -s {self.addresses[other]} -j DROP"
                                for other in group_of if group_of[other] != group_of[node]]
                         for node in group_of})

    def isolate(self, node):
        """Cuts node from every other node but the client."""
        self.partition([[node], [n for n in self.nodes if n not in (node, CLIENT)]])

    def bridge(self, middle=None):
        """Splits the other members into two halves that only `middle` (default: the middle
        member) joins, as in Jepsen's bridge: with 5 members, n0 n1 | n3 n4, n2 sees all."""
        middle = self._node(middle or self.members[len(self.members) // 2])
        rest = [m for m in self.members if m != middle]
        self.partition([rest[:len(rest) // 2], rest[len(rest) // 2:]])

    def drop_one_way(self, src, dst):
        """Packets from src to dst are dropped; those from dst to src are delivered."""
        self._add_rules({self._node(dst): [f"INPUT -s {self.address(src)} -j DROP"]})

    def lossy(self, nodes, probability):
        """Drops each packet to or from one of `nodes` (a node name, a list of them, or "all")
        at random with `probability`, once per packet (see the module docstring)."""
        if not 0 < probability <= 1:
            raise ValueError(f"probability {probability} not in (0, 1]")
        lossy = set(self.nodes if nodes == "all" else
                    [self._node(nodes)] if isinstance(nodes, str) else map(self._node, nodes))
        drop = f"-m statistic --mode random --probability {probability} -j DROP"
        self._add_rules({node: [f"INPUT -i {self.iface[node]} {drop}"] if node in lossy else
                         [f"INPUT -s {self.addresses[src]} {drop}" for src in sorted(lossy)]
                         for node in self.nodes})

    def heal(self):
        """Removes every fault rule of every node."""
        _run_all([(self.exec_prefix(node) + ["iptables-restore", "-w"], "*filter\nCOMMIT\n")
                  for node in self.nodes])

    def rules(self, node):
        """The fault rules now in node's filter table, as `iptables -S` prints them."""
        out = _run(self.exec_prefix(node) + ["iptables", "-w", "-S"])
        return [line for line in out.splitlines() if line.startswith("-A ")]
