#!/usr/bin/env python3
"""Start-up safety, as etcd 3.4, side by side with real etcd where it has the same check:

  - bootstrap flags etcd refuses are refused with etcd's message and nothing written: the own
    peer URL missing from --initial-cluster, a member listed with more URLs than it
    advertises, a URL given twice, a name not in --initial-cluster; a host name that resolves
    to the advertised address is accepted, as etcd resolves them; a data dir that already holds
    a member ignores --initial-cluster (a restart with other flags works);
  - a busy client, peer or metrics port fails the start before the data dir exists;
  - data dirs are made 0700 all the way down, and an existing looser one is named in etcd's
    "check file permission" warning;
  - flags accepted for compatibility but without effect are named in one warning at start;
  - --discovery or --discovery-srv with an explicit --initial-cluster is refused with etcd's
    message (discovery itself: test_discovery.py and tests/faults/test_discovery_srv.py).
"""
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CRITICAL = re.compile(r" C \| (?:etcdmain: )?(.*)$")


def run(kind, data_dir, args, timeout=15):
    binary = harness.KVD_BIN if kind == "kvd" else harness.ETCD_BIN
    extra = ["--enable-v2"] if kind == "etcd" else []
    return subprocess.run([binary, "--data-dir", data_dir, *extra, *args], capture_output=True,
                          text=True, timeout=timeout)


def critical(p):
    for line in reversed(p.stderr.splitlines()):
        m = CRITICAL.search(line)
        if m:
            return m.group(1)
    lines = p.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def member_args(name, client, peer, cluster, advertise=None):
    return ["--name", name, "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", advertise or peer,
            "--initial-cluster", cluster]


def main():
    R = harness.Results()
    workdir = tempfile.mkdtemp(prefix="kvd-startup-")
    kinds = ["kvd"] + (["etcd"] if harness.have_etcd() else [])
    if len(kinds) == 1:
        print("note: etcd is not installed; kvd checked alone")
    try:
        bad_bootstrap(R, workdir, kinds)
        busy_ports(R, workdir)
        permissions_and_warnings(R, workdir, kinds)
    finally:
        harness.remove_workdir(workdir, R)
    R.finish()


def bad_bootstrap(R, workdir, kinds):
    cases = {
        "own URL missing": lambda p: ("a", p[1], f"a=http://127.0.0.1:{p[2]}", None),
        "more URLs in the cluster": lambda p: ("a", p[1],
                                               f"a=http://127.0.0.1:{p[1]},a=http://127.0.0.1:{p[2]}",
                                               None),
        "duplicate URL": lambda p: ("a", p[1],
                                    f"a=http://127.0.0.1:{p[1]},b=http://127.0.0.1:{p[1]}", None),
        "name missing": lambda p: ("b", p[1], f"a=http://127.0.0.1:{p[1]}", None),
    }
    for what, make in cases.items():
        got = {}
        for k in kinds:
            p = [harness.free_port() for _ in range(3)]
            name, peer, cluster, adv = make(p)
            d = os.path.join(workdir, f"{k}-{what.replace(' ', '-')}")
            # The ports differ between the two servers: compare with the port numbers masked.
            proc = run(k, d, member_args(name, f"http://127.0.0.1:{p[0]}",
                                         f"http://127.0.0.1:{peer}", cluster, adv))
            got[k] = (proc.returncode != 0,
                      re.sub(r":\d+", ":PORT", critical(proc)).removeprefix("kvd: "))
            if k == "kvd":
                R.check(not os.path.exists(d), f"{what}: kvd wrote nothing ({d})")
        R.check(got["kvd"][0] and len(set(got.values())) == 1, f"{what}: refused as etcd: {got}")

    # A host name that resolves to the advertised address is the same URL (etcd resolves).
    c, pe = harness.free_port(), harness.free_port()
    m = harness.Member("kvd", name="byname", workdir=workdir, client_port=c, peer_port=pe,
                       extra_args=["--initial-advertise-peer-urls", f"http://localhost:{pe}"])
    try:
        m.start()
        R.check(True, "advertised http://localhost:P and --initial-cluster 127.0.0.1:P: started")
        m.stop()
        m.proc.wait(timeout=20)
        # A restart ignores --initial-cluster (the data dir holds the member): flags that would
        # not bootstrap are fine then, as in etcd.
        m.extra_args = ["--initial-cluster", f"byname=http://127.0.0.1:{harness.free_port()}",
                        "--initial-advertise-peer-urls", m.peer_url]
        m.start()
        R.check(harness.get(m, "/", catch=True)[0] == 200,
                "a restart with another --initial-cluster: the data dir's member serves")
    except RuntimeError as e:
        R.check(False, f"member by host name: {e}")
    finally:
        m.kill()


def busy_ports(R, workdir):
    for which in ("client", "peer", "metrics"):
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            busy = held.getsockname()[1]
            c = busy if which == "client" else harness.free_port()
            pe = busy if which == "peer" else harness.free_port()
            d = os.path.join(workdir, f"busy-{which}")
            args = member_args("a", f"http://127.0.0.1:{c}", f"http://127.0.0.1:{pe}",
                               f"a=http://127.0.0.1:{pe}")
            if which == "metrics":
                args += ["--listen-metrics-urls", f"http://127.0.0.1:{busy}"]
            p = run("kvd", d, args)
        R.check(p.returncode != 0 and "address already in use" in p.stderr.lower() and
                not os.path.exists(d),
                f"busy {which} port: exit {p.returncode}, nothing written "
                f"({critical(p)})")


def permissions_and_warnings(R, workdir, kinds):
    c, pe = harness.free_port(), harness.free_port()
    fresh = harness.Member("kvd", name="fresh", workdir=workdir, client_port=c, peer_port=pe,
                           extra_args=["--quota-backend-bytes", "1000", "--enable-v2",
                                       "--auto-compaction-retention", "1h"])
    try:
        fresh.start()
        modes = {}
        for root, dirs, _ in os.walk(fresh.data_dir):
            modes[root] = stat.S_IMODE(os.stat(root).st_mode)
        R.check(len(modes) >= 3 and all(v == 0o700 for v in modes.values()),
                f"data dirs 0700 all the way down: {sorted({oct(v) for v in modes.values()})} "
                f"over {len(modes)} dirs")
        log = fresh.read_log()
        warn = [line for line in log.splitlines() if "without effect in kvd" in line]
        R.check(len(warn) == 1 and "--quota-backend-bytes" in warn[0] and
                "--auto-compaction-retention" in warn[0] and "--enable-v2" not in warn[0],
                f"one warning names the flags without effect: {warn}")
    finally:
        fresh.kill()

    got = {}
    for k in kinds:
        d = os.path.join(workdir, f"loose-{k}")
        os.makedirs(d, mode=0o755)
        os.chmod(d, 0o755)
        m = harness.Member(k, name=f"loose{k}", workdir=workdir,
                           extra_args=["--log-level", "warn"] if k == "etcd" else [])
        m.data_dir = d
        try:
            m.start()
            line = [x for x in m.read_log().splitlines() if "check file permission" in x]
            got[k] = re.sub(r"^.*check file permission: ", "", line[0]).replace(d, "DIR") \
                if line else None
        finally:
            m.kill()
    R.check(got["kvd"] and len(set(got.values())) == 1,
            f"a 0755 data dir is named in etcd's warning: {got}")

    for flag, value in (("--discovery", "http://127.0.0.1:1/v2/keys/d/x"),
                        ("--discovery-srv", "example.com")):
        said = {}
        for k in kinds:
            d = os.path.join(workdir, f"disc-{k}")
            p = run(k, d, [flag, value, "--initial-cluster", "default=http://localhost:2380"])
            said[k] = (p.returncode, re.sub(r".*error verifying flags, ", "",
                                            p.stderr.strip().splitlines()[-1]
                                            if p.stderr.strip() else "").replace("etcd", "X")
                       .replace("kvd", "X"), os.path.exists(d))
        R.check(said["kvd"][0] == 1 and "multiple discovery or bootstrap flags" in said["kvd"][1]
                and not said["kvd"][2] and len(set(said.values())) == 1,
                f"{flag} with --initial-cluster refused as etcd, nothing written: {said}")


if __name__ == "__main__":
    main()
