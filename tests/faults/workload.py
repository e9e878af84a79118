"""Workloads of the fault tests: client threads that talk to a cluster over HTTP (the v2 keys
API) while a nemesis injects faults, recording every operation in one history in checker.py's
format. Standard library only. The threads are started by the caller inside the client
namespace (netns.Net.thread), so they reach the members' addresses.

    h = History()
    regs = Registers(h, endpoints, keys=3, quorum=True, seed=seed)   # read / write / cas
    adds = SetAdds(h, endpoints, key="/set", seed=seed)               # unique creates
    watch = Watchers(h, endpoints, prefix="/reg")                     # waitIndex long polls
    for w in (regs, adds, watch): w.start(net.thread)
    ... faults ...
    for w in (regs, adds): w.stop()
    adds.final_read(endpoints)       # after the heal: the set as a quorum read sees it
    watch.drain(last_index)          # watchers catch up to the last acknowledged index
    checker.check_registers(h.events), checker.check_set(...), checker.check_watch(...)

How an answer becomes a completion:
  ok    2xx (for a read, a 404 "Key not found" is an ok read of None);
  fail  the request certainly did not take effect: connection refused (nothing was sent), a
        compare that failed (etcd errors 100, 101, 105), any 4xx;
  info  anything else: a timeout, a reset, 5xx (etcd's 300 "request timed out" among them:
        the write may still commit), a proxy's 502/503 (it may have reached a member).
Completions carry "status": the HTTP status, or the transport error's text.
Every client has one operation outstanding at a time and a request timeout of
OP_TIMEOUT_S. Register clients pick an endpoint at random for each operation; set adders and
watchers stay on one until it fails them, then move to the next.
"""
import http.client
import json
import random
import threading
import time
import urllib.parse

OP_TIMEOUT_S = 3.0     # a client's wait for one answer: beyond, the operation is "info"
FAILED_PAUSE_S = 0.1   # a client's pause after an operation that did not succeed
WATCH_POLL_S = 2.0     # a watcher's long poll: re-issued (same waitIndex) when it ends empty
PAUSE_S = 0.03         # a client's pause between two operations (bounds the write rate,
                       # so that the 1,000-event window outlasts a fault: see Watchers)


class History:
    """The shared, ordered list of events; append is atomic with the event's time."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def add(self, **event):
        with self.lock:
            event["time"] = round(time.monotonic() - self.t0, 6)
            self.events.append(event)

    def snapshot(self):
        with self.lock:
            return list(self.events)


def http_call(base, method, path, body=None, timeout=OP_TIMEOUT_S):
    """(status, headers, parsed JSON or None, transport) for one request; transport is None
    when an answer came, "refused" when nothing was sent, else the error text (the request may
    have been delivered)."""
    hostport = base[len("http://"):]
    host, _, port = hostport.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        try:
            conn.connect()
        except ConnectionRefusedError:
            return None, {}, None, "refused"
        except OSError as e:  # unreachable, connect timeout: nothing was sent either
            return None, {}, None, f"refused ({e})"
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            return None, {}, None, f"{type(e).__name__}: {e}"
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, doc, None
    finally:
        conn.close()


def outcome(status, doc, transport):
    """How a write's answer ends its operation: "ok", "fail" or "info" (module docstring)."""
    if transport is not None:
        return "fail" if transport.startswith("refused") else "info"
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500 and status not in (408,):
        return "fail"
    return "info"


class Client:
    """Base of the workload threads: endpoints in turn (moving on after a failure), a stop
    event, and the history."""

    def __init__(self, history, endpoints, seed, first_process, threads):
        self.h = history
        self.endpoints = list(endpoints)
        self.seed = seed
        self.first_process = first_process
        self.n = threads
        self.stopping = threading.Event()
        self.threads = []

    def start(self, make_thread):
        """make_thread(target, *args) -> an unstarted Thread (netns.Net.thread in the tests)."""
        for i in range(self.n):
            t = make_thread(self.run, self.first_process + i)
            t.start()
            self.threads.append(t)
        return self

    def stop(self, timeout=OP_TIMEOUT_S + 5):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout)
        return not any(t.is_alive() for t in self.threads)

    def run(self, process):  # pragma: no cover - abstract
        raise NotImplementedError


class Registers(Client):
    """Single-key registers /reg/r<i>: reads (quorum ones unless quorum=False: the checker's
    teeth test), writes of unique values, and compare-and-swaps (prevValue) from the last value
    the client saw of that key."""

    def __init__(self, history, endpoints, keys=3, threads=6, quorum=True, seed=0,
                 first_process=0, prefix="/reg", reads_only=False):
        super().__init__(history, endpoints, seed, first_process, threads)
        self.keys = [f"{prefix}/r{i}" for i in range(keys)]
        self.quorum = quorum
        self.read_share = 1.0 if reads_only else 0.5

    def run(self, process):
        rnd = random.Random(self.seed * 1000 + process)
        seen = {}
        seq = 0
        while not self.stopping.is_set():
            base = rnd.choice(self.endpoints)  # spread as a client library's balancer does
            key = rnd.choice(self.keys)
            path = "/v2/keys" + key
            r = rnd.random()
            if r < self.read_share:
                self.h.add(process=process, type="invoke", f="read", key=key, value=None)
                q = "?quorum=true" if self.quorum else ""
                status, _, doc, transport = http_call(base, "GET", path + q)
                if transport is None and status == 200:
                    value = (doc or {}).get("node", {}).get("value")
                    kind = "ok"
                elif transport is None and status == 404 and (doc or {}).get("errorCode") == 100:
                    value, kind = None, "ok"
                else:
                    value, kind = None, "fail" if transport == "refused" else "info"
                self.h.add(process=process, type=kind, f="read", key=key, value=value,
                           status=status if transport is None else transport)
                if kind == "ok":
                    seen[key] = value
            else:
                seq += 1
                new = f"{process}-{seq}"
                expected = seen.get(key)
                cas = r >= 0.75 and expected is not None
                f = "cas" if cas else "write"
                invoke_value = [expected, new] if cas else new
                self.h.add(process=process, type="invoke", f=f, key=key, value=invoke_value)
                q = "?" + urllib.parse.urlencode({"prevValue": expected}) if cas else ""
                status, _, doc, transport = http_call(
                    base, "PUT", path + q, body=urllib.parse.urlencode({"value": new}))
                kind = outcome(status, doc, transport)
                extra = {"status": status if transport is None else transport}
                if kind == "ok":
                    extra["index"] = (doc or {}).get("node", {}).get("modifiedIndex")
                    seen[key] = new
                self.h.add(process=process, type=kind, f=f, key=key, value=invoke_value, **extra)
            # After a failure, back off: a down cluster is not hammered.
            self.stopping.wait(PAUSE_S if kind == "ok" else FAILED_PAUSE_S)


class SetAdds(Client):
    """A set under one directory: each add creates a unique key (PUT prevExist=false) holding
    the element; or, with in_order=True, appends with POST (etcd's in-order keys), the element
    as the value. final_read() reads the directory with a quorum read once the faults are
    healed."""

    def __init__(self, history, endpoints, key="/set", threads=3, seed=0, first_process=100,
                 in_order=False):
        super().__init__(history, endpoints, seed, first_process, threads)
        self.key = key
        self.in_order = in_order
        self.reader = first_process + threads  # the final read's process

    def run(self, process):
        turn = process
        seq = 0
        while not self.stopping.is_set():
            base = self.endpoints[turn % len(self.endpoints)]
            seq += 1
            element = f"e{process}-{seq}"
            self.h.add(process=process, type="invoke", f="add", key=self.key, value=element)
            body = urllib.parse.urlencode({"value": element})
            if self.in_order:
                status, _, doc, transport = http_call(base, "POST", "/v2/keys" + self.key, body)
            else:
                status, _, doc, transport = http_call(
                    base, "PUT", f"/v2/keys{self.key}/{element}?prevExist=false", body)
            kind = outcome(status, doc, transport)
            if status == 412 and (doc or {}).get("errorCode") == 105:
                # "Key already exists" for a key only this add creates: a proxy delivered it
                # twice (etcd's proxy retries writes), so it did take effect.
                kind = "info"
            extra = {"status": status if transport is None else transport}
            if kind == "ok":
                extra["index"] = (doc or {}).get("node", {}).get("modifiedIndex")
            self.h.add(process=process, type=kind, f="add", key=self.key, value=element, **extra)
            if kind != "ok":
                turn += 1  # and back off: a down cluster is not hammered
            self.stopping.wait(PAUSE_S if kind == "ok" else FAILED_PAUSE_S)

    def final_read(self, endpoints, timeout=30.0):
        """The set as a quorum read sees it, tried on each endpoint until one answers; recorded
        as the final read. Returns whether a read completed."""
        deadline = time.monotonic() + timeout
        turn = 0
        while time.monotonic() < deadline:
            base = endpoints[turn % len(endpoints)]
            turn += 1
            self.h.add(process=self.reader, type="invoke", f="read", key=self.key, value=None)
            status, _, doc, transport = http_call(
                base, "GET", f"/v2/keys{self.key}?recursive=true&quorum=true", timeout=10)
            if transport is None and status in (200, 404):
                nodes = ((doc or {}).get("node") or {}).get("nodes") or []
                values = [n.get("value") for n in nodes if not n.get("dir")]
                self.h.add(process=self.reader, type="ok", f="read", key=self.key, value=values)
                return True
            self.h.add(process=self.reader, type="fail", f="read", key=self.key, value=None)
            time.sleep(0.2)
        return False


class Watchers(Client):
    """Watchers of a directory (recursive) with waitIndex long polls, as confd does: each
    starts from the index a first GET reports, asks for waitIndex = last seen + 1, and moves to
    the next endpoint when its endpoint fails or a long poll ends empty (the member died, is
    cut off, or is paused). Every event is recorded as a "watch_event". When the waitIndex has
    fallen out of the server's event history (etcd error 401, "event index cleared": more than
    1,000 changes happened meanwhile) the watcher does what confd does, starting over from the
    current index: it goes on as a new stream (process + 1000 * restarts), so that each stream
    is checked whole, and the restart is counted in `cleared`. `starts` holds every stream's
    first waitIndex."""

    def __init__(self, history, endpoints, prefix="/reg", threads=2, first_process=200):
        super().__init__(history, endpoints, 0, first_process, threads)
        self.prefix = prefix
        self.starts = {}
        self.last = {}
        self.cleared = []
        self.lock = threading.Lock()

    def _current_index(self, process, turn):
        while not self.stopping.is_set():
            base = self.endpoints[turn % len(self.endpoints)]
            status, hdrs, _, transport = http_call(base, "GET", "/v2/keys" + self.prefix)
            if transport is None and "x-etcd-index" in hdrs:
                return int(hdrs["x-etcd-index"]) + 1, turn
            turn += 1
            self.stopping.wait(0.1)
        return None, turn

    def run(self, process):
        turn = process
        stream = process
        next_index, turn = self._current_index(process, turn)
        with self.lock:
            self.starts[stream] = next_index
        while not self.stopping.is_set():
            base = self.endpoints[turn % len(self.endpoints)]
            status, hdrs, doc, transport = http_call(
                base, "GET",
                f"/v2/keys{self.prefix}?wait=true&recursive=true&waitIndex={next_index}",
                timeout=WATCH_POLL_S)
            if transport is not None:
                turn += 1  # failed or silent: resume on the next endpoint
                if transport.startswith("refused"):
                    self.stopping.wait(0.05)
                continue
            if status == 200 and doc and "node" in doc:
                node = doc["node"]
                index = node.get("modifiedIndex")
                self.h.add(process=stream, type="event", f="watch_event", key=self.prefix,
                           value={"index": index, "action": doc.get("action"),
                                  "key": node.get("key"), "value": node.get("value")})
                next_index = index + 1
                with self.lock:
                    self.last[process] = index
            elif (doc or {}).get("errorCode") == 401:
                with self.lock:
                    self.cleared.append((stream, next_index, (doc or {}).get("index")))
                stream += 1000
                next_index, turn = self._current_index(process, turn)
                with self.lock:
                    self.starts[stream] = next_index
                    self.last[process] = (next_index or 1) - 1
            else:
                turn += 1
                self.stopping.wait(0.05)

    def caught_up(self, index):
        """Whether every watcher has seen an event at or past index."""
        with self.lock:
            return all(self.last.get(p, 0) >= index
                       for p in range(self.first_process, self.first_process + self.n))
