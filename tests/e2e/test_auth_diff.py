#!/usr/bin/python3
"""Differential test of the v2 auth API (/v2/auth/enable, /v2/auth/users, /v2/auth/roles) and of
the permission checks it brings to /v2/keys and /v2/members, plus --host-whitelist: every request
goes to a real etcd (--enable-v2) and to the server under test, and the answers (status, the
compared headers, body) are compared after index normalization (see difflib_v2.py). One check
per request unless said otherwise. Indexes are compared relative to each server's start, so the
store index that auth writes consume (shared with the keys) must match too.
Spec: /work/shared/spec/v2-auth.md.

Run: KVD_BIN=build/server/kvd /usr/bin/python3 tests/e2e/test_auth_diff.py
     KVD_UNDER_TEST=etcd /usr/bin/python3 tests/e2e/test_auth_diff.py   (proves the suite)
"""
import base64
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import difflib_v2 as dl  # noqa: E402
import harness  # noqa: E402

R = harness.Results()

JSON = {"Content-Type": "application/json"}
ROOT_PW = "rootpw"


def section(name):
    print(f"-- {name}", flush=True)


def basic(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": "Basic " + token}


def as_(user, password, extra=None):
    h = dict(basic(user, password))
    h.update(extra or {})
    return h


ROOT = as_("root", ROOT_PW)
ROOT_JSON = as_("root", ROOT_PW, JSON)


def js(obj):
    return json.dumps(obj, separators=(",", ":"))


def wait_cluster_version(server, timeout):
    """Bounded poll of /version until the cluster version is decided (etcd serves /v2/auth only
    from then on); returns whether it was."""
    def decided():
        status, j, _ = harness.get_json(server.url, "/version", timeout=2.0, catch=True)
        return status == 200 and isinstance(j, dict) and j.get("etcdcluster") not in (None, "not_decided")
    return bool(harness.wait_for(decided, timeout))


def start(extra_args=()):
    """Starts a Pair (extra_args for both), waits until etcd's cluster version is decided; None
    (with a failed check) if either server did not start."""
    try:
        p = dl.Pair(extra_args, extra_args).start()
    except Exception as e:  # a startup failure of either process is reported as a failed check
        R.check(False, f"could not start the servers {list(extra_args)}: {e}")
        return None
    R.check(wait_cluster_version(p.ref, 15.0), "etcd: cluster version never decided (suite bug)")
    wait_cluster_version(p.sut, 3.0)
    return p


def unordered(p):
    """p.compare with directory listings compared as sets (etcd lists children in map order)."""
    return lambda *a, **k: p.compare(*a, unordered=True, **k)


def index_step(p, what, key="/v2/keys/ix", headers=None):
    """A key write whose normalized X-Etcd-Index and modifiedIndex show how far the index moved
    since the previous key write."""
    p.compare(R, f"index after {what}", "PUT", key, "value=" + re.sub(r"\W", "_", what)[:40], headers)


_ID_RE = re.compile(r'"id":"[0-9a-f]+"')
_URL_RE = re.compile(r"http://127\.0\.0\.1:\d+")


def members_view(body):
    return _URL_RE.sub("http://127.0.0.1:<port>", _ID_RE.sub('"id":"<id>"', body.decode("latin-1"))).encode("latin-1")


def compare_view(p, what, method, path, body=None, headers=None, view=None, body_too=True):
    """compare(), with `view` applied to both bodies first (ports and member ids only), or with
    the bodies left out (body_too=False: status and compared headers only)."""
    a, b = p.send(method, path, body, headers)
    if view is not None:
        a = dl.Resp(a.status, a.headers, view(a.body))
        b = dl.Resp(b.status, b.headers, view(b.body))
    if not body_too:
        a = dl.Resp(a.status, a.headers, b"")
        b = dl.Resp(b.status, b.headers, b"")
    d = dl.diff(a, b, p.ref.start_index, p.sut.start_index)
    R.check(not d, f"{what}: {method} {path} body={body!r}\n  " + "\n  ".join(d)
            + f"\n  raw etcd: {a!r}\n  raw got:  {b!r}")
    return a, b


def compare_once(p, what, method, path, body=None, headers=None, timeout=3.0, unordered=False):
    """compare() on a fresh connection per server with a short timeout, for requests that answer
    at once on etcd (a watch whose event is in history, or one refused by auth) but could block
    on a server that gets auth or indexes wrong: a timeout is a failed check, not a hang."""
    answers = []
    for s in (p.ref, p.sut):
        try:
            answers.append(dl.one_shot(s.url, method, s.subst(path), s.subst(body), headers, timeout))
        except OSError as e:
            answers.append(e)
    a, b = answers
    if not isinstance(a, dl.Resp) or not isinstance(b, dl.Resp):
        R.check(False, f"{what}: {method} {path}: no answer within {timeout}s: etcd {a!r}, got {b!r}")
        return a, b
    d = dl.diff(a, b, p.ref.start_index, p.sut.start_index, unordered)
    R.check(not d, f"{what}: {method} {path} body={body!r}\n  " + "\n  ".join(d)
            + f"\n  raw etcd: {a!r}\n  raw got:  {b!r}")
    return a, b


# --- auth disabled: the store, users and roles ---

def disabled_state(p):
    section("auth disabled: enable endpoint, empty store")
    c = unordered(p)
    c(R, "enable state", "GET", "/v2/auth/enable")
    c(R, "enable without root user 409", "PUT", "/v2/auth/enable")
    c(R, "disable while disabled 409", "DELETE", "/v2/auth/enable")
    c(R, "enable state with wrong creds ignored", "GET", "/v2/auth/enable", headers=as_("x", "y"))
    c(R, "users list empty (null)", "GET", "/v2/auth/users")
    c(R, "users list trailing slash", "GET", "/v2/auth/users/")
    c(R, "roles list has root", "GET", "/v2/auth/roles")
    c(R, "root user absent", "GET", "/v2/auth/users/root")
    c(R, "root role built in", "GET", "/v2/auth/roles/root")
    c(R, "guest role absent", "GET", "/v2/auth/roles/guest")
    index_step(p, "start")
    c(R, "create user empty password 400", "PUT", "/v2/auth/users/alice",
      js({"user": "alice", "password": ""}), JSON)
    c(R, "create user no password 400", "PUT", "/v2/auth/users/alice", js({"user": "alice"}), JSON)
    c(R, "update unknown user 404", "PUT", "/v2/auth/users/zed",
      js({"user": "zed", "grant": ["r1"]}), JSON)
    index_step(p, "failed auth requests (no move)")
    c(R, "first user 201", "PUT", "/v2/auth/users/alice", js({"user": "alice", "password": "pa"}), JSON)
    index_step(p, "first auth write (+5: /2 dirs, enabled, user)")
    c(R, "second user 201", "PUT", "/v2/auth/users/bob", js({"user": "bob", "password": "pb"}), JSON)
    index_step(p, "second user (+1)")
    c(R, "users list", "GET", "/v2/auth/users")
    c(R, "user without roles", "GET", "/v2/auth/users/alice")
    c(R, "user ?detail ignored", "GET", "/v2/auth/users/alice?detail=true")
    c(R, "auth data not in keys", "GET", "/v2/keys/2")
    c(R, "auth data not listed", "GET", "/v2/keys/?recursive=true&sorted=true")


def roles(p):
    section("roles")
    c = p.compare
    perms = {"kv": {"read": ["/foo"], "write": ["/foo/*"]}}
    c(R, "create role with permissions 201", "PUT", "/v2/auth/roles/r1",
      js({"role": "r1", "permissions": perms}), JSON)
    c(R, "create role without permissions", "PUT", "/v2/auth/roles/r2", js({"role": "r2"}), JSON)
    c(R, "get role null lists", "GET", "/v2/auth/roles/r2")
    c(R, "create role unsorted duplicates kept", "PUT", "/v2/auth/roles/r6",
      js({"role": "r6", "permissions": {"kv": {"write": ["/z", "/a", "/a"]}}}), JSON)
    c(R, "create role with empty grant stored verbatim", "PUT", "/v2/auth/roles/r7",
      js({"role": "r7", "grant": {"kv": {}}, "permissions": {"kv": {"read": ["/x"]}}}), JSON)
    c(R, "get role with stored grant", "GET", "/v2/auth/roles/r7")
    index_step(p, "four roles (+4)")
    c(R, "duplicate role 409", "PUT", "/v2/auth/roles/r2", js({"role": "r2"}), JSON)
    c(R, "create root role 403", "PUT", "/v2/auth/roles/root", js({"role": "root"}), JSON)
    c(R, "role name mismatch 400", "PUT", "/v2/auth/roles/r3", js({"role": "r4"}), JSON)
    c(R, "role invalid JSON 400", "PUT", "/v2/auth/roles/r3", "{bad", JSON)
    c(R, "role empty body 400", "PUT", "/v2/auth/roles/r3", "", JSON)
    c(R, "role null body", "PUT", "/v2/auth/roles/r3", "null", JSON)
    c(R, "role wrong type 400", "PUT", "/v2/auth/roles/r3",
      js({"role": "r3", "permissions": {"kv": {"read": "/x"}}}), JSON)
    c(R, "role unknown fields ignored", "PUT", "/v2/auth/roles/r3",
      '{"role":"r3","extra":1,"permissions":{"kv":{"read":["/x"]},"other":2}}', JSON)
    c(R, "grant read to role", "PUT", "/v2/auth/roles/r2",
      js({"role": "r2", "grant": {"kv": {"read": ["/b*", "/a"]}}}), JSON)
    c(R, "duplicate read grant 409", "PUT", "/v2/auth/roles/r2",
      js({"role": "r2", "grant": {"kv": {"read": ["/a"]}}}), JSON)
    c(R, "revoke ungranted: role not updated 400", "PUT", "/v2/auth/roles/r2",
      js({"role": "r2", "revoke": {"kv": {"read": ["/zz"]}}}), JSON)
    c(R, "revoke read, ungranted write ignored", "PUT", "/v2/auth/roles/r2",
      js({"role": "r2", "revoke": {"kv": {"read": ["/a"], "write": ["/q"]}}}), JSON)
    c(R, "grant with permissions 400", "PUT", "/v2/auth/roles/r2",
      js({"role": "r2", "grant": {"kv": {"write": ["/w"]}}, "permissions": {"kv": {"read": ["/x"]}}}), JSON)
    c(R, "grant write and revoke read at once", "PUT", "/v2/auth/roles/r2",
      js({"role": "r2", "grant": {"kv": {"write": ["/w"]}}, "revoke": {"kv": {"read": ["/b*"]}}}), JSON)
    c(R, "duplicate write grant 409", "PUT", "/v2/auth/roles/r2",
      js({"role": "r2", "grant": {"kv": {"write": ["/w"]}}}), JSON)
    c(R, "grant to unknown role 404", "PUT", "/v2/auth/roles/nosuch",
      js({"role": "nosuch", "grant": {"kv": {"write": ["/w"]}}}), JSON)
    c(R, "grant to root role 403", "PUT", "/v2/auth/roles/root",
      js({"role": "root", "grant": {"kv": {"write": ["/w"]}}}), JSON)
    c(R, "empty grant is a create: exists 409", "PUT", "/v2/auth/roles/r2",
      js({"role": "r2", "grant": {"kv": {}}}), JSON)
    c(R, "first no-op revoke on null lists succeeds", "PUT", "/v2/auth/roles/r3",
      js({"role": "r3", "revoke": {"kv": {"write": ["/nope"]}}}), JSON)
    c(R, "second no-op revoke 400", "PUT", "/v2/auth/roles/r3",
      js({"role": "r3", "revoke": {"kv": {"write": ["/nope"]}}}), JSON)
    index_step(p, "role updates (+5)")
    c(R, "roles list sorted with root", "GET", "/v2/auth/roles")
    c(R, "delete unknown role 404", "DELETE", "/v2/auth/roles/r9")
    c(R, "delete root role 403", "DELETE", "/v2/auth/roles/root")
    c(R, "delete role", "DELETE", "/v2/auth/roles/r6")
    c(R, "deleted role gone", "GET", "/v2/auth/roles/r6")
    index_step(p, "role delete (+1)")


def users(p):
    section("users")
    c = p.compare
    c(R, "create with roles is 200", "PUT", "/v2/auth/users/carol",
      js({"user": "carol", "password": "pc", "roles": ["r1"]}), JSON)
    c(R, "create with unknown role accepted", "PUT", "/v2/auth/users/dave",
      js({"user": "dave", "password": "pd", "roles": ["nosuch"]}), JSON)
    c(R, "create with roles: exists 409", "PUT", "/v2/auth/users/carol",
      js({"user": "carol", "password": "pc", "roles": ["r1"]}), JSON)
    c(R, "create with roles, no password 400", "PUT", "/v2/auth/users/erin",
      js({"user": "erin", "roles": ["r1"]}), JSON)
    c(R, "user with full roles", "GET", "/v2/auth/users/carol")
    c(R, "user with unknown role 404", "GET", "/v2/auth/users/dave")
    c(R, "list skips unknown roles", "GET", "/v2/auth/users")
    index_step(p, "two users (+2)")
    c(R, "password change", "PUT", "/v2/auth/users/alice", js({"user": "alice", "password": "pa2"}), JSON)
    c(R, "no-op update 400", "PUT", "/v2/auth/users/alice", js({"user": "alice"}), JSON)
    c(R, "no-op update of null-roles user succeeds", "PUT", "/v2/auth/users/bob", js({"user": "bob"}), JSON)
    c(R, "second no-op update 400", "PUT", "/v2/auth/users/bob", js({"user": "bob"}), JSON)
    c(R, "grant role", "PUT", "/v2/auth/users/alice", js({"user": "alice", "grant": ["r1"]}), JSON)
    c(R, "duplicate grant 409", "PUT", "/v2/auth/users/alice", js({"user": "alice", "grant": ["r1"]}), JSON)
    c(R, "grant unknown role accepted, sorted", "PUT", "/v2/auth/users/alice",
      js({"user": "alice", "grant": ["zz", "r2"]}), JSON)
    c(R, "revoke ungranted 409", "PUT", "/v2/auth/users/alice", js({"user": "alice", "revoke": ["r3"]}), JSON)
    c(R, "revoke unknown granted role", "PUT", "/v2/auth/users/alice", js({"user": "alice", "revoke": ["zz"]}), JSON)
    c(R, "roles with grant 400", "PUT", "/v2/auth/users/alice",
      js({"user": "alice", "grant": ["r3"], "roles": ["r1"]}), JSON)
    c(R, "grant+revoke+password at once", "PUT", "/v2/auth/users/alice",
      js({"user": "alice", "grant": ["r3"], "revoke": ["r1"], "password": "pa3"}), JSON)
    c(R, "user name mismatch 400", "PUT", "/v2/auth/users/alice", js({"user": "bob"}), JSON)
    c(R, "user invalid JSON 400", "PUT", "/v2/auth/users/alice", "{bad", JSON)
    c(R, "roles on existing user 409", "PUT", "/v2/auth/users/alice",
      js({"user": "alice", "password": "x", "roles": ["r1"]}), JSON)
    index_step(p, "user updates (+6)")
    c(R, "user after updates", "GET", "/v2/auth/users/alice")
    c(R, "unknown user 404", "GET", "/v2/auth/users/nosuch")
    c(R, "delete unknown user 404", "DELETE", "/v2/auth/users/nosuch")
    c(R, "delete user", "DELETE", "/v2/auth/users/dave")
    c(R, "delete role in use", "DELETE", "/v2/auth/roles/r1")
    c(R, "user whose role was deleted 404", "GET", "/v2/auth/users/carol")
    c(R, "list after deletes", "GET", "/v2/auth/users")
    index_step(p, "deletes (+2)")


def paths_methods(p, headers=None, tag=""):
    section(f"auth paths and methods{tag}")
    c = p.compare
    h = headers
    c(R, f"nested user path 400{tag}", "GET", "/v2/auth/users/a/b", headers=h)
    c(R, f"nested role path PUT 400{tag}", "PUT", "/v2/auth/roles/a/b", "{}", dict(h or {}, **JSON))
    c(R, f"escaped slash in name 400{tag}", "GET", "/v2/auth/users/a%2Fb", headers=h)
    c(R, f"/v2/auth 404{tag}", "GET", "/v2/auth", headers=h)
    c(R, f"/v2/auth/ 404{tag}", "GET", "/v2/auth/", headers=h)
    c(R, f"/v2/auth/foo 404{tag}", "GET", "/v2/auth/foo", headers=h)
    c(R, f"/v2/auth/enable/x 404{tag}", "GET", "/v2/auth/enable/x", headers=h)
    c(R, f"POST users 405{tag}", "POST", "/v2/auth/users", headers=h)
    c(R, f"DELETE roles list 405{tag}", "DELETE", "/v2/auth/roles", headers=h)
    c(R, f"POST user 405{tag}", "POST", "/v2/auth/users/x", headers=h)
    c(R, f"PATCH role 405{tag}", "PATCH", "/v2/auth/roles/x", headers=h)
    c(R, f"POST enable 405{tag}", "POST", "/v2/auth/enable", headers=h)
    c(R, f"HEAD enable 405{tag}", "HEAD", "/v2/auth/enable", headers=h)
    c(R, f"OPTIONS users{tag}", "OPTIONS", "/v2/auth/users", headers=h)


def enable(p):
    section("root user and enable")
    c = p.compare
    c(R, "create root 201 with root role", "PUT", "/v2/auth/users/root",
      js({"user": "root", "password": ROOT_PW}), JSON)
    c(R, "root user shows root role", "GET", "/v2/auth/users/root")
    c(R, "revoke root from root", "PUT", "/v2/auth/users/root", js({"user": "root", "revoke": ["root"]}), JSON)
    c(R, "root role still attached", "GET", "/v2/auth/users/root")
    c(R, "grant root to root 409", "PUT", "/v2/auth/users/root", js({"user": "root", "grant": ["root"]}), JSON)
    index_step(p, "root user (+2)")
    c(R, "enable 200", "PUT", "/v2/auth/enable")
    index_step(p, "enable creating guest (+2)")
    c(R, "enabled state, no creds", "GET", "/v2/auth/enable")
    c(R, "enable again without creds 401", "PUT", "/v2/auth/enable")
    c(R, "enable again as root 409", "PUT", "/v2/auth/enable", headers=ROOT)
    c(R, "guest role created", "GET", "/v2/auth/roles/guest", headers=ROOT)
    index_step(p, "failed enable (no move)")


def enabled_admin(p):
    section("auth enabled: who may administer")
    c = p.compare
    creds = [("no creds", None), ("wrong password", as_("root", "bad")), ("unknown user", as_("nobody", "x")),
             ("non-root user", as_("alice", "pa3")), ("malformed base64", {"Authorization": "Basic !!!"}),
             ("bearer", {"Authorization": "Bearer abc"}), ("no colon", {"Authorization": "Basic cm9vdA=="}),
             ("empty password", as_("root", "")), ("two spaces", {"Authorization": "Basic  " + basic("root", ROOT_PW)["Authorization"][6:]})]
    for what, h in creds:
        c(R, f"users list, {what} 401", "GET", "/v2/auth/users", headers=h)
    c(R, "role get, non-root 401", "GET", "/v2/auth/roles/guest", headers=as_("alice", "pa3"))
    c(R, "user get self, non-root 401", "GET", "/v2/auth/users/alice", headers=as_("alice", "pa3"))
    c(R, "user create without creds 401", "PUT", "/v2/auth/users/x", js({"user": "x", "password": "p"}), JSON)
    c(R, "role delete without creds 401", "DELETE", "/v2/auth/roles/r2")
    c(R, "disable as non-root 401", "DELETE", "/v2/auth/enable", headers=as_("alice", "pa3"))
    c(R, "enable state, non-root", "GET", "/v2/auth/enable", headers=as_("alice", "pa3"))
    c(R, "enable state, wrong password", "GET", "/v2/auth/enable", headers=as_("alice", "bad"))
    c(R, "users list as root", "GET", "/v2/auth/users", headers=ROOT)
    c(R, "lower-case basic scheme", "GET", "/v2/auth/users", headers={"Authorization": "basic " + basic("root", ROOT_PW)["Authorization"][6:]})
    c(R, "delete root while enabled 403", "DELETE", "/v2/auth/users/root", headers=ROOT)
    index_step(p, "denied admin requests (no move)")
    paths_methods(p, None, " (enabled, no creds)")


def guest_default(p):
    section("auth enabled: default guest")
    c = unordered(p)
    c(R, "guest GET key", "GET", "/v2/keys/ix")
    c(R, "guest PUT key", "PUT", "/v2/keys/g1", "value=g")
    c(R, "guest GET /v2/keys/", "GET", "/v2/keys/")
    c(R, "guest GET /v2/keys (empty key) 401", "GET", "/v2/keys")
    c(R, "guest recursive GET /v2/keys 401", "GET", "/v2/keys?recursive=true")
    c(R, "guest recursive GET of a key", "GET", "/v2/keys/g1?recursive=true")
    c(R, "empty Authorization header is guest", "GET", "/v2/keys/g1", headers={"Authorization": ""})
    c(R, "root GET /v2/keys", "GET", "/v2/keys", headers=ROOT)
    c(R, "wrong password on key 401 (no guest fall-back)", "GET", "/v2/keys/g1", headers=as_("root", "bad"))
    c(R, "unknown user on key 401", "GET", "/v2/keys/g1", headers=as_("nobody", "x"))
    c(R, "malformed Authorization on key 401", "GET", "/v2/keys/g1", headers={"Authorization": "Basic !!!"})
    c(R, "bearer on key 401", "PUT", "/v2/keys/g1", "value=x", {"Authorization": "Bearer x"})
    c(R, "HEAD 401 has no body", "HEAD", "/v2/keys/g1", headers=as_("root", "bad"))
    c(R, "user without roles 401", "GET", "/v2/keys/g1", headers=as_("bob", "pb"))
    c(R, "parameter error before auth", "GET", "/v2/keys/g1?recursive=yes", headers=as_("root", "bad"))
    c(R, "ttl error before auth", "PUT", "/v2/keys/g1?ttl=abc", "value=x", as_("nobody", "x"))


def prefix_permissions(p):
    section("auth enabled: /foo, /foo/*, /foo* permissions")
    c = unordered(p)
    for role, pat in [("pexact", "/foo"), ("pchild", "/foo/*"), ("pglob", "/foo*")]:
        c(R, f"role {role}", "PUT", f"/v2/auth/roles/{role}",
          js({"role": role, "permissions": {"kv": {"read": [pat], "write": [pat]}}}), ROOT_JSON)
    for user, role in [("ue", "pexact"), ("uc", "pchild"), ("ug", "pglob")]:
        c(R, f"user {user}", "PUT", f"/v2/auth/users/{user}",
          js({"user": user, "password": "p", "roles": [role]}), ROOT_JSON)
    c(R, "ro role", "PUT", "/v2/auth/roles/ro", js({"role": "ro", "permissions": {"kv": {"read": ["/foo*"]}}}), ROOT_JSON)
    c(R, "user with read-only and unknown role", "PUT", "/v2/auth/users/ur",
      js({"user": "ur", "password": "p", "roles": ["gone", "ro"]}), ROOT_JSON)
    index_step(p, "roles and users while enabled (+8)")
    c(R, "seed /foo/a", "PUT", "/v2/keys/foo/a", "value=1", ROOT)
    a, _ = p.send("GET", "/v2/keys/foo/a", headers=ROOT)
    foo_a = p.ref.rel(a)
    c(R, "seed /foobar", "PUT", "/v2/keys/foobar", "value=1", ROOT)
    for user in ["ue", "uc", "ug"]:
        u = as_(user, "p")
        c(R, f"{user} GET /foo (dir)", "GET", "/v2/keys/foo", headers=u)
        c(R, f"{user} GET /foo/", "GET", "/v2/keys/foo/", headers=u)
        c(R, f"{user} GET /foo recursive", "GET", "/v2/keys/foo?recursive=true", headers=u)
        c(R, f"{user} GET /foo/a", "GET", "/v2/keys/foo/a", headers=u)
        c(R, f"{user} GET /foo/a recursive", "GET", "/v2/keys/foo/a?recursive=true", headers=u)
        c(R, f"{user} HEAD /foo/a", "HEAD", "/v2/keys/foo/a", headers=u)
        c(R, f"{user} GET /foobar", "GET", "/v2/keys/foobar", headers=u)
        c(R, f"{user} quorum GET /foo", "GET", "/v2/keys/foo?quorum=true&sorted=true", headers=u)
        compare_once(p, f"{user} watch /foo/a (history)", "GET",
                     f"/v2/keys/foo/a?wait=true&waitIndex={{i:{foo_a}}}", headers=u)
        compare_once(p, f"{user} watch /foo recursive (history)", "GET",
                     f"/v2/keys/foo?wait=true&recursive=true&waitIndex={{i:{foo_a}}}", headers=u)
        c(R, f"{user} PUT /foo/b", "PUT", f"/v2/keys/foo/b{user}", "value=2", u)
        c(R, f"{user} PUT /foo?dir=true", "PUT", "/v2/keys/foo?dir=true", None, u)
        c(R, f"{user} POST /foo (in-order)", "POST", "/v2/keys/foo", "value=q", u)
        c(R, f"{user} DELETE /foo/b", "DELETE", f"/v2/keys/foo/b{user}", None, u)
        c(R, f"{user} PUT /foobaz", "PUT", "/v2/keys/foobaz", "value=z", u)
        c(R, f"{user} GET /v2/keys/", "GET", "/v2/keys/", headers=u)
        c(R, f"{user} GET /other", "GET", "/v2/keys/g1", headers=u)
    ur = as_("ur", "p")
    c(R, "read-only user reads /foo recursive", "GET", "/v2/keys/foo?recursive=true&sorted=true", headers=ur)
    c(R, "read-only user write 401", "PUT", "/v2/keys/foo/x", "value=1", ur)
    c(R, "read-only user DELETE 401", "DELETE", "/v2/keys/foobar", None, ur)
    c(R, "exact user recursive DELETE 401", "DELETE", "/v2/keys/foo?recursive=true", None, as_("ue", "p"))
    c(R, "child user recursive DELETE 401", "DELETE", "/v2/keys/foo?recursive=true", None, as_("uc", "p"))
    c(R, "glob user recursive DELETE", "DELETE", "/v2/keys/foo?recursive=true", None, as_("ug", "p"))
    c(R, "glob user creates dir", "PUT", "/v2/keys/foodir?dir=true", None, as_("ug", "p"))
    c(R, "root sees all", "GET", "/v2/keys/?recursive=true&sorted=true", headers=ROOT)
    c(R, "password change takes effect", "PUT", "/v2/auth/users/ug", js({"user": "ug", "password": "p2"}), ROOT_JSON)
    c(R, "old password 401", "GET", "/v2/keys/foobar", headers=as_("ug", "p"))
    c(R, "new password", "GET", "/v2/keys/foobar", headers=as_("ug", "p2"))
    c(R, "revoke role from user", "PUT", "/v2/auth/users/ug", js({"user": "ug", "revoke": ["pglob"]}), ROOT_JSON)
    c(R, "after revoke 401", "GET", "/v2/keys/foobar", headers=as_("ug", "p2"))
    c(R, "grant root role to user", "PUT", "/v2/auth/users/ug", js({"user": "ug", "grant": ["root"]}), ROOT_JSON)
    c(R, "user with root role administers", "GET", "/v2/auth/roles/pglob", headers=as_("ug", "p2"))
    c(R, "user with root role reads all", "GET", "/v2/keys", headers=as_("ug", "p2"))
    c(R, "role permission revoke takes effect", "PUT", "/v2/auth/roles/ro",
      js({"role": "ro", "revoke": {"kv": {"read": ["/foo*"]}}}), ROOT_JSON)
    c(R, "after role revoke 401", "GET", "/v2/keys/foobar", headers=ur)
    index_step(p, "permission section")


def guest_changes(p):
    section("auth enabled: guest revoked, narrowed, deleted")
    c = unordered(p)
    c(R, "revoke guest rw", "PUT", "/v2/auth/roles/guest",
      js({"role": "guest", "revoke": {"kv": {"read": ["/*"], "write": ["/*"]}}}), ROOT_JSON)
    for m, body in [("GET", None), ("PUT", "value=z"), ("POST", "value=z"), ("DELETE", None)]:
        c(R, f"anonymous {m} 401", m, "/v2/keys/g1", body)
    compare_once(p, "anonymous watch 401", "GET", "/v2/keys/g1?wait=true")
    c(R, "anonymous parameter error still 400", "GET", "/v2/keys/g1?recursive=yes")
    c(R, "grant guest read /foo*", "PUT", "/v2/auth/roles/guest",
      js({"role": "guest", "grant": {"kv": {"read": ["/foo*"]}}}), ROOT_JSON)
    c(R, "anonymous GET /foobar", "GET", "/v2/keys/foobar")
    c(R, "anonymous recursive GET uses plain rule", "GET", "/v2/keys/foodir?recursive=true")
    c(R, "anonymous PUT /foobar 401", "PUT", "/v2/keys/foobar", "value=x")
    c(R, "anonymous GET /g1 401", "GET", "/v2/keys/g1")
    c(R, "delete guest role", "DELETE", "/v2/auth/roles/guest", headers=ROOT)
    c(R, "no guest role: anonymous 401", "GET", "/v2/keys/foobar")
    c(R, "no guest role: root fine", "GET", "/v2/keys/foobar", headers=ROOT)
    index_step(p, "guest changes (+3)", "/v2/keys/ix2", ROOT)


def members_and_others(p):
    section("auth enabled: members, machines, stats, health, version")
    c = p.compare
    mv = members_view
    compare_view(p, "members GET open", "GET", "/v2/members", view=mv)
    compare_view(p, "members leader GET open", "GET", "/v2/members/leader", view=mv)
    c(R, "members POST no creds 401", "POST", "/v2/members", js({"peerURLs": ["http://127.0.0.1:1"]}), JSON)
    c(R, "members POST non-root 401", "POST", "/v2/members", js({"peerURLs": ["http://127.0.0.1:1"]}),
      as_("ur", "p", JSON))
    c(R, "members PUT no creds 401", "PUT", "/v2/members/1234", js({"peerURLs": ["http://127.0.0.1:1"]}), JSON)
    c(R, "members DELETE wrong password 401", "DELETE", "/v2/members/1234", None, as_("root", "x"))
    c(R, "members DELETE root 404", "DELETE", "/v2/members/1234", None, ROOT)
    c(R, "members PATCH 405 before auth", "PATCH", "/v2/members")
    compare_view(p, "machines open", "GET", "/v2/machines", view=lambda b: _URL_RE.sub("<url>", b.decode()).encode())
    for path in ["/v2/stats/self", "/v2/stats/store", "/v2/stats/leader", "/health"]:
        compare_view(p, f"{path} open", "GET", path, body_too=False)
    compare_view(p, "/version open", "GET", "/version", body_too=False)
    c(R, "OPTIONS with bad creds", "OPTIONS", "/v2/keys/g1", headers=as_("root", "bad"))


def disable(p):
    section("disable and re-enable")
    c = unordered(p)
    c(R, "disable without creds 401", "DELETE", "/v2/auth/enable")
    c(R, "disable wrong password 401", "DELETE", "/v2/auth/enable", headers=as_("root", "bad"))
    c(R, "disable as root", "DELETE", "/v2/auth/enable", headers=ROOT)
    index_step(p, "disable (+1)", "/v2/keys/ix2")
    c(R, "disabled again 409", "DELETE", "/v2/auth/enable")
    c(R, "state false", "GET", "/v2/auth/enable")
    c(R, "open again: users without creds", "GET", "/v2/auth/users")
    c(R, "open again: keys with bad creds", "GET", "/v2/keys/foobar", headers=as_("root", "bad"))
    c(R, "open again: empty key", "GET", "/v2/keys")
    c(R, "open again: members POST bad JSON", "POST", "/v2/members", "{bad", JSON)
    c(R, "delete root while disabled", "DELETE", "/v2/auth/users/root")
    c(R, "enable without root 409", "PUT", "/v2/auth/enable")
    c(R, "root recreated with empty roles 201", "PUT", "/v2/auth/users/root",
      js({"user": "root", "password": "r2", "roles": []}), JSON)
    index_step(p, "root delete+create (+2)", "/v2/keys/ix2")
    c(R, "re-enable recreates guest", "PUT", "/v2/auth/enable")
    index_step(p, "re-enable (+2)", "/v2/keys/ix2")
    c(R, "guest back to default", "GET", "/v2/auth/roles/guest", headers=as_("root", "r2"))
    c(R, "old root password 401", "GET", "/v2/auth/users", headers=ROOT)
    c(R, "disable with new root password", "DELETE", "/v2/auth/enable", headers=as_("root", "r2"))
    c(R, "enable with guest present", "PUT", "/v2/auth/enable")
    index_step(p, "disable+enable with guest (+2)", "/v2/keys/ix2")
    a, _ = p.send("GET", "/v2/keys/ix2")
    last = p.ref.rel(a)
    c(R, "auth write between key writes", "PUT", "/v2/auth/users/late",
      js({"user": "late", "password": "p"}), as_("root", "r2", JSON))
    index_step(p, "user while enabled (+1)", "/v2/keys/ix2")
    compare_once(p, "watch from an auth index returns the next key event", "GET",
                 f"/v2/keys/ix2?wait=true&waitIndex={{i:{last + 1}}}")


def run_section(p, sec):
    """Runs one section; a transport error (a server that hangs or drops the connection) is a
    failed check, and the next section starts on fresh connections."""
    try:
        sec(p)
    except OSError as e:
        R.check(False, f"section {sec.__name__} stopped: {e!r}")
        for s in (p.ref, p.sut):
            s.conn.close()


def host_whitelist():
    section("--host-whitelist")
    p = start(["--host-whitelist", "example.com,127.0.0.1"])
    if p is None:
        return
    try:
        run_section(p, whitelist_checks)
    finally:
        p.cleanup()


def whitelist_checks(p):
    """On a fresh store: a failed delete as the first auth write, then the Host check."""
    c = p.compare
    c(R, "first auth write is a failed delete", "DELETE", "/v2/auth/roles/nosuch")
    index_step(p, "failed first delete (+4)")
    c(R, "second failed delete", "DELETE", "/v2/auth/users/nosuch")
    index_step(p, "second failed delete (no move)")
    for host in ["other", "example.com", "example.com:2379", "example.com:1", "EXAMPLE.COM",
                 "example.com.", "", "127.0.0.1", "localhost", "other:2379"]:
        c(R, f"Host {host!r}", "GET", "/v2/keys/", headers={"Host": host})
    for path in ["/health", "/version", "/v2/auth/enable", "/v2/members", "/nonexistent", "/v2/stats/self"]:
        compare_view(p, f"Host other on {path}", "GET", path, headers={"Host": "other"},
                     body_too=path in ("/v2/auth/enable", "/nonexistent"))
    c(R, "Host other on PUT", "PUT", "/v2/keys/hw", "value=1", {"Host": "other"})
    c(R, "Host other on OPTIONS", "OPTIONS", "/v2/keys/hw", headers={"Host": "other"})
    c(R, "Host other with root creds", "GET", "/v2/auth/users", headers={"Host": "other", **ROOT})
    c(R, "Host example.com PUT", "PUT", "/v2/keys/hw", "value=1", {"Host": "example.com"})
    index_step(p, "whitelist requests (+1)")


def main():
    dl.need_binaries()
    print(f"server under test: {dl.UNDER_TEST}")
    p = start()
    if p is not None:
        try:
            for sec in (disabled_state, roles, users, paths_methods, enable, enabled_admin,
                        guest_default, prefix_permissions, guest_changes, members_and_others,
                        disable):
                run_section(p, sec)
        finally:
            p.cleanup()
    host_whitelist()
    R.finish()


if __name__ == "__main__":
    main()
