#!/usr/bin/python3
"""Peer TLS: three kvd members with https peer and client URLs (--peer-client-cert-auth, a
peer CA, --peer-cert-allowed-cn) form a cluster and replicate; a member whose peer certificate
comes from an untrusted CA, carries a CN that is not allowed, or names another address (etcd's
peer SAN rule) cannot join; a leader failure and a catch-up by snapshot happen over TLS; a
member joins over https (--initial-cluster-state existing). Then the proxy on https in front of
the TLS cluster: keys, long-poll and stream watches, failover when the member it uses dies.
"""
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402
import tls_certs  # noqa: E402

R = harness.Results()
SNAPSHOT_COUNT = 100
ALLOWED_CN = "kvd-peer"


def tls_args(peer_cert, peer_key, pki, client_cert, client_key):
    return ["--peer-cert-file", peer_cert, "--peer-key-file", peer_key,
            "--peer-trusted-ca-file", pki.ca, "--peer-client-cert-auth",
            "--peer-cert-allowed-cn", ALLOWED_CN,
            "--cert-file", client_cert, "--key-file", client_key,
            "--trusted-ca-file", pki.ca, "--client-cert-auth"]


def replace_flag(args, flag, value):
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def add_member(c, m):
    """member add, retried (bounded) while the cluster refuses it as not healthy yet: a member
    must have been connected for 5 s first (--strict-reconfig-check)."""
    last = [None, b""]

    def added():
        lead = c.leader()
        st, _, body = harness.request("POST", lead.url + "/v2/members",
                                      body=json.dumps({"peerURLs": [m.peer_url]}),
                                      headers={"Content-Type": "application/json"})
        last[:] = [st, body]
        return st == 201
    harness.wait_for(added, 30, interval=0.5)
    st, body = last
    R.check(st == 201, f"member add {m.name}: {st} {body[:200]!r}")
    return json.loads(body).get("id") if st == 201 else None


def refused_joiner(c, name, peer_cert, peer_key, why):
    """A member added to the cluster and started with a peer certificate the others refuse:
    it must not join (it stops, or never becomes healthy) and the cluster stays healthy."""
    m = c.new_member_slot(name)
    mid = add_member(c, m)
    m.extra_args = c.member_args(c.initial_cluster() + f",{name}={m.peer_url}", "existing")
    m.extra_args = replace_flag(m.extra_args, "--peer-cert-file", peer_cert)
    m.extra_args = replace_flag(m.extra_args, "--peer-key-file", peer_key)
    m.spawn()
    stopped = harness.wait_for(m.exited, 20)
    log = m.read_log()
    R.check(stopped and m.proc.returncode != 0,
            f"{why}: the member cannot join and stops (exit {m.proc.returncode}): {log[-400:]!r}")
    refused = harness.wait_for(lambda: any(re.search(r"rejected|certificate", x.read_log())
                                           for x in c.members), 10)
    R.check(refused, f"{why}: the members log the refused connection")
    m.cleanup()
    # Leave the cluster as it was: the member that never came is removed again.
    if mid:
        st, _, _ = harness.request("DELETE", c.leader().url + f"/v2/members/{mid}")
        R.check(st == 204, f"{why}: member remove: {st}")


def cluster_part(pki, other, workdir):
    peer_cert, peer_key = pki.issue("peer", cn=ALLOWED_CN)
    client_cert, client_key = pki.issue("member-client", cn="server")
    user_cert, user_key = pki.issue("user", cn="user", server=False)
    harness.DEFAULT_SSL_CONTEXT = ssl.create_default_context(cafile=pki.ca)
    harness.DEFAULT_SSL_CONTEXT.load_cert_chain(user_cert, user_key)
    args = tls_args(peer_cert, peer_key, pki, client_cert, client_key)
    with cluster.Cluster("kvd", 3, snapshot_count=SNAPSHOT_COUNT, extra_args=args, results=R,
                         client_scheme="https", peer_scheme="https", workdir=workdir) as c:
        lead = c.leader()
        R.check(lead is not None, "three members with peer TLS agree on a leader")
        st, _, _ = harness.put(lead, "/tls/a", "1")
        R.check(st in (200, 201), f"a write through the leader over TLS: {st}")
        got = [harness.get(m, "/tls/a", quorum=True)[0] for m in c.members]
        R.check(got == [200, 200, 200], f"every member reads it: {got}")
        for m in c.members:
            log = m.read_log()
            R.check("starting with peer TLS" in log and "client-cert-auth = true" in log,
                    f"{m.name} logs its peer TLS")
        # The peer port over TLS: plain HTTP is closed; an https GET /members with a trusted
        # client certificate is served.
        p = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", pki.ca, "--cert",
                            peer_cert, "--key", peer_key, lead.peer_url + "/members"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        R.check(p.returncode == 0 and b"peerURLs" in p.stdout, f"GET /members on the TLS peer port: {p}")
        p = subprocess.run(["curl", "-sS", "--max-time", "5",
                            lead.peer_url.replace("https", "http") + "/members"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        R.check(p.returncode != 0 and not p.stdout, f"plain HTTP to the TLS peer port is refused: {p.returncode}")

        # Handshakes that never finish on the TLS peer port are dropped after the peer
        # handshake timeout (5 s) and hold up neither the peers nor the clients meanwhile.
        stalled = [socket.create_connection(("127.0.0.1", lead.peer_port), timeout=5)
                   for _ in range(3)]
        stalled[1].sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello cut short
        stalled[2].sendall(b"\xff" * 32)                    # garbage
        t0 = time.monotonic()
        for i in range(10):
            st, _, _ = harness.put(lead, f"/tls/stalled{i}", str(i))
            R.check(st in (200, 201), f"writes replicate while the peer port has stalled handshakes: {st}")
        R.check(time.monotonic() - t0 < 5, "10 writes beside stalled peer handshakes took under 5 s")

        def dropped(sock):
            sock.settimeout(15)
            try:
                return sock.recv(64) == b""
            except ConnectionResetError:
                return True
        R.check(all(dropped(x) for x in stalled), "stalled peer handshakes are dropped")
        R.check(time.monotonic() - t0 < 12, f"within the bound ({time.monotonic() - t0:.1f} s)")
        for x in stalled:
            x.close()

        untrusted_cert, untrusted_key = other.issue("untrusted-peer", cn=ALLOWED_CN)
        refused_joiner(c, "untrusted", untrusted_cert, untrusted_key, "a peer certificate from another CA")
        bad_cn_cert, bad_cn_key = pki.issue("bad-cn-peer", cn="intruder")
        refused_joiner(c, "badcn", bad_cn_cert, bad_cn_key, "a peer certificate with a CN not allowed")
        other_ip_cert, other_ip_key = pki.issue("other-ip-peer", cn=ALLOWED_CN, sans=("10.9.9.9",))
        refused_joiner(c, "otherip", other_ip_cert, other_ip_key,
                       "a peer certificate for another address (SAN rule)")

        # Leader failure over TLS.
        lead = c.leader()
        c.kill(lead)
        live = [m for m in c.members if m is not lead]
        new = harness.wait_for(lambda: c.leader(among=live, timeout=0), 15)
        R.check(new is not None and new is not lead, "a new leader after the leader's death")
        st, _, _ = harness.put(new, "/tls/after-failover", "2")
        R.check(st in (200, 201), f"a write after the failover: {st}")
        # The dead member catches up by snapshot: the others write three snapshot cycles.
        size = os.path.getsize(lead.log_path)
        w = cluster.Writers(live, threads=4, prefix="snap").start()
        try:
            harness.wait_for(lambda: len(re.findall(r"saved snapshot at index",
                                                    new.read_log())) >= 3, 90)
        finally:
            w.stop()
        c.restart(lead)
        want = c.converged(timeout=40)
        R.check(want is not None, "the restarted member converges over TLS")
        with open(lead.log_path, "rb") as f:
            f.seek(size)
            text = f.read().decode(errors="replace")
        R.check("installed the snapshot at index" in text, "it installed a snapshot sent over TLS")
        if want:
            R.check(not w.missing(want[1]), "every acknowledged write is there")

        # A member joins over https.
        m = c.new_member_slot("joiner")
        add_member(c, m)
        c.join(m, c.initial_cluster() + f",{m.name}={m.peer_url}")
        st, _, body = harness.get(m, "/tls/a", quorum=True)
        R.check(st == 200 and b'"value":"1"' in body, f"the joined member serves the data: {st}")

        proxy_part(c, pki, peer_cert, peer_key, client_cert, client_key, user_cert, user_key, workdir)


def proxy_part(c, pki, peer_cert, peer_key, client_cert, client_key, user_cert, user_key, workdir):
    """kvd's proxy on https in front of the TLS cluster."""
    px = harness.Proxy("kvd", c.initial_cluster(), workdir, scheme="https", extra_args=[
        "--cert-file", client_cert, "--key-file", client_key, "--trusted-ca-file", pki.ca,
        "--client-cert-auth", "--peer-cert-file", peer_cert, "--peer-key-file", peer_key,
        "--peer-trusted-ca-file", pki.ca])
    px.start(want_endpoints=len(c.members))
    try:
        eps = px.endpoints()
        R.check(eps and all(e.startswith("https://") for e in eps), f"the proxy found the https members: {eps}")
        st, _, _ = harness.put(px, "/px/a", "1")
        R.check(st in (200, 201), f"a write through the https proxy: {st}")
        st, _, body = harness.get(px, "/px/a")
        R.check(st == 200 and b'"value":"1"' in body, "a read through the https proxy")
        idx = int(harness.request("GET", px.url + "/v2/keys/px/a")[1]["x-etcd-index"])
        poll = subprocess.Popen(["curl", "-sS", "--max-time", "30", "--cacert", pki.ca, "--cert",
                                 user_cert, "--key", user_key,
                                 f"{px.url}/v2/keys/px/a?wait=true&waitIndex={idx + 1}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stream = subprocess.Popen(["curl", "-sS", "-N", "--max-time", "30", "--cacert", pki.ca,
                                   "--cert", user_cert, "--key", user_key,
                                   f"{px.url}/v2/keys/px?wait=true&recursive=true&stream=true&waitIndex={idx + 1}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # The member the proxy uses first dies; the proxy fails over to the others.
        first = c.by_url(eps[0]) if eps else None
        time.sleep(0)  # the watches were sent; their answers come from the writes below
        if first is not None:
            c.kill(first)
        live = [m for m in c.members if m is not first]
        harness.wait_for(lambda: c.leader(among=live, timeout=0), 15)
        oks = 0
        for i in range(10):
            st, _, _ = harness.put(px, f"/px/w{i}", str(i), catch=True)
            oks += st in (200, 201)
        st, _, _ = harness.put(px, "/px/a", "2")
        R.check(oks >= 8 and st in (200, 201), f"writes through the proxy after a member died: {oks}/10, {st}")
        pout, _ = poll.communicate(timeout=40)
        R.check(b'"key":"/px/' in pout, f"a long-poll watch through the https proxy fires: {pout[:200]!r}")
        stream.terminate()
        sout, _ = stream.communicate(timeout=10)
        R.check(sout.count(b'"action":"set"') >= 1, f"a stream watch through the https proxy: {sout[:200]!r}")
        c.restart(first) if first is not None else None
    finally:
        px.kill()


def main():
    workdir = harness.new_workdir("kvd-tls-cluster-")
    try:
        pki = tls_certs.Pki(os.path.join(workdir, "pki"))
        other = tls_certs.Pki(os.path.join(workdir, "pki"), name="other-ca")
        cluster_part(pki, other, workdir)
    finally:
        harness.remove_workdir(workdir, R)
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
