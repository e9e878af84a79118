"""A cluster in network namespaces: tests/e2e's cluster.Cluster with member n<i> running in node
n<i> of a netns.Net, on that node's address and the fixed ports 2379 (client) and 2380 (peer),
and optionally a proxy of the same kind in the net's proxy node. Everything else (start, kill
with any signal, pause and resume, restart from the same data dir, leader, convergence, log
tails when a check failed) is Cluster's and harness.Process's:

    c.kill(m) / c.kill(m, signal.SIGTERM)   kill -9 / SIGTERM, waiting for the exit
    m.pause() / m.resume()                   SIGSTOP / SIGCONT (running() leaves paused members out)
    c.restart(m)                             the same flags and data dir
    c.leader(among=None)                     the agreed leader (bounded wait), a Member
    c.converged(among=None)                  the same recursive dump on every member, or None
    c.proxy                                  the harness.Proxy, or None

A member's name is its node's name, so a fault names it directly: net.isolate(c.leader().name).
The cluster answers only inside the net: drive it from a thread in the client namespace
(net.run_in, net.thread).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import cluster  # noqa: E402
import harness  # noqa: E402
import netns  # noqa: E402

CLIENT_PORT = 2379
PEER_PORT = 2380


class NsCluster(cluster.Cluster):
    """Members of one kind ("kvd" or "etcd") in the member nodes of `net` (the first n of them;
    default all), plus a started proxy in the proxy node if `proxy`. The keyword arguments are
    Cluster's (raft timings, results, ...). Owned and driven by one thread in the client
    namespace."""

    def __init__(self, net, kind="kvd", n=None, proxy=False, **kwargs):
        self.net = net
        super().__init__(kind, len(net.members) if n is None else n,
                         name_prefix=netns.MEMBER_PREFIX, **kwargs)
        self.proxy = None
        if proxy:
            self.proxy = harness.Proxy(kind, self.initial_cluster(), self.workdir,
                                       host=net.address(netns.PROXY), port=CLIENT_PORT,
                                       command_prefix=net.exec_prefix(netns.PROXY))

    def new_member_slot(self, name):
        """A Member (not started) in node `name` of the net."""
        return harness.Member(self.kind, name=name, workdir=self.workdir,
                              host=self.net.address(name), client_port=CLIENT_PORT,
                              peer_port=PEER_PORT, command_prefix=self.net.exec_prefix(name))

    def start(self, timeout=40.0):
        super().start(timeout)
        if self.proxy is not None:
            self.proxy.start(want_endpoints=len(self.members), timeout=timeout)
        return self

    def dump_logs(self, chars=3000):
        super().dump_logs(chars)
        if self.proxy is not None:
            print(f"--- {self.kind} proxy log tail ---")
            print(self.proxy.read_log()[-chars:], flush=True)

    def cleanup(self):
        if self.proxy is not None:
            self.proxy.kill()
        super().cleanup()
