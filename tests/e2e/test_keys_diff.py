#!/usr/bin/python3
"""Differential test of the v2 keys, cluster and stats API: every request goes to a real etcd
(--enable-v2) and to the server under test, and the answers are compared after index
normalization (see difflib_v2.py). One check per request unless said otherwise.

Run: KVD_BIN=build/kvd /usr/bin/python3 tests/e2e/test_keys_diff.py
     KVD_UNDER_TEST=etcd /usr/bin/python3 tests/e2e/test_keys_diff.py   (proves the suite)
"""
import http.client
import json
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import difflib_v2 as dl  # noqa: E402
import harness  # noqa: E402

R = harness.Results()


def section(name):
    print(f"-- {name}", flush=True)


def paths_and_methods(p):
    section("paths and methods")
    c = p.compare
    c(R, "root", "GET", "/v2/keys")
    c(R, "root slash", "GET", "/v2/keys/")
    c(R, "keysfoo 404", "GET", "/v2/keysfoo")
    c(R, "slash root 404", "GET", "/")
    c(R, "/v2 404", "GET", "/v2")
    c(R, "/v2/leader 404", "GET", "/v2/leader")
    c(R, "double slash 301", "GET", "/v2/keys//foo")
    c(R, "dot-dot 301", "GET", "/v2/keys/../foo")
    c(R, "dot 301", "GET", "/v2/keys/./foo")
    c(R, "%2E%2E 301", "GET", "/v2/keys/%2E%2E/0/members")
    c(R, "PUT double slash 301", "PUT", "/v2/keys//foo", "value=x")
    c(R, "DELETE dot-dot 301", "DELETE", "/v2/keys/a/../b")
    c(R, "PATCH 405", "PATCH", "/v2/keys/foo", "value=x")
    c(R, "PROPFIND 405", "PROPFIND", "/v2/keys/foo")
    c(R, "OPTIONS keys", "OPTIONS", "/v2/keys/foo")
    c(R, "OPTIONS unknown path", "OPTIONS", "/nothing/here")
    c(R, "trailing slash PUT", "PUT", "/v2/keys/tr/", "value=t")
    c(R, "trailing slash GET", "GET", "/v2/keys/tr/")
    c(R, "%2F in key", "PUT", "/v2/keys/a%2Fb", "value=slash")
    c(R, "%2F key read back", "GET", "/v2/keys/a/b")
    c(R, "%20 in key", "PUT", "/v2/keys/sp%20ace", "value=s")
    c(R, "%25 in key", "PUT", "/v2/keys/pc%25t", "value=p")
    c(R, "utf-8 key", "PUT", "/v2/keys/%C3%A9t%C3%A9", "value=e")
    c(R, "utf-8 key read", "GET", "/v2/keys/%C3%A9t%C3%A9")
    c(R, "dot semicolon colon names", "PUT", "/v2/keys/a.b;c:d", "value=x")
    c(R, "read dot semicolon colon", "GET", "/v2/keys/a.b;c:d")
    c(R, "HEAD file", "HEAD", "/v2/keys/tr")
    c(R, "HEAD missing", "HEAD", "/v2/keys/nope")
    c(R, "GET missing", "GET", "/v2/keys/nope")
    c(R, "GET missing deep cause", "GET", "/v2/keys/zz1/zz2/zz3")
    c(R, "GET below a file", "GET", "/v2/keys/tr/sub")
    c(R, "PUT below a file", "PUT", "/v2/keys/tr/sub", "value=x")


def parameters(p):
    section("parameters")
    c = p.compare
    c(R, "bad escape query", "PUT", "/v2/keys/pe?value=%zz")
    c(R, "bad escape body", "PUT", "/v2/keys/pe", "value=%zz")
    for v in ["abc", "-1", "+5", "1.5", "18446744073709551616", "0x10", " 5"]:
        c(R, f"ttl={v!r}", "PUT", "/v2/keys/pt", "value=x&ttl=" + v.replace(" ", "%20").replace("+", "%2B"))
    c(R, "ttl empty = no ttl", "PUT", "/v2/keys/pt", "value=x&ttl=")
    c(R, "ttl 0500 (leading zero)", "PUT", "/v2/keys/pt", "value=x&ttl=0500")
    c(R, "prevExist yes", "PUT", "/v2/keys/pt?prevExist=yes", "value=x")
    c(R, "prevExist empty", "PUT", "/v2/keys/pt?prevExist=", "value=x")
    c(R, "prevValue empty", "PUT", "/v2/keys/pt?prevValue=", "value=x")
    c(R, "prevIndex -1", "PUT", "/v2/keys/pt?prevIndex=-1", "value=x")
    c(R, "prevIndex abc", "DELETE", "/v2/keys/pt?prevIndex=abc")
    c(R, "refresh bad", "PUT", "/v2/keys/pt?refresh=maybe&ttl=5")
    for name in ["recursive", "sorted", "wait", "dir", "quorum", "stream"]:
        c(R, f"{name}=yes", "GET", f"/v2/keys/pt?{name}=yes")
    c(R, "bare recursive", "GET", "/v2/keys/pt?recursive")
    c(R, "empty recursive", "GET", "/v2/keys/pt?recursive=")
    c(R, "waitIndex bad", "GET", "/v2/keys/pt?wait=true&waitIndex=x")
    c(R, "noValueOnSuccess bad", "PUT", "/v2/keys/pt?noValueOnSuccess=2", "value=x")
    for m in ["PUT", "POST", "DELETE", "HEAD"]:
        c(R, f"wait with {m}", m, "/v2/keys/pt?wait=true", "value=x" if m in ("PUT", "POST") else None)
    for v in ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"]:
        c(R, f"bool {v}", "GET", f"/v2/keys/tr?recursive={v}")
    # Validation order (first failure wins).
    c(R, "order 210 before 203", "PUT", "/v2/keys/pt?prevIndex=x&value=%zz")
    c(R, "order prevIndex before waitIndex", "GET", "/v2/keys/pt?prevIndex=x&waitIndex=y")
    c(R, "order waitIndex before recursive", "GET", "/v2/keys/pt?waitIndex=y&recursive=x")
    c(R, "order recursive before sorted", "GET", "/v2/keys/pt?sorted=x&recursive=x")
    c(R, "order dir before quorum", "GET", "/v2/keys/pt?quorum=x&dir=x")
    c(R, "order stream vs wait-on-PUT", "PUT", "/v2/keys/pt?stream=x&wait=true")
    c(R, "order wait-on-PUT before prevValue", "PUT", "/v2/keys/pt?wait=true&prevValue=")
    c(R, "order prevValue before noValueOnSuccess", "PUT", "/v2/keys/pt?prevValue=&noValueOnSuccess=x")
    c(R, "order noValueOnSuccess before ttl", "PUT", "/v2/keys/pt?noValueOnSuccess=x&ttl=x")
    c(R, "order ttl before prevExist", "PUT", "/v2/keys/pt?ttl=x&prevExist=x")
    c(R, "order prevExist before refresh", "PUT", "/v2/keys/pt?prevExist=x&refresh=x")
    c(R, "order refresh value before ttl", "PUT", "/v2/keys/pt?refresh=true&value=v")
    c(R, "refresh without ttl", "PUT", "/v2/keys/pt?refresh=true")
    c(R, "body wins over query", "PUT", "/v2/keys/bq?value=q", "value=b")
    c(R, "first of repeated", "PUT", "/v2/keys/bq", "value=a&value=b")
    c(R, "json content type ignored", "PUT", "/v2/keys/bq", '{"value":"x"}',
      {"Content-Type": "application/json"})
    c(R, "text/plain body ignored", "PUT", "/v2/keys/bq", "value=tp", {"Content-Type": "text/plain"})
    c(R, "read after ignored body", "GET", "/v2/keys/bq")
    c(R, "unknown params ignored", "PUT", "/v2/keys/bq?frob=1&x=%41", "value=u&zzz=1")
    c(R, "DELETE body never read", "DELETE", "/v2/keys/bq", "prevValue=nomatch")
    c(R, "query ttl applied", "PUT", "/v2/keys/qt?ttl=100&value=v")
    c(R, "form in POST body", "POST", "/v2/keys/fq", "value=posted")


def put_table(p):
    section("PUT decision table")
    c = p.compare
    c(R, "set new 201", "PUT", "/v2/keys/s1", "value=one")
    c(R, "set existing 200", "PUT", "/v2/keys/s1", "value=two")
    c(R, "set missing value", "PUT", "/v2/keys/s2")
    c(R, "set intermediate dirs", "PUT", "/v2/keys/d1/d2/f", "value=deep")
    c(R, "get intermediate dir", "GET", "/v2/keys/d1?recursive=true&sorted=true")
    c(R, "set on dir 102", "PUT", "/v2/keys/d1", "value=x")
    c(R, "update missing 100", "PUT", "/v2/keys/u0?prevExist=true", "value=x")
    c(R, "update file", "PUT", "/v2/keys/s1?prevExist=true", "value=three")
    c(R, "update file no value", "PUT", "/v2/keys/s1?prevExist=true")
    c(R, "update dir with value 102", "PUT", "/v2/keys/d1?prevExist=true", "value=x")
    c(R, "update dir ttl", "PUT", "/v2/keys/d1?prevExist=true&dir=true&ttl=100")
    c(R, "dir keeps old modifiedIndex", "GET", "/v2/keys/d1")
    c(R, "update dir no ttl", "PUT", "/v2/keys/d1?prevExist=true&dir=true")
    c(R, "create new", "PUT", "/v2/keys/c1?prevExist=false", "value=one")
    c(R, "create existing 105", "PUT", "/v2/keys/c1?prevExist=false", "value=two")
    c(R, "create ignores prevValue", "PUT", "/v2/keys/c2?prevExist=false&prevValue=zz", "value=v")
    c(R, "create dir", "PUT", "/v2/keys/c3?prevExist=false&dir=true")
    c(R, "create in deep path", "PUT", "/v2/keys/c4/x/y?prevExist=false", "value=v")
    c(R, "create below file 104", "PUT", "/v2/keys/c1/x?prevExist=false", "value=v")
    c(R, "update+prevValue cas ok", "PUT", "/v2/keys/c1?prevExist=true&prevValue=one", "value=two")
    c(R, "update+prevValue cas fail", "PUT", "/v2/keys/c1?prevExist=true&prevValue=one", "value=x")
    c(R, "cas missing 100", "PUT", "/v2/keys/nocas?prevValue=a", "value=b")
    c(R, "cas on dir 102", "PUT", "/v2/keys/d1?prevValue=a", "value=b")
    c(R, "cas value mismatch", "PUT", "/v2/keys/c1?prevValue=nope", "value=four")
    a, _ = p.send("GET", "/v2/keys/c1")
    mi = json.loads(a.body)["node"]["modifiedIndex"] - p.ref.start_index
    c(R, "cas index mismatch", "PUT", f"/v2/keys/c1?prevIndex={{i:{mi + 100}}}", "value=x")
    c(R, "cas both mismatch", "PUT", f"/v2/keys/c1?prevIndex={{i:{mi + 100}}}&prevValue=x", "value=x")
    c(R, "cas value ok index bad", "PUT", f"/v2/keys/c1?prevIndex={{i:{mi + 100}}}&prevValue=two", "value=x")
    c(R, "cas index ok", "PUT", f"/v2/keys/c1?prevIndex={{i:{mi}}}", "value=five")
    c(R, "cas both ok", "PUT", f"/v2/keys/c1?prevIndex={{i:{mi + 1}}}&prevValue=five", "value=six")
    c(R, "prevIndex=0 means set", "PUT", "/v2/keys/c1?prevIndex=0", "value=seven")
    c(R, "cas with ttl", "PUT", "/v2/keys/c1?prevValue=seven&ttl=100", "value=eight")
    c(R, "set drops ttl", "PUT", "/v2/keys/c1", "value=nine")
    c(R, "dir new", "PUT", "/v2/keys/nd?dir=true")
    c(R, "dir on dir 102", "PUT", "/v2/keys/nd?dir=true")
    c(R, "dir replaces file", "PUT", "/v2/keys/s2?dir=true")
    c(R, "dir with value drops value", "PUT", "/v2/keys/dv?dir=true", "value=dropped")
    c(R, "dir+prevExist on file = update", "PUT", "/v2/keys/c2?dir=true&prevExist=true")
    c(R, "read updated file", "GET", "/v2/keys/c2")
    c(R, "root PUT 107", "PUT", "/v2/keys/", "value=x")
    c(R, "root PUT dir 107", "PUT", "/v2/keys?dir=true")
    c(R, "root DELETE 107", "DELETE", "/v2/keys/")
    c(R, "root DELETE recursive 107", "DELETE", "/v2/keys?recursive=true")
    c(R, "set with ttl", "PUT", "/v2/keys/t1?ttl=100", "value=t")
    c(R, "get with ttl", "GET", "/v2/keys/t1")
    a, _ = c(R, "set ttl=0", "PUT", "/v2/keys/t0?ttl=0", "value=z")
    # Expiry takes an index at a time the server chooses: await it on both before going on.
    p.watch(R, "ttl=0 expires at next sync", f"/v2/keys/t0?wait=true&waitIndex={{i:{p.ref.rel(a) + 1}}}",
            None, timeout=5.0)


def refresh_and_novalue(p):
    section("refresh and noValueOnSuccess")
    c = p.compare
    c(R, "refresh plain", "PUT", "/v2/keys/t1?refresh=true&ttl=600")
    c(R, "refresh value= allowed", "PUT", "/v2/keys/t1?refresh=true&ttl=500&value=")
    c(R, "refresh prevExist", "PUT", "/v2/keys/t1?refresh=true&ttl=400&prevExist=true")
    c(R, "refresh prevValue", "PUT", "/v2/keys/t1?refresh=true&ttl=300&prevValue=t")
    c(R, "refresh prevValue fail", "PUT", "/v2/keys/t1?refresh=true&ttl=300&prevValue=no")
    c(R, "refresh missing", "PUT", "/v2/keys/rnone?refresh=true&ttl=300")
    c(R, "refresh dir 102", "PUT", "/v2/keys/nd?refresh=true&ttl=300")
    c(R, "refresh dir prevExist", "PUT", "/v2/keys/nd?refresh=true&ttl=300&prevExist=true")
    c(R, "refresh permanent key", "PUT", "/v2/keys/s1?refresh=true&ttl=300")
    c(R, "value kept after refresh", "GET", "/v2/keys/t1")
    c(R, "POST ignores refresh", "POST", "/v2/keys/rq?refresh=true", "value=v")
    c(R, "nvos set", "PUT", "/v2/keys/nv?noValueOnSuccess=true", "value=1")
    c(R, "nvos set existing", "PUT", "/v2/keys/nv?noValueOnSuccess=true", "value=2")
    c(R, "nvos create", "PUT", "/v2/keys/nv2?noValueOnSuccess=true&prevExist=false", "value=1")
    c(R, "nvos update", "PUT", "/v2/keys/nv2?noValueOnSuccess=true&prevExist=true", "value=2")
    c(R, "nvos cas", "PUT", "/v2/keys/nv2?noValueOnSuccess=true&prevValue=2", "value=3")
    c(R, "nvos error", "PUT", "/v2/keys/nv2?noValueOnSuccess=true&prevValue=9", "value=3")
    c(R, "nvos POST", "POST", "/v2/keys/nvq?noValueOnSuccess=true", "value=3")
    c(R, "nvos delete ignored", "DELETE", "/v2/keys/nv2?noValueOnSuccess=true")
    c(R, "nvos GET ignored", "GET", "/v2/keys/nv?noValueOnSuccess=true")


def post_and_delete(p):
    section("POST and DELETE")
    c = p.compare
    c(R, "POST first", "POST", "/v2/keys/q", "value=a")
    c(R, "POST second", "POST", "/v2/keys/q", "value=b")
    c(R, "POST no value", "POST", "/v2/keys/q")
    c(R, "POST dir", "POST", "/v2/keys/q?dir=true")
    c(R, "POST ttl", "POST", "/v2/keys/q", "value=t&ttl=100")
    c(R, "POST ignores prevExist", "POST", "/v2/keys/q?prevExist=true&prevValue=zz&prevIndex=1", "value=i")
    c(R, "POST to file 104", "POST", "/v2/keys/s1", "value=x")
    c(R, "POST root", "POST", "/v2/keys/", "value=r")
    c(R, "POST new parents", "POST", "/v2/keys/brand/new/q", "value=n")
    c(R, "list queue sorted", "GET", "/v2/keys/q?sorted=true")
    c(R, "list queue recursive sorted", "GET", "/v2/keys/q?sorted=true&recursive=true")
    c(R, "PUT del dir", "PUT", "/v2/keys/dd/f1", "value=1")
    c(R, "PUT del dir 2", "PUT", "/v2/keys/dd/f2", "value=2")
    c(R, "delete file", "DELETE", "/v2/keys/dd/f1")
    c(R, "delete file with dir=true", "DELETE", "/v2/keys/dd/f2?dir=true&recursive=false")
    c(R, "PUT f3", "PUT", "/v2/keys/dd/sub/f3", "value=3")
    c(R, "delete dir plain 102", "DELETE", "/v2/keys/dd")
    c(R, "delete dir non-empty 108", "DELETE", "/v2/keys/dd?dir=true")
    c(R, "delete empty dir", "DELETE", "/v2/keys/nd?dir=true")
    c(R, "delete recursive", "DELETE", "/v2/keys/dd?recursive=true")
    c(R, "delete missing 100", "DELETE", "/v2/keys/dd")
    c(R, "delete missing deep 100", "DELETE", "/v2/keys/zz/yy")
    c(R, "PUT cad", "PUT", "/v2/keys/cd", "value=1")
    c(R, "cad value mismatch", "DELETE", "/v2/keys/cd?prevValue=2")
    c(R, "cad value ok", "DELETE", "/v2/keys/cd?prevValue=1")
    c(R, "PUT cad2", "PUT", "/v2/keys/cd", "value=1")
    a, _ = p.send("GET", "/v2/keys/cd")
    mi = json.loads(a.body)["node"]["modifiedIndex"] - p.ref.start_index
    c(R, "cad index mismatch", "DELETE", f"/v2/keys/cd?prevIndex={{i:{mi + 7}}}")
    c(R, "cad both mismatch", "DELETE", f"/v2/keys/cd?prevIndex={{i:{mi + 7}}}&prevValue=x")
    c(R, "cad index ok", "DELETE", f"/v2/keys/cd?prevIndex={{i:{mi}}}")
    c(R, "cad missing 100", "DELETE", "/v2/keys/cd?prevValue=1")
    c(R, "cad on dir 102", "DELETE", "/v2/keys/q?prevValue=1&recursive=true")
    c(R, "delete ttl/prevExist parsed", "DELETE", "/v2/keys/s1?ttl=abc")
    c(R, "delete prevExist bad", "DELETE", "/v2/keys/s1?prevExist=zz")


def hidden_and_listing(p):
    section("hidden keys and listings")
    c = p.compare
    for k in ["h/vis", "h/_hidden", "h/_hdir/x", "h/sub/_y", "h/sub/z"]:
        c(R, f"PUT {k}", "PUT", f"/v2/keys/{k}", "value=" + k.replace("/", "-"))
    c(R, "list h sorted", "GET", "/v2/keys/h?sorted=true")
    c(R, "list h recursive sorted", "GET", "/v2/keys/h?sorted=true&recursive=true")
    c(R, "read hidden", "GET", "/v2/keys/h/_hidden")
    c(R, "list hidden dir", "GET", "/v2/keys/h/_hdir")
    c(R, "delete hidden", "DELETE", "/v2/keys/h/_hidden")
    for k in ["srt/b", "srt/B", "srt/a10", "srt/a2", "srt/A/x", "srt/%C3%A9", "srt/~", "srt/0"]:
        c(R, f"PUT {k}", "PUT", f"/v2/keys/{k}", "value=v")
    c(R, "sorted byte order", "GET", "/v2/keys/srt?sorted=true")
    c(R, "sorted recursive", "GET", "/v2/keys/srt?sorted=true&recursive=true")
    c(R, "unsorted listing (order-insensitive)", "GET", "/v2/keys/srt?recursive=true", unordered=True)
    c(R, "recursive on a file ignored", "GET", "/v2/keys/srt/b?recursive=true")
    c(R, "whole tree", "GET", "/v2/keys/?recursive=true&sorted=true")
    c(R, "quorum read", "GET", "/v2/keys/srt?quorum=true&sorted=true")
    c(R, "quorum+wait is a get", "GET", "/v2/keys/srt/b?quorum=true&wait=true")


def escaping(p):
    section("values and JSON escaping")
    c = p.compare
    vals = {
        "html": "%3Ca%3E%26b", "ls": "%E2%80%A8%E2%80%A9", "ctl": "%01%09%0A%22%5C%7F",
        "nonascii": "%C3%A9%E4%B8%AD%F0%9F%98%80", "badutf8": "%FF%FEab%C3", "plus": "a+b%2Bc",
        "nul": "a%00b", "emptyish": "%20",
    }
    for name, v in vals.items():
        c(R, f"value {name}", "PUT", f"/v2/keys/esc/{name}", "value=" + v)
        c(R, f"read {name}", "GET", f"/v2/keys/esc/{name}")
    c(R, "key with <>&", "PUT", "/v2/keys/esc/%3Ck%3E%26", "value=k")
    c(R, "big value chunked", "PUT", "/v2/keys/esc/big", "value=" + "x" * 20000)
    c(R, "read big value", "GET", "/v2/keys/esc/big")
    c(R, "medium value", "PUT", "/v2/keys/esc/mid", "value=" + "y" * 3000)
    c(R, "read medium value", "GET", "/v2/keys/esc/mid")
    response_framing(p)


def framing_at(p, path, body_len, method="GET"):
    """Sizes the value at path so that a GET answers exactly body_len bytes on each server, then
    returns [(status, content-length, transfer-encoding)] of `method` on it for etcd and the
    server under test. Both servers see the same requests, so their indexes stay in step; bounded
    retries, because the body holds the modifiedIndex, whose digit count can grow meanwhile."""
    servers = (p.ref, p.sut)
    for _ in range(3):
        lens = []
        for s in servers:
            s.request("PUT", path, "value=" + "z" * 1000)
            base = len(s.request("GET", path).body)
            s.request("PUT", path, "value=" + "z" * (1000 + body_len - base))
            lens.append(len(s.request("GET", path).body))
        if lens == [body_len, body_len]:
            out = []
            for s in servers:
                r = s.request(method, path)
                out.append((r.status, r.header("content-length"), r.header("transfer-encoding")))
            return out
    return [None, None]


def response_framing(p):
    """Go's ResponseWriter buffers 2048 bytes: a body up to that size gets a Content-Length,
    a larger one is chunked (a HEAD answer then has neither header). Compared at the edge."""
    seen = {}
    for size, method in ((2047, "GET"), (2048, "GET"), (2049, "GET"), (2049, "HEAD"),
                         (4096, "GET")):
        got = framing_at(p, "/v2/keys/esc/edge", size, method)
        seen[(size, method)] = got[0]
        R.check(got[0] is not None and got[0] == got[1],
                f"{method} of a {size}-byte body: etcd (status, length, encoding) {got[0]}, "
                f"got {got[1]}")
    R.check(seen[(2048, "GET")] == (200, "2048", None)
            and seen[(2049, "GET")] == (200, None, "chunked"),
            f"etcd's framing at 2048/2049 bytes is {seen[(2048, 'GET')]}/{seen[(2049, 'GET')]}, "
            "not Content-Length/chunked: update the server and this test")


def watch_headers(server, path, timeout=5.0):
    """Opens a watch and returns the raw status line + headers once they arrive (the body is
    pending), then closes the connection."""
    host, port = "127.0.0.1", server.member.client_port
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {server.subst(path)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf


def watches(p):
    section("watches")
    c = p.compare
    cur = lambda: p.ref.rel(p.send("GET", "/v2/keys/")[0])  # noqa: E731

    p.watch(R, "wait then set", "/v2/keys/w1?wait=true",
            lambda: p.send("PUT", "/v2/keys/w1", "value=hello"))
    base = cur()
    c(R, "history hit", "GET", f"/v2/keys/w1?wait=true&waitIndex={{i:{base}}}")
    c(R, "history hit older index", "GET", f"/v2/keys/w1?wait=true&waitIndex={{i:{base - 5}}}")
    p.watch(R, "waitIndex in future", f"/v2/keys/w1?wait=true&waitIndex={{i:{base + 2}}}",
            lambda: (p.send("PUT", "/v2/keys/w1", "value=a"), p.send("PUT", "/v2/keys/w1", "value=b")))
    p.watch(R, "recursive watch child", "/v2/keys/wd?wait=true&recursive=true",
            lambda: p.send("PUT", "/v2/keys/wd/a/b", "value=x"))
    p.watch(R, "non-recursive dir watch skips children", "/v2/keys/wd?wait=true",
            lambda: (p.send("PUT", "/v2/keys/wd/c", "value=y"),
                     p.send("PUT", "/v2/keys/wd?dir=true&prevExist=true&ttl=500")))
    p.watch(R, "ancestor delete", "/v2/keys/wd/a/b?wait=true",
            lambda: p.send("DELETE", "/v2/keys/wd?recursive=true"))
    base = cur()
    c(R, "history prefix quirk", "GET", f"/v2/keys/wdx?wait=true&waitIndex={{i:{base}}}")
    c(R, "PUT hw dir", "PUT", "/v2/keys/hw?dir=true")
    p.watch(R, "recursive skips hidden", "/v2/keys/hw?wait=true&recursive=true",
            lambda: (p.send("PUT", "/v2/keys/hw/_secret", "value=s"),
                     p.send("PUT", "/v2/keys/hw/vis", "value=v")))
    c(R, "history recursive returns hidden", "GET",
      f"/v2/keys/hw?wait=true&recursive=true&waitIndex={{i:{base + 2}}}")
    p.watch(R, "watch hidden directly", "/v2/keys/hw/_secret?wait=true",
            lambda: p.send("PUT", "/v2/keys/hw/_secret", "value=s2"))
    p.watch(R, "watch rooted at hidden dir", "/v2/keys/hw/_hd?wait=true&recursive=true",
            lambda: p.send("PUT", "/v2/keys/hw/_hd/x", "value=s3"))
    p.watch(R, "watch key that does not exist", "/v2/keys/nx/y?wait=true",
            lambda: p.send("PUT", "/v2/keys/nx/y", "value=born"))
    p.watch(R, "watch delete", "/v2/keys/nx/y?wait=true", lambda: p.send("DELETE", "/v2/keys/nx/y"))
    p.watch(R, "watch POST", "/v2/keys/wq?wait=true&recursive=true",
            lambda: p.send("POST", "/v2/keys/wq", "value=job"))
    base = cur()
    p.watch(R, "refresh does not notify", "/v2/keys/t1?wait=true",
            lambda: (p.send("PUT", "/v2/keys/t1?refresh=true&ttl=100"),
                     p.send("PUT", "/v2/keys/t1", "value=after-refresh")))
    c(R, "history skips refresh", "GET", f"/v2/keys/t1?wait=true&waitIndex={{i:{base + 1}}}")
    p.watch(R, "watch CAS", "/v2/keys/t1?wait=true",
            lambda: p.send("PUT", "/v2/keys/t1?prevValue=after-refresh", "value=cas"))
    p.watch(R, "watch root recursive", "/v2/keys/?wait=true&recursive=true",
            lambda: p.send("PUT", "/v2/keys/rootw", "value=r"))
    stream_watch(p)
    raw_watches(p)
    # Headers are flushed before any event, also for a key below a file.
    for what, path in [("headers flushed", "/v2/keys/never?wait=true"),
                       ("watch below a file", "/v2/keys/tr/below?wait=true")]:
        a = watch_headers(p.ref, path)
        b = watch_headers(p.sut, path)
        ha = _hdr_view(a, p.ref.start_index)
        hb = _hdr_view(b, p.sut.start_index)
        R.check(ha == hb, f"{what}: etcd {ha} got {hb}")


def stream_watch(p):
    """stream=true keeps the response open and writes one JSON line per matching event."""
    servers = (p.ref, p.sut)
    base = [s.watchers() for s in servers]
    conns, resps = [], []
    try:
        for s in servers:
            c = http.client.HTTPConnection("127.0.0.1", s.member.client_port, timeout=8)
            c.request("GET", "/v2/keys/st?wait=true&stream=true&recursive=true")
            conns.append(c)
            resps.append(c.getresponse())
        counted = p.wait_watchers(servers, base)
        R.check(all(counted), f"stream watch: watcher counted {counted}")
        for v in ("1", "2", "3"):
            p.send("PUT", f"/v2/keys/st/k{v}", f"value={v}")
        lines = []
        for r, s in zip(resps, servers):
            got = []
            for _ in range(3):
                try:
                    got.append(dl.normalize_body(r.readline(), s.start_index)[0])
                except OSError as e:
                    got.append(f"<{e!r}>")
            lines.append((r.status, r.getheader("Transfer-Encoding"), got))
        R.check(all('"action":"set"' in x for x in lines[0][2]), f"stream watch on etcd: {lines[0]!r}")
        R.check(lines[0] == lines[1], f"stream watch events: etcd {lines[0]!r}\n  got {lines[1]!r}")
    finally:
        for c in conns:
            c.close()


def _read_until(sock, done, timeout=8.0):
    """Reads from sock until done(bytes so far) or EOF, within timeout; returns the bytes."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not done(buf) and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def _dechunk(body):
    """The data of a chunked body (as far as it goes), or None if it is not well framed."""
    out, at = b"", 0
    while True:
        eol = body.find(b"\r\n", at)
        if eol < 0:
            return out
        try:
            size = int(body[at:eol], 16)
        except ValueError:
            return None
        if size == 0:
            return out
        if body[eol + 2 + size:eol + 4 + size] != b"\r\n":
            return None
        out += body[eol + 2:eol + 2 + size]
        at = eol + 4 + size


def raw_watches(p):
    """A long poll and a stream, over HTTP/1.0 (no chunks: the body runs until the close) and
    HTTP/1.1 (chunked), read from the socket as sent: status, headers, framing and the event."""
    servers = (p.ref, p.sut)
    for version in ("HTTP/1.0", "HTTP/1.1"):
        for stream in (False, True):
            what = f"{version} {'stream' if stream else 'long poll'}"
            path = "/v2/keys/rw?wait=true" + ("&stream=true" if stream else "")
            # No watch of the checks before is left (their clients closed): the count to pass
            # is then 0, which a watcher still being removed cannot hide.
            gone = [bool(harness.wait_for(lambda: s.watchers() == 0, 5.0, interval=0.01))
                    for s in servers]
            R.check(all(gone), f"{what}: watchers left over from closed connections: "
                    f"{[s.watchers() for s in servers]}")
            base = [0, 0]
            socks = [socket.create_connection(("127.0.0.1", s.member.client_port), timeout=8)
                     for s in servers]
            try:
                for k in socks:
                    k.sendall(f"GET {path} {version}\r\nHost: 127.0.0.1\r\n\r\n".encode())
                heads = [_read_until(k, lambda b: b"\r\n\r\n" in b) for k in socks]
                counted = p.wait_watchers(servers, base)
                R.check(all(counted), f"{what}: watcher counted {counted}")
                p.send("PUT", "/v2/keys/rw", "value=" + what.replace(" ", "-"))
                views = []
                for k, head, s in zip(socks, heads, servers):
                    chunked = version == "HTTP/1.1"
                    if stream:  # the event's line is in (the stream stays open)
                        done = lambda b: b"\n" in ((_dechunk(b.split(b"\r\n\r\n", 1)[-1]) or b"")
                                                   if chunked else b.split(b"\r\n\r\n", 1)[-1])
                    elif chunked:  # the last chunk
                        done = lambda b: b.endswith(b"0\r\n\r\n")
                    else:  # HTTP/1.0: until the server closes
                        done = lambda b: False
                    raw = _read_until(k, done, timeout=3.0 if not chunked and not stream else 8.0)
                    raw = head + raw
                    hdr, _, body = raw.partition(b"\r\n\r\n")
                    data = _dechunk(body) if chunked else body
                    views.append((_hdr_view(raw, s.start_index),
                                  None if data is None else dl.normalize_body(data, s.start_index)[0],
                                  body.endswith(b"0\r\n\r\n") if chunked else None))
                R.check('"action":"set"' in (views[0][1] or ""), f"{what} on etcd: {views[0]!r}")
                R.check(views[0] == views[1], f"{what}: etcd {views[0]!r}\n  got {views[1]!r}")
            finally:
                for k in socks:
                    k.close()


def _hdr_view(raw, start):
    head = raw.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    out = {"status": head[0][:12] if head else ""}
    for line in head[1:]:
        k, _, v = line.partition(":")
        k, v = k.strip().lower(), v.strip()
        if k == "x-etcd-index":
            out[k] = dl._norm_index(v, start) if v.isdigit() else v
        elif k in ("x-etcd-cluster-id", "x-raft-index", "x-raft-term", "date"):
            out[k] = "<present>"
        else:
            out[k] = v
    out.pop("date", None)
    return out


def ttl_expiry(p):
    section("TTL expiry")
    c = p.compare
    a, _ = c(R, "set ttl=1", "PUT", "/v2/keys/ex/k?ttl=1", "value=gone")
    idx = p.ref.rel(a)
    # Wait on the expire event; both answers come from the watch (live or history).
    p.watch(R, "expire event", f"/v2/keys/ex/k?wait=true&waitIndex={{i:{idx + 1}}}", None, timeout=6.0)
    c(R, "expired key gone", "GET", "/v2/keys/ex/k")
    a, _ = c(R, "dir with ttl", "PUT", "/v2/keys/exd?dir=true&ttl=1")
    c(R, "child in ttl dir", "PUT", "/v2/keys/exd/child", "value=c")
    idx = p.ref.rel(a)
    p.watch(R, "child sees dir expire", f"/v2/keys/exd/child?wait=true&waitIndex={{i:{idx + 2}}}",
            None, timeout=6.0)
    c(R, "ttl dir gone", "GET", "/v2/keys/exd")
    c(R, "ttl=0 key expired", "GET", "/v2/keys/t0")
    c(R, "expireCount shape", "GET", "/v2/keys/ex")


def history_cleared(p):
    section("history cleared after 1000 events")
    base = p.ref.rel(p.send("GET", "/v2/keys/")[0])
    errs = []

    def burst(server):
        conn = dl.Conn(server.url)
        try:
            for i in range(1010):
                r = conn.request("PUT", f"/v2/keys/hist/k{i % 7}", f"value={i}")
                if r.status not in (200, 201):
                    errs.append(f"{server.member.kind}: {r!r}")
                    return
        finally:
            conn.close()

    ts = [threading.Thread(target=burst, args=(s,)) for s in (p.ref, p.sut)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    R.check(not errs, f"history burst writes failed: {errs[:2]}")
    p.compare(R, "401 outdated", "GET", f"/v2/keys/hist/k1?wait=true&waitIndex={{i:{base}}}")
    p.compare(R, "401 outdated recursive", "GET", "/v2/keys/?wait=true&recursive=true&waitIndex={i:1}")
    p.compare(R, "oldest still in history", "GET",
              f"/v2/keys/hist?wait=true&recursive=true&waitIndex={{i:{base + 1010 - 999}}}")


def cluster_endpoints(p):
    section("version, health, machines, members, stats")
    c = p.compare
    c(R, "version", "GET", "/version")
    c(R, "version POST 405", "POST", "/version")
    c(R, "health", "GET", "/health")
    c(R, "health PUT 405", "PUT", "/health")
    a, b = p.send("GET", "/v2/machines")
    R.check(a.status == b.status == 200 and b.body.decode() == p.sut.url,
            f"machines: expected {p.sut.url!r}, got {b!r}")
    R.check(dl.normalize(a, 0).headers == dl.normalize(b, 0).headers,
            f"machines headers: etcd {a!r} got {b!r}")
    a, b = p.send("HEAD", "/v2/machines")
    R.check(a.status == b.status and b.body == b"", f"machines HEAD: etcd {a!r} got {b!r}")
    c(R, "machines POST 405", "POST", "/v2/machines")
    for path in ["/v2/members", "/v2/members/", "/v2/members/leader"]:
        a, b = p.send("GET", path)
        R.check(a.status == b.status and dl.normalize(a, 0).headers == dl.normalize(b, 0).headers,
                f"{path} status/headers: etcd {a!r} got {b!r}")
        try:
            ja, jb = a.json(), b.json()
            R.check(dl.shape(ja) == dl.shape(jb), f"{path} shape: etcd {a.body!r} got {b.body!r}")
            mem = jb["members"][0] if "members" in jb else jb
            R.check(mem.get("name") == "default" and mem.get("peerURLs") == [p.sut.member.peer_url]
                    and mem.get("clientURLs") == [p.sut.url]
                    and re.fullmatch(r"[0-9a-f]{1,16}", mem.get("id", "")) is not None
                    and not mem["id"].startswith("0"),
                    f"{path} member values: {b.body!r}")
            R.check(b.body.endswith(b"\n"), f"{path} trailing newline: {b.body!r}")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            R.check(False, f"{path}: unparsable ({e}): etcd {a!r} got {b!r}")
    c(R, "members bogus", "GET", "/v2/members/bogus")
    c(R, "members PATCH 405", "PATCH", "/v2/members")
    c(R, "members add wrong type 415", "POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1"]}',
      {"Content-Type": "application/x-www-form-urlencoded"})
    c(R, "members add truncated 400", "POST", "/v2/members", '{"peerURLs":[',
      {"Content-Type": "application/json"})
    c(R, "members add bad scheme 400", "POST", "/v2/members", '{"peerURLs":["foo"]}',
      {"Content-Type": "application/json; charset=utf-8"})
    c(R, "members add empty 400", "POST", "/v2/members", "{}", {"Content-Type": "Application/JSON"})
    # Go's decoder matches the field name in any case, each key in turn: null empties it, the
    # first type error is the answer.
    for what, body in [("field name in another case, null later", '{"peerURLs":["http://127.0.0.1:9"],"PeerUrls":null}'),
                       ("field name lower case, a number", '{"peerurls":5}'),
                       ("an element of the wrong type", '{"peerURLs":[1,"http://127.0.0.1:3"]}'),
                       ("two keys, two type errors", '{"peerURLs":5,"PEERURLS":[true]}')]:
        c(R, f"members add {what} 400", "POST", "/v2/members", body,
          {"Content-Type": "application/json"})
    for field in ("peerURLs", "PEERURLS"):
        a = p.ref.conn.request("POST", "/v2/members", json.dumps({field: [p.ref.member.peer_url]}),
                               {"Content-Type": "application/json"})
        b = p.sut.conn.request("POST", "/v2/members", json.dumps({field: [p.sut.member.peer_url]}),
                               {"Content-Type": "application/json"})
        d = dl.diff(a, b, p.ref.start_index, p.sut.start_index)
        R.check(not d, f"members add existing peer ({field}) 409: {d} etcd {a!r} got {b!r}")
    c(R, "members delete unknown", "DELETE", "/v2/members/1234")
    c(R, "members delete non-hex", "DELETE", "/v2/members/zzz")
    c(R, "members put unknown", "PUT", "/v2/members/1234", '{"peerURLs":["http://127.0.0.1:9"]}',
      {"Content-Type": "application/json"})
    c(R, "members delete no id 405", "DELETE", "/v2/members")
    for path in ["/v2/stats/self", "/v2/stats/leader", "/v2/stats/store"]:
        a, b = p.send("GET", path)
        R.check(a.status == b.status and dl.normalize(a, 0).headers == dl.normalize(b, 0).headers,
                f"{path} status/headers: etcd {a!r} got {b!r}")
        try:
            R.check(dl.shape(a.json()) == dl.shape(b.json()),
                    f"{path} field names/order: etcd {a.body!r} got {b.body!r}")
        except ValueError as e:
            R.check(False, f"{path}: unparsable ({e}): got {b!r}")
    c(R, "stats POST 405", "POST", "/v2/stats/store")
    c(R, "stats unknown 404", "GET", "/v2/stats/bogus")


def cors_list():
    section("--cors with an origin list")
    p = dl.start_pair(R, ["--cors", "http://ok.example:8080,http://two.example:80"])
    try:
        for origin in ["http://ok.example:8080", "http://two.example:80", "http://two.example", "http://bad.example:80", None]:
            hdrs = {"Origin": origin} if origin else {}
            p.compare(R, f"cors GET origin={origin}", "GET", "/v2/keys/", headers=hdrs)
            p.compare(R, f"cors OPTIONS origin={origin}", "OPTIONS", "/v2/keys/x", headers=hdrs)
        p.compare(R, "cors on /version", "GET", "/version", headers={"Origin": "http://ok.example:8080"})
    finally:
        p.cleanup()


def main():
    dl.need_binaries()
    dl.run_sections(R, paths_and_methods, parameters, put_table, refresh_and_novalue,
                    post_and_delete, hidden_and_listing, escaping, watches, ttl_expiry,
                    cluster_endpoints, history_cleared)
    cors_list()
    R.finish()


if __name__ == "__main__":
    main()
