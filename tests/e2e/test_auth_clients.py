#!/usr/bin/python3
"""Real clients using v2 auth, against one kvd member and one etcd member side by side: every
step runs on both, and the outcomes (results, exception types and messages, exit codes and
output, rendered files) must be the same once indexes and addresses are normalised; where the
outcome is plain, etcd's is also checked against it (so the suite proves itself).

  - python-etcd (Debian python3-etcd, `import etcd`): etcd.auth.EtcdUser / EtcdRole / Auth create
    root, roles and users, grant and revoke roles and permissions, change a password, list and
    delete, enable auth; etcd.Client(username=, password=) reads and writes allowed and refused
    (etcd.EtcdInsufficientPermissions with etcd's message); auth calls by a non-root user
    refused; auth disabled again at the end;
  - curl with -u user:pass and without (the guest), including credentials whose Basic token has
    no base64 padding;
  - ETCDCTL_API=2 etcdctl --username user:pass get/set/ls/user/role, and without credentials;
  - confd 0.16 -onetime -basic-auth -username -password rendering a template from keys under a
    prefix the user may read recursively; refused (the same failure) for a user who may not,
    and for a wrong password. Optional: skipped (SKIP printed) without a confd binary
    ($CONFD_BIN, else `confd` on PATH; confd 0.16 is no Debian package).

Skips (77) without etcd or without python-etcd (apt-get install etcd-server python3-etcd).

Run: KVD_BIN=build/server/kvd CONFD_BIN=/path/to/confd /usr/bin/python3 \\
         tests/e2e/test_auth_clients.py
"""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

R = harness.Results()
CONFD_BIN = os.environ.get("CONFD_BIN") or shutil.which("confd")
VERBOSE = os.environ.get("KVD_E2E_VERBOSE") == "1"

# Every user:password below but dan's is 7, 8, 10 or 11 bytes long, so that its Basic token
# ends in base64 padding; "dan:d1" (6 bytes) gives one without padding.
ROOT_PW = "rootpw"
ALICE_PW = "apw1"
ALICE_PW2 = "apw22"
CAROL_PW = "cpw1"
ROOT_HEADER = {"Authorization": "Basic " + base64.b64encode(f"root:{ROOT_PW}".encode()).decode()}

CONFD_KEYS = [("/cfg/db/url", "db.example:5432"), ("/cfg/db/user", "rob"),
              ("/cfg/upstream/a", "10.0.0.1:80")]
TEMPLATE = """url = {{getv "/cfg/db/url"}}
user = {{getv "/cfg/db/user"}}
{{range gets "/cfg/upstream/*"}}upstream {{base .Key}} = {{.Value}}
{{end}}"""
WANT_RENDER = "url = db.example:5432\nuser = rob\nupstream a = 10.0.0.1:80\n"


class Site:
    """One server (kvd or etcd) and what the clients need to reach it."""

    def __init__(self, kind, member):
        self.kind = kind
        self.member = member
        self.url = member.url
        self.port = member.client_port

    def norm(self, text):
        """An outcome's text with this server's address, ports and store indexes made neutral
        (indexes differ between the servers by a constant; 0 is kept: auth errors carry it)."""
        text = text.replace(self.url, "<url>").replace(f"127.0.0.1:{self.port}", "<addr>")
        text = text.replace(self.member.peer_url, "<peer-url>")
        text = re.sub(r'"id":"[0-9a-f]+","name":"' + self.kind + '"', '"id":"<id>","name":"<name>"',
                      text)
        text = re.sub(r'"(modifiedIndex|createdIndex|index)":([1-9]\d*)', r'"\1":#', text)
        text = re.sub(r"\[[1-9]\d*\]", "[#]", text)
        text = re.sub(r"'(modifiedIndex|createdIndex|etcd_index|raft_index)': \d+", r"'\1': #",
                      text)
        return text


def step(sites, name, fn, want=None):
    """Runs fn(site) on every site (etcd first) and checks that the normalised outcomes agree;
    with `want`, that etcd's is it. Returns the outcomes."""
    outs = [fn(s) for s in sites]
    norm = [s.norm(repr(o)) for s, o in zip(sites, outs)]
    if VERBOSE:
        print(f"   {name} -> etcd {norm[0]}", flush=True)
    if want is not None:
        R.check(outs[0] == want, f"{name} on etcd: {outs[0]!r}, want {want!r}")
    for s, n in zip(sites[1:], norm[1:]):
        R.check(n == norm[0], f"{name} [{s.kind}]:\n  etcd: {norm[0]}\n  got:  {n}")
    return outs


# --- python-etcd ---

def py(fn):
    """Runs a python-etcd call: ("ok", its result) or (exception type name, message)."""
    try:
        return ("ok", fn())
    except Exception as e:  # the outcome compared: the exception's type and message
        return (type(e).__name__, str(e))


def client(site, user=None, password=None):
    import etcd
    return etcd.Client(host="127.0.0.1", port=site.port, username=user, password=password,
                       read_timeout=15)


def python_etcd(sites):
    import etcd
    import etcd.auth as ea
    print("-- python-etcd", flush=True)
    root = {s.kind: client(s, "root", ROOT_PW) for s in sites}
    alice = {s.kind: client(s, "alice", ALICE_PW) for s in sites}
    anon = {s.kind: client(s) for s in sites}

    class User(ea.EtcdUser):
        """EtcdUser reading a user as etcd 3.4 returns it: "roles" lists role objects
        ({"role": name, "permissions": ...}), which the stock _from_net cannot put in a set
        (checked below); the rest is python-etcd's own code."""

        def _from_net(self, data):
            d = json.loads(data.decode("utf-8"))
            self.roles = [r["role"] if isinstance(r, dict) else r for r in d.get("roles") or []]
            self.name = d.get("user")

    def write_user(s, name, password=None, roles=None, as_=None):
        def f():
            u = User((as_ or root)[s.kind], name)
            try:
                u.read()
            except etcd.EtcdKeyNotFound:
                pass
            if password is not None:
                u.password = password
            if roles is not None:
                u.roles = roles
            u.write()
            return sorted(u.roles)
        return py(f)

    def write_role(s, name, grant=(), revoke=()):
        def f():
            r = ea.EtcdRole(root[s.kind], name)
            try:
                r.read()
            except etcd.EtcdKeyNotFound:
                pass
            for path, perm in grant:
                r.grant(path, perm)
            for path, perm in revoke:
                r.revoke(path, perm)
            r.write()
            return sorted(r.acls.items())
        return py(f)

    def kv(c, op, key, value=None):
        def f():
            if op == "write":
                r = c.write(key, value)
            else:
                r = c.read(key)
            return (r.key, r.value)
        return py(f)

    step(sites, "python-etcd: Auth.active initially", lambda s: py(
        lambda: ea.Auth(root[s.kind]).active), ("ok", False))
    step(sites, "python-etcd: enable without a root user", lambda s: py(
        lambda: setattr(ea.Auth(root[s.kind]), "active", True)))
    step(sites, "python-etcd: EtcdUser root created",
         lambda s: write_user(s, "root", ROOT_PW), ("ok", ["root"]))
    step(sites, "python-etcd: EtcdRole app created (RW /app/*)",
         lambda s: write_role(s, "app", grant=[("/app/*", "RW")]), ("ok", [("/app/*", "RW")]))
    step(sites, "python-etcd: EtcdRole cfg created (R /cfg*)",
         lambda s: write_role(s, "cfg", grant=[("/cfg*", "R")]), ("ok", [("/cfg*", "R")]))
    step(sites, "python-etcd: EtcdUser alice created with role app",
         lambda s: write_user(s, "alice", ALICE_PW, {"app"}), ("ok", ["app"]))
    step(sites, "python-etcd: EtcdUser carol created with role cfg",
         lambda s: write_user(s, "carol", CAROL_PW, {"cfg"}), ("ok", ["cfg"]))
    step(sites, "python-etcd: EtcdUser dan created with role app",
         lambda s: write_user(s, "dan", "d1", {"app"}), ("ok", ["app"]))
    step(sites, "python-etcd: enable", lambda s: py(
        lambda: setattr(ea.Auth(root[s.kind]), "active", True)), ("ok", None))
    step(sites, "python-etcd: Auth.active after enable", lambda s: py(
        lambda: ea.Auth(anon[s.kind]).active), ("ok", True))
    step(sites, "python-etcd: root writes /app/a", lambda s: kv(root[s.kind], "write", "/app/a",
                                                                 "1"), ("ok", ("/app/a", "1")))
    step(sites, "python-etcd: alice reads /app/a", lambda s: kv(alice[s.kind], "read", "/app/a"),
         ("ok", ("/app/a", "1")))
    step(sites, "python-etcd: alice writes /app/b", lambda s: kv(alice[s.kind], "write",
                                                                  "/app/b", "2"),
         ("ok", ("/app/b", "2")))
    refused = ("EtcdInsufficientPermissions",
               "The request requires user authentication : Insufficient credentials")
    step(sites, "python-etcd: alice writes /other", lambda s: kv(alice[s.kind], "write",
                                                                  "/other", "x"), refused)
    step(sites, "python-etcd: alice reads /other", lambda s: kv(alice[s.kind], "read", "/other"),
         refused)
    step(sites, "python-etcd: alice with a wrong password",
         lambda s: kv(client(s, "alice", "wrong"), "read", "/app/a"), refused)
    step(sites, "python-etcd: unknown user", lambda s: kv(client(s, "mallory", "x"), "read",
                                                          "/app/a"), refused)
    step(sites, "python-etcd: dan (Basic token without padding) reads /app/a",
         lambda s: kv(client(s, "dan", "d1"), "read", "/app/a"), ("ok", ("/app/a", "1")))
    step(sites, "python-etcd: guest writes /guest", lambda s: kv(anon[s.kind], "write", "/guest",
                                                                  "g"), ("ok", ("/guest", "g")))
    step(sites, "python-etcd: guest loses write (EtcdRole revoke)",
         lambda s: write_role(s, "guest", revoke=[("/*", "W")]), ("ok", [("/*", "R")]))
    step(sites, "python-etcd: guest writes /guest again", lambda s: kv(anon[s.kind], "write",
                                                                        "/guest", "g"), refused)
    step(sites, "python-etcd: guest reads /app/a", lambda s: kv(anon[s.kind], "read", "/app/a"),
         ("ok", ("/app/a", "1")))
    # Auth management by a non-root user.
    step(sites, "python-etcd: alice creates a user",
         lambda s: write_user(s, "eve", "epw1", {"app"}, as_=alice))
    step(sites, "python-etcd: alice lists users",
         lambda s: py(lambda: ea.EtcdUser(alice[s.kind], "x").names))
    step(sites, "python-etcd: alice disables auth", lambda s: py(
        lambda: setattr(ea.Auth(alice[s.kind]), "active", False)))
    step(sites, "python-etcd: guest reads EtcdRole root",
         lambda s: py(lambda: ea.EtcdRole(anon[s.kind], "root").read()))
    # Listing and reading as root.
    step(sites, "python-etcd: root lists users",
         lambda s: py(lambda: ea.EtcdUser(root[s.kind], "x").names))
    step(sites, "python-etcd: root lists roles",
         lambda s: py(lambda: ea.EtcdRole(root[s.kind], "x").names))

    step(sites, "python-etcd: stock EtcdUser.read of a user with roles",
         lambda s: py(lambda: ea.EtcdUser(root[s.kind], "alice").read()),
         ("TypeError", "unhashable type: 'dict'"))

    def read_user(s, name):
        def f():
            u = User(root[s.kind], name)
            u.read()
            return sorted(u.roles)
        return py(f)
    step(sites, "python-etcd: root reads user alice", lambda s: read_user(s, "alice"),
         ("ok", ["app"]))
    step(sites, "python-etcd: root reads an unknown user", lambda s: read_user(s, "nobody"))
    # Password change.
    step(sites, "python-etcd: alice's password changed",
         lambda s: write_user(s, "alice", ALICE_PW2), ("ok", ["app"]))
    step(sites, "python-etcd: alice's old password",
         lambda s: kv(client(s, "alice", ALICE_PW), "read", "/app/a"), refused)
    alice2 = {s.kind: client(s, "alice", ALICE_PW2) for s in sites}
    step(sites, "python-etcd: alice's new password",
         lambda s: kv(alice2[s.kind], "read", "/app/a"), ("ok", ("/app/a", "1")))
    # Role grant and revoke on a user, permission grant and revoke on a role.
    step(sites, "python-etcd: alice granted cfg",
         lambda s: write_user(s, "alice", roles={"app", "cfg"}), ("ok", ["app", "cfg"]))
    step(sites, "python-etcd: alice revoked app",
         lambda s: write_user(s, "alice", roles={"cfg"}), ("ok", ["cfg"]))
    step(sites, "python-etcd: alice without app writes /app/c",
         lambda s: kv(alice2[s.kind], "write", "/app/c", "3"), refused)
    step(sites, "python-etcd: alice granted app again",
         lambda s: write_user(s, "alice", roles={"app"}), ("ok", ["app"]))
    step(sites, "python-etcd: role app loses write on /app/*",
         lambda s: write_role(s, "app", revoke=[("/app/*", "W")]), ("ok", [("/app/*", "R")]))
    step(sites, "python-etcd: alice writes /app/c (read-only role)",
         lambda s: kv(alice2[s.kind], "write", "/app/c", "3"), refused)
    step(sites, "python-etcd: alice reads /app/a (read-only role)",
         lambda s: kv(alice2[s.kind], "read", "/app/a"), ("ok", ("/app/a", "1")))
    step(sites, "python-etcd: role app gets write back",
         lambda s: write_role(s, "app", grant=[("/app/*", "W")]), ("ok", [("/app/*", "RW")]))
    step(sites, "python-etcd: alice writes /app/c",
         lambda s: kv(alice2[s.kind], "write", "/app/c", "3"), ("ok", ("/app/c", "3")))
    # Delete.
    step(sites, "python-etcd: EtcdUser tmp created",
         lambda s: write_user(s, "tmp", "tpw1", {"app"}), ("ok", ["app"]))
    step(sites, "python-etcd: EtcdUser tmp deleted",
         lambda s: py(lambda: ea.EtcdUser(root[s.kind], "tmp").delete()), ("ok", None))
    step(sites, "python-etcd: deleted user tmp reads",
         lambda s: kv(client(s, "tmp", "tpw1"), "read", "/app/a"), refused)
    step(sites, "python-etcd: EtcdUser tmp read after delete", lambda s: read_user(s, "tmp"))


def python_etcd_disable(sites):
    import etcd.auth as ea
    print("-- python-etcd: disable", flush=True)
    step(sites, "python-etcd: disable", lambda s: py(
        lambda: setattr(ea.Auth(client(s, "root", ROOT_PW)), "active", False)), ("ok", None))
    step(sites, "python-etcd: guest writes after disable",
         lambda s: py(lambda: client(s).write("/guest", "open").value), ("ok", "open"))
    step(sites, "python-etcd: wrong password ignored after disable",
         lambda s: py(lambda: client(s, "alice", "wrong").read("/app/a").value), ("ok", "1"))


# --- curl ---

def curl(site, path, user=None, method="GET", data=None):
    a = ["curl", "-s", "-S", "--max-time", "15", "-w", "\n%{http_code}", "-X", method]
    if user:
        a += ["-u", user]
    if data is not None:
        a += ["-d", data]
    p = subprocess.run(a + [site.url + path], capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    body, _, code = out.rpartition("\n")
    return p.returncode, int(code or 0), body


def curl_tests(sites):
    print("-- curl", flush=True)
    alice = f"alice:{ALICE_PW2}"
    cases = [
        ("alice GET /app/a", "/v2/keys/app/a", alice, "GET", None, 200),
        ("guest GET /app/a", "/v2/keys/app/a", None, "GET", None, 200),
        ("alice PUT /app/curl", "/v2/keys/app/curl", alice, "PUT", "value=c", 201),
        ("alice PUT /app/curl again", "/v2/keys/app/curl", alice, "PUT", "value=d", 200),
        ("alice PUT /other", "/v2/keys/other", alice, "PUT", "value=c", 401),
        ("guest PUT /app/curl", "/v2/keys/app/curl", None, "PUT", "value=c", 401),
        ("alice wrong password", "/v2/keys/app/a", "alice:nope", "GET", None, 401),
        ("alice DELETE /app/curl", "/v2/keys/app/curl", alice, "DELETE", None, 200),
        ("dan (token without padding) GET /app/a", "/v2/keys/app/a", "dan:d1", "GET", None, 200),
        ("root GET /v2/auth/users", "/v2/auth/users", f"root:{ROOT_PW}", "GET", None, 200),
        ("alice GET /v2/auth/users", "/v2/auth/users", alice, "GET", None, 401),
        ("guest GET /v2/auth/roles/app", "/v2/auth/roles/app", None, "GET", None, 401),
        ("root GET /v2/auth/roles/app", "/v2/auth/roles/app", f"root:{ROOT_PW}", "GET", None,
         200),
        ("guest GET /v2/auth/enable", "/v2/auth/enable", None, "GET", None, 200),
        ("alice DELETE /v2/auth/enable", "/v2/auth/enable", alice, "DELETE", None, 401),
        ("guest GET /v2/members", "/v2/members", None, "GET", None, 200),
    ]
    for what, path, user, method, data, code in cases:
        outs = step(sites, f"curl {what}", lambda s: curl(s, path, user, method, data))
        R.check(outs[0][:2] == (0, code), f"curl {what} on etcd: {outs[0]!r}, want {code}")


# --- etcdctl ---

def etcdctl(site, args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    p = subprocess.run([harness.ETCDCTL_BIN, "--endpoints", site.url] + args,
                       capture_output=True, timeout=30, env=env)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def etcdctl_tests(sites):
    print("-- etcdctl", flush=True)
    alice = ["--username", f"alice:{ALICE_PW2}"]
    root = ["--username", f"root:{ROOT_PW}"]
    cases = [
        (alice + ["get", "/app/a"], (0, "1\n", "")),
        (alice + ["set", "/app/ctl", "5"], (0, "5\n", "")),
        (alice + ["get", "/app/ctl"], (0, "5\n", "")),
        (alice + ["set", "/other", "5"], None),
        (alice + ["get", "/other"], None),
        (alice + ["ls", "/app"], None),
        (alice + ["rm", "/app/ctl"], None),
        (["get", "/app/a"], (0, "1\n", "")),
        (["set", "/app/ctl", "6"], None),
        (["--username", "alice:nope", "get", "/app/a"], None),
        (["--username", "dan:d1", "get", "/app/a"], (0, "1\n", "")),
        (root + ["set", "/other", "r"], (0, "r\n", "")),
        (root + ["ls", "--sort", "/app"], None),
        (root + ["user", "list"], (0, "alice\ncarol\ndan\nroot\n", "")),
        (root + ["user", "get", "alice"], None),
        (root + ["role", "get", "app"], None),
        (alice + ["user", "list"], None),
        (alice + ["auth", "disable"], None),
    ]
    for args, want in cases:
        outs = step(sites, f"etcdctl {' '.join(args)}", lambda s: etcdctl(s, args))
        if want is not None:
            R.check(outs[0] == want, f"etcdctl {' '.join(args)} on etcd: {outs[0]!r}, "
                    f"want {want!r}")
        else:
            R.check(outs[0][0] != 0 or outs[0][1], f"etcdctl {' '.join(args)} on etcd: "
                    f"{outs[0]!r}")


# --- confd ---

class ConfdSite:
    """A confd configuration directory and output file for one server."""

    def __init__(self, site, workdir):
        self.site = site
        d = os.path.join(workdir, f"confd-{site.kind}")
        self.confdir = os.path.join(d, "confd")
        self.out = os.path.join(d, "cfg.conf")
        os.makedirs(os.path.join(self.confdir, "conf.d"), exist_ok=True)
        os.makedirs(os.path.join(self.confdir, "templates"), exist_ok=True)
        with open(os.path.join(self.confdir, "conf.d", "cfg.toml"), "w") as f:
            f.write(f'[template]\nsrc = "cfg.tmpl"\ndest = "{self.out}"\nkeys = ["/cfg"]\n')
        with open(os.path.join(self.confdir, "templates", "cfg.tmpl"), "w") as f:
            f.write(TEMPLATE)

    def onetime(self, user, password):
        if os.path.exists(self.out):
            os.remove(self.out)
        a = [CONFD_BIN, "-onetime", "-backend", "etcd", "-node", self.site.url,
             "-confdir", self.confdir, "-log-level", "info"]
        if user is not None:
            a += ["-basic-auth", "-username", user, "-password", password]
        p = subprocess.run(a, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        log = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        log = re.sub(r"(?m)^\S+ \S+ \S+\[\d+\]: ", "", log).replace(self.out, "<dest>")
        log = re.sub(r"\.cfg\.conf\d+", ".cfg.conf<tmp>", log)
        try:
            with open(self.out) as f:
                rendered = f.read()
        except OSError:
            rendered = None
        return p.returncode, rendered, log


def confd_tests(sites, workdir):
    print("-- confd", flush=True)
    if not CONFD_BIN or not os.access(CONFD_BIN, os.X_OK):
        print("SKIP confd: no confd binary ($CONFD_BIN, or confd on PATH)")
        return
    for s in sites:
        for k, v in CONFD_KEYS:
            status, _, body = harness.request("PUT", s.url + "/v2/keys" + k, f"value={v}",
                                              headers=ROOT_HEADER)
            R.check(status == 201, f"[{s.kind}] root PUT {k}: {status} {body[:200]!r}")
    cs = {s.kind: ConfdSite(s, workdir) for s in sites}
    cases = [
        ("carol (read /cfg*) renders", "carol", CAROL_PW, 0, WANT_RENDER),
        ("root renders", "root", ROOT_PW, 0, WANT_RENDER),
        ("alice (no /cfg read) refused", "alice", ALICE_PW2, 1, None),
        ("carol with a wrong password refused", "carol", "nope", 1, None),
        ("guest (read /*, non-recursive rule) renders", None, None, 0, WANT_RENDER),
    ]
    for what, user, password, rc, rendered in cases:
        outs = step(sites, f"confd -onetime -basic-auth: {what}",
                    lambda s: cs[s.kind].onetime(user, password))
        R.check(outs[0][:2] == (rc, rendered),
                f"confd {what} on etcd: exit {outs[0][0]}, output {outs[0][1]!r}\n"
                f"  log: {outs[0][2]!r}")




def main():
    harness.require_etcd()
    try:
        import etcd.auth  # noqa: F401
    except ImportError:
        print("SKIP: python-etcd not installed (apt-get install python3-etcd)")
        sys.exit(harness.SKIP)
    t0 = time.monotonic()
    workdir = harness.new_workdir("kvd-auth-clients-")
    procs = []
    try:
        sites = []
        for kind in ("etcd", "kvd"):
            m = harness.Member(kind, name=kind, workdir=workdir)
            procs.append(m)
            m.start(timeout=30)
            R.check(harness.wait_cluster_version(m), f"[{kind}] cluster version decided")
            sites.append(Site(kind, m))
        python_etcd(sites)
        curl_tests(sites)
        etcdctl_tests(sites)
        confd_tests(sites, workdir)
        python_etcd_disable(sites)
    except Exception as e:  # a start failure is reported, then the run ends
        R.check(False, f"{type(e).__name__}: {e}")
        for m in procs:
            print(f"--- {m.kind} log tail ---\n{m.read_log()[-2000:]}")
    finally:
        for m in procs:
            m.kill()
        harness.remove_workdir(workdir, R)
    print(f"took {time.monotonic() - t0:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
