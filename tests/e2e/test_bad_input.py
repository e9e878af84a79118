#!/usr/bin/python3
"""Bad input on the client port: malformed request lines and headers, bad percent-encoding,
malformed parameters, oversized bodies, invalid UTF-8, garbage bytes, slow and half-open
clients. Each raw request goes to a real etcd and to the server under test: where etcd answers,
the status must match; where etcd sends nothing, the server must send nothing or a 4xx. After
every case the server must still serve a normal request.

Run: KVD_BIN=build/kvd /usr/bin/python3 tests/e2e/test_bad_input.py
"""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import difflib_v2 as dl  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
H = b"Host: 127.0.0.1\r\n"


def exchange(server, data, timeout=3.0):
    try:
        raw = harness.raw_exchange(server.url, data, timeout=timeout,
                                   until=harness.response_complete, limit=1 << 20,
                                   silence_raises=True)
    except socket.timeout:
        raw = b""
    except OSError as e:
        raw = f"<{type(e).__name__}>".encode()
    return harness.status_of(raw), raw


def still_serving(p, what):
    try:
        r = dl.one_shot(p.sut.url, "GET", "/v2/keys/", timeout=5.0)
        ok = r.status == 200
    except OSError as e:
        r, ok = e, False
    R.check(ok, f"after {what}: normal GET /v2/keys/ failed: {r!r}")


def first_body(raw):
    """The body of the first response in raw (a pipelined answer may follow it)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return rest[:int(m.group(1))] if m else rest


def framing_headers(raw):
    """Which of Content-Length, Transfer-Encoding and Connection the first response carries,
    with their values (a Content-Length differs with the index digits, so only its presence)."""
    head = raw.partition(b"\r\n\r\n")[0].lower()
    return (b"\r\ncontent-length:" in head,
            re.findall(rb"\r\ntransfer-encoding:[^\r]*", head),
            re.findall(rb"\r\nconnection:[^\r]*", head))


def raw_case(p, what, data, body_too=False, timeout=3.0):
    sa, ra = exchange(p.ref, data, timeout)
    sb, rb = exchange(p.sut, data, timeout)
    if dl.VERBOSE:
        print(f"   {what}: etcd {sa} {ra[:150]!r}", flush=True)
    if sa is not None:
        ok = sa == sb
        if ok and body_too:
            ba, bb = first_body(ra), first_body(rb)
            na = dl.normalize_body(ba, p.ref.start_index)[0]
            nb = dl.normalize_body(bb, p.sut.start_index)[0]
            ok = na == nb
        if ok:
            ok = framing_headers(ra) == framing_headers(rb)
        R.check(ok, f"{what}: etcd answered {ra[:300]!r}\n  got {rb[:300]!r}")
    else:
        R.check(sb is None or 400 <= sb < 500,
                f"{what}: etcd sent no answer; expected none or a 4xx, got {rb[:300]!r}")
    still_serving(p, what)


def malformed(p):
    print("-- malformed requests", flush=True)
    cases = [
        ("garbage bytes", b"\x00\x01\x02\xff garbage\r\n\r\n"),
        ("no path", b"GET\r\n\r\n"),
        ("bad version", b"GET /v2/keys/ HTTP/9.9\r\n" + H + b"\r\n"),
        ("not http", b"GET /v2/keys/ FOO/1.1\r\n" + H + b"\r\n"),
        ("space in target", b"GET /v2/keys/a b HTTP/1.1\r\n" + H + b"\r\n"),
        ("header without colon", b"GET /v2/keys/ HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n"),
        ("header name with space", b"GET /v2/keys/ HTTP/1.1\r\n" + H + b"Bad Name: x\r\n\r\n"),
        ("missing Host in HTTP/1.1", b"GET /v2/keys/ HTTP/1.1\r\n\r\n"),
        ("HTTP/1.0 without Host", b"GET /v2/keys/ HTTP/1.0\r\n\r\n"),
        ("two Host headers", b"GET /v2/keys/ HTTP/1.1\r\n" + H + H + b"\r\n"),
        ("bad Content-Length", b"PUT /v2/keys/bi HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n"),
        ("negative Content-Length", b"PUT /v2/keys/bi HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\n"),
        ("two Content-Lengths", b"PUT /v2/keys/bi HTTP/1.1\r\n" + H
         + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        ("CL and chunked", b"PUT /v2/keys/bi HTTP/1.1\r\n" + H
         + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("unknown transfer-encoding", b"PUT /v2/keys/bi HTTP/1.1\r\n" + H
         + b"Transfer-Encoding: gzip\r\n\r\n"),
        ("bad chunk size", b"PUT /v2/keys/bi HTTP/1.1\r\n" + H
         + b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ("NUL in header value", b"GET /v2/keys/ HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
        ("huge header", b"GET /v2/keys/ HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * (1100 * 1024) + b"\r\n\r\n"),
        ("bare LF line endings", b"GET /v2/keys/ HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"\n"),
        ("absolute-form target", b"GET http://127.0.0.1/v2/keys/ HTTP/1.1\r\n" + H + b"\r\n"),
        ("asterisk target", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n"),
        ("lower-case method", b"get /v2/keys/ HTTP/1.1\r\n" + H + b"\r\n"),
    ]
    for what, data in cases:
        raw_case(p, what, data)


def framing(p):
    """Go's request framing rules, compared with the body too. Runs after the cases that list
    the root directory: etcd lists it in map order, so it must keep only one entry there."""
    print("-- request framing", flush=True)
    pipelined = (b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\nGET /v2/keys/ HTTP/1.1\r\n" + H
                 + b"Connection: close\r\n\r\n")
    raw_case(p, "OPTIONS * then a GET on the same connection", pipelined)
    form = b"Content-Type: application/x-www-form-urlencoded\r\n"
    close = b"Connection: close\r\n"
    framed = [
        ("malformed Host", b"GET /v2/keys/ HTTP/1.1\r\nHost: a b\r\n" + close + b"\r\n"),
        ("invalid header name", b"GET /v2/keys/ HTTP/1.1\r\n" + H + b"Bad Name: x\r\n" + close + b"\r\n"),
        ("invalid header value", b"GET /v2/keys/ HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n" + close + b"\r\n"),
        ("missing Host before a bad name", b"GET /v2/keys/ HTTP/1.1\r\nBad Name: x\r\n" + close + b"\r\n"),
        ("bad Transfer-Encoding before a missing Host", b"PUT /v2/keys/fr HTTP/1.1\r\n"
         b"Transfer-Encoding: gzip\r\n" + close + b"\r\n"),
        ("two Hosts before a bad Transfer-Encoding", b"PUT /v2/keys/fr HTTP/1.1\r\n" + H + H
         + b"Transfer-Encoding: gzip\r\n" + close + b"\r\n"),
        ("malformed Host before a bad name", b"GET /v2/keys/ HTTP/1.1\r\nHost: a b\r\n"
         b"Bad Name: x\r\n" + close + b"\r\n"),
        ("GET * (ServeMux)", b"GET * HTTP/1.1\r\n" + H + close + b"\r\n"),
        ("OPTIONS * HTTP/1.0", b"OPTIONS * HTTP/1.0\r\n\r\n"),
        ("two Transfer-Encodings", b"PUT /v2/keys/fr HTTP/1.1\r\n" + H
         + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n" + close + b"\r\n0\r\n\r\n"),
        ("Transfer-Encoding list", b"PUT /v2/keys/fr HTTP/1.1\r\n" + H
         + b"Transfer-Encoding: gzip, chunked\r\n" + close + b"\r\n0\r\n\r\n"),
        ("Transfer-Encoding ignored on HTTP/1.0", b"PUT /v2/keys/fr-10 HTTP/1.0\r\n" + form
         + b"Content-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\nvalue=x"),
        ("same Content-Length twice", b"PUT /v2/keys/fr-dup HTTP/1.1\r\n" + H + form
         + b"Content-Length: 7\r\nContent-Length: 7\r\n" + close + b"\r\nvalue=x"),
        ("Transfer-Encoding: Chunked", b"PUT /v2/keys/fr-caps HTTP/1.1\r\n" + H + form
         + b"Transfer-Encoding: Chunked\r\n" + close + b"\r\n7\r\nvalue=x\r\n0\r\n\r\n"),
        ("CL and chunked, then a pipelined GET", b"PUT /v2/keys/fr-clte HTTP/1.1\r\n" + H + form
         + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nvalue=x\r\n0\r\n\r\n"
         + b"GET /v2/keys/fr-clte HTTP/1.1\r\n" + H + close + b"\r\n"),
        ("mixed LF and CRLF", b"GET /v2/keys/fr-dup HTTP/1.1\r\nHost: x\n" + close + b"\n"),
        ("chunk extension and trailer", b"PUT /v2/keys/fr-ext HTTP/1.1\r\n" + H + form
         + b"Transfer-Encoding: chunked\r\n" + close
         + b"\r\n7;foo=bar\r\nvalue=x\r\n0\r\nX-T: 1\r\n\r\n"),
        ("bad chunk size in a form", b"PUT /v2/keys/fr HTTP/1.1\r\n" + H + form
         + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ("no CRLF after chunk data", b"PUT /v2/keys/fr HTTP/1.1\r\n" + H + form
         + b"Transfer-Encoding: chunked\r\n\r\n7\r\nvalue=xAB0\r\n\r\n"),
    ]
    big = b"value=" + b"b" * 3000
    framed += [
        ("PUT a 3000-byte value", b"PUT /v2/keys/fr-big HTTP/1.1\r\n" + H + form + close
         + b"Content-Length: " + str(len(big)).encode() + b"\r\n\r\n" + big),
        # Go cannot chunk for HTTP/1.0: no length, the body ends when the connection closes.
        ("HTTP/1.0 GET of a body over 2048 bytes", b"GET /v2/keys/fr-big HTTP/1.0\r\n\r\n"),
        ("HTTP/1.0 HEAD of a body over 2048 bytes", b"HEAD /v2/keys/fr-big HTTP/1.0\r\n\r\n"),
    ]
    for what, data in framed:
        raw_case(p, what, data, body_too=True)


def encodings(p):
    print("-- encodings and parameters", flush=True)
    def get(path):
        return b"GET " + path + b" HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"

    def put(path, body, ctype=b"application/x-www-form-urlencoded"):
        return (b"PUT " + path + b" HTTP/1.1\r\n" + H + b"Content-Type: " + ctype
                + b"\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\n\r\n" + body)

    cases = [
        ("bad escape in path", get(b"/v2/keys/%zz"), True),
        ("lone % in path", get(b"/v2/keys/a%"), True),
        ("%00 in path", get(b"/v2/keys/a%00b"), True),
        ("raw 0xff in path", get(b"/v2/keys/\xff\xfe"), True),
        ("bad escape in query", get(b"/v2/keys/?recursive=%zz"), True),
        ("lone % in query", get(b"/v2/keys/?x=%"), True),
        ("semicolon in query", get(b"/v2/keys/?recursive=true;sorted=true"), True),
        ("empty query pieces", get(b"/v2/keys/?&&=&=x&"), True),
        ("unknown parameters", get(b"/v2/keys/?bogus=1&%41=2"), True),
        ("query with fragment", get(b"/v2/keys/?recursive=true#frag"), True),
        ("bad escape in body", put(b"/v2/keys/bi", b"value=%zz"), True),
        ("semicolon in body", put(b"/v2/keys/bi", b"value=a;b"), True),
        ("invalid UTF-8 raw body", put(b"/v2/keys/bi", b"value=\xff\xfe\xc3"), True),
        ("read back invalid UTF-8", get(b"/v2/keys/bi"), True),
        ("invalid UTF-8 key", put(b"/v2/keys/%ff%fe", b"value=k"), True),
        ("read invalid UTF-8 key", get(b"/v2/keys/%ff%fe"), True),
        ("body with only &", put(b"/v2/keys/bi2", b"&&&"), True),
        ("form with charset", put(b"/v2/keys/bi3", b"value=cs",
                                  b"application/x-www-form-urlencoded; charset=utf-8"), True),
        ("multipart ignored", put(b"/v2/keys/bi4", b"--x\r\n\r\nvalue=m\r\n--x--",
                                  b"multipart/form-data; boundary=x"), True),
        ("very long key", get(b"/v2/keys/" + b"k" * 100000), True),
        ("deep key", put(b"/v2/keys/" + b"/".join([b"d"] * 300), b"value=deep"), True),
    ]
    for what, data, body_too in cases:
        raw_case(p, what, data, body_too=body_too)
    # Chunked request body is legal HTTP/1.1 and must work.
    body = b"value=chunked"
    raw_case(p, "chunked request body",
             b"PUT /v2/keys/chunky HTTP/1.1\r\n" + H + b"Content-Type: application/x-www-form-urlencoded\r\n"
             b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
             + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n", body_too=True)
    raw_case(p, "Expect: 100-continue",
             b"PUT /v2/keys/expect HTTP/1.1\r\n" + H + b"Content-Type: application/x-www-form-urlencoded\r\n"
             b"Expect: 100-continue\r\nContent-Length: 7\r\nConnection: close\r\n\r\nvalue=e")
    # Pipelined requests on one connection: both answered in order.
    data = (b"GET /v2/keys/chunky HTTP/1.1\r\n" + H + b"\r\n"
            b"GET /v2/keys/expect HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    outs = [harness.raw_exchange(s.member.client_port, data, timeout=5) for s in (p.ref, p.sut)]
    R.check(outs[1].count(b"HTTP/1.1 200") == 2 and b'"/chunky"' in outs[1]
            and outs[1].index(b'"/chunky"') < outs[1].index(b'"/expect"'),
            f"pipelined GETs: etcd {outs[0][:400]!r}\n  got {outs[1][:400]!r}")


def oversized(p):
    print("-- oversized bodies", flush=True)
    for size in (1600 * 1024, 4 * 1024 * 1024):
        value = b"value=" + b"x" * size
        data = (b"PUT /v2/keys/big HTTP/1.1\r\n" + H + b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Connection: close\r\nContent-Length: " + str(len(value)).encode() + b"\r\n\r\n" + value)
        sa, ra = exchange(p.ref, data, timeout=20)
        sb, rb = exchange(p.sut, data, timeout=20)
        if sa is not None and sa < 300:
            R.check(sb == sa, f"{size}-byte value: etcd {ra[:200]!r} got {rb[:200]!r}")
        else:
            R.check(sb is None or 400 <= sb < 500 or sb == sa,
                    f"{size}-byte value: etcd {ra[:200]!r}; expected 4xx, got {rb[:200]!r}")
        still_serving(p, f"{size}-byte value")
    # A Content-Length far larger than anything sent: the server must not wait forever on others.
    with socket.create_connection(("127.0.0.1", p.sut.member.client_port), timeout=5) as c:
        c.sendall(b"PUT /v2/keys/huge HTTP/1.1\r\n" + H + b"Content-Length: 10000000000\r\n\r\nvalue=")
        still_serving(p, "a 10 GB Content-Length announced")


def slow_clients(p):
    print("-- slow and half-open clients", flush=True)
    socks = []
    try:
        halves = [
            b"GET /v2/ke",
            b"GET /v2/keys/ HTTP/1.1\r\n" + H,
            b"PUT /v2/keys/slow HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\nvalue=",
            b"",
        ]
        for i in range(40):
            s = socket.create_connection(("127.0.0.1", p.sut.member.client_port), timeout=5)
            s.sendall(halves[i % len(halves)])
            socks.append(s)
        start = time.monotonic()
        still_serving(p, "40 stalled half-sent requests")
        R.check(time.monotonic() - start < 2.0,
                f"a normal request took {time.monotonic() - start:.2f}s with stalled clients open")
        # Writes and watches still work too.
        r = dl.one_shot(p.sut.url, "PUT", "/v2/keys/while-stalled", "value=ok", timeout=5)
        R.check(r.status in (200, 201), f"PUT with stalled clients open: {r!r}")
        # Clients that connect and vanish, or reset mid-request.
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", p.sut.member.client_port), timeout=5)
            if i % 2:
                s.sendall(b"PUT /v2/keys/x HTTP/1.1\r\n" + H + b"Content-Length: 50\r\n\r\nval")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        still_serving(p, "20 connections reset mid-request")
        # A watch whose client disconnects must be dropped (watcher count goes back).
        before = p.sut.watchers()
        s = socket.create_connection(("127.0.0.1", p.sut.member.client_port), timeout=5)
        s.sendall(b"GET /v2/keys/gone?wait=true HTTP/1.1\r\n" + H + b"\r\n")
        harness.wait_for(lambda: p.sut.watchers() > before, 5, interval=0.01)
        R.check(p.sut.watchers() > before, "watch from a raw client never counted")
        s.close()
        # The watcher is removed when the server notices the close; an event makes it notice.
        dl.one_shot(p.sut.url, "PUT", "/v2/keys/other", "value=1")
        harness.wait_for(lambda: p.sut.watchers() <= before, 5)
        R.check(p.sut.watchers() <= before,
                f"watcher of a disconnected client still counted ({p.sut.watchers()} > {before})")
    finally:
        for s in socks:
            s.close()
    still_serving(p, "stalled clients closed")


def main():
    dl.need_binaries()
    dl.run_sections(R, malformed, encodings, framing, oversized, slow_clients)
    R.finish()


if __name__ == "__main__":
    main()
