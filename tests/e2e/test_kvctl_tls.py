"""kvctl against etcdctl over TLS: `ETCDCTL_API=2 etcdctl` and kvctl run the same commands
against members serving https:// (certificates from tls_certs.Pki), with the TLS settings as
flags and as ETCDCTL_* variables, with failover from a dead endpoint, and in every failure
etcdctl reports for TLS: unknown CA (also one with the trusted CA's name), expired server
certificate, names that do not match, a server requiring a client certificate (none given, or
one from another CA), missing, non-PEM, switched and mismatched certificate and key files,
https:// to plain HTTP servers, http:// to a TLS port, a server silent during the handshake.
stdout, stderr and exit codes must match after normalising what legitimately differs (ports,
member IDs, index numbers relative to each member's start, the current time in an expiry
message).

etcdctl always talks to etcd. kvctl talks to etcd and to kvd (see SERVER_KINDS); a kvd that
refuses https:// URLs (one built without TLS) has only its part skipped. The one alert kvd's
server sends differently is normalised (Target.normalize).
Each tool changes keys on a member of its own; the members of the failure cases (client
certificates required, expired certificate, wrong names, plain HTTP) are shared by etcdctl
and kvctl on etcd, and so are the stand-ins that depend on nothing but the client (a server
answering plain HTTP, one that never answers, a dead port).

Run: KVCTL_BIN=build/cli/kvctl [KVD_BIN=build/server/kvd] python3 tests/e2e/test_kvctl_tls.py
"""
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tls_certs  # noqa: E402

STEP_TIMEOUT = 40.0
# The server kinds kvctl is compared on. kvd is tried and skipped (alone) while it refuses
# https:// URLs; etcd is required.
SERVER_KINDS = ["etcd", "kvd"]


class TlsMember(harness.Member):
    """A member serving its client URL over https:// with `cert`/`key` (or, with
    scheme="http", plain); with `client_ca` it requires client certificates from that CA
    (etcd's --client-cert-auth). `advertise`, when set before start(), replaces the advertised
    client URLs. Peers stay http://."""

    def __init__(self, kind, cert, key, ca, client_ca=None, client_pair=None, scheme="https"):
        extra = []
        if scheme == "https":
            extra = ["--cert-file", cert, "--key-file", key]
        if client_ca:
            extra += ["--trusted-ca-file", client_ca, "--client-cert-auth"]
        super().__init__(kind, extra_args=extra)
        self.scheme = scheme
        self.advertise = None
        self.ca = ca
        self.client_pair = client_pair  # (cert, key) to present to a client_ca member

    @property
    def url(self):
        return f"{self.scheme}://{self.host}:{self.client_port}"

    def args(self):
        a = super().args()
        if self.advertise:
            a[a.index("--advertise-client-urls") + 1] = self.advertise
        return a

    def https_request(self, path, timeout=2.0):
        """GET path over this member's scheme; (status, headers (lower-case), body)."""
        if self.scheme == "http":
            return harness.request("GET", self.url + path, timeout=timeout)
        # Unverified: some members serve expired or misnamed certificates on purpose, and
        # only the tools under test are meant to judge them.
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if self.client_pair:
            ctx.load_cert_chain(*self.client_pair)
        conn = http.client.HTTPSConnection(self.host, self.client_port, context=ctx,
                                           timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; log:\n"
                                   + self.read_log())
            try:
                if self.https_request("/health", timeout=1.0)[0] == 200:
                    return
            except (OSError, ssl.SSLError):
                pass
            time.sleep(harness.POLL_S)
        raise RuntimeError(f"{self.kind} not ready after {timeout}s; log:\n" + self.read_log())

    def current_index(self):
        return int(self.https_request("/v2/keys/")[1]["x-etcd-index"])


class Http400Server:
    """A plain HTTP server on a free port that answers anything with 400 and closes: what an
    https:// client meets at a plain HTTP port of most servers. In-process (daemon thread)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(2.0)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self):
        self.sock.close()


class SilentListener:
    """A port whose connections the kernel accepts but nobody reads: a TLS handshake with it
    never ends."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


class Target:
    """One tool against one server kind: how placeholders in arguments expand to its
    members' URLs and the test's files, and the normalisation of its output."""

    def __init__(self, label, tool, main, subs):
        self.label = label
        self.tool = tool
        self.main = main  # the member whose keys the sequence changes
        self.subs = subs  # placeholder -> text
        self.base_index = None

    def expand(self, text):
        for k, v in self.subs.items():
            text = text.replace("{" + k + "}", v)
        return text

    def run(self, args, env=None):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
        environ["ETCDCTL_API"] = "2"
        for k, v in (env or {}).items():
            environ[k] = self.expand(v)
        p = subprocess.run([self.tool] + [self.expand(a) for a in args],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=environ, timeout=STEP_TIMEOUT)
        return (p.returncode, self.normalize(p.stdout.decode(errors="replace")),
                self.normalize(p.stderr.decode(errors="replace")))

    def normalize(self, text):
        base = self.base_index
        if self.label.endswith("/kvd"):
            # The one alert kvd's server sends differently: a missing client certificate gets
            # TLS 1.3's certificate_required (OpenSSL, RFC 8446 4.4.2.4), where Go's server
            # sends bad_certificate. Every other refusal is bad_certificate on both.
            text = text.replace("remote error: tls: certificate required",
                                "remote error: tls: bad certificate")

        def rel(m):
            return f"{m.group(1)}<{int(m.group(2)) - base}>"

        for k, v in sorted(self.subs.items(), key=lambda kv: -len(kv[1])):
            if k.isupper() and "://" in v:
                text = text.replace(v, "<" + k + ">")
        text = re.sub(r"(Created-Index: |Modified-Index: |Index: |\"createdIndex\":|"
                      r"\"modifiedIndex\":|\) \[)(\d+)", rel, text)
        text = re.sub(r"current time \S+ is", "current time <NOW> is", text)
        text = re.sub(r"\b[0-9a-f]{16}\b", "<ID>", text)
        text = re.sub(r"(?m)^[0-9a-f]{1,16}(?=: name=)", "<ID>", text)
        text = re.sub(r"\b(member )[0-9a-f]{1,16}\b", r"\1<ID>", text)
        text = re.sub(r"127\.0\.0\.1:\d+", "<ADDR>", text)
        return text


class Comparison:
    def __init__(self, results, ref, others):
        self.results = results
        self.ref = ref
        self.others = others

    def step(self, args, env=None, attempts=1, unordered=False):
        """Runs args with etcdctl and every other target and compares their outputs.
        `attempts` > 1 where etcd races with the client, and etcdctl's own output varies from
        run to run (only for steps that change nothing, since they may run again): etcd's
        plain port closes a TLS client's connection with a FIN or, about one time in ten, a
        reset; a server rejecting a client certificate after a TLS 1.3 handshake makes
        etcdctl report its alert, or (one time in ten) the reset of the request it was
        writing. Such a step is repeated until the outputs agree. `unordered`: the lines, and
        the items of a [...] list, are compared in sorted order (a member's client URLs are
        listed in an order that depends on their port numbers)."""
        name = " ".join(args) + (f" env={env}" if env else "")

        def run(t):
            rc, out, err = t.run(args, env)
            if unordered:
                out = re.sub(r"\[([^\]]*)\]", lambda m: "[" + " ".join(sorted(m.group(1).split()))
                             + "]", out)
                out = "\n".join(sorted(out.split("\n")))
            return rc, out, err

        want = run(self.ref)
        for t in self.others:
            got = run(t)
            for _ in range(attempts - 1):
                if want == got:
                    break
                want, got = run(self.ref), run(t)
            detail = name if want == got else \
                f"{name} [{t.label}]\n  etcdctl: {want!r}\n  kvctl:   {got!r}"
            self.results.check(want == got, detail)


def sequence(c):
    s = c.step
    ca = ["--ca-file", "{CA}"]
    client = ["--cert-file", "{CLIENT}", "--key-file", "{CLIENT_KEY}"]
    # The keys API, members and health over https:// with the CA given as a flag.
    s(["--endpoints", "{EP}"] + ca + ["set", "/tls/a", "1"])
    s(["--endpoints", "{EP}"] + ca + ["get", "/tls/a"])
    s(["--endpoints", "{EP}"] + ca + ["-o", "extended", "get", "/tls/a"])
    s(["--endpoints", "{EP}"] + ca + ["mk", "/tls/b", "2"])
    s(["--endpoints", "{EP}"] + ca + ["mk", "/tls/b", "2"])
    s(["--endpoints", "{EP}"] + ca + ["mkdir", "/tls/d"])
    s(["--endpoints", "{EP}"] + ca + ["ls", "--sort", "-r", "/tls"])
    s(["--endpoints", "{EP}"] + ca + ["rm", "/tls/b"])
    s(["--endpoints", "{EP}"] + ca + ["rm", "/tls/b"])
    s(["--endpoints", "{EP}"] + ca + ["set", "/w/k", "v"])
    s(["--endpoints", "{EP}"] + ca + ["watch", "--after-index", "1", "/w/k"])
    s(["--endpoints", "{EP}"] + ca + ["-o", "json", "watch", "--after-index", "1", "/w/k"])
    s(["--endpoints", "{EP}"] + ca + ["member", "list"])
    s(["--endpoints", "{EP}"] + ca + ["cluster-health"])
    s(["--debug", "--endpoints", "{EP}"] + ca + ["get", "/tls/a"])
    # Client certificates, as flags and as variables (a flag wins over its variable).
    s(["--endpoints", "{MTLS}"] + ca + client + ["set", "/m", "1"])
    s(["--endpoints", "{MTLS}"] + ca + client + ["member", "list"])
    s(["--endpoints", "{MTLS}"] + ca + client + ["cluster-health"])
    s(["--endpoints", "{MTLS}", "get", "/m"],
      env={"ETCDCTL_CA_FILE": "{CA}", "ETCDCTL_CERT_FILE": "{CLIENT}",
           "ETCDCTL_KEY_FILE": "{CLIENT_KEY}"})
    s(["--endpoints", "{MTLS}", "--cert-file", "{CLIENT}", "get", "/m"],
      env={"ETCDCTL_CA_FILE": "{CA}", "ETCDCTL_CERT_FILE": "{OCLIENT}",
           "ETCDCTL_KEY_FILE": "{CLIENT_KEY}"})
    s(["--endpoints", "{EP}", "ls", "--sort", "/tls"], env={"ETCDCTL_CA_FILE": "{CA}"})
    s(["--endpoints", "{EP}", "cluster-health"], env={"ETCDCTL_CA_FILE": "{CA}"})
    s(["ls", "--sort", "/tls"], env={"ETCDCTL_ENDPOINTS": "{EP}", "ETCDCTL_CA_FILE": "{CA}"})
    # etcdctl v2 has no --insecure-skip-tls-verify (nor its variable, which is ignored).
    s(["--insecure-skip-tls-verify", "--endpoints", "{EP}", "ls", "/tls"])
    s(["--endpoints", "{EP}", "ls", "/tls"],
      env={"ETCDCTL_CA_FILE": "{SAME_NAME_CA}", "ETCDCTL_INSECURE_SKIP_TLS_VERIFY": "true"})
    # Failover: the first endpoint is dead; -C, --peers and --endpoints, with and without sync.
    s(["--endpoints", "https://127.0.0.1:{DEAD},{EP}"] + ca + ["get", "/tls/a"])
    s(["--no-sync", "--endpoints", "https://127.0.0.1:{DEAD},{EP}"] + ca + ["get", "/tls/a"])
    s(["-C", "https://127.0.0.1:{DEAD},{EP}"] + ca + ["set", "/tls/c", "3"])
    s(["--peers", "https://127.0.0.1:{DEAD},{EP}"] + ca + ["ls", "--sort", "/tls"])
    s(["--no-sync", "--endpoints", "https://127.0.0.1:{DEAD}"] + ca + ["get", "/tls/a"])
    s(["--endpoints", "https://127.0.0.1:{DEAD}"] + ca + ["cluster-health"])
    # The server's certificate: unknown CA, expired, not for this name, not for serving.
    s(["--endpoints", "{EP}", "ls", "/tls"])
    s(["--endpoints", "{EP}", "member", "list"])
    s(["--endpoints", "{EP}", "cluster-health"])
    s(["--endpoints", "{EP}", "--ca-file", "{OTHER_CA}", "get", "/tls/a"])
    s(["--endpoints", "{EP}", "--ca-file", "{SAME_NAME_CA}", "get", "/tls/a"])
    s(["--endpoints", "{EP}", "--ca-file", "{NOT_PEM}", "get", "/tls/a"])
    s(["--endpoints", "{EXPIRED}"] + ca + ["get", "/tls/a"])
    s(["--no-sync", "--endpoints", "{EXPIRED}"] + ca + ["watch", "--after-index", "1", "/w/k"])
    s(["--endpoints", "{NAMES}"] + ca + ["get", "/tls/a"])
    s(["--no-sync", "--endpoints", "{NAMES_DNS}"] + ca + ["get", "/tls/a"])
    s(["--endpoints", "{EP_DNS}"] + ca + ["get", "/tls/a"])
    # The client's certificate: none, from another CA, files missing, not PEM, switched,
    # not matching, one without the other.
    s(["--endpoints", "{MTLS}"] + ca + ["get", "/m"], attempts=5)
    s(["--endpoints", "{MTLS}"] + ca + ["member", "list"], attempts=5)
    s(["--endpoints", "{MTLS}"] + ca + ["cluster-health"], attempts=5)
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{OCLIENT}", "--key-file",
                                         "{OCLIENT_KEY}", "get", "/m"], attempts=5)
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{MISSING}", "--key-file",
                                         "{CLIENT_KEY}", "get", "/m"])
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{CLIENT}", "--key-file", "{MISSING}",
                                         "get", "/m"])
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{NOT_PEM}", "--key-file",
                                         "{CLIENT_KEY}", "get", "/m"])
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{CLIENT}", "--key-file", "{NOT_PEM}",
                                         "get", "/m"])
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{CLIENT_KEY}", "--key-file",
                                         "{CLIENT}", "get", "/m"])
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{CLIENT}", "--key-file", "{CLIENT}",
                                         "get", "/m"])
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{CLIENT}", "--key-file",
                                         "{OCLIENT_KEY}", "get", "/m"])
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{CLIENT}", "get", "/m"])
    s(["--endpoints", "{MTLS}", "--key-file", "{CLIENT_KEY}", "get", "/m"],
      env={"ETCDCTL_CA_FILE": "{CA}"})
    s(["--endpoints", "{MTLS}", "--ca-file", "{MISSING}", "get", "/m"])
    s(["--endpoints", "{MTLS}", "--ca-file", "{CLIENT_KEY}", "get", "/m"])
    s(["--endpoints", "{MTLS}"] + ca + ["--cert-file", "{MISSING}", "--key-file",
                                         "{CLIENT_KEY}", "cluster-health"])
    s(["--endpoints", "http://127.0.0.1:{DEAD}", "--cert-file", "{CLIENT}", "ls"])
    # The wrong protocol on either side, and a server silent during the handshake.
    s(["--endpoints", "{PLAIN_AS_HTTPS}"] + ca + ["get", "/tls/a"], attempts=5)
    s(["--endpoints", "{HTTP400}"] + ca + ["get", "/tls/a"])
    s(["--endpoints", "{HTTP400_AS_HTTP}"] + ca + ["get", "/tls/a"])
    s(["--endpoints", "{PLAIN}"] + ca + ["cluster-health"], attempts=5, unordered=True)
    s(["--endpoints", "{EP_AS_HTTP}"] + ca + ["get", "/tls/a"])
    s(["--endpoints", "{EP_AS_HTTP}", "cluster-health"])
    s(["--endpoints", "{SILENT}"] + ca + ["get", "/tls/a"])
    s(["--no-sync", "--endpoints", "{SILENT}"] + ca + ["watch", "/tls/a"])


def check_crl(results, pki):
    """tls_certs.Pki.revoke lists every revoked leaf in the CA's CRL."""
    first, _ = pki.issue("revoked1", server=False)
    second, _ = pki.issue("revoked2", server=False)
    pki.revoke(first)
    crl = pki.revoke(second)

    def serial(cert):
        out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-serial"],
                             stdout=subprocess.PIPE, check=True).stdout.decode()
        return out.strip().split("=", 1)[1].upper()
    text = subprocess.run(["openssl", "crl", "-in", crl, "-CAfile", pki.ca, "-noout", "-text"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
    listed = re.sub(r"[^0-9A-F\n]", "", text.upper())
    results.check("verify OK" in text and serial(first) in listed and serial(second) in listed,
                  f"the CRL lists both revoked leaves and is signed by the CA:\n{text[:600]}")


class NoTls(Exception):
    """The server kind does not serve https:// (yet)."""


def kind_servers(kind, files, http400_port):
    """The members of one server kind: main (the sequence's keys), mtls (client certificates
    required), expired, names (a certificate for 127.0.0.2 and example.test), and a plain
    http:// member advertising https:// URLs (its own port and the plain HTTP server), for
    cluster-health's checks. Raises NoTls if main, the first, does not start (the kind
    refuses https:// URLs), RuntimeError if another one does not."""
    started = []
    try:
        def start(key, *args, **kw):
            m = TlsMember(kind, *args, **kw)
            started.append(m)
            try:
                m.start()
            except RuntimeError as e:
                if key != "main":
                    raise
                last = [line for line in str(e).splitlines() if line.strip()][-1]
                raise NoTls(last) from e
            return key, m

        out = dict([
            start("main", *files["server"], files["ca"]),
            start("mtls", *files["server"], files["ca"], client_ca=files["ca"],
                  client_pair=files["client"]),
            start("expired", *files["expired"], files["ca"]),
            start("names", *files["names"], files["ca"]),
        ])
        plain = TlsMember(kind, None, None, None, scheme="http")
        plain.advertise = (f"https://127.0.0.1:{plain.client_port},"
                           f"https://127.0.0.1:{http400_port}")
        started.append(plain)
        out["plain"] = plain.start()
        return out, started
    except Exception:
        for m in started:
            m.cleanup()
        raise


def target_subs(servers, files, dead_port, http400_port, silent_port):
    def port(m):
        return str(m.client_port)
    return {
        "EP": servers["main"].url,
        "EP_DNS": f"https://localhost:{port(servers['main'])}",
        "EP_AS_HTTP": f"http://127.0.0.1:{port(servers['main'])}",
        "MTLS": servers["mtls"].url,
        "EXPIRED": servers["expired"].url,
        "NAMES": servers["names"].url,
        "NAMES_DNS": f"https://localhost:{port(servers['names'])}",
        "PLAIN": servers["plain"].url,
        "PLAIN_AS_HTTPS": f"https://127.0.0.1:{port(servers['plain'])}",
        "HTTP400": f"https://127.0.0.1:{http400_port}",
        "HTTP400_AS_HTTP": f"http://127.0.0.1:{http400_port}",
        "SILENT": f"https://127.0.0.1:{silent_port}",
        "DEAD": str(dead_port),
        "CA": files["ca"],
        "OTHER_CA": files["other_ca"],
        "SAME_NAME_CA": files["same_name_ca"],
        "CLIENT": files["client"][0],
        "CLIENT_KEY": files["client"][1],
        "OCLIENT": files["oclient"][0],
        "OCLIENT_KEY": files["oclient"][1],
        "NOT_PEM": files["not_pem"],
        "MISSING": files["missing"],
    }


def make_files(workdir):
    pki = tls_certs.Pki(os.path.join(workdir, "pki"))
    other = tls_certs.Pki(os.path.join(workdir, "pki"), name="other")
    same_name = tls_certs.Pki(os.path.join(workdir, "pki-same-name"))  # also CN=ca
    not_pem = os.path.join(workdir, "not-pem.txt")
    with open(not_pem, "w") as f:
        f.write("not a certificate\n")
    return pki, {
        "ca": pki.ca,
        "other_ca": other.ca,
        "same_name_ca": same_name.ca,
        "server": pki.issue("server"),
        "expired": pki.issue("expired", expired=True),
        "names": pki.issue("names", sans=("127.0.0.2", "example.test")),
        "client": pki.issue("client", server=False),
        "oclient": other.issue("oclient", server=False),
        "not_pem": not_pem,
        "missing": os.path.join(workdir, "missing.pem"),
    }


def main():
    harness.require_etcd()
    kvctl = os.environ.get("KVCTL_BIN", "kvctl")
    if not os.access(kvctl, os.X_OK):
        print(f"SKIP: kvctl not built at {kvctl}")
        sys.exit(harness.SKIP)
    if shutil.which("openssl") is None:
        print("SKIP: the openssl command is not installed (apt-get install openssl)")
        sys.exit(harness.SKIP)
    workdir = harness.new_workdir("kvctl-tls-")
    results = harness.Results()
    members = []
    helpers = []
    try:
        pki, files = make_files(workdir)
        check_crl(results, pki)
        http400 = Http400Server()
        silent = SilentListener()
        helpers += [http400, silent]
        dead_port = harness.free_port()
        targets = {}
        ref_main = TlsMember("etcd", *files["server"], files["ca"])
        members.append(ref_main)
        ref_main.start()
        for kind in SERVER_KINDS:
            if kind == "kvd" and not os.access(harness.KVD_BIN, os.X_OK):
                print(f"note: no kvd at {harness.KVD_BIN}: kvctl is compared on etcd only")
                continue
            try:
                servers, started = kind_servers(kind, files, http400.port)
            except NoTls as e:
                if kind == "etcd":
                    raise
                # kvd without TLS refuses https:// URLs: only its part is skipped.
                print(f"note: {kind} does not serve https:// yet, kvctl is compared on etcd "
                      f"only ({kind} said: {e})")
                continue
            members += started
            targets[kind] = (servers, target_subs(servers, files, dead_port, http400.port,
                                                  silent.port))
        etcd_subs = targets["etcd"][1]
        ref_subs = dict(etcd_subs, EP=ref_main.url,
                        EP_DNS=f"https://localhost:{ref_main.client_port}",
                        EP_AS_HTTP=f"http://127.0.0.1:{ref_main.client_port}")
        ref = Target("etcdctl/etcd", harness.ETCDCTL_BIN, ref_main, ref_subs)
        others = [Target(f"kvctl/{kind}", kvctl, servers["main"], subs)
                  for kind, (servers, subs) in targets.items()]
        for t in [ref] + others:
            t.base_index = t.main.current_index()
        sequence(Comparison(results, ref, others))
    finally:
        for m in members:
            m.cleanup()
        for h in helpers:
            h.close()
        harness.remove_workdir(workdir, results)
    results.finish()


if __name__ == "__main__":
    main()
