#!/usr/bin/env python3
"""kvd's proxy against etcd's, each in front of its own three-member cluster (kvd behind kvd,
etcd behind etcd), plus both in front of one fake member that echoes what it receives:
forwarding of every API family, /v2/config/local/proxy, OPTIONS, readonly mode's 501 for every
non-GET method, the request headers a member gets, the response headers a client gets (CORS
once with kvd, twice with etcd: a listed difference), a proxy whose cluster cannot be reached,
--proxy-read-timeout against a member that does not answer, and the 502-then-503 answers
when every member is down, then recovery when they return."""
import http.server
import json
import os
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()


def names(headers):
    return sorted(n.lower() for n, _ in headers if n.lower() != "date")


def cors_count(headers):
    return sum(1 for n, _ in headers if n.lower() == "access-control-allow-origin")


def raw(proxy, request):
    return harness.parse_head(harness.raw_exchange(proxy.port, request, timeout=10.0,
                                                   until=None))


def raw_req(method, path, body=b"", extra=""):
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}"
    if body or method in ("PUT", "POST"):
        head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class FakeMember:
    """A member double: GET /members on its peer port lists one member whose client URL is its
    client port, which answers every request with the request it got, as JSON. With clients=n
    it lists n client ports; with drop_writes, PUT and POST are read whole, counted in `writes`
    and the connection closed without an answer (a member that died after taking a write)."""

    def __init__(self, clients=1, drop_writes=False):
        self.client_ports = [harness.free_port() for _ in range(clients)]
        self.client_port = self.client_ports[0]
        self.peer_port = harness.free_port()
        self.writes = 0
        fake = self

        class Peer(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps([{"id": 1, "name": "fake",
                                    "peerURLs": [f"http://127.0.0.1:{fake.peer_port}"],
                                    "clientURLs": [f"http://127.0.0.1:{p}"
                                                   for p in fake.client_ports]}]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Etcd-Cluster-Id", "abc")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class Client(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def echo(self):
                if self.path == "/hang":  # an answer that never comes (read timeouts)
                    time.sleep(4)
                    return
                n = int(self.headers.get("Content-Length") or 0)
                got = self.rfile.read(n) if n else b""
                if drop_writes and self.command in ("PUT", "POST"):
                    fake.writes += 1
                    self.close_connection = True
                    return
                body = json.dumps({"method": self.command, "path": self.path,
                                   "headers": [[k, v] for k, v in self.headers.items()],
                                   "body": got.decode()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Fake", "1")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = echo

            def log_message(self, *a):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.servers = [Server(("127.0.0.1", self.peer_port), Peer)] + [
            Server(("127.0.0.1", p), Client) for p in self.client_ports]
        for s in self.servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()

    @property
    def initial_cluster(self):
        return f"fake=http://127.0.0.1:{self.peer_port}"

    def stop(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()


def check_forwarding(kp, ep):
    # Every API family answers through both proxies with the same status.
    # Reads are quorum reads: a follower's local read may not have applied the write before.
    for method, path, body in [("PUT", "/v2/keys/compat/a", b"value=1"),
                               ("GET", "/v2/keys/compat/a?quorum=true", b""),
                               ("GET", "/v2/keys/compat?recursive=true&quorum=true", b""),
                               ("POST", "/v2/keys/compat/q", b"value=x"),
                               ("DELETE", "/v2/keys/compat/a", b""),
                               ("GET", "/v2/keys/compat/a?quorum=true", b""),
                               ("GET", "/v2/members", b""), ("GET", "/v2/members/leader", b""),
                               ("GET", "/v2/machines", b""), ("GET", "/v2/stats/self", b""),
                               ("GET", "/v2/stats/store", b""),
                               ("GET", "/version", b""), ("GET", "/health", b""),
                               ("GET", "/nothing/here", b"")]:
        ks, kh, kb = raw(kp, raw_req(method, path, body))
        es, eh, eb = raw(ep, raw_req(method, path, body))
        R.check(ks == es and ks != 0, f"{method} {path}: kvd proxy {ks}, etcd proxy {es}")
        R.check(cors_count(kh) == 1, f"{method} {path}: kvd proxy sends CORS once: {kh}")
        kn = [n for n in names(kh) if n != "transfer-encoding" and n != "content-length"]
        en = [n for n in names(eh) if n != "transfer-encoding" and n != "content-length"]
        R.check(sorted(set(kn)) == sorted(set(en)),
                f"{method} {path}: same header names (kvd {kn}, etcd {en})")
        if path.startswith("/v2/keys") and ks in (200, 201):
            kj, ej = json.loads(kb or b"{}"), json.loads(eb or b"{}")
            R.check(kj.get("action") == ej.get("action"), f"{method} {path}: same action")
    # etcd's proxy really does send its CORS set twice on proxied answers (spec §5).
    _, eh, _ = raw(ep, raw_req("GET", "/version"))
    R.check(cors_count(eh) == 2, f"reference: etcd proxy doubles CORS headers ({cors_count(eh)})")


def check_local_answers(kp, ep, kc, ec):
    # /v2/config/local/proxy: every member client URL, text/plain, trailing newline.
    for p, c in ((kp, kc), (ep, ec)):
        s, h, b = raw(p, raw_req("GET", "/v2/config/local/proxy"))
        hd = {n.lower(): v for n, v in h}
        R.check(s == 200 and b.endswith(b"}\n"), f"{p.kind}: config 200 with newline: {s} {b!r}")
        R.check(hd.get("content-type") == "text/plain; charset=utf-8",
                f"{p.kind}: config content type {hd.get('content-type')}")
        eps = json.loads(b).get("endpoints", [])
        R.check(sorted(eps) == sorted(m.url for m in c.members),
                f"{p.kind}: config lists the members' client URLs: {eps}")
    ks, kh, kb = raw(kp, raw_req("POST", "/v2/config/local/proxy", b""))
    es, eh, eb = raw(ep, raw_req("POST", "/v2/config/local/proxy", b""))
    R.check((ks, kb) == (es, eb), f"config POST: kvd {ks} {kb!r}, etcd {es} {eb!r}")
    R.check(names(kh) == names(eh), f"config POST headers: kvd {names(kh)}, etcd {names(eh)}")
    # OPTIONS is answered by the proxy: 200, empty, one CORS set.
    ks, kh, kb = raw(kp, raw_req("OPTIONS", "/v2/keys/compat"))
    es, eh, eb = raw(ep, raw_req("OPTIONS", "/v2/keys/compat"))
    R.check((ks, kb) == (es, eb) == (200, b""), f"OPTIONS: kvd {ks} {kb!r}, etcd {es} {eb!r}")
    R.check(names(kh) == names(eh), f"OPTIONS headers: kvd {names(kh)}, etcd {names(eh)}")


def check_readonly(kr, er):
    for method in ("PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"):
        ks, kh, kb = raw(kr, raw_req(method, "/v2/keys/ro", b"value=1" if method != "HEAD" else b""))
        es, eh, eb = raw(er, raw_req(method, "/v2/keys/ro", b"value=1" if method != "HEAD" else b""))
        R.check(ks == es == 501, f"readonly {method}: kvd {ks}, etcd {es}")
        R.check(kb == eb == b"", f"readonly {method}: empty bodies ({kb!r}, {eb!r})")
        R.check(names(kh) == names(eh), f"readonly {method} headers: kvd {names(kh)}, etcd {names(eh)}")
    for path in ("/v2/keys/compat", "/v2/members", "/version"):
        ks, _, _ = raw(kr, raw_req("GET", path))
        es, _, _ = raw(er, raw_req("GET", path))
        R.check(ks == es and ks in (200, 404), f"readonly GET {path}: kvd {ks}, etcd {es}")


def check_headers_forwarded(workdir):
    fake = FakeMember()
    kp = harness.Proxy("kvd", fake.initial_cluster, workdir, name="fakeproxy")
    ep = harness.Proxy("etcd", fake.initial_cluster, workdir, name="fakeproxy")
    try:
        kp.start()
        ep.start()
        req = (b"PUT /v2/keys/h?x=1 HTTP/1.1\r\nHost: proxy.example:1234\r\n"
               b"Authorization: Basic dXNlcjpwdw==\r\nX-Forwarded-For: 1.2.3.4\r\n"
               b"X-Custom: yes\r\nConnection: close, X-Dropme\r\nX-Dropme: 1\r\n"
               b"Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nProxy-Authorization: secret\r\n"
               b"Te: trailers\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               b"Content-Length: 7\r\n\r\nvalue=1")
        got = {}
        for p in (kp, ep):
            s, h, b = harness.parse_head(harness.raw_exchange(p.port, req, timeout=10.0))
            R.check(s == 200, f"{p.kind} proxy to fake member: {s} {b[:200]!r}")
            echo = json.loads(b) if s == 200 else {"headers": []}
            got[p.kind] = (echo, h)
        kecho, kh = got["kvd"]
        eecho, eh = got["etcd"]
        khd = {k.lower(): v for k, v in kecho["headers"]}
        ehd = {k.lower(): v for k, v in eecho["headers"]}
        R.check(kecho.get("method") == "PUT" and kecho.get("path") == "/v2/keys/h?x=1"
                and kecho.get("body") == "value=1", f"kvd: request line and body kept: {kecho}")
        for name in ("host", "authorization", "x-custom", "x-forwarded-for", "content-type",
                     "content-length"):
            R.check(khd.get(name) == ehd.get(name),
                    f"member sees {name}: kvd {khd.get(name)!r}, etcd {ehd.get(name)!r}")
        R.check(khd.get("x-forwarded-for") == "1.2.3.4, 127.0.0.1",
                f"X-Forwarded-For appended: {khd.get('x-forwarded-for')}")
        for name in ("connection", "keep-alive", "upgrade", "proxy-authorization", "te"):
            R.check(name not in khd and name not in ehd,
                    f"hop-by-hop {name} dropped (kvd {khd.get(name)}, etcd {ehd.get(name)})")
        R.check("x-dropme" not in khd, "kvd drops a header named in Connection")
        # Extra headers Go adds on its own (Accept-Encoding, User-Agent) are the only ones
        # kvd does not send.
        extra = set(ehd) - set(khd) - {"accept-encoding", "user-agent", "x-dropme"}
        R.check(not extra, f"headers etcd's proxy sends that kvd's does not: {extra}")
        # The answer: the member's own headers pass, its CORS header is replaced by one set.
        khn = {n.lower() for n, _ in kh}
        R.check("x-fake" in khn and cors_count(kh) == 1, f"kvd response headers: {kh}")
        R.check(cors_count(eh) == 2, f"reference: etcd doubles CORS: {eh}")
        cache_file = os.path.join(kp.data_dir, "proxy", "cluster")
        with open(cache_file) as f:
            kc = f.read()
        with open(os.path.join(ep.data_dir, "proxy", "cluster")) as f:
            ec = f.read()
        R.check(kc == ec == json.dumps({"PeerURLs": [f"http://127.0.0.1:{fake.peer_port}"]},
                                       separators=(",", ":")),
                f"cluster files: kvd {kc!r}, etcd {ec!r}")
    finally:
        kp.kill()
        ep.kill()
        fake.stop()


def check_read_timeout(workdir):
    """--proxy-read-timeout: a member that does not answer in time counts as failed."""
    fake = FakeMember()
    args = ["--proxy-read-timeout", "300"]
    kp = harness.Proxy("kvd", fake.initial_cluster, workdir, name="rtproxy", extra_args=args)
    ep = harness.Proxy("etcd", fake.initial_cluster, workdir, name="rtproxy", extra_args=args)
    try:
        kp.start()
        ep.start()
        for p in (kp, ep):
            t0 = time.monotonic()
            s, _, b = raw(p, raw_req("GET", "/hang"))
            took = time.monotonic() - t0
            R.check((s, b) == (502, b'{"message":"httpproxy: unable to get response from 1 endpoint(s)"}'),
                    f"{p.kind}: member slower than the read timeout: {s} {b!r}")
            R.check(took < 2.5, f"{p.kind}: read timeout answered after {took:.2f}s")
    finally:
        kp.kill()
        ep.kill()
        fake.stop()


def check_write_not_resent(workdir):
    """A member that takes a whole write and dies before answering: etcd's proxy sends the
    write to the next member too (it may be applied twice); kvd's answers 502 "may or may not
    have been applied" and sends it nowhere else. GETs still move on."""
    for kind in ("kvd", "etcd"):
        fake = FakeMember(clients=2, drop_writes=True)
        p = harness.Proxy(kind, fake.initial_cluster, workdir, name=f"once{kind}")
        try:
            p.start(want_endpoints=2)
            s, _, b = raw(p, raw_req("PUT", "/v2/keys/once", b"value=1"))
            print(f"{kind} proxy, a write to members that die after taking it: {s} {b[:120]!r}, "
                  f"delivered {fake.writes} times")
            if kind == "kvd":
                R.check(fake.writes == 1, f"kvd's proxy delivered the write {fake.writes} times")
                R.check(s == 502 and b"may or may not have been applied" in b,
                        f"kvd: the ambiguous write's answer: {s} {b!r}")
        finally:
            p.kill()
            fake.stop()


def check_unreachable(workdir):
    dead = f"x=http://127.0.0.1:{harness.free_port()}"
    kp = harness.Proxy("kvd", dead, workdir, name="deadproxy")
    ep = harness.Proxy("etcd", dead, workdir, name="deadproxy")
    try:
        for p in (kp, ep):
            p.start(want_endpoints=0)
        for path in ("/version", "/v2/keys/a", "/health"):
            ks, kh, kb = raw(kp, raw_req("GET", path))
            es, eh, eb = raw(ep, raw_req("GET", path))
            R.check((ks, kb) == (es, eb) == (503, b'{"message":"httpproxy: zero endpoints currently available"}'),
                    f"unreachable cluster {path}: kvd {ks} {kb!r}, etcd {es} {eb!r}")
            R.check(names(kh) == names(eh), f"unreachable {path} headers: kvd {names(kh)}, etcd {names(eh)}")
    finally:
        kp.kill()
        ep.kill()


def check_all_down(kp, ep, kc, ec):
    for c in (kc, ec):
        for m in c.members:
            m.kill()
    want502 = b'{"message":"httpproxy: unable to get response from 3 endpoint(s)"}'
    want503 = b'{"message":"httpproxy: zero endpoints currently available"}'
    for p in (kp, ep):
        s, h, b = raw(p, raw_req("GET", "/v2/keys/compat"))
        R.check((s, b) == (502, want502), f"{p.kind}: first request after total outage: {s} {b!r}")
        hd = {n.lower(): v for n, v in h}
        R.check(hd.get("content-type") == "application/json" and cors_count(h) == 1,
                f"{p.kind}: 502 headers {h}")
        s, _, b = raw(p, raw_req("GET", "/v2/keys/compat"))
        R.check((s, b) == (503, want503), f"{p.kind}: next request: {s} {b!r}")
    # Back: both proxies serve again within a bounded time (etcd retries refresh every 1 s
    # when nothing is available).
    for c in (kc, ec):
        for m in c.members:
            m.spawn()
    for p in (kp, ep):
        t0 = time.monotonic()
        ok = harness.wait_for(lambda: raw(p, raw_req("GET", "/v2/keys/compat"))[0] == 200,
                              40.0, 0.1)
        R.check(ok, f"{p.kind}: serves again after the members return")
        print(f"{p.kind} proxy recovered in {time.monotonic() - t0:.1f}s")


def main():
    harness.require_etcd()
    with cluster.ProxyBench("kvd-proxy-compat-", R) as bench:
        kc, ec, kp, ep = bench.kvd_and_etcd()
        kr = bench.proxy("kvd", kc.initial_cluster(), mode="readonly", name="ro")
        er = bench.proxy("etcd", ec.initial_cluster(), mode="readonly", name="ro")
        for p in (kr, er):
            p.start(want_endpoints=3)
        check_forwarding(kp, ep)
        check_local_answers(kp, ep, kc, ec)
        check_readonly(kr, er)
        check_headers_forwarded(bench.workdir)
        check_read_timeout(bench.workdir)
        check_write_not_resent(bench.workdir)
        check_unreachable(bench.workdir)
        check_all_down(kp, ep, kc, ec)
    R.finish()


if __name__ == "__main__":
    main()
