"""Differential testing helpers: send the same v2 request to a reference etcd and to the server
under test, and compare the answers after index normalization. Standard library only.

The server under test is kvd (KVD_BIN) unless KVD_UNDER_TEST=etcd, in which case a second etcd
stands in for it; that mode proves the suite itself (every check must pass etcd-vs-etcd).

Normalization. Store indexes differ between the two servers only by a constant: each starts at
its own index (etcd: 3 after bootstrap). An index value i is written as "#<i - start>", where
start is the X-Etcd-Index of the server's first GET; 0 stays "0" (parameter errors carry index 0).
Rewritten, and nothing else:
  - JSON fields "modifiedIndex", "createdIndex", "index" (numbers);
  - the X-Etcd-Index header;
  - 20-digit in-order key names (POST), anywhere in the body;
  - numbers inside the 401 cause "[oldest/requested]" and the CAS cause "[pi != mi]";
  - "expiration" values: checked against etcd's RFC 3339 shape, then replaced by "<time>";
  - "ttl" values: replaced by "<ttl>", and the values compared separately within 1 s.
Request paths and bodies may contain "{i:K}", replaced per server by start + K.
"""
import http.client
import json
import os
import re
import sys
import threading

import harness

UNDER_TEST = os.environ.get("KVD_UNDER_TEST", "kvd")
VERBOSE = os.environ.get("KVD_E2E_VERBOSE") == "1"

# Headers whose presence (and, where meaningful, value) must match.
_PRESENCE_ONLY = {"x-etcd-cluster-id", "x-raft-index", "x-raft-term", "content-length", "date"}
_COMPARED_PREFIXES = ("x-etcd-", "x-raft-", "access-control-")
_COMPARED_EXACT = {"content-type", "allow", "location", "transfer-encoding", "content-length",
                   "x-content-type-options"}

# kvd's own members of GET /version (its version and git revision), which etcd's lacks.
KVD_VERSION_MEMBERS_RE = re.compile(r',"kvd":"[^"]*","kvdrevision":"[^"]*"')

EXPIRATION_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (lower-case name, value), in order received
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self):
        return json.loads(self.body.decode("utf-8", errors="replace"))

    def __repr__(self):
        hdrs = ", ".join(f"{k}: {v}" for k, v in self.headers if k != "date")
        return f"{self.status} [{hdrs}] {self.body[:600]!r}"


class Conn:
    """A keep-alive connection to one server; reconnects once if the server closed it."""

    def __init__(self, url, timeout=10.0):
        hostport = url[len("http://"):]
        self.host, _, port = hostport.partition(":")
        self.port = int(port)
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode()
        if body is not None and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                resp = Resp(r.status, [(k.lower(), v) for k, v in r.getheaders()], data)
                if r.will_close:
                    self.close()
                return resp
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def one_shot(url, method, path, body=None, headers=None, timeout=10.0):
    c = Conn(url, timeout)
    try:
        return c.request(method, path, body, headers)
    finally:
        c.close()


class Server:
    """One side of the comparison: a Member plus its starting index and a keep-alive connection."""

    def __init__(self, member):
        self.member = member
        self.start_index = None
        self.conn = None

    @property
    def url(self):
        return self.member.url

    def started(self):
        self.conn = Conn(self.url)
        r = self.conn.request("GET", "/v2/keys/")
        idx = r.header("x-etcd-index")
        if r.status != 200 or idx is None:
            raise RuntimeError(f"{self.member.kind}: GET /v2/keys/ at start answered {r!r}")
        self.start_index = int(idx)

    def subst(self, text):
        if text is None:
            return None
        if isinstance(text, bytes):
            return re.sub(rb"\{i:(-?\d+)\}",
                          lambda m: str(self.start_index + int(m.group(1))).encode(), text)
        return re.sub(r"\{i:(-?\d+)\}", lambda m: str(self.start_index + int(m.group(1))), text)

    def request(self, method, path, body=None, headers=None):
        return self.conn.request(method, self.subst(path), self.subst(body), headers)

    def rel(self, resp):
        """The response's X-Etcd-Index relative to this server's start."""
        return int(resp.header("x-etcd-index")) - self.start_index

    def watchers(self):
        r = one_shot(self.url, "GET", "/v2/stats/store", timeout=2.0)
        try:
            return int(r.json().get("watchers", -1))
        except (ValueError, AttributeError):
            return -1


class Normalized:
    def __init__(self, status, headers, body, ttls, problems):
        self.status = status
        self.headers = headers
        self.body = body
        self.ttls = ttls
        self.problems = problems


def _norm_index(n, start):
    n = int(n)
    return "0" if n == 0 else f"#{n - start}"


def _sort_nodes(obj):
    if isinstance(obj, list):
        return [_sort_nodes(x) for x in obj]
    if isinstance(obj, dict):
        out = {k: _sort_nodes(v) for k, v in obj.items()}
        if isinstance(out.get("nodes"), list):
            out["nodes"] = sorted(out["nodes"], key=lambda n: n.get("key", "") if isinstance(n, dict) else "")
        return out
    return obj


def normalize_body(body, start, unordered=False):
    """Returns (normalized text, ttl values, problems) for one raw body."""
    problems = []
    text = body.decode("latin-1")
    if unordered:
        try:
            obj = json.loads(body.decode("utf-8"))
            # Dump keeps field order; only the order of "nodes" entries changes.
            text = json.dumps(_sort_nodes(obj), separators=(",", ":"), ensure_ascii=False) + (
                "\n" if body.endswith(b"\n") else "")
            text = text.encode("utf-8").decode("latin-1")
        except ValueError:
            pass
    text = KVD_VERSION_MEMBERS_RE.sub("", text)
    text = re.sub(r'"(modifiedIndex|createdIndex|index)":(\d+)',
                  lambda m: f'"{m.group(1)}":{_norm_index(m.group(2), start)}', text)
    text = re.sub(r"(?<=/)(\d{20})(?=[/\"\\])", lambda m: f"<{_norm_index(m.group(1), start)}>", text)
    text = re.sub(r"cleared \[(\d+)/(\d+)\]",
                  lambda m: f"cleared [{_norm_index(m.group(1), start)}/{_norm_index(m.group(2), start)}]",
                  text)
    text = re.sub(r"\[(\d+) != (\d+)\]",
                  lambda m: f"[{_norm_index(m.group(1), start)} != {_norm_index(m.group(2), start)}]", text)

    def exp(m):
        if not EXPIRATION_RE.match(m.group(1)):
            problems.append(f"expiration {m.group(1)!r} is not RFC 3339 with trimmed nanoseconds")
        return '"expiration":"<time>"'

    text = re.sub(r'"expiration":"([^"]*)"', exp, text)
    ttls = [int(x) for x in re.findall(r'"ttl":(-?\d+)', text)]
    text = re.sub(r'"ttl":(-?\d+)', '"ttl":<ttl>', text)
    return text, ttls, problems


def normalize(resp, start, unordered=False, compare_headers=True):
    hdrs = {}
    if compare_headers:
        for k, v in resp.headers:
            if not (k.startswith(_COMPARED_PREFIXES) or k in _COMPARED_EXACT):
                continue
            if k in _PRESENCE_ONLY:
                hdrs[k] = "<present>"
            elif k == "x-etcd-index":
                hdrs[k] = _norm_index(v, start) if v.isdigit() else f"<bad {v!r}>"
            else:
                hdrs[k] = v
    text, ttls, problems = normalize_body(resp.body, start, unordered)
    return Normalized(resp.status, hdrs, text, ttls, problems)


def diff(ref, sut, ref_start, sut_start, unordered=False, compare_headers=True):
    """Returns a list of difference descriptions (empty when equivalent)."""
    a = normalize(ref, ref_start, unordered, compare_headers)
    b = normalize(sut, sut_start, unordered, compare_headers)
    out = []
    if a.status != b.status:
        out.append(f"status: etcd {a.status}, got {b.status}")
    if a.headers != b.headers:
        keys = sorted(set(a.headers) | set(b.headers))
        d = [f"{k}: etcd {a.headers.get(k)!r} got {b.headers.get(k)!r}"
             for k in keys if a.headers.get(k) != b.headers.get(k)]
        out.append("headers: " + "; ".join(d))
    if a.body != b.body:
        out.append(f"body:\n    etcd: {a.body!r}\n    got:  {b.body!r}")
    if len(a.ttls) == len(b.ttls):
        for x, y in zip(a.ttls, b.ttls):
            if abs(x - y) > 1:
                out.append(f"ttl: etcd {x}, got {y}")
    out += [f"got: {p}" for p in b.problems]
    out += [f"etcd(!): {p}" for p in a.problems]
    return out


def shape(obj):
    """Structure of a JSON value: field names in order and value types, values dropped."""
    if isinstance(obj, dict):
        return [(k, shape(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return ["list"] + ([shape(obj[0])] if obj else [])
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, (int, float)):
        return "number"
    if obj is None:
        return "null"
    return "string"


class Pair:
    """A reference etcd and the server under test, started side by side."""

    def __init__(self, sut_extra_args=(), ref_extra_args=()):
        self.ref = Server(harness.Member("etcd", name="default", extra_args=ref_extra_args))
        kind = "etcd" if UNDER_TEST == "etcd" else "kvd"
        self.sut = Server(harness.Member(kind, name="default", extra_args=sut_extra_args))
        self.sut_kind = kind

    def start(self):
        errors = []

        def go(m):
            try:
                m.start()
            except Exception as e:  # reported below, after both attempts
                errors.append(f"{m.kind}: {e}")

        ts = [threading.Thread(target=go, args=(s.member,)) for s in (self.ref, self.sut)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        if errors:
            self.cleanup()
            raise RuntimeError("; ".join(errors))
        self.ref.started()
        self.sut.started()
        return self

    def cleanup(self):
        for s in (self.ref, self.sut):
            if s.conn:
                s.conn.close()
            s.member.cleanup()

    def send(self, method, path, body=None, headers=None):
        return (self.ref.request(method, path, body, headers),
                self.sut.request(method, path, body, headers))

    def compare(self, results, what, method, path, body=None, headers=None, unordered=False,
                compare_headers=True):
        a, b = self.send(method, path, body, headers)
        if VERBOSE:
            print(f"   {what}: {method} {path} -> etcd {a!r}", flush=True)
        d = diff(a, b, self.ref.start_index, self.sut.start_index, unordered, compare_headers)
        results.check(not d, f"{what}: {method} {path} body={body!r}\n  " + "\n  ".join(d)
                      + f"\n  raw etcd: {a!r}\n  raw got:  {b!r}")
        return a, b

    def wait_watchers(self, servers, baselines, timeout=5.0):
        """Bounded poll of /v2/stats/store until each server counts one more watcher."""
        return [bool(harness.wait_for(lambda: s.watchers() > base, timeout, interval=0.01))
                for s, base in zip(servers, baselines)]

    def watch(self, results, what, path, trigger, unordered=False, timeout=8.0):
        """Starts GET path (a watch) on both servers, waits until each counts the watcher, runs
        trigger() (which sends the writes), then compares both watch answers. With trigger None
        the event is one the servers make themselves (expiry) and may already be in history, so
        the watcher count is not awaited."""
        servers = (self.ref, self.sut)
        baselines = [s.watchers() for s in servers]
        answers = [None, None]

        def run(i, s):
            try:
                answers[i] = one_shot(s.url, "GET", s.subst(path), timeout=timeout)
            except OSError as e:
                answers[i] = e

        ts = [threading.Thread(target=run, args=(i, s), daemon=True) for i, s in enumerate(servers)]
        for t in ts:
            t.start()
        if trigger is not None:
            counted = self.wait_watchers(servers, baselines)
            results.check(counted[0], f"{what}: etcd never counted the watcher (suite bug)")
            results.check(counted[1], f"{what}: /v2/stats/store watchers never rose for {path}")
            trigger()
        for t in ts:
            t.join(timeout + 2)
        a, b = answers
        if not isinstance(a, Resp) or not isinstance(b, Resp):
            results.check(False, f"{what}: watch {path} did not complete: etcd {a!r}, got {b!r}")
            return a, b
        if trigger is None:
            # A server-made event (expiry) may have happened before the watch arrived (answered
            # from history: X-Etcd-Index is the index then) or after (the index the watch began
            # at): the header tells only when the sync ran, on either server.
            a, b = (Resp(r.status, [h for h in r.headers if h[0] != "x-etcd-index"], r.body)
                    for r in (a, b))
        d = diff(a, b, self.ref.start_index, self.sut.start_index, unordered)
        results.check(not d, f"{what}: watch GET {path}\n  " + "\n  ".join(d)
                      + f"\n  raw etcd: {a!r}\n  raw got:  {b!r}")
        return a, b


def need_binaries():
    harness.require_etcd()
    if UNDER_TEST != "etcd" and not (os.path.isfile(harness.KVD_BIN)
                                     or any(os.access(os.path.join(p, harness.KVD_BIN), os.X_OK)
                                            for p in os.environ.get("PATH", "").split(":"))):
        print(f"FAIL: kvd binary not found (KVD_BIN={harness.KVD_BIN!r}); "
              "set KVD_BIN or KVD_UNDER_TEST=etcd")
        print("0 passed, 1 failed")
        sys.exit(1)


def start_pair(results, extra_args=()):
    """Starts a Pair (extra_args given to both); if either server fails to start, reports it
    and ends the run (exit 1)."""
    try:
        return Pair(extra_args, extra_args).start()
    except Exception as e:  # startup failure of either process ends the run with a report
        results.check(False, f"could not start the servers: {e}")
        results.finish()


def run_sections(results, *sections):
    """Says which server is under test, starts a Pair (start_pair) and runs each section(pair)
    on it in turn; cleans the pair up after, whatever happened."""
    print(f"server under test: {UNDER_TEST}")
    p = start_pair(results)
    try:
        for section in sections:
            section(p)
    finally:
        p.cleanup()
