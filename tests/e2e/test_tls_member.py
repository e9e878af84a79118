#!/usr/bin/python3
"""TLS on one member's client port, kvd side by side with etcd where both are run: https with a
CA, client certificates (required, from another CA, expired, revoked by a CRL), plain HTTP and
garbage sent to the TLS port, an expired server certificate, --auto-tls, http and https
listeners side by side, certificate files renewed while running, bad files refused at start
(naming the file, before anything is written), the warnings for TLS flags beside http URLs, and
handshakes that never finish (dropped after a bound, never holding up other clients).
Certificates are made by the test (tls_certs.py, the openssl command); clients are curl,
openssl s_client and Python's ssl module.
"""
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tls_certs  # noqa: E402

R = harness.Results()
# kvd's bound on a TLS client's handshake (ClientServerConfig::tls_handshake_timeout).
HANDSHAKE_BOUND_S = 10


def curl(url, *args, timeout=15):
    """(exit code, stdout, stderr) of curl -sS."""
    p = subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args, url],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def served_cert_der(port, ctx=None):
    """The DER certificate the server on port presents to a new connection (unverified)."""
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    if ctx is not None:
        c = ctx
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with c.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.getpeercert(binary_form=True)


def der_of(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def start_member(kind, workdir, name, args, scheme="https", expect_fail=False):
    m = harness.Member(kind, name=name, workdir=workdir, extra_args=args, client_scheme=scheme)
    if expect_fail:
        m.spawn()
        harness.wait_for(m.exited, 30)
        return m
    m.start(timeout=30)
    return m


def client_cases(pki, other, workdir):
    """--client-cert-auth with a CA and a CRL: which clients get in, kvd as etcd."""
    good, good_key = pki.issue("client", cn="client", server=False)
    foreign, foreign_key = other.issue("foreign", cn="client", server=False)
    expired, expired_key = pki.issue("expired-client", cn="client", server=False, expired=True)
    revoked, revoked_key = pki.issue("revoked-client", cn="client", server=False)
    crl = pki.revoke(revoked)
    server, server_key = pki.issue("server", cn="server")
    harness.DEFAULT_SSL_CONTEXT = ssl.create_default_context(cafile=pki.ca)
    harness.DEFAULT_SSL_CONTEXT.load_cert_chain(good, good_key)
    args = ["--cert-file", server, "--key-file", server_key, "--trusted-ca-file", pki.ca,
            "--client-cert-auth", "--client-crl-file", crl]
    outcomes = {}
    for kind in ("kvd", "etcd"):
        m = start_member(kind, workdir, f"{kind}-cca", args)
        try:
            base = m.url
            ca = ["--cacert", pki.ca]
            rc, out, err = curl(base + "/v2/keys/tls", *ca, "--cert", good, "--key", good_key,
                                "-XPUT", "-d", "value=over-tls")
            R.check(rc == 0 and '"value":"over-tls"' in out, f"{kind}: PUT over TLS: {rc} {out} {err}")
            rc, out, _ = curl(base + "/v2/keys/tls", *ca, "--cert", good, "--key", good_key)
            R.check(rc == 0 and '"value":"over-tls"' in out, f"{kind}: GET over TLS: {rc} {out}")
            # A long poll answered by a later write, both over TLS.
            idx = int(harness.request("GET", base + "/v2/keys/tls")[1]["x-etcd-index"])
            poll = subprocess.Popen(["curl", "-sS", "--max-time", "20", *ca, "--cert", good,
                                     "--key", good_key, f"{base}/v2/keys/tls?wait=true&waitIndex={idx + 1}"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            harness.request("PUT", base + "/v2/keys/tls", body="value=second")
            pout, _ = poll.communicate(timeout=25)
            R.check(b'"value":"second"' in pout, f"{kind}: long-poll watch over TLS: {pout!r}")
            row = {}
            for label, extra in (("good", ["--cert", good, "--key", good_key]),
                                 ("none", []),
                                 ("other CA", ["--cert", foreign, "--key", foreign_key]),
                                 ("expired", ["--cert", expired, "--key", expired_key]),
                                 ("revoked", ["--cert", revoked, "--key", revoked_key, "--http1.1"])):
                rc, out, err = curl(base + "/version", *ca, *extra)
                row[label] = rc == 0 and "etcdserver" in out
            rc, out, err = curl(base.replace("https://", "http://") + "/version")
            row["plain http"] = (rc, out)
            outcomes[kind] = row
            alive = m.proc.poll() is None and harness.request("GET", base + "/version")[0] == 200
            R.check(alive, f"{kind}: still serving after the refused clients")
        finally:
            m.cleanup()
    print(f"   client certificates: {outcomes}", flush=True)
    want = {"good": True, "none": False, "other CA": False, "expired": False, "revoked": False}
    for kind in ("kvd", "etcd"):
        got = {k: v for k, v in outcomes[kind].items() if k in want}
        R.check(got == want, f"{kind}: who gets in: {got}, want {want}")
    R.check(outcomes["kvd"]["plain http"][0] == outcomes["etcd"]["plain http"][0] == 52,
            f"plain HTTP to the TLS port: curl's exit codes kvd/etcd "
            f"{outcomes['kvd']['plain http']} {outcomes['etcd']['plain http']} (want 52: empty reply)")


def expired_server(pki, workdir):
    cert, key = pki.issue("expired-server", cn="server", expired=True)
    m = harness.Member("kvd", name="kvd-expired", workdir=workdir, client_scheme="https",
                       extra_args=["--cert-file", cert, "--key-file", key])
    m.spawn()
    try:
        ok = harness.wait_for(lambda: curl(m.url + "/version", "-k", timeout=2)[0] == 0, 30)
        R.check(ok, "kvd with an expired certificate serves a client that does not verify")
        rc, _, err = curl(m.url + "/version", "--cacert", pki.ca)
        R.check(rc == 60 and "expired" in err, f"a verifying client refuses the expired certificate: {rc} {err}")
    finally:
        m.cleanup()


def auto_tls(workdir):
    m = harness.Member("kvd", name="kvd-auto", workdir=workdir, client_scheme="https",
                       extra_args=["--auto-tls"])
    m.spawn()
    try:
        ok = harness.wait_for(lambda: curl(m.url + "/version", "-k", timeout=2)[0] == 0, 30)
        R.check(ok, "--auto-tls: serves https with its own certificate (curl -k)")
        d = os.path.join(m.data_dir, "fixtures", "client")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        R.check(os.path.exists(cert) and os.path.exists(key), f"--auto-tls: files in {d}")
        R.check(stat.S_IMODE(os.stat(key).st_mode) == 0o600, "--auto-tls: key file is 0600")
        rc, _, err = curl(m.url + "/version")
        R.check(rc == 60, f"--auto-tls: a verifying client refuses the self-signed certificate: {rc} {err}")
        text = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-text"],
                              stdout=subprocess.PIPE, check=True).stdout.decode()
        R.check("O = etcd" in text and "IP Address:127.0.0.1" in text and "P-521" in text,
                "--auto-tls: self-signed, O=etcd, P-521, IP SAN of the listen URL")
        before = open(cert, "rb").read()
        m.kill()
        m.spawn()
        ok = harness.wait_for(lambda: curl(m.url + "/version", "-k", timeout=2)[0] == 0, 30)
        R.check(ok and open(cert, "rb").read() == before, "--auto-tls: a restart reuses the files")
        R.check(served_cert_der(m.client_port) == der_of(cert), "--auto-tls: serves that certificate")
    finally:
        m.cleanup()


def side_by_side(pki, workdir):
    cert, key = pki.issue("both", cn="server")
    http_port = harness.free_port()
    m = harness.Member("kvd", name="kvd-both", workdir=workdir, client_scheme="https")
    m.extra_args = ["--cert-file", cert, "--key-file", key, "--listen-client-urls",
                    f"{m.url},http://127.0.0.1:{http_port}", "--advertise-client-urls", m.url]
    m.start(timeout=30)
    try:
        harness.request("PUT", m.url + "/v2/keys/both", body="value=1")
        st, _, body = harness.request("GET", f"http://127.0.0.1:{http_port}/v2/keys/both")
        R.check(st == 200 and b'"value":"1"' in body, "http and https listeners side by side serve one store")
        log = m.read_log()
        R.check("scheme is HTTP while key and cert files are present" in log,
                "the warning for an http URL beside TLS flags is logged")
    finally:
        m.cleanup()


def rotation(pki, workdir):
    d = os.path.join(workdir, "rot")
    os.makedirs(d)
    c1, k1 = pki.issue("rot1", cn="server")
    c2, k2 = pki.issue("rot2", cn="server")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    shutil.copy(c1, cert)
    shutil.copy(k1, key)
    m = harness.Member("kvd", name="kvd-rot", workdir=workdir, client_scheme="https",
                       extra_args=["--cert-file", cert, "--key-file", key])
    harness.DEFAULT_SSL_CONTEXT = ssl.create_default_context(cafile=pki.ca)
    m.start(timeout=30)
    try:
        R.check(served_cert_der(m.client_port) == der_of(c1), "rotation: the first certificate is served")
        # A keep-alive connection opened before the renewal.
        ctx = ssl.create_default_context(cafile=pki.ca)
        held = ctx.wrap_socket(socket.create_connection(("127.0.0.1", m.client_port), timeout=5),
                               server_hostname="127.0.0.1")
        # Renewal as a tool does it: new files written beside, renamed over the old ones.
        shutil.copy(c2, cert + ".new")
        shutil.copy(k2, key + ".new")
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
        R.check(served_cert_der(m.client_port) == der_of(c2), "rotation: a new connection gets the renewed certificate")
        R.check(held.getpeercert(binary_form=True) == der_of(c1), "rotation: an open connection keeps its certificate")
        held.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        R.check(held.recv(4096).startswith(b"HTTP/1.1 200"), "rotation: the open connection still serves")
        held.close()
        # Broken files (a renewal half done): new connections keep the last good certificate.
        with open(cert, "w") as f:
            f.write("not a certificate\n")
        R.check(served_cert_der(m.client_port) == der_of(c2),
                "rotation: broken files keep the last good certificate for new connections")
        R.check(harness.wait_for(lambda: "cannot be used" in m.read_log(), 10),
                "rotation: broken files are logged")
        shutil.copy(c1, cert + ".new")
        shutil.copy(k1, key + ".new")
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
        R.check(served_cert_der(m.client_port) == der_of(c1), "rotation: fixed files are used again")
    finally:
        m.cleanup()


def bad_files(pki, workdir):
    """Each bad file stops kvd with exit 1 and a message naming it, before the data dir exists."""
    cert, key = pki.issue("bf", cn="server")
    other_cert, other_key = pki.issue("bf-other", cn="server")
    missing = os.path.join(workdir, "nonexistent.pem")
    notpem = os.path.join(workdir, "notpem.txt")
    with open(notpem, "w") as f:
        f.write("this is not a pem file\n")
    cases = [
        ("missing cert", ["--cert-file", missing, "--key-file", key], missing),
        ("missing key", ["--cert-file", cert, "--key-file", missing], missing),
        ("cert not PEM", ["--cert-file", notpem, "--key-file", key], notpem),
        ("key not PEM", ["--cert-file", cert, "--key-file", notpem], notpem),
        ("key of another cert", ["--cert-file", cert, "--key-file", other_key], other_key),
        ("cert without key", ["--cert-file", cert], "--key-file"),
        ("missing CA", ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", missing], missing),
        ("CA not PEM", ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", notpem], notpem),
        ("missing CRL", ["--cert-file", cert, "--key-file", key, "--client-crl-file", missing], missing),
        ("https without certs", [], "--cert-file, --key-file"),
        ("unknown cipher suite", ["--cert-file", cert, "--key-file", key, "--cipher-suites",
                                  "TLS_FOO_BAR"], '"TLS_FOO_BAR"'),
        ("peer https without certs", ["--cert-file", cert, "--key-file", key, "--listen-peer-urls",
                                      "https://127.0.0.1:1", "--initial-advertise-peer-urls",
                                      "https://127.0.0.1:1", "--initial-cluster",
                                      "bad11=https://127.0.0.1:1"], "--peer-cert-file"),
    ]
    for i, (label, args, named) in enumerate(cases):
        m = harness.Member("kvd", name=f"bad{i}", workdir=workdir, client_scheme="https")
        m.extra_args = args
        m.spawn()
        harness.wait_for(m.exited, 20)
        log = m.read_log()
        R.check(m.exited() and m.proc.returncode == 1 and named in log,
                f"bad files: {label}: exit {m.proc.returncode}, names {named!r}: {log[-300:]!r}")
        R.check(not os.path.exists(m.data_dir), f"bad files: {label}: no data dir written")
        m.cleanup()


def handshake_bound(pki, workdir):
    cert, key = pki.issue("hs", cn="server")
    m = harness.Member("kvd", name="kvd-hs", workdir=workdir, client_scheme="https",
                       extra_args=["--cert-file", cert, "--key-file", key])
    harness.DEFAULT_SSL_CONTEXT = ssl.create_default_context(cafile=pki.ca)
    m.start(timeout=30)
    try:
        silent = socket.create_connection(("127.0.0.1", m.client_port), timeout=5)
        partial = socket.create_connection(("127.0.0.1", m.client_port), timeout=5)
        partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello that never completes
        garbage = socket.create_connection(("127.0.0.1", m.client_port), timeout=5)
        garbage.sendall(b"\xff" * 64)
        t0 = time.monotonic()
        for _ in range(20):
            st, _, _ = harness.request("GET", m.url + "/version", timeout=5)
            R.check(st == 200, "a client is served while others stall their handshakes")
        R.check(time.monotonic() - t0 < 5, "20 requests beside stalled handshakes took under 5 s")
        garbage.settimeout(5)
        R.check(garbage.recv(100) == b"", "garbage on the TLS port: closed at once, nothing sent")

        def closed(s):
            s.settimeout(HANDSHAKE_BOUND_S + 10)
            try:
                return s.recv(100) == b""
            except ConnectionResetError:
                return True
        R.check(closed(silent), "a client that never starts its handshake is dropped")
        R.check(closed(partial), "a client that never finishes its handshake is dropped")
        waited = time.monotonic() - t0
        R.check(HANDSHAKE_BOUND_S - 1 <= waited <= HANDSHAKE_BOUND_S + 5,
                f"dropped after the {HANDSHAKE_BOUND_S} s bound ({waited:.1f} s)")
        for s in (silent, partial, garbage):
            s.close()
        R.check(m.proc.poll() is None, "kvd still runs")
    finally:
        m.cleanup()


def main():
    harness.require_etcd()
    workdir = harness.new_workdir("kvd-tls-member-")
    try:
        pki = tls_certs.Pki(os.path.join(workdir, "pki"))
        other = tls_certs.Pki(os.path.join(workdir, "pki"), name="other-ca")
        client_cases(pki, other, workdir)
        expired_server(pki, workdir)
        auto_tls(workdir)
        side_by_side(pki, workdir)
        rotation(pki, workdir)
        bad_files(pki, workdir)
        handshake_bound(pki, workdir)
    finally:
        harness.remove_workdir(workdir, R)
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
