#!/usr/bin/python3
"""Which kvd it is, said where etcd says what it is, without breaking what parses etcd's output:

  - `kvd --version`: etcd's four lines (the same first line as `etcd --version`), with kvd's git
    revision as the Git SHA, then "kvd Version: X"; `kvctl --version`: etcdctl v2's two lines,
    then kvctl's version and the same revision;
  - GET /version on the client port: etcd's members first, then "kvd" and "kvdrevision"; the
    peer port's stays etcd's exactly; a kvd proxy passes the member's on; the startup log names
    the version and revision;
  - etcdctl v2 (--version, cluster-health, member list, set/get), python-etcd (version,
    cluster_version, write/read) and confd (-onetime, when a confd binary is found; skipped
    otherwise) work against kvd as against etcd;
  - the revision is a commit of this checkout (with -dirty for uncommitted changes) or
    "unknown"; common/git_revision.cmake writes it, rewrites its output only when it changed,
    and says "unknown" outside a git checkout.

Run: KVD_BIN=build/server/kvd KVCTL_BIN=build/cli/kvctl /usr/bin/python3 tests/e2e/test_identity.py
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

R = harness.Results()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KVCTL_BIN = os.environ.get("KVCTL_BIN", "kvctl")
CONFD_BIN = os.environ.get("CONFD_BIN") or shutil.which("confd") or (
    "/tmp/confd-build/bin/confd" if os.access("/tmp/confd-build/bin/confd", os.X_OK) else None)
REVISION_RE = re.compile(r"^(?:([0-9a-f]{7,40})(-dirty)?|unknown)$")


def run(args, env=None, timeout=30):
    p = subprocess.run(args, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                       env=env)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def etcdctl_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "2"
    return env


def versions():
    """Checks both --version outputs; returns (kvd version, revision)."""
    print("-- kvd --version and kvctl --version beside etcd's and etcdctl's", flush=True)
    _, etcd_out, _ = run([harness.ETCD_BIN, "--version"])
    rc, kvd_out, _ = run([harness.KVD_BIN, "--version"])
    e, k = etcd_out.splitlines(), kvd_out.splitlines()
    R.check(rc == 0 and len(k) == 5 and k[0] == e[0],
            f"kvd --version: first line as etcd's {e[:1]}: {k}")
    R.check([line.split(":")[0] for line in k[:4]] == [line.split(":")[0] for line in e],
            f"kvd --version: etcd's four lines in etcd's order: {k} / {e}")
    rev = k[1].split(": ", 1)[1] if len(k) > 1 and ": " in k[1] else ""
    m = re.fullmatch(r"kvd Version: (\d+\.\d+\.\d+)", k[4]) if len(k) == 5 else None
    R.check(m is not None, f"kvd --version: last line 'kvd Version: X.Y.Z': {k}")
    version = m.group(1) if m else ""
    R.check(REVISION_RE.match(rev) is not None, f"kvd --version: Git SHA is a revision: {rev!r}")

    _, ctl_out, _ = run([harness.ETCDCTL_BIN, "--version"], env=etcdctl_env())
    rc, kvctl_out, _ = run([KVCTL_BIN, "--version"])
    c, kc = ctl_out.splitlines(), kvctl_out.splitlines()
    R.check(rc == 0 and kc[:2] == c, f"kvctl --version: etcdctl's lines first {c}: {kc}")
    R.check(kc[2:] == [f"kvctl version: {version}", f"Git SHA: {rev}"],
            f"kvctl --version: kvctl's version and kvd's revision: {kc}")
    return version, rev


def revision_is_this_checkout(rev):
    m = REVISION_RE.match(rev)
    if not m or not m.group(1) or not os.path.exists(os.path.join(REPO, ".git")):
        R.check(rev == "unknown" or os.path.exists(os.path.join(REPO, ".git")),
                f"revision {rev!r} without a checkout at {REPO}")
        return
    rc, _, err = run(["git", "-C", REPO, "cat-file", "-e", m.group(1) + "^{commit}"])
    R.check(rc == 0, f"revision {rev!r} is a commit of {REPO}: {err.strip()}")


def revision_script(workdir):
    print("-- common/git_revision.cmake", flush=True)
    cmake = shutil.which("cmake")
    if not cmake or not shutil.which("git") or not os.path.exists(os.path.join(REPO, ".git")):
        print("note: cmake, git or a checkout missing: the script is not run")
        return
    script = os.path.join(REPO, "common", "git_revision.cmake")
    out = os.path.join(workdir, "git_revision.cc")

    def generate(source_dir):
        rc, so, se = run([cmake, f"-DSOURCE_DIR={source_dir}", f"-DOUTPUT={out}", "-P", script])
        R.check(rc == 0, f"git_revision.cmake on {source_dir}: {rc} {so} {se}")
        with open(out) as f:
            text = f.read()
        found = re.search(r'git_revision\(\) \{ return "([^"]*)"; \}', text)
        return found.group(1) if found else None

    _, head, _ = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", REPO, "diff", "--quiet", "HEAD", "--"])[0] == 1
    want = head.strip() + ("-dirty" if dirty else "")
    got = generate(REPO)
    R.check(got == want, f"in the checkout: {got!r}, git says {want!r}")
    before = os.stat(out).st_mtime_ns
    generate(REPO)
    R.check(os.stat(out).st_mtime_ns == before, "an unchanged revision leaves the file untouched")
    plain = os.path.join(workdir, "no-git")
    os.makedirs(plain)
    R.check(generate(plain) == "unknown", "outside a checkout: unknown")


def python_etcd(member):
    code = ("import etcd\n"
            f"c = etcd.Client(host='127.0.0.1', port={member.client_port}, protocol='http')\n"
            "c.write('/identity/py', 'v1')\n"
            "print(c.version, c.cluster_version, c.read('/identity/py').value)\n")
    return run(["/usr/bin/python3", "-c", code])


def confd(member, workdir):
    d = os.path.join(workdir, f"confd-{member.kind}")
    os.makedirs(os.path.join(d, "conf.d"))
    os.makedirs(os.path.join(d, "templates"))
    out = os.path.join(workdir, f"confd-{member.kind}.out")
    with open(os.path.join(d, "conf.d", "id.toml"), "w") as f:
        f.write(f'[template]\nsrc = "id.tmpl"\ndest = "{out}"\nkeys = ["/identity"]\n')
    with open(os.path.join(d, "templates", "id.tmpl"), "w") as f:
        f.write('{{range gets "/identity/*"}}{{.Key}}={{.Value}}\n{{end}}')
    rc, so, se = run([CONFD_BIN, "-onetime", "-backend", "etcd", "-node", member.url,
                      "-confdir", d], timeout=60)
    try:
        with open(out) as f:
            return rc, f.read()
    except OSError:
        return rc, so + se


def servers(workdir, version, rev):
    print("-- /version, the log, etcdctl, python-etcd and confd against kvd and etcd", flush=True)
    for kind in ("etcd", "kvd"):
        os.makedirs(os.path.join(workdir, kind))
    etcd_m = harness.Member("etcd", workdir=os.path.join(workdir, "etcd"))
    kvd_m = harness.Member("kvd", workdir=os.path.join(workdir, "kvd"))
    proxy = None
    try:
        etcd_m.start()
        kvd_m.start()
        R.check(harness.wait_cluster_version(etcd_m), "etcd decides its cluster version")
        _, ej, _ = harness.get_json(etcd_m, "/version")
        st, kj, raw = harness.get_json(kvd_m, "/version")
        R.check(st == 200 and list(kj)[:2] == list(ej) and kj["etcdserver"] == ej["etcdserver"],
                f"/version: etcd's members first ({raw!r}, etcd {ej})")
        R.check(list(kj) == ["etcdserver", "etcdcluster", "kvd", "kvdrevision"]
                and kj["kvd"] == version and kj["kvdrevision"] == rev,
                f"/version: kvd {version} and revision {rev}: {raw!r}")
        R.check(all(isinstance(v, str) for v in kj.values()), "/version: every value a string")
        st, _, body = harness.request("GET", kvd_m.peer_url + "/version")
        _, _, ebody = harness.request("GET", etcd_m.peer_url + "/version")
        R.check(st == 200 and json.loads(body) == json.loads(ebody),
                f"peer port /version stays etcd's: {body!r}, etcd {ebody!r}")
        R.check(f"kvd Version: {version}, Git SHA: {rev}" in kvd_m.read_log(),
                f"startup log names the version:\n{kvd_m.read_log()[-800:]}")

        proxy = harness.Proxy("kvd", f"{kvd_m.name}={kvd_m.peer_url}", workdir).start()
        st, pj, _ = harness.get_json(proxy, "/version")
        R.check(st == 200 and pj == kj, f"kvd proxy passes the member's /version on: {pj}")

        for m in (etcd_m, kvd_m):
            base = [harness.ETCDCTL_BIN, "--endpoints", m.url]
            rc, out, err = run(base + ["cluster-health"], env=etcdctl_env())
            R.check(rc == 0 and "cluster is healthy" in out,
                    f"etcdctl cluster-health on {m.kind}: {rc} {out!r} {err!r}")
            rc, out, err = run(base + ["member", "list"], env=etcdctl_env())
            R.check(rc == 0 and f"name={m.name}" in out, f"etcdctl member list on {m.kind}: {out!r}")
            rc, out, _ = run(base + ["set", "/identity/ctl", "x"], env=etcdctl_env())
            rc2, out2, _ = run(base + ["get", "/identity/ctl"], env=etcdctl_env())
            R.check(rc == rc2 == 0 and out == out2 == "x\n", f"etcdctl set/get on {m.kind}: {out!r} {out2!r}")

        answers = [python_etcd(m) for m in (etcd_m, kvd_m)]
        R.check(answers[0][0] == 0 and answers[1] == answers[0]
                and answers[1][1].strip() == f"{ej['etcdserver']} {ej['etcdcluster']} v1",
                f"python-etcd: kvd {answers[1]!r}, etcd {answers[0]!r}")

        if CONFD_BIN:
            outs = [confd(m, workdir) for m in (etcd_m, kvd_m)]
            R.check(outs[0][0] == 0 and outs[1] == outs[0] and "/identity/py=v1" in outs[1][1],
                    f"confd -onetime: kvd {outs[1]!r}, etcd {outs[0]!r}")
        else:
            print("SKIP confd: no confd binary ($CONFD_BIN, confd on PATH, /tmp/confd-build/bin/confd)")
    finally:
        if proxy:
            proxy.kill()
        kvd_m.cleanup()
        etcd_m.cleanup()


def main():
    harness.require_etcd()
    for what, path in (("kvd", harness.KVD_BIN), ("kvctl", KVCTL_BIN)):
        if not os.access(path, os.X_OK):
            print(f"FAIL: {what} binary not found ({path!r})")
            sys.exit(1)
    workdir = harness.new_workdir("kvd-identity-")
    try:
        version, rev = versions()
        revision_is_this_checkout(rev)
        revision_script(workdir)
        servers(workdir, version, rev)
    finally:
        harness.remove_workdir(workdir, R)
    R.finish()


if __name__ == "__main__":
    main()
