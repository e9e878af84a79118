#!/usr/bin/python3
"""Real clients against the server under test, each result checked against the same client on a
real etcd: etcdctl v2 (ETCDCTL_API=2) and python-etcd (Debian python3-etcd, `import etcd`).

Run: KVD_BIN=build/kvd /usr/bin/python3 tests/e2e/test_clients.py
     KVD_UNDER_TEST=etcd /usr/bin/python3 tests/e2e/test_clients.py   (proves the suite)
"""
import os
import re
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import difflib_v2 as dl  # noqa: E402
import harness  # noqa: E402

R = harness.Results()


def norm_ctl(text, server):
    """Normalizes etcdctl output: indexes relative to the server's start, its URLs, ttl values."""
    start = server.start_index
    text = text.replace(server.url, "<endpoint>")
    text = re.sub(r"\[(\d+)\]$", lambda m: f"[{dl._norm_index(m.group(1), start)}]", text, flags=re.M)
    text = re.sub(r"^(Created-Index|Modified-Index|Index): (\d+)$",
                  lambda m: f"{m.group(1)}: {dl._norm_index(m.group(2), start)}", text, flags=re.M)
    text = re.sub(r"^TTL: \d+$", "TTL: <ttl>", text, flags=re.M)
    text, _, _ = dl.normalize_body(text.encode("latin-1", errors="replace"), start)
    return text


def etcdctl(server, args, stdin=None, timeout=15):
    env = dict(os.environ, ETCDCTL_API="2")
    for k in ("ETCDCTL_ENDPOINTS", "ETCDCTL_ENDPOINT", "ETCDCTL_PEERS"):
        env.pop(k, None)
    cmd = [harness.ETCDCTL_BIN, "--endpoints", server.url] + args
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def ctl_case(pair, args, stdin=None):
    a = etcdctl(pair.ref, args, stdin)
    b = etcdctl(pair.sut, args, stdin)
    na = (a[0], norm_ctl(a[1], pair.ref), norm_ctl(a[2], pair.ref))
    nb = (b[0], norm_ctl(b[1], pair.sut), norm_ctl(b[2], pair.sut))
    if dl.VERBOSE:
        print(f"   etcdctl {' '.join(args)} -> etcd {na!r}", flush=True)
    R.check(na == nb, f"etcdctl {' '.join(args)}:\n  etcd: {na!r}\n  got:  {nb!r}")
    return a, b


def etcdctl_tests(p):
    print("-- etcdctl", flush=True)
    cases = [
        ["set", "/app/a", "1"],
        ["set", "/app/a", "2"],
        ["get", "/app/a"],
        ["get", "/app/nothere"],
        ["-o", "extended", "get", "/app/a"],
        ["-o", "json", "get", "/app/a"],
        ["-o", "extended", "set", "/app/a", "3"],
        ["-o", "json", "set", "/app/b", "x"],
        ["set", "--ttl", "500", "/app/t", "ttl"],
        ["-o", "extended", "get", "/app/t"],
        ["set", "--swap-with-value", "3", "/app/a", "4"],
        ["set", "--swap-with-value", "nope", "/app/a", "5"],
        ["set", "--swap-with-index", "1", "/app/a", "5"],
        ["mk", "/app/new", "n"],
        ["mk", "/app/new", "n2"],
        ["mk", "--in-order", "/app/queue", "job1"],
        ["mk", "--in-order", "/app/queue", "job2"],
        ["mkdir", "/app/dir1"],
        ["mkdir", "/app/dir1"],
        ["mkdir", "/app/a"],
        ["setdir", "/app/dir1"],
        ["setdir", "/app/b"],
        ["update", "/app/a", "u"],
        ["update", "/app/missing", "u"],
        ["update", "/app/dir1", "u"],
        ["updatedir", "/app/dir1"],
        ["updatedir", "--ttl", "500", "/app/dir1"],
        ["updatedir", "/app/new"],
        ["updatedir", "/app/nodir"],
        ["get", "/app/new"],
        ["get", "/app/dir1"],
        ["get", "/"],
        ["ls", "--sort", "/app"],
        ["ls", "--sort", "-r", "-p", "/app"],
        ["ls", "/app/a"],
        ["ls", "--sort", "-r", "-p"],
        ["-o", "json", "ls", "--sort", "/app/queue"],
        ["-o", "extended", "ls", "--sort", "/app"],
        ["ls", "/nothere"],
        ["rm", "/app/a"],
        ["rm", "/app/a"],
        ["rm", "/app/dir1"],
        ["set", "/app/d2/x", "1"],
        ["rm", "--dir", "/app/d2"],
        ["rm", "-r", "/app/d2"],
        ["rmdir", "/app/dir1"],
        ["rmdir", "/app/new"],
        ["set", "/app/cv", "v"],
        ["rm", "--with-value", "nope", "/app/cv"],
        ["rm", "--with-value", "v", "/app/cv"],
        ["set", "/app/ci", "v"],
        ["rm", "--with-index", "1", "/app/ci"],
        ["rm", "-r", "/"],
        ["set", "/app/sp ace/k?x", "weird"],
        ["get", "/app/sp ace/k?x"],
        ["set", "noslash", "v"],
        ["get", "/noslash"],
        ["set", "/app/dash", "-v"],
        ["get", "/app/dash"],
        ["--no-sync", "get", "/app/dash"],
        ["-o", "yaml", "get", "/app/dash"],
        ["set", "/app/val"],
    ]
    for args in cases:
        ctl_case(p, args)
    ctl_case(p, ["set", "/app/stdin"], stdin=b"hello\n")
    ctl_case(p, ["get", "/app/stdin"])
    # Watches: each waits for the watcher to be counted before the write.
    ctl_watch(p, ["watch", "/w/k"], ["set", "/w/k", "1"])
    ctl_watch(p, ["watch", "-r", "/w"], ["set", "/w/sub/k", "2"])
    ctl_watch(p, ["-o", "extended", "watch", "/w/k"], ["update", "/w/k", "3"])
    ctl_watch(p, ["watch", "/w/k"], ["rm", "/w/k"])
    a, _ = p.send("GET", "/v2/keys/")
    rel = p.ref.rel(a)
    # --after-index answers from history at once (index given per server).
    ar = etcdctl(p.ref, ["watch", "--after-index", str(p.ref.start_index + rel - 3), "-r", "/w"])
    br = etcdctl(p.sut, ["watch", "--after-index", str(p.sut.start_index + rel - 3), "-r", "/w"])
    R.check((ar[0], norm_ctl(ar[1], p.ref)) == (br[0], norm_ctl(br[1], p.sut)),
            f"etcdctl watch --after-index (per-server index): etcd {ar!r} got {br!r}")
    a = etcdctl(p.ref, ["member", "list"])
    b = etcdctl(p.sut, ["member", "list"])
    want = re.compile(r"^[0-9a-f]+: name=default peerURLs=(\S+) clientURLs=(\S+) isLeader=true\n$")
    mb = want.match(b[1])
    R.check(a[0] == 0 and want.match(a[1]) is not None, f"etcdctl member list on etcd: {a!r}")
    R.check(b[0] == 0 and mb is not None and mb.group(1) == p.sut.member.peer_url
            and mb.group(2) == p.sut.url, f"etcdctl member list: got {b!r}, etcd {a!r}")
    a = etcdctl(p.ref, ["cluster-health"])
    b = etcdctl(p.sut, ["cluster-health"])
    strip = lambda s, srv: re.sub(r"member [0-9a-f]+ ", "member <id> ", s.replace(srv.url, "<ep>"))  # noqa: E731
    R.check((a[0], strip(a[1], p.ref)) == (b[0], strip(b[1], p.sut)),
            f"etcdctl cluster-health: etcd {a!r} got {b!r}")


def ctl_watch(p, watch_args, write_args):
    env = dict(os.environ, ETCDCTL_API="2")
    servers = (p.ref, p.sut)
    base = [s.watchers() for s in servers]
    procs = [subprocess.Popen([harness.ETCDCTL_BIN, "--endpoints", s.url] + watch_args,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for s in servers]
    try:
        counted = p.wait_watchers(servers, base)
        R.check(counted[0], "etcdctl watch: etcd never counted the watcher (suite bug)")
        R.check(counted[1], f"etcdctl {' '.join(watch_args)}: watchers in /v2/stats/store never rose")
        for s in servers:
            etcdctl(s, write_args)
        outs = []
        for proc, s in zip(procs, servers):
            try:
                out, err = proc.communicate(timeout=10)
                outs.append((proc.returncode, norm_ctl(out.decode(), s), norm_ctl(err.decode(), s)))
            except subprocess.TimeoutExpired:
                outs.append(("timeout",))
        R.check(outs[0] == outs[1],
                f"etcdctl {' '.join(watch_args)} then {' '.join(write_args)}:\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# ---- python-etcd ----

def summarize(r, start):
    """The fields of a python-etcd EtcdResult, indexes made relative to the server's start."""
    def rel(i):
        return None if i is None else dl._norm_index(i, start)
    d = {
        "action": r.action, "key": r.key, "value": r.value, "dir": r.dir,
        "ttl": r.ttl is not None, "expiration": r.expiration is not None,
        "modifiedIndex": rel(r.modifiedIndex), "createdIndex": rel(r.createdIndex),
        "newKey": getattr(r, "newKey", False), "etcd_index": rel(getattr(r, "etcd_index", None)),
        "raft_index": getattr(r, "raft_index", None) is not None,
    }
    d["children"] = sorted((c.key, c.value, c.dir) for c in r.leaves if c.key is not None) \
        if r.dir else None
    pn = getattr(r, "_prev_node", None)
    d["prev"] = (pn.key, pn.value, rel(pn.modifiedIndex)) if pn is not None else None
    d["key"] = re.sub(r"(?<=/)\d{20}$", lambda m: f"<{dl._norm_index(m.group(0), start)}>", d["key"] or "")
    return d


def py_call(fn, start):
    import etcd
    try:
        return ("ok", summarize(fn(), start))
    except etcd.EtcdException as e:
        msg = re.sub(r"\b(\d{2,})\b", lambda m: dl._norm_index(m.group(1), start), str(e))
        payload = getattr(e, "payload", None) or {}
        return ("error", type(e).__name__, msg, payload.get("errorCode"), payload.get("status"))
    except Exception as e:  # a crash inside the client is a mismatch, not a suite failure
        return ("exception", type(e).__name__, str(e))


def python_etcd_tests(p):
    print("-- python-etcd", flush=True)
    import etcd
    clients = [etcd.Client(host="127.0.0.1", port=s.member.client_port, read_timeout=10)
               for s in (p.ref, p.sut)]
    servers = (p.ref, p.sut)

    def case(what, fn):
        outs = [py_call(lambda: fn(c), s.start_index) for c, s in zip(clients, servers)]
        if dl.VERBOSE:
            print(f"   python-etcd {what} -> etcd {outs[0]!r}", flush=True)
        R.check(outs[0] == outs[1], f"python-etcd {what}:\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")
        return outs

    case("write new", lambda c: c.write("/py/a", "1"))
    case("write existing", lambda c: c.write("/py/a", "2"))
    case("write ttl", lambda c: c.write("/py/t", "t", ttl=500))
    case("read", lambda c: c.read("/py/a"))
    case("read ttl", lambda c: c.read("/py/t"))
    case("read missing", lambda c: c.read("/py/missing"))
    case("get", lambda c: c.get("/py/a"))
    case("prevExist false existing", lambda c: c.write("/py/a", "x", prevExist=False))
    case("prevExist false new", lambda c: c.write("/py/c", "x", prevExist=False))
    case("prevExist true missing", lambda c: c.write("/py/d", "x", prevExist=True))
    case("test_and_set ok", lambda c: c.test_and_set("/py/a", "3", "2"))
    case("test_and_set fail", lambda c: c.test_and_set("/py/a", "4", "2"))
    case("write prevIndex fail", lambda c: c.write("/py/a", "5", prevIndex=1))
    case("mkdir", lambda c: c.write("/py/dir", None, dir=True))
    case("mkdir again", lambda c: c.write("/py/dir", None, dir=True))
    case("append", lambda c: c.write("/py/dir", "job", append=True))
    case("append 2", lambda c: c.write("/py/dir", "job2", append=True))
    case("directory listing", lambda c: c.read("/py", recursive=True, sorted=True))
    case("directory listing non-recursive", lambda c: c.read("/py"))
    case("read dir node", lambda c: c.read("/py/dir", sorted=True))
    case("update via result", lambda c: c.update(_with_value(c.read("/py/c"), "updated")))
    case("refresh", lambda c: c.refresh("/py/t", ttl=600))
    case("delete", lambda c: c.delete("/py/c"))
    case("delete missing", lambda c: c.delete("/py/c"))
    case("delete dir not empty", lambda c: c.delete("/py/dir", dir=True))
    case("delete dir recursive", lambda c: c.delete("/py/dir", recursive=True))
    case("delete prevValue fail", lambda c: c.delete("/py/a", prevValue="nope"))
    case("delete prevValue ok", lambda c: c.delete("/py/a", prevValue="3"))
    case("pop", lambda c: c.pop("/py/t"))
    case("root read", lambda c: c.read("/", recursive=True, sorted=True))
    outs = [("/py" in c, "/nope" in c) for c in clients]
    R.check(outs[0] == outs[1], f"python-etcd __contains__: etcd {outs[0]} got {outs[1]}")
    outs = [(c.version, c.cluster_version) for c in clients]
    R.check(outs[0] == outs[1], f"python-etcd version: etcd {outs[0]} got {outs[1]}")
    try:
        m = clients[1].machines
        R.check(m == [p.sut.url], f"python-etcd machines: {m!r}")
        mem = clients[1].members
        R.check(len(mem) == 1 and list(mem.values())[0].get("name") == "default",
                f"python-etcd members: {mem!r}")
        ld = clients[1].leader
        R.check(ld.get("name") == "default", f"python-etcd leader: {ld!r}")
        st = clients[1].stats
        R.check(st.get("name") == "default" and st.get("state") == "StateLeader",
                f"python-etcd stats: {st!r}")
        ss = clients[1].store_stats
        R.check(list(ss.keys()) == list(clients[0].store_stats.keys()),
                f"python-etcd store_stats keys: {ss!r}")
    except Exception as e:  # any client failure here is a mismatch to report
        R.check(False, f"python-etcd cluster calls raised {type(e).__name__}: {e}")

    # Watches without a timeout, each in a thread; the write waits until the watcher is counted.
    py_watch(p, clients, "watch key", lambda c: c.watch("/pw/k", timeout=0),
             lambda c: c.write("/pw/k", "v1"))
    py_watch(p, clients, "watch recursive", lambda c: c.watch("/pw", recursive=True, timeout=0),
             lambda c: c.write("/pw/sub/x", "v2"))
    py_watch(p, clients, "watch delete", lambda c: c.watch("/pw/k", timeout=0),
             lambda c: c.delete("/pw/k"))
    a, _ = p.send("GET", "/v2/keys/")
    rel = p.ref.rel(a)
    outs = [py_call(lambda: c.watch("/pw", index=s.start_index + rel - 1, recursive=True, timeout=0),
                    s.start_index) for c, s in zip(clients, servers)]
    R.check(outs[0] == outs[1], f"python-etcd watch from history:\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")
    gen = [c.eternal_watch("/pw/e") for c in clients]
    py_watch(p, clients, "eternal_watch", None, lambda c: c.write("/pw/e", "e1"), gens=gen)


def _with_value(result, value):
    result.value = value
    return result


def py_watch(p, clients, what, watch_fn, write_fn, gens=None):
    servers = (p.ref, p.sut)
    base = [s.watchers() for s in servers]
    outs = [None, None]

    def run(i):
        if gens is not None:
            outs[i] = py_call(lambda: next(gens[i]), servers[i].start_index)
        else:
            outs[i] = py_call(lambda: watch_fn(clients[i]), servers[i].start_index)

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
    for t in ts:
        t.start()
    counted = p.wait_watchers(servers, base)
    R.check(counted[0], f"python-etcd {what}: etcd never counted the watcher (suite bug)")
    R.check(counted[1], f"python-etcd {what}: watchers in /v2/stats/store never rose")
    for c in clients:
        try:
            write_fn(c)
        except Exception as e:  # reported through the watch comparison
            print(f"  write for {what} raised {e!r}")
    for t in ts:
        t.join(10)
    R.check(outs[0] == outs[1] and outs[0] is not None,
            f"python-etcd {what}:\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")


def main():
    dl.need_binaries()
    if not os.access(harness.ETCDCTL_BIN, os.X_OK):
        print(f"SKIP: etcdctl not installed at {harness.ETCDCTL_BIN}")
        sys.exit(harness.SKIP)
    try:
        import etcd  # noqa: F401
    except ImportError:
        print("SKIP: python-etcd not installed (apt-get install python3-etcd)")
        sys.exit(harness.SKIP)
    dl.run_sections(R, etcdctl_tests, python_etcd_tests)
    R.finish()


if __name__ == "__main__":
    main()
