#!/usr/bin/python3
"""Real clients over TLS, kvd side by side with etcd: one kvd member and one etcd member, each
serving https:// client URLs with --trusted-ca-file and --client-cert-auth (certificates from
tls_certs.Pki), and the same client steps run against both, their results compared after
normalisation (URLs and ports, member IDs, store indexes relative to each server's start):

  (a) `ETCDCTL_API=2 etcdctl --ca-file --cert-file --key-file`: set, get, mk, mkdir, ls -r,
      update, rm, rmdir, -o extended/json, watch --after-index of a past index (and a live
      watch), member list, cluster-health, and the same commands without a client
      certificate: stdout, stderr and exit code;
  (b) python-etcd (Debian python3-etcd) with protocol='https', cert=(C, K), ca_cert=CA: write,
      read, ls (directory reads), delete, test_and_set, watch with an index and a live watch;
      without a client certificate it fails on both and writes nothing;
  (c) curl --cacert --cert --key: request/response pairs (status, X-Etcd-Index, body), and
      curl without a client certificate;
  (d) the etcdctl and python-etcd steps through kvd's proxy on https (--proxy on with the same
      TLS flags) in front of the kvd member, compared with etcd's direct answers.

The server under test is kvd unless KVD_UNDER_TEST=etcd (an etcd member and an etcd proxy stand
in for it: proves the suite, every check must pass etcd against etcd).

Run: KVD_BIN=build/server/kvd /usr/bin/python3 tests/e2e/test_tls_clients.py
"""
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import difflib_v2 as dl  # noqa: E402
import harness  # noqa: E402
import tls_certs  # noqa: E402

R = harness.Results()
VERBOSE = dl.VERBOSE
STEP_TIMEOUT = 30
# Steps whose outcome can vary from run to run on etcd itself (a refused client certificate is
# reported as the server's alert or, now and then, as the reset of the request being written)
# are repeated, up to this many times, until both sides agree. They change nothing.
REFUSED_ATTEMPTS = 5
PKI = None  # the test's Pki, made in main()


class Side:
    """One server as a client sees it: the URL it talks to (a member's or a proxy's), the
    member behind it, and that member's store index at start."""

    def __init__(self, label, kind, url, member, start):
        self.label = label
        self.kind = kind  # "kvd" or "etcd": the server that answers
        self.url = url
        self.member = member
        self.start = start

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1])

    def rel(self, index):
        return dl._norm_index(index, self.start)


def current_index(member):
    st, hdrs, body = harness.request("GET", member.url + "/v2/keys/")
    if st != 200 or "x-etcd-index" not in hdrs:
        raise RuntimeError(f"{member.kind}: GET /v2/keys/ answered {st} {body[:200]!r}")
    return int(hdrs["x-etcd-index"])


def watchers(member):
    try:
        st, _, body = harness.request("GET", member.url + "/v2/stats/store", timeout=2.0)
        return int(json.loads(body).get("watchers", -1)) if st == 200 else -1
    except (OSError, ValueError):
        return -1


def wait_watchers(sides, baselines, timeout=5.0):
    """Bounded poll until the member behind each side counts one more watcher."""
    return [bool(harness.wait_for(lambda: watchers(s.member) > b, timeout, interval=0.01))
            for s, b in zip(sides, baselines)]


def normalize(text, side):
    """Client output made comparable between the sides: the side's URLs, the member's URLs,
    member IDs, store indexes relative to the member's start, TTL values."""
    if side.kind == "kvd":
        # The one TLS alert kvd's server sends differently (see test_kvctl_tls.py): a client
        # without a certificate gets TLS 1.3's certificate_required (OpenSSL, RFC 8446
        # 4.4.2.4), where etcd's Go server sends bad_certificate.
        text = text.replace("remote error: tls: certificate required",
                            "remote error: tls: bad certificate")
        # curl (OpenSSL) names the alert it got with OpenSSL's reason code.
        text = text.replace("error:0A00045C:SSL routines::tlsv13 alert certificate required",
                            "error:0A000412:SSL routines::sslv3 alert bad certificate")
    # Where Go's HTTP client happened to see a refusal (an idle connection's read, now and then,
    # on either server) is timing, not an answer.
    text = text.replace("readLoopPeekFailLocked: ", "")
    for url in sorted({side.url, side.member.url}, key=len, reverse=True):
        text = text.replace(url, "<url>")
    text = text.replace(side.member.peer_url, "<peer>")
    text = re.sub(r"127\.0\.0\.1:\d+", "<addr>", text)
    text = re.sub(r"(?m)^[0-9a-f]{1,16}(?=: name=)", "<id>", text)
    text = re.sub(r"\b(member )[0-9a-f]{1,16}\b", r"\1<id>", text)
    text = re.sub(r"\b[0-9a-f]{16}\b", "<id>", text)
    text = re.sub(r"(?<=/)(\d{20})(?!\d)", lambda m: f"<{side.rel(m.group(1))}>", text)  # in-order keys
    text = re.sub(r"\[(\d+)\]$", lambda m: f"[{side.rel(m.group(1))}]", text, flags=re.M)
    text = re.sub(r"^(Created-Index|Modified-Index|Index): (\d+)$",
                  lambda m: f"{m.group(1)}: {side.rel(m.group(2))}", text, flags=re.M)
    text = re.sub(r"^TTL: \d+$", "TTL: <ttl>", text, flags=re.M)
    text, _, _ = dl.normalize_body(text.encode("latin-1", errors="replace"), side.start)
    return text


class Pki:
    """The files of the test's PKI: the CA, the servers' certificate, a client's."""

    def __init__(self, workdir):
        pki = tls_certs.Pki(os.path.join(workdir, "pki"))
        self.ca = pki.ca
        # An IP SAN only: python-etcd switches urllib3 to pyOpenSSL where python3-openssl is
        # installed, and that reads a DNS SAN through the idna module, which Debian's
        # python3-urllib3 only suggests (without it every https request raises
        # ModuleNotFoundError).
        self.server, self.server_key = pki.issue("server", cn="server", sans=("127.0.0.1",))
        self.client, self.client_key = pki.issue("client", cn="client", server=False)

    def server_args(self):
        return ["--cert-file", self.server, "--key-file", self.server_key,
                "--trusted-ca-file", self.ca, "--client-cert-auth"]


# ---- etcdctl ----

def etcdctl_run(side, args, cert=True, no_sync=False, popen=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    cmd = [harness.ETCDCTL_BIN, "--endpoints", side.url, "--ca-file", PKI.ca]
    if cert:
        cmd += ["--cert-file", PKI.client, "--key-file", PKI.client_key]
    if no_sync:
        cmd.append("--no-sync")
    cmd += args
    if popen:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                       timeout=STEP_TIMEOUT)
    return (p.returncode, normalize(p.stdout.decode("utf-8", "replace"), side),
            normalize(p.stderr.decode("utf-8", "replace"), side))


def ctl_step(ref, sut, args, what="", cert=True, no_sync=False, attempts=1):
    """Runs etcdctl `args` against both sides; compares (exit code, stdout, stderr)."""
    a = b = None
    for _ in range(attempts):
        a = etcdctl_run(ref, args, cert, no_sync)
        b = etcdctl_run(sut, args, cert, no_sync)
        if a == b:
            break
    name = f"{what}etcdctl{'' if cert else ' (no client cert)'}{' --no-sync' if no_sync else ''} " \
        + " ".join(args)
    if VERBOSE:
        print(f"   {name} -> {a!r}", flush=True)
    R.check(a == b, f"{name} [{sut.label}]\n  etcd: {a!r}\n  got:  {b!r}")
    return a, b


def ctl_live_watch(ref, sut, what, watch_args, write_args, no_sync=False):
    """etcdctl watch started on both sides; once each member counts the watcher, the write is
    made through etcdctl on each side; the watch outputs are compared."""
    sides = (ref, sut)
    base = [watchers(s.member) for s in sides]
    procs = [etcdctl_run(s, watch_args, no_sync=no_sync, popen=True) for s in sides]
    try:
        counted = wait_watchers(sides, base)
        R.check(counted[0], f"{what}etcdctl {' '.join(watch_args)}: etcd never counted the watcher")
        R.check(counted[1], f"{what}etcdctl {' '.join(watch_args)}: {sut.label} never counted the watcher")
        for s in sides:
            etcdctl_run(s, write_args, no_sync=no_sync)
        outs = []
        for proc, s in zip(procs, sides):
            try:
                out, err = proc.communicate(timeout=15)
                outs.append((proc.returncode, normalize(out.decode(), s), normalize(err.decode(), s)))
            except subprocess.TimeoutExpired:
                outs.append(("timeout",))
        R.check(outs[0] == outs[1] and outs[0][0] == 0,
                f"{what}etcdctl {' '.join(watch_args)} then {' '.join(write_args)} [{sut.label}]:"
                f"\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def etcdctl_sequence(ref, sut, prefix, what="", no_sync=False):
    """The etcdctl steps under `prefix`, against ref (etcd) and sut; both must hold the same
    history before (indexes are compared relative to each member's start)."""
    print(f"-- {what}etcdctl over TLS ({prefix}, {sut.label})", flush=True)
    P = prefix

    def s(*args, **kw):
        return ctl_step(ref, sut, list(args), what=what, no_sync=no_sync, **kw)

    s("set", f"{P}/a", "1")
    s("set", f"{P}/a", "2")
    s("get", f"{P}/a")
    s("get", f"{P}/nothere")
    s("-o", "extended", "get", f"{P}/a")
    s("-o", "json", "get", f"{P}/a")
    s("mk", f"{P}/b", "2")
    s("mk", f"{P}/b", "again")
    s("mk", "--in-order", f"{P}/queue", "job1")
    s("mkdir", f"{P}/d")
    s("mkdir", f"{P}/d")
    s("mkdir", f"{P}/a")
    s("set", f"{P}/d/x", "3")
    s("set", "--ttl", "500", f"{P}/d/t", "ttl")
    s("ls", f"{P}/d/x")
    s("ls", "--sort", f"{P}")
    s("ls", "--sort", "-r", f"{P}")
    s("ls", "--sort", "-r", "-p", f"{P}")
    s("-o", "extended", "ls", "--sort", f"{P}")
    s("-o", "json", "ls", "--sort", f"{P}/queue")
    s("ls", f"{P}/nothere")
    s("update", f"{P}/a", "u")
    s("update", f"{P}/missing", "u")
    s("update", f"{P}/d", "u")
    s("set", "--swap-with-value", "u", f"{P}/a", "v")
    s("set", "--swap-with-value", "nope", f"{P}/a", "w")
    s("rm", f"{P}/b")
    s("rm", f"{P}/b")
    s("rm", f"{P}/d")
    s("rmdir", f"{P}/d")
    s("rm", "--with-value", "nope", f"{P}/a")
    s("rm", f"{P}/d/x")
    s("rm", f"{P}/d/t")
    s("rmdir", f"{P}/d")
    s("rmdir", f"{P}/a")
    s("mkdir", f"{P}/e")
    s("rm", "-r", f"{P}/e")
    # Watches of past indexes are answered from the event history at once: the index is
    # taken relative to each member's start (both hold the same history).
    rel = current_index(ref.member) - ref.start
    s("set", f"{P}/w", "first")
    s("set", f"{P}/w", "second")
    s("update", f"{P}/w", "third")
    for back, pre, post in ((0, [], [f"{P}/w"]),
                            (1, [], [f"{P}/w"]),
                            (0, ["-o", "extended"], [f"{P}/w"]),
                            (0, ["-o", "json"], ["-r", f"{P}"]),
                            (2, [], ["-r", f"{P}"])):
        a, b = (etcdctl_run(x, pre + ["watch", "--after-index", str(x.start + rel + back)] + post,
                            no_sync=no_sync) for x in (ref, sut))
        name = f"{what}etcdctl {' '.join(pre)} watch --after-index #{rel + back} {' '.join(post)}"
        if VERBOSE:
            print(f"   {name} -> {a!r}", flush=True)
        R.check(a == b and a[0] == 0, f"{name} [{sut.label}]:\n  etcd: {a!r}\n  got:  {b!r}")
    ctl_live_watch(ref, sut, what, ["watch", f"{P}/w"], ["set", f"{P}/w", "live"], no_sync)
    ctl_live_watch(ref, sut, what, ["-o", "json", "watch", "-r", f"{P}"], ["rm", f"{P}/w"], no_sync)
    s("member", "list")
    s("cluster-health")
    s("-o", "json", "get", f"{P}/queue", "--sort")
    # Without a client certificate: refused by the TLS handshake on both, nothing written.
    for args in (["get", f"{P}/a"], ["set", f"{P}/nocert", "x"], ["mkdir", f"{P}/nocertdir"],
                 ["ls", f"{P}"], ["watch", "--after-index", "1", f"{P}/a"], ["member", "list"],
                 ["cluster-health"]):
        s(*args, cert=False, attempts=REFUSED_ATTEMPTS)
    s("get", f"{P}/nocert")
    s("ls", "--sort", f"{P}")


# ---- python-etcd ----

def summarize(r, start):
    """The fields of a python-etcd EtcdResult, indexes relative to the member's start."""
    def rel(i):
        return None if i is None else dl._norm_index(i, start)

    def in_order(key):
        return re.sub(r"(?<=/)\d{20}$", lambda m: f"<{rel(m.group(0))}>", key)
    d = {
        "action": r.action, "key": r.key, "value": r.value, "dir": r.dir,
        "ttl": r.ttl is not None, "expiration": r.expiration is not None,
        "modifiedIndex": rel(r.modifiedIndex), "createdIndex": rel(r.createdIndex),
        "newKey": getattr(r, "newKey", False), "etcd_index": rel(getattr(r, "etcd_index", None)),
        "raft_index": getattr(r, "raft_index", None) is not None,
    }
    d["children"] = sorted((in_order(c.key), c.value, c.dir, rel(c.modifiedIndex))
                           for c in r.leaves if c.key is not None) if r.dir else None
    pn = getattr(r, "_prev_node", None)
    d["prev"] = (pn.key, pn.value, rel(pn.modifiedIndex)) if pn is not None else None
    d["key"] = in_order(d["key"] or "")
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


def py_client(side, cert=True):
    import etcd
    return etcd.Client(host="127.0.0.1", port=side.port, protocol="https",
                       cert=(PKI.client, PKI.client_key) if cert else None, ca_cert=PKI.ca,
                       read_timeout=10)


def python_sequence(ref, sut, prefix, what=""):
    print(f"-- {what}python-etcd over TLS ({prefix}, {sut.label})", flush=True)
    sides = (ref, sut)
    clients = [py_client(s) for s in sides]
    P = prefix

    def case(name, fn):
        outs = [py_call(lambda: fn(c), s.start) for c, s in zip(clients, sides)]
        if VERBOSE:
            print(f"   {what}python-etcd {name} -> {outs[0]!r}", flush=True)
        R.check(outs[0] == outs[1], f"{what}python-etcd {name} [{sut.label}]:"
                                    f"\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")
        return outs

    case("write new", lambda c: c.write(f"{P}/a", "1"))
    case("write existing", lambda c: c.write(f"{P}/a", "2"))
    case("write ttl", lambda c: c.write(f"{P}/t", "t", ttl=500))
    case("read", lambda c: c.read(f"{P}/a"))
    case("read ttl", lambda c: c.read(f"{P}/t"))
    case("read missing", lambda c: c.read(f"{P}/missing"))
    case("get", lambda c: c.get(f"{P}/a"))
    case("write prevExist=False on an existing key", lambda c: c.write(f"{P}/a", "x", prevExist=False))
    case("write prevExist=False new", lambda c: c.write(f"{P}/c", "x", prevExist=False))
    case("write prevExist=True missing", lambda c: c.write(f"{P}/m", "x", prevExist=True))
    case("test_and_set ok", lambda c: c.test_and_set(f"{P}/a", "3", "2"))
    case("test_and_set fail", lambda c: c.test_and_set(f"{P}/a", "4", "2"))
    case("write prevIndex fail", lambda c: c.write(f"{P}/a", "5", prevIndex=1))
    case("mkdir", lambda c: c.write(f"{P}/dir", None, dir=True))
    case("mkdir again", lambda c: c.write(f"{P}/dir", None, dir=True))
    case("append", lambda c: c.write(f"{P}/dir", "job", append=True))
    case("append 2", lambda c: c.write(f"{P}/dir", "job2", append=True))
    case("ls recursive", lambda c: c.read(P, recursive=True, sorted=True))
    case("ls", lambda c: c.read(P, sorted=True))
    case("ls dir", lambda c: c.read(f"{P}/dir", sorted=True))
    case("delete", lambda c: c.delete(f"{P}/c"))
    case("delete missing", lambda c: c.delete(f"{P}/c"))
    case("delete dir not empty", lambda c: c.delete(f"{P}/dir", dir=True))
    case("delete dir recursive", lambda c: c.delete(f"{P}/dir", recursive=True))
    case("delete prevValue fail", lambda c: c.delete(f"{P}/a", prevValue="nope"))
    case("delete prevValue ok", lambda c: c.delete(f"{P}/a", prevValue="3"))
    case("refresh", lambda c: c.refresh(f"{P}/t", ttl=600))
    case("pop", lambda c: c.pop(f"{P}/t"))
    # Watch with an index: answered from history (index relative to each member's start).
    rel = current_index(ref.member) - ref.start
    case("write w1", lambda c: c.write(f"{P}/w/k", "w1"))
    case("write w2", lambda c: c.write(f"{P}/w/k", "w2"))
    for back in (1, 2):
        outs = [py_call(lambda: c.watch(f"{P}/w/k", index=s.start + rel + back, timeout=0), s.start)
                for c, s in zip(clients, sides)]
        R.check(outs[0] == outs[1] and outs[0][0] == "ok",
                f"{what}python-etcd watch index=#{rel + back} [{sut.label}]:"
                f"\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")
    outs = [py_call(lambda: c.watch(P, index=s.start + rel + 1, recursive=True, timeout=0), s.start)
            for c, s in zip(clients, sides)]
    R.check(outs[0] == outs[1] and outs[0][0] == "ok",
            f"{what}python-etcd recursive watch index=#{rel + 1} [{sut.label}]:"
            f"\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")
    py_live_watch(ref, sut, clients, what, "watch key", lambda c: c.watch(f"{P}/w/k", timeout=0),
                  lambda c: c.write(f"{P}/w/k", "live"))
    py_live_watch(ref, sut, clients, what, "watch recursive",
                  lambda c: c.watch(P, recursive=True, timeout=0), lambda c: c.delete(f"{P}/w/k"))
    case("root read", lambda c: c.read(P, recursive=True, sorted=True))
    outs = [(P in c, f"{P}/missing" in c, f"{P}/w/k" in c) for c in clients]
    R.check(outs[0] == outs[1], f"{what}python-etcd `in` [{sut.label}]: etcd {outs[0]} got {outs[1]}")
    outs = [(c.version, c.cluster_version) for c in clients]
    R.check(outs[0] == outs[1], f"{what}python-etcd version [{sut.label}]: etcd {outs[0]} got {outs[1]}")

    # Without a client certificate: every call fails on both, and nothing is written.
    bare = [py_client(s, cert=False) for s in sides]
    for name, fn in (("read", lambda c: c.read(f"{P}/nocert")),
                     ("write", lambda c: c.write(f"{P}/nocert", "x")),
                     ("delete", lambda c: c.delete(f"{P}/w", recursive=True))):
        outs = [_py_fails(lambda: fn(c)) for c in bare]
        R.check(outs[0] == outs[1] and outs[0] == "EtcdConnectionFailed",
                f"{what}python-etcd without a client certificate: {name} [{sut.label}]: "
                f"etcd {outs[0]!r} got {outs[1]!r}")
    case("nothing written without a client certificate", lambda c: c.read(f"{P}/nocert"))
    case("nothing deleted without a client certificate", lambda c: c.read(f"{P}/w"))


def _py_fails(fn):
    """The exception type name a call raises, or ("ok", ...) if it does not."""
    try:
        r = fn()
        return ("ok", getattr(r, "key", None))
    except Exception as e:  # the refusal surfaces as the client's own exception type
        return type(e).__name__


def py_live_watch(ref, sut, clients, what, name, watch_fn, write_fn):
    sides = (ref, sut)
    base = [watchers(s.member) for s in sides]
    outs = [None, None]

    def run(i):
        outs[i] = py_call(lambda: watch_fn(clients[i]), sides[i].start)

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
    for t in ts:
        t.start()
    counted = wait_watchers(sides, base)
    R.check(counted[0], f"{what}python-etcd {name}: etcd never counted the watcher")
    R.check(counted[1], f"{what}python-etcd {name}: {sut.label} never counted the watcher")
    for c in clients:
        try:
            write_fn(c)
        except Exception as e:  # reported through the watch comparison
            print(f"  write for {name} raised {e!r}")
    for t in ts:
        t.join(15)
    R.check(outs[0] == outs[1] and outs[0] is not None and outs[0][0] == "ok",
            f"{what}python-etcd {name} [{sut.label}]:\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")


# ---- curl ----

# curl's reports of a refused client (no certificate), stderr after normalisation: the reset of
# the connection (exit 55, or 35 or 56 by curl version) or the server's alert (exit 56).
CURL_REFUSED = re.compile(r"curl: \((35|55|56)\) (getpeername\(\) failed with errno 107: Transport "
                          r"endpoint is not connected|.*(Connection reset by peer|"
                          r"error:0A000412:SSL routines::sslv3 alert bad certificate).*)\n")


def curl_refused(out):
    rc, status, index, body, err = out
    m = CURL_REFUSED.fullmatch(err)
    return status == "000" and not index and not body and m is not None and int(m.group(1)) == rc


def curl_run(side, method, path, body=None, cert=True):
    """(exit code, status, normalised X-Etcd-Index, normalised body, normalised stderr)."""
    marker = "\n--curl-status--"
    args = ["curl", "-sS", "--max-time", "15", "--cacert", PKI.ca, "-X", method,
            "-w", marker + "%{http_code} %header{x-etcd-index}"]
    if cert:
        args += ["--cert", PKI.client, "--key", PKI.client_key]
    if body is not None:
        args += ["--data-binary", body, "-H", "Content-Type: application/x-www-form-urlencoded"]
    path = re.sub(r"\{i:(-?\d+)\}", lambda m: str(side.start + int(m.group(1))), path)
    p = subprocess.run(args + [side.url + path], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    text, _, tail = out.rpartition(marker)
    status, _, index = tail.partition(" ")
    index = side.rel(index) if index.isdigit() else index
    text = re.sub(r'"id":"[0-9a-f]+"', '"id":"<id>"', text)  # /v2/members
    return (p.returncode, status, index, normalize(text, side),
            normalize(p.stderr.decode("utf-8", "replace"), side))


def curl_sequence(ref, sut, prefix):
    print(f"-- curl over TLS ({prefix}, {sut.label})", flush=True)
    P = f"/v2/keys{prefix}"

    def c(method, path, body=None):
        a = curl_run(ref, method, path, body)
        b = curl_run(sut, method, path, body)
        name = f"curl {method} {path} {body or ''}"
        if VERBOSE:
            print(f"   {name} -> {a!r}", flush=True)
        R.check(a == b, f"{name} [{sut.label}]\n  etcd: {a!r}\n  got:  {b!r}")
        return a, b

    c("PUT", f"{P}/a", "value=one")
    c("GET", f"{P}/a")
    c("PUT", f"{P}/a?prevExist=false", "value=two")
    c("PUT", f"{P}/a?prevValue=one", "value=two")
    c("PUT", f"{P}/a?prevValue=one", "value=three")
    c("POST", f"{P}/q", "value=job")
    c("PUT", f"{P}/d?dir=true")
    c("PUT", f"{P}/d/x", "value=x&ttl=500")
    c("GET", f"{P}?recursive=true&sorted=true")
    c("GET", f"{P}/missing")
    c("DELETE", f"{P}/d")
    c("DELETE", f"{P}/d?recursive=true")
    c("DELETE", f"{P}/a?prevValue=nope")
    rel = current_index(ref.member) - ref.start
    c("DELETE", f"{P}/a")
    c("GET", f"{P}/a?wait=true&waitIndex={{i:{rel}}}")
    c("GET", f"{P}?wait=true&recursive=true&waitIndex={{i:{rel - 3}}}")
    c("GET", "/version")
    c("GET", "/health")
    c("GET", "/v2/members")
    c("GET", "/v2/keys/?quorum=true&sorted=true")
    # Without a client certificate: refused by the handshake on both, no HTTP answer. curl
    # reports etcd's refusal in one of two ways from run to run (about 7 in 10 the reset of the
    # connection, exit 55; else the alert, exit 56): each answer must be one of these.
    for method, path, body in (("GET", f"{P}/q", None), ("PUT", f"{P}/nocert", "value=x"),
                               ("GET", "/version", None)):
        outs = [curl_run(s, method, path, body, cert=False) for s in (ref, sut)]
        name = f"curl (no client cert) {method} {path}"
        if VERBOSE:
            print(f"   {name} -> {outs[0]!r}", flush=True)
        R.check(all(curl_refused(o) for o in outs),
                f"{name} [{sut.label}]\n  etcd: {outs[0]!r}\n  got:  {outs[1]!r}")
    c("GET", f"{P}/nocert")


# ---- the handshake as openssl s_client sees it ----

def server_handshake_messages(side):
    """The TLS handshake messages the server sends to `openssl s_client` (with the client
    certificate) on a connection that asks GET /version over HTTP/1.0 and reads until the
    server closes: their types in order, the session tickets after the handshake included."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{side.port}", "-CAfile",
                        PKI.ca, "-cert", PKI.client, "-key", PKI.client_key, "-msg", "-ign_eof"],
                       input=b"GET /version HTTP/1.0\r\n\r\n", capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    answered = "HTTP/1.0 200" in out or "HTTP/1.1 200" in out
    return answered, re.findall(r"<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], (\w+)", out)


def handshake_step(ref, sut):
    """The server's side of the handshake is etcd's, message for message: the same types in
    the same order, and as many session tickets (Go sends one, OpenSSL two by default)."""
    a, b = server_handshake_messages(ref), server_handshake_messages(sut)
    print(f"-- the server's handshake messages: etcd {a[1]}", flush=True)
    R.check(a[0] and b[0], f"s_client got GET /version answered: etcd {a[0]}, {sut.label} {b[0]}")
    R.check("NewSessionTicket" in a[1] and a[1] == b[1],
            f"the server's TLS handshake messages [{sut.label}]:\n  etcd: {a[1]}\n  got:  {b[1]}")


# ---- main ----

def start_member(kind, workdir):
    m = harness.Member(kind, name="default", workdir=workdir, client_scheme="https",
                       extra_args=PKI.server_args())
    m.start(timeout=30)
    return m


def main():
    global PKI
    dl.need_binaries()
    if not os.access(harness.ETCDCTL_BIN, os.X_OK):
        print(f"SKIP: etcdctl not installed at {harness.ETCDCTL_BIN}")
        sys.exit(harness.SKIP)
    try:
        import etcd  # noqa: F401
    except ImportError:
        print("SKIP: python-etcd not installed (apt-get install python3-etcd)")
        sys.exit(harness.SKIP)
    sut_kind = "etcd" if dl.UNDER_TEST == "etcd" else "kvd"
    print(f"server under test: {sut_kind}")
    workdir = harness.new_workdir("kvd-tls-clients-")
    members = []
    proxy = None
    try:
        PKI = Pki(workdir)
        ctx = ssl.create_default_context(cafile=PKI.ca)
        ctx.load_cert_chain(PKI.client, PKI.client_key)
        harness.DEFAULT_SSL_CONTEXT = ctx
        ref_dir = os.path.join(workdir, "ref")
        sut_dir = os.path.join(workdir, "sut")
        os.makedirs(ref_dir)
        os.makedirs(sut_dir)
        ref_m = start_member("etcd", ref_dir)
        members.append(ref_m)
        sut_m = start_member(sut_kind, sut_dir)
        members.append(sut_m)
        ref = Side("etcd", "etcd", ref_m.url, ref_m, current_index(ref_m))
        sut = Side(sut_kind, sut_kind, sut_m.url, sut_m, current_index(sut_m))

        etcdctl_sequence(ref, sut, "/ctl")
        python_sequence(ref, sut, "/py")
        curl_sequence(ref, sut, "/curl")
        handshake_step(ref, sut)

        # (d) kvd's proxy on https in front of the member, against etcd's direct answers.
        proxy = harness.Proxy(sut_kind, f"default={sut_m.peer_url}", sut_dir, scheme="https",
                              extra_args=PKI.server_args())
        proxy.start(want_endpoints=1, timeout=30)
        eps = proxy.endpoints()
        R.check(eps == [sut_m.url], f"the https proxy found the https member: {eps}")
        via = Side(f"{sut_kind} proxy", sut_kind, proxy.url, sut_m, sut.start)
        etcdctl_sequence(ref, via, "/pxctl", what="proxy: ", no_sync=True)
        ctl_step(ref, via, ["get", "/pxctl/queue"], what="proxy (synced): ")
        ctl_step(ref, via, ["ls", "--sort", "-r", "/"], what="proxy (synced): ")
        python_sequence(ref, via, "/pxpy", what="proxy: ")
        curl_sequence(ref, via, "/pxcurl")
        # The whole store, read directly: both hold the same keys after the same steps.
        a = curl_run(ref, "GET", "/v2/keys/?recursive=true&sorted=true")
        b = curl_run(sut, "GET", "/v2/keys/?recursive=true&sorted=true")
        R.check(a == b, f"the whole store after every step:\n  etcd: {a!r}\n  got:  {b!r}")
    except Exception as e:  # a start failure (or a suite error) is reported, then the run ends
        traceback.print_exc()
        R.check(False, f"{type(e).__name__}: {e}")
    finally:
        if proxy is not None:
            proxy.kill()
        for m in members:
            m.kill()
        harness.remove_workdir(workdir, R)
    R.finish()


if __name__ == "__main__":
    main()
