#!/usr/bin/python3
"""confd (its etcd v2 backend, `-backend etcd`) against kvd over TLS, side by side with etcd:
one kvd member and one etcd member serving https:// with --trusted-ca-file and
--client-cert-auth, and confd run with -node https://... -scheme https -client-cert
-client-key -client-ca-keys on each:

  - -onetime renders a template (getv, getv with a default, gets, ls, exists) into the same file
    on both, exit 0 and the same log (after normalisation);
  - -onetime with a key the template needs missing: the same failure on both;
  - -onetime without a client certificate: refused on both (exit 1, the same log), nothing
    written;
  - -watch: confd renders, then re-renders after a key changes (its long-poll watches over
    TLS), on both;
  - -onetime through kvd's proxy on https in front of the kvd member.

Optional: skips (77) when no confd binary is found ($CONFD_BIN, else `confd` on PATH); confd
0.16 is no Debian package (built from its source, whose v0.16.0 tag vendors its dependencies:
GO111MODULE=off go build in a GOPATH). Also skips without etcd.

Run: KVD_BIN=build/server/kvd CONFD_BIN=/path/to/confd /usr/bin/python3 tests/e2e/test_confd_tls.py
"""
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tls_certs  # noqa: E402

R = harness.Results()
CONFD_BIN = os.environ.get("CONFD_BIN") or shutil.which("confd")

KEYS = [("/myapp/database/url", "db.example:5432"), ("/myapp/database/user", "rob"),
        ("/myapp/upstream/a", "10.0.0.1:80"), ("/myapp/upstream/b", "10.0.0.2:80")]
TEMPLATE = """url = {{getv "/myapp/database/url"}}
user = {{getv "/myapp/database/user"}}
port = {{getv "/myapp/database/port" "5432"}}
{{range gets "/myapp/upstream/*"}}upstream {{base .Key}} = {{.Value}}
{{end}}{{range ls "/myapp/database"}}field {{.}}
{{end}}{{if exists "/myapp/feature"}}feature on{{else}}feature off{{end}}
"""
WANT = """url = db.example:5432
user = rob
port = 5432
upstream a = 10.0.0.1:80
upstream b = 10.0.0.2:80
field url
field user
feature off
"""


class Site:
    """One server with its own confd configuration directory and output file."""

    def __init__(self, label, kind, url, member, workdir):
        self.label = label
        self.kind = kind
        self.url = url
        self.member = member
        self.confdir = os.path.join(workdir, "confd")
        self.out = os.path.join(workdir, "myapp.conf")
        os.makedirs(os.path.join(self.confdir, "conf.d"), exist_ok=True)
        os.makedirs(os.path.join(self.confdir, "templates"), exist_ok=True)
        with open(os.path.join(self.confdir, "conf.d", "myapp.toml"), "w") as f:
            f.write(f'[template]\nsrc = "myapp.tmpl"\ndest = "{self.out}"\nkeys = ["/myapp"]\n')
        with open(os.path.join(self.confdir, "templates", "myapp.tmpl"), "w") as f:
            f.write(TEMPLATE)

    def output(self):
        try:
            with open(self.out) as f:
                return f.read()
        except OSError:
            return None

    def remove_output(self):
        if os.path.exists(self.out):
            os.remove(self.out)


def confd_args(site, pki, client, mode):
    a = [CONFD_BIN, *mode, "-backend", "etcd", "-node", site.url, "-scheme", "https",
         "-client-ca-keys", pki.ca, "-confdir", site.confdir, "-log-level", "info"]
    if client:
        a += ["-client-cert", client[0], "-client-key", client[1]]
    return a


def normalize(text, site):
    """confd's log: the line prefix (time, host, program, pid), the URL, the output path. kvd's
    one differing TLS alert (see test_kvctl_tls.py) is normalised."""
    text = re.sub(r"(?m)^\S+ \S+ \S+\[\d+\]: ", "", text)
    text = text.replace(site.url, "<url>").replace(site.out, "<dest>")
    text = re.sub(r"\.myapp\.conf\d+", ".myapp.conf<tmp>", text)
    text = text.replace("readLoopPeekFailLocked: ", "")
    if site.kind == "kvd":
        text = text.replace("remote error: tls: certificate required",
                            "remote error: tls: bad certificate")
    return text


def onetime(site, pki, client):
    p = subprocess.run(confd_args(site, pki, client, ["-onetime"]), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
    return (p.returncode, normalize(p.stdout.decode(errors="replace"), site),
            normalize(p.stderr.decode(errors="replace"), site), site.output())


def compare_onetime(sites, pki, client, what, want_rc, want_out, attempts=1):
    outs = None
    for _ in range(attempts):
        for s in sites:
            s.remove_output()
        outs = [onetime(s, pki, client) for s in sites]
        if all(o == outs[0] for o in outs):
            break
    ref = outs[0]
    if os.environ.get("KVD_E2E_VERBOSE") == "1":
        print(f"   {what} -> etcd {ref!r}", flush=True)
    R.check(ref[0] == want_rc and ref[3] == want_out,
            f"{what} on etcd: exit {ref[0]} (want {want_rc}), output {ref[3]!r}\n  log: {ref[2]!r}")
    for s, o in zip(sites[1:], outs[1:]):
        R.check(o == ref, f"{what} [{s.label}]:\n  etcd: {ref!r}\n  got:  {o!r}")


def watch_mode(sites, pki, client):
    """confd -watch on every site: the first render, then a change of a key re-rendered."""
    procs = []
    try:
        for s in sites:
            s.remove_output()
            log = open(os.path.join(os.path.dirname(s.out), "confd-watch.log"), "wb")
            procs.append(subprocess.Popen(confd_args(s, pki, client, ["-watch"]),
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        for s in sites:
            ok = harness.wait_for(lambda: s.output() == WANT, 30)
            R.check(ok, f"confd -watch [{s.label}]: first render: {s.output()!r}")
        for s in sites:
            st, _, _ = harness.put(s.member, "/myapp/database/user", "alice")
            R.check(st == 200, f"confd -watch [{s.label}]: the write: {st}")
        want = WANT.replace("user = rob", "user = alice")
        for s in sites:
            ok = harness.wait_for(lambda: s.output() == want, 30)
            R.check(ok, f"confd -watch [{s.label}]: re-rendered after the change: {s.output()!r}")
        for s in sites:
            st, _, _ = harness.put(s.member, "/myapp/feature", "1")
        want = want.replace("feature off", "feature on")
        for s in sites:
            ok = harness.wait_for(lambda: s.output() == want, 30)
            R.check(ok, f"confd -watch [{s.label}]: a new key re-rendered: {s.output()!r}")
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
        for s in sites:
            harness.request("DELETE", s.member.url + "/v2/keys/myapp/feature")
            harness.put(s.member, "/myapp/database/user", "rob")


def main():
    if not CONFD_BIN or not os.access(CONFD_BIN, os.X_OK):
        print("SKIP: no confd binary ($CONFD_BIN, or confd on PATH)")
        sys.exit(harness.SKIP)
    harness.require_etcd()
    workdir = harness.new_workdir("kvd-confd-tls-")
    procs = []
    try:
        pki = tls_certs.Pki(os.path.join(workdir, "pki"))
        server = pki.issue("server", cn="server", sans=("127.0.0.1",))
        client = pki.issue("client", cn="client", server=False)
        ctx = ssl.create_default_context(cafile=pki.ca)
        ctx.load_cert_chain(*client)
        harness.DEFAULT_SSL_CONTEXT = ctx
        tls = ["--cert-file", server[0], "--key-file", server[1], "--trusted-ca-file", pki.ca,
               "--client-cert-auth"]
        sites = []
        for kind in ("etcd", "kvd"):
            d = os.path.join(workdir, kind)
            os.makedirs(d)
            m = harness.Member(kind, workdir=d, client_scheme="https", extra_args=tls)
            procs.append(m)
            m.start(timeout=30)
            sites.append(Site(kind, kind, m.url, m, d))
        for s in sites:
            for k, v in KEYS:
                st, _, body = harness.put(s.member, k, v)
                R.check(st == 201, f"[{s.label}] PUT {k}: {st} {body[:200]!r}")

        compare_onetime(sites, pki, client, "confd -onetime over TLS", 0, WANT)
        for s in sites:
            harness.request("DELETE", s.member.url + "/v2/keys/myapp/database/url")
        compare_onetime(sites, pki, client, "confd -onetime, a key missing", 1, None)
        for s in sites:
            harness.put(s.member, "/myapp/database/url", "db.example:5432")
        compare_onetime(sites, pki, None, "confd -onetime without a client certificate", 1, None,
                        attempts=5)
        watch_mode(sites, pki, client)

        kvd_dir = os.path.join(workdir, "kvd")
        px = harness.Proxy("kvd", f"default={sites[1].member.peer_url}", kvd_dir, scheme="https",
                           extra_args=tls)
        procs.append(px)
        px.start(want_endpoints=1, timeout=30)
        via = Site("kvd proxy", "kvd", px.url, sites[1].member, os.path.join(workdir, "via-proxy"))
        compare_onetime([sites[0], via], pki, client, "confd -onetime through the https proxy", 0,
                        WANT)
    except Exception as e:  # a start failure is reported, then the run ends
        R.check(False, f"{type(e).__name__}: {e}")
    finally:
        for p in procs:
            p.kill()
        harness.remove_workdir(workdir, R)
    R.finish()


if __name__ == "__main__":
    main()
