#!/usr/bin/env python3
"""kvd's metrics side by side with real etcd's (when installed): the v2 API's request counts and
the --listen-metrics-urls listeners.

Each a single member with two metrics URLs:
  - the same keys requests (gets, quorum gets, HEADs, writes of each method, failing ones, bad
    ones, watches found in history and failing) leave the same etcd_http_received_total and
    etcd_http_failed_total samples and the same etcd_http_successful_duration_seconds counts;
  - /metrics (any method, as etcd's promhttp handler) and /health answer there as on the client
    port; every other path (/version, /v2/keys, /metrics/, /x) is Go's ServeMux 404
    "404 page not found"; status, content type and body agree with etcd's;
  - the metrics listener adds no CORS headers (the client port does);
  - both URLs serve, and the member's /metrics there has etcd's server families.
kvd alone:
  - an https metrics URL serves with the client certificate (--cert-file/--key-file), and
    without one kvd refuses to start, naming the flags;
  - a metrics URL already in use: kvd exits non-zero saying "cannot listen for metrics";
  - a kvd proxy with --listen-metrics-urls serves its own /metrics (etcd_proxy_*) and forwards
    /health there (etcd's proxy ignores the flag).
"""
import os
import socket
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tls_certs  # noqa: E402

PROBES = [("GET", "/metrics"), ("POST", "/metrics"), ("HEAD", "/metrics"), ("GET", "/health"),
          ("POST", "/health"), ("GET", "/health?x=1"), ("GET", "/version"),
          ("GET", "/v2/keys/"), ("GET", "/metrics/"), ("GET", "/x"), ("PUT", "/v2/keys/a")]


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
KEYS_REQUESTS = [
    ("PUT", "/v2/keys/a", b"value=1"), ("PUT", "/v2/keys/a", b"value=2"),
    ("GET", "/v2/keys/a", None), ("GET", "/v2/keys/missing", None),
    ("GET", "/v2/keys/a?quorum=true", None), ("GET", "/v2/keys/missing?quorum=true", None),
    ("HEAD", "/v2/keys/a", None), ("HEAD", "/v2/keys/missing", None),
    ("HEAD", "/v2/keys/a?quorum=true", None),
    ("POST", "/v2/keys/queue", b"value=x"), ("POST", "/v2/keys/a", b"value=x"),
    ("DELETE", "/v2/keys/missing", None), ("DELETE", "/v2/keys/queue?dir=true", None),
    ("PUT", "/v2/keys/a?prevValue=nope", b"value=3"), ("PUT", "/v2/keys/a?prevExist=false", b"value=3"),
    ("PUT", "/v2/keys/a?ttl=abc", b"value=3"),  # bad request: not counted
    ("GET", "/v2/keys/a?wait=true&waitIndex=abc", None),  # bad request: not counted
    ("GET", "/v2/keys/a?wait=true&waitIndex=1", None),  # found in history: not counted
    ("DELETE", "/v2/keys/a", None), ("PUT", "/v2/keys/d?dir=true", None),
    ("PUT", "/v2/keys/d", b"value=1"), ("GET", "/v2/keys/d/x", None),
]


def http_samples(url):
    """{name{labels}: value} of etcd_http_received_total and failed_total, and the count of
    etcd_http_successful_duration_seconds by method."""
    _, _, body = harness.request("GET", url)
    out = {}
    for line in body.decode().splitlines():
        if line.startswith(("etcd_http_received_total", "etcd_http_failed_total",
                            "etcd_http_successful_duration_seconds_count")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def start(kind, workdir, name, metrics_urls, extra=()):
    m = harness.Member(kind, name=name, workdir=workdir,
                       extra_args=["--listen-metrics-urls", ",".join(metrics_urls), *extra])
    m.start()
    return m


def refused_start(workdir, name, metrics_url):
    """Runs a kvd that should refuse to start with this metrics URL (bounded)."""
    return subprocess.run([harness.KVD_BIN, "--data-dir", os.path.join(workdir, name),
                           "--listen-client-urls", f"http://127.0.0.1:{harness.free_port()}",
                           "--advertise-client-urls", "http://127.0.0.1:2379",
                           "--listen-peer-urls", f"http://127.0.0.1:{harness.free_port()}",
                           "--listen-metrics-urls", metrics_url],
                          capture_output=True, text=True, timeout=30)


def summary(method, url, ssl_context=None):
    status, hdrs, body = harness.request(method, url, ssl_context=ssl_context)
    ctype = hdrs.get("content-type", "")
    # The exposition's content differs between the servers; its presence does not.
    shown = body.decode(errors="replace") if status != 200 or "/health" in url else \
        ("exposition" if body.startswith(b"# HELP ") else body[:40])
    return status, ctype, shown, "access-control-allow-origin" in hdrs


def main():
    R = harness.Results()
    workdir = harness.new_workdir("metrics-listener")
    procs = []
    try:
        kinds = ["kvd"] + (["etcd"] if harness.have_etcd() else [])
        if len(kinds) == 1:
            print("note: etcd is not installed; kvd checked alone")
        ports = {k: (harness.free_port(), harness.free_port()) for k in kinds}
        servers = {}
        for k in kinds:
            urls = [f"http://127.0.0.1:{p}" for p in ports[k]]
            servers[k] = start(k, workdir, f"m-{k}", urls)
            procs.append(servers[k])
        for k in kinds:
            for method, path, body in KEYS_REQUESTS:
                harness.request(method, servers[k].url + path, body=body, headers=FORM)
        got = {k: http_samples(f"http://127.0.0.1:{ports[k][0]}/metrics") for k in kinds}
        R.check(got["kvd"] and len({repr(v) for v in got.values()}) == 1,
                f"etcd_http_* after the same requests: {got}")
        for method, path in PROBES:
            got = {k: summary(method, f"http://127.0.0.1:{ports[k][0]}{path}") for k in kinds}
            R.check(len(set(got.values())) == 1,
                    f"{method} {path} on the metrics listener: {got}")
        kvd_metrics = [f"http://127.0.0.1:{p}" for p in ports["kvd"]]
        for u in kvd_metrics:
            status, _, body = harness.request("GET", u + "/metrics")
            R.check(status == 200 and b"\netcd_server_has_leader 1\n" in body,
                    f"{u}/metrics has etcd_server_has_leader 1 ({status})")
        status, hdrs, _ = harness.request("GET", servers["kvd"].url + "/metrics")
        R.check(status == 200 and "access-control-allow-origin" in hdrs,
                "the client port still serves /metrics with CORS headers")

        # https metrics URL: the client certificate serves it.
        pki = tls_certs.Pki(workdir)
        cert, key = pki.issue("server")
        ctx = ssl.create_default_context(cafile=pki.ca)
        https_port = harness.free_port()
        tls_member = start("kvd", workdir, "tls", [f"https://127.0.0.1:{https_port}"],
                           ["--cert-file", cert, "--key-file", key])
        procs.append(tls_member)
        status, _, body = harness.request("GET", f"https://127.0.0.1:{https_port}/metrics",
                                          ssl_context=ctx)
        R.check(status == 200 and b"etcd_server_is_leader" in body,
                f"https metrics URL serves /metrics with the client certificate ({status})")
        bad = refused_start(workdir, "nocert", f"https://127.0.0.1:{harness.free_port()}")
        R.check(bad.returncode != 0 and "--cert-file" in bad.stderr,
                f"https metrics URL without a certificate: refused ({bad.returncode}, "
                f"{bad.stderr.strip().splitlines()[-1:]})")

        # A metrics port in use.
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            busy = held.getsockname()[1]
            p = refused_start(workdir, "busy", f"http://127.0.0.1:{busy}")
        R.check(p.returncode != 0 and "cannot listen for metrics" in p.stderr,
                f"a metrics port in use: exit {p.returncode}, "
                f"{p.stderr.strip().splitlines()[-1:]}")

        # The proxy.
        m = servers["kvd"]
        proxy_metrics = harness.free_port()
        proxy = harness.Proxy("kvd", f"{m.name}={m.peer_url}", workdir, extra_args=[
            "--listen-metrics-urls", f"http://127.0.0.1:{proxy_metrics}"])
        procs.append(proxy)
        proxy.start()
        harness.put(proxy, "/through-proxy", "v")
        status, _, body = harness.request("GET", f"http://127.0.0.1:{proxy_metrics}/metrics")
        R.check(status == 200 and b'etcd_proxy_requests_total{method="PUT"} 1' in body,
                f"the proxy's metrics listener serves its etcd_proxy_* series ({status})")
        status, _, body = harness.request("GET", f"http://127.0.0.1:{proxy_metrics}/health")
        R.check(status == 200 and b'"health":"true"' in body,
                f"the proxy's metrics listener forwards /health ({status} {body[:40]})")
        status, _, _ = harness.request("GET", f"http://127.0.0.1:{proxy_metrics}/v2/keys/")
        R.check(status == 404, f"the proxy's metrics listener serves no keys ({status})")
    finally:
        for p in procs:
            p.kill()
        harness.remove_workdir(workdir, R)
    R.finish()


if __name__ == "__main__":
    main()
