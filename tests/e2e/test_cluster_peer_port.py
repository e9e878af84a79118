#!/usr/bin/env python3
"""Hostile input on the peer port of a three-member kvd cluster, spread over the members (each
member logs a given kind of refusal from one address at most once a minute):

  member 0: random garbage bytes; HTTP requests (GET /members, GET /version, an unknown path, a
            request with an oversized body)
  member 1: a connection that sends nothing (closed after the handshake timeout, 5 s); a
            handshake from an unknown member id
  member 2: a member of another cluster (a real kvd started with a different
            --initial-cluster-token that lists member 2's peer URL), a handshake spoofing a
            known member followed by a frame with a bad checksum, a truncated handshake

Each is refused (connection closed, or the documented handshake reply) and logged; every member
keeps running and serving (a write through each, quorum reads), and the stores stay identical.
"""
import json
import os
import random
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
MAGIC = b"kvd\0"
HANDSHAKE_TIMEOUT_S = 5
CODES = {0: "accept", 1: "wrong version", 2: "wrong cluster", 3: "unknown sender",
         4: "wrong receiver", 5: "removed member"}


def connect(m):
    s = socket.create_connection(("127.0.0.1", m.peer_port), timeout=5)
    s.settimeout(HANDSHAKE_TIMEOUT_S + 5)
    return s


def read_until_closed(s, limit=1 << 16):
    """Everything the server sends until it closes; (bytes, closed?)."""
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(4096)
            if not chunk:
                return data, True
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return data, True
    except socket.timeout:
        return data, False
    return data, False


def handshake(cluster_id, sender, receiver, version=1):
    return MAGIC + struct.pack("<HHQQQ", version, 0, cluster_id, sender, receiver)


def reply_code(data):
    if len(data) < 9 or data[:4] != MAGIC:
        return None, data
    _, code, n = struct.unpack("<HBH", data[4:9])
    return code, data[9:9 + n].decode(errors="replace")


def log_since(m, offset):
    with open(m.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def main():
    t_start = time.monotonic()
    with cluster.Cluster("kvd", 3, results=R) as c:
        m0, m1, m2 = c.members
        if not R.check(c.leader() is not None, "a leader"):
            R.finish()
        for i, m in enumerate(c.members):
            status, _, _ = harness.put(m, f"/peer/before{i}", "v")
            R.check(status == 201, f"write through {m.name} before: {status}")
        status, hdrs, body = harness.request("GET", m0.peer_url + "/members")
        cid = int(hdrs.get("x-etcd-cluster-id", "0"), 16)
        R.check(status == 200 and cid != 0, f"GET /members on the peer port: {status} {hdrs}")
        members = json.loads(body) if status == 200 else []
        R.check(sorted(f"{x['id']:x}" for x in members) == sorted(c.ids.values()),
                f"GET /members lists the members with decimal ids: {body[:300]!r}")
        offsets = {m.name: os.path.getsize(m.log_path) for m in c.members}

        # Member 1: a silent connection, checked at the end (runs meanwhile).
        silent = connect(m1)
        t_silent = time.monotonic()

        # Member 0: garbage bytes.
        rnd = random.Random(4)
        s = connect(m0)
        junk = bytes([0xff]) + bytes(rnd.randrange(256) for _ in range(8191))
        try:
            s.sendall(junk)
        except OSError:
            pass
        data, closed = read_until_closed(s)
        s.close()
        R.check(closed and data == b"", f"garbage bytes: closed without an answer ({data[:50]!r})")

        # Member 0: HTTP.
        status, _, body = harness.request("GET", m0.peer_url + "/version")
        R.check(status == 200 and b"etcdserver" in body, f"GET /version on the peer port: {status}")
        status, _, _ = harness.request("GET", m0.peer_url + "/raft/stream/message/1")
        R.check(status == 404, f"an unknown path on the peer port: {status}")
        try:
            status, _, _ = harness.request("POST", m0.peer_url + "/raft", body=b"x" * (256 << 10),
                                           timeout=10)
        except OSError:
            status = "closed"
        R.check(status in (404, 413, 400, "closed"),
                f"an oversized HTTP body on the peer port is refused: {status}")

        # Member 1: an unknown member id with the right cluster id.
        s = connect(m1)
        stranger = 0x1234567890abcdef
        s.sendall(handshake(cid, stranger, int(c.ids[m1.name], 16)))
        data, closed = read_until_closed(s)
        s.close()
        code, reason = reply_code(data)
        R.check(code == 3 and closed, f"unknown member: refused with 'unknown sender' and closed: "
                f"{CODES.get(code, code)} {reason!r} closed={closed}")

        # Member 2: a spoofed known member, then a frame with a bad checksum.
        s = connect(m2)
        s.sendall(handshake(cid, int(c.ids[m0.name], 16), int(c.ids[m2.name], 16)))
        data = b""
        while len(data) < 9:
            chunk = s.recv(9 - len(data))
            if not chunk:
                break
            data += chunk
        code, _ = reply_code(data + b"")
        R.check(code == 0, f"a handshake naming a known member is accepted: {code}")
        body = struct.pack("<I", 1) + b"\x07" * 40
        s.sendall(struct.pack("<IBI", len(body), 1, 0xdeadbeef) + body)
        data, closed = read_until_closed(s)
        s.close()
        R.check(closed, "a frame with a bad checksum closes the connection")
        # Member 2: a truncated handshake (magic and a few bytes, then EOF).
        s = connect(m2)
        s.sendall(MAGIC + b"\x01\x00")
        s.shutdown(socket.SHUT_WR)
        data, closed = read_until_closed(s)
        s.close()
        R.check(closed and data == b"", f"a truncated handshake is closed: {data!r}")

        # Member 2: a member of another cluster (different token) dials it.
        intruder = harness.Member("kvd", name="intruder", workdir=c.workdir)
        intruder.extra_args = [
            "--initial-cluster", f"intruder={intruder.peer_url},{m2.name}={m2.peer_url}",
            "--initial-cluster-state", "new", "--initial-cluster-token", "some-other-token",
            "--heartbeat-interval", str(c.heartbeat_ms), "--election-timeout", str(c.election_ms)]
        c.members.append(intruder)
        intruder.spawn()
        refused = harness.wait_for(
            lambda: re.search(r"refused connection from \S+ \(member [0-9a-f]+\): wrong cluster id",
                              log_since(m2, offsets[m2.name])), 15)
        R.check(refused is not None, f"{m2.name} refuses and logs the other cluster's member")
        R.check(harness.wait_for(lambda: "wrong cluster id" in intruder.read_log(), 10),
                "the other cluster's member logs that it was refused (wrong cluster id)")
        intruder.kill()
        c.members.remove(intruder)

        # The silent connection is closed after the handshake timeout.
        data, closed = read_until_closed(silent)
        took = time.monotonic() - t_silent
        silent.close()
        R.check(closed and HANDSHAKE_TIMEOUT_S - 0.5 <= took <= HANDSHAKE_TIMEOUT_S + 3,
                f"a silent connection is closed after the handshake timeout: {took:.2f}s")

        # Every refusal is logged by the member that saw it.
        logs = {m.name: log_since(m, offsets[m.name]) for m in c.members}
        want = [
            (m0, r"neither a kvd peer handshake nor an HTTP request"),
            (m1, r"nothing complete received within the handshake timeout"),
            (m1, r"member " + f"{stranger:x}" + r"\): unknown member"),
            (m2, r"frame checksum mismatch"),
            (m2, r"wrong cluster id"),
        ]
        for m, pattern in want:
            R.check(re.search(pattern, logs[m.name]) is not None,
                    f"{m.name} logs /{pattern}/:\n{logs[m.name][-1500:]}")

        # Everyone still up, serving, and identical.
        for m in c.members:
            R.check(m.proc.poll() is None, f"{m.name} still running")
        R.check(c.leader() is not None, "the three members still agree on a leader")
        for i, m in enumerate(c.members):
            status, _, body = harness.put(m, f"/peer/after{i}", "w")
            R.check(status == 201, f"write through {m.name} after: {status} {body[:200]!r}")
        for m in c.members:
            for i in range(3):
                status, _, body = harness.get(m, f"/peer/before{i}", quorum=True)
                R.check(status == 200 and b'"value":"v"' in body,
                        f"data intact on {m.name}: before{i}: {status}")
        same = c.converged(timeout=15)
        R.check(same is not None and len(
            [k for k in cluster.index_of(same[1]) if k.startswith("/peer/")]) == 6,
            "identical stores with all six keys")
    print(f"took {time.monotonic() - t_start:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
