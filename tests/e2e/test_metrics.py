#!/usr/bin/env python3
"""/metrics with etcd 3.4's names, scraped by a real Prometheus (Debian's prometheus package).

A three-member kvd cluster and a kvd proxy in front of it; Prometheus scrapes all four every
second (job "etcd", as an etcd operator's set-up names it) and loads deploy/prometheus's alerting
rules. Through Prometheus's HTTP API the test checks that the series an etcd dashboard and its
alerts read are there and move as they should:
  - etcd_server_has_leader is 1 on every member, etcd_server_is_leader sums to 1;
  - etcd_server_proposals_committed_total grows with writes through the proxy, and so do
    etcd_proxy_requests_total{method="PUT"} and etcd_proxy_handled_total{code="201"};
  - etcd_disk_wal_fsync_duration_seconds and etcd_network_peer_sent_bytes_total have samples;
  - the leader killed: the survivors' etcd_server_leader_changes_seen_total grows, they have a
    leader again, and the killed member's `up` is 0;
  - the rules load with health "ok"; `promtool check rules` and `promtool test rules` (each
    alert fires on the series that should raise it) pass.
Also, without Prometheus: the exposition's format (HELP/TYPE for every family, etcd's names).
"""
import json
import os
import shutil
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from cluster import Cluster  # noqa: E402

RULES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                         "prometheus")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

MEMBER_FAMILIES = [
    "etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending", "etcd_server_proposals_failed_total", "etcd_server_version",
    "etcd_server_id", "etcd_cluster_version", "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds", "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total", "etcd_network_peer_round_trip_time_seconds",
    "etcd_debugging_store_writes_total", "etcd_debugging_store_watchers",
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
    "process_start_time_seconds"]


class Prometheus(harness.Process):
    def __init__(self, workdir, targets):
        self.workdir = workdir
        self.port = harness.free_port()
        self.log_path = os.path.join(workdir, "prometheus.log")
        self.config = os.path.join(workdir, "prometheus.yml")
        rules = os.path.abspath(os.path.join(RULES_DIR, "kvd-alerts.yml"))
        with open(self.config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    f"rule_files:\n  - {rules}\n"
                    "scrape_configs:\n  - job_name: etcd\n    static_configs:\n"
                    f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")

    def args(self):
        return [PROMETHEUS, "--config.file", self.config,
                "--storage.tsdb.path", os.path.join(self.workdir, "tsdb"),
                "--web.listen-address", f"127.0.0.1:{self.port}", "--log.level", "warn"]

    def query(self, expr):
        """The instant vector of expr: {instance: value}."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?query={urllib.parse.quote(expr)}"
        try:
            status, _, body = harness.request("GET", url, timeout=5.0)
        except OSError:
            return {}
        if status != 200:
            return {}
        out = {}
        for r in json.loads(body)["data"]["result"]:
            out[r["metric"].get("instance", "")] = float(r["value"][1])
        return out

    def api(self, path):
        status, _, body = harness.request("GET", f"http://127.0.0.1:{self.port}{path}")
        return json.loads(body) if status == 200 else None


def host_port(url):
    return url.split("://", 1)[1]


def exposition(R, m):
    status, hdrs, body = harness.request("GET", m.url + "/metrics")
    text = body.decode()
    R.check(status == 200 and hdrs.get("content-type", "").startswith("text/plain; version=0.0.4"),
            f"/metrics answers in the text exposition format ({status} {hdrs.get('content-type')})")
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    types = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    missing = [f for f in MEMBER_FAMILIES if f not in types]
    R.check(not missing and helps == types, f"every family has HELP and TYPE; missing {missing}")


def main():
    if not PROMETHEUS or not PROMTOOL:
        print("SKIP: prometheus is not installed (apt-get install prometheus)")
        sys.exit(77)
    R = harness.Results()
    for args in (["check", "rules", "kvd-alerts.yml"], ["test", "rules", "kvd-alerts.test.yml"]):
        p = subprocess.run([PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True,
                           timeout=60)
        R.check(p.returncode == 0 and "SUCCESS" in p.stdout + p.stderr,
                f"promtool {' '.join(args)}: {p.stdout.strip()} {p.stderr.strip()}")
    with Cluster("kvd", n=3, results=R) as c:
        proxy = harness.Proxy("kvd", c.initial_cluster(), c.workdir)
        prom = Prometheus(c.workdir, [host_port(m.url) for m in c.members] +
                          [host_port(proxy.url)])
        try:
            scenario(R, c, proxy, prom)
        finally:
            prom.kill()
            proxy.kill()
    R.finish()


def scenario(R, c, proxy, prom):
    proxy.spawn()
    R.check(harness.wait_for(lambda: harness.put(proxy, "/warm", "x", catch=True)[0] == 201,
                             20.0), "the proxy forwards a write")
    exposition(R, c.members[0])
    prom.spawn()
    members = {host_port(m.url) for m in c.members}

    def all_have_leader():
        v = prom.query("etcd_server_has_leader")
        return set(v) == members and all(x == 1 for x in v.values())
    R.check(harness.wait_for(all_have_leader, 30.0), "etcd_server_has_leader is 1 on all three")
    R.check(harness.wait_for(lambda: prom.query("sum(etcd_server_is_leader)").get("") == 1,
                             10.0), "etcd_server_is_leader sums to 1")
    before = prom.query("max(etcd_server_proposals_committed_total)").get("", 0)
    puts = prom.query('sum(etcd_proxy_requests_total{method="PUT"})').get("", 0)
    for i in range(50):
        harness.put(proxy, f"/k{i}", "v")
    R.check(harness.wait_for(
        lambda: prom.query("max(etcd_server_proposals_committed_total)").get("", 0) >= before + 50,
        20.0), f"proposals_committed_total grows with 50 writes (from {before})")
    R.check(harness.wait_for(
        lambda: prom.query('sum(etcd_proxy_requests_total{method="PUT"})').get("", 0) >= puts + 50
        and prom.query('sum(etcd_proxy_handled_total{method="PUT",code="201"})').get("", 0) >= 50,
        20.0), "the proxy's requests_total and handled_total count the writes")
    for expr in ["etcd_disk_wal_fsync_duration_seconds_count > 0",
                 "etcd_network_peer_sent_bytes_total > 0",
                 "process_resident_memory_bytes > 0"]:
        R.check(harness.wait_for(lambda e=expr: len(prom.query(e)) >= 3, 20.0),
                f"{expr} on every member")
    # Round trips are timed by the heartbeats, which the leader sends.
    R.check(harness.wait_for(
        lambda: len(prom.query("etcd_network_peer_round_trip_time_seconds_count > 0")) >= 1, 20.0),
        "etcd_network_peer_round_trip_time_seconds on the leader")
    rules = prom.api("/api/v1/rules")
    groups = rules["data"]["groups"] if rules else []
    health = [r.get("health") for g in groups for r in g["rules"]]
    R.check(len(health) == 7 and all(h == "ok" for h in health),
            f"the alerting rules load and evaluate ({health})")

    # The leader dies: the others elect another, and Prometheus sees it.
    lead = c.leader()
    survivors = {host_port(m.url) for m in c.members if m is not lead}
    changes = prom.query("etcd_server_leader_changes_seen_total")
    c.kill(lead)

    def moved():
        now = prom.query("etcd_server_leader_changes_seen_total")
        leader = prom.query("etcd_server_has_leader")
        return all(now.get(s, 0) > changes.get(s, 0) for s in survivors) and \
            all(leader.get(s) == 1 for s in survivors)
    R.check(harness.wait_for(moved, 30.0),
            "leader_changes_seen_total grows on the survivors, which have a leader again")
    R.check(harness.wait_for(lambda: prom.query("up").get(host_port(lead.url)) == 0, 20.0),
            "Prometheus sees the killed member down")


if __name__ == "__main__":
    main()
