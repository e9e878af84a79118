#!/usr/bin/python3
"""v2 auth in a three-member cluster, the same sequence run on kvd and on etcd (the oracle), each
half checked against the expected outcome and the two halves compared step by step:

  - root, a role and a user created through member A (and auth enabled there) are enforced on
    B and C once they have applied the writes (waited for by their X-Etcd-Index, bounded), and
    the X-Etcd-Index after the auth writes is the same on every member (and moved by the same
    amount as on etcd);
  - a role change (guest loses write) through A is enforced on B and C; auth disabled through
    B is off everywhere, enabled again through C is on everywhere;
  - auth state survives a SIGKILL and restart of one member, and of the whole cluster;
  - catch-up: with --snapshot-count 20 a follower is killed, a user is created, a password
    changed and 120 keys are written while it is down (the leader compacts its log several
    times), then the follower restarts: kvd's installs a snapshot from the leader (logs), and
    it enforces the new state (the new user reads, the old password is refused, the new one
    accepted) and holds the leader's store at the leader's index;
  - a proxy (--proxy on) in front: auth disabled and enabled again, a role and a user created
    through the proxy; the user's Basic credentials pass through the proxy untouched (writes
    under its prefix accepted, elsewhere refused; a wrong password refused), as etcd's proxy in
    front of etcd does; a readonly proxy answers 501 to a write even with root credentials;
  - --host-whitelist on a kvd member (421 for another Host, 200 for a listed one, as on etcd)
    and on a kvd proxy (kvd only: etcd's proxy does not check it).

Run: KVD_BIN=build/server/kvd /usr/bin/python3 tests/e2e/test_auth_cluster.py
"""
import base64
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
SNAPSHOT_COUNT = 20
CATCHUP_WRITES = 120
ROOT_PW = "rootpw"
JSON = {"Content-Type": "application/json"}
APPLY_TIMEOUT_S = 15.0


def basic(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": "Basic " + token}


ROOT = basic("root", ROOT_PW)


def js(obj):
    return json.dumps(obj, separators=(",", ":"))


class Half:
    """One kind's run: records each step's outcome under a name, checked against the expected
    value at once; the halves are compared at the end."""

    def __init__(self, kind):
        self.kind = kind
        self.seen = {}

    def expect(self, name, got, want):
        self.seen[name] = got
        R.check(got == want, f"[{self.kind}] {name}: got {got!r}, want {want!r}")
        return got == want


# --- requests ---

def send(target, method, path, body=None, headers=None, timeout=harness.KEYS_TIMEOUT_S):
    """One request to target's base URL: (status, headers, body); a transport error is a None
    status."""
    return harness.try_request(method, harness.url_of(target) + path, body=body,
                               headers=headers, timeout=timeout)


def auth_put(target, path, obj, headers=ROOT):
    h = dict(headers or {})
    h.update(JSON)
    status, _, body = send(target, "PUT", "/v2/auth/" + path, js(obj), h)
    return status, body


def key_put(target, key, value, headers=None):
    status, _, body = send(target, "PUT", "/v2/keys" + key, "value=" + value, headers)
    return status


def key_get(target, key, headers=None):
    status, _, body = send(target, "GET", "/v2/keys" + key, None, headers)
    if status == 200:
        return status, json.loads(body)["node"].get("value")
    return status, None


def etcd_index(m, headers=ROOT, quorum=False):
    """X-Etcd-Index of a GET of a missing key on m (None if m does not answer). A quorum read
    goes through raft: its index covers every write answered before it, on any member."""
    q = "?quorum=true" if quorum else ""
    status, hdrs, _ = send(m, "GET", "/v2/keys/no-such-key-for-index" + q, headers=headers,
                           timeout=10.0 if quorum else 3.0)
    if status not in (200, 404):
        return None
    return int(hdrs.get("x-etcd-index", "-1"))


def applied(members, index, headers=ROOT):
    """Waits (bounded) until every member reports X-Etcd-Index >= index; returns whether they
    did."""
    return bool(harness.wait_for(
        lambda: all((etcd_index(m, headers) or -1) >= index for m in members), APPLY_TIMEOUT_S))




def enforcement(h, label, m, password="a1"):
    """The auth state as seen on member m after the setup: alice (role app: /app/*) writes under
    /app and nowhere else, a wrong password and an unknown user are refused, the guest reads but
    may not write, only root reads the user list."""
    own = f"/app/m{m.name[-1]}"
    # The label names no member: which follower a step picks may differ between the clusters.
    h.expect(f"{label}: alice PUT under /app",
             key_put(m, own, "v", basic("alice", password)) in (200, 201), True)
    h.expect(f"{label}: alice reads it", key_get(m, own, basic("alice", password)), (200, "v"))
    h.expect(f"{label}: alice PUT /other", key_put(m, "/other", "v", basic("alice", password)),
             401)
    h.expect(f"{label}: alice wrong password", key_get(m, "/app/k0", basic("alice", "nope")),
             (401, None))
    h.expect(f"{label}: unknown user", key_get(m, "/app/k0", basic("mallory", "x")), (401, None))
    h.expect(f"{label}: guest reads", key_get(m, "/app/k0"), (200, "0"))
    h.expect(f"{label}: guest PUT refused", key_put(m, "/guest", "v"), 401)
    h.expect(f"{label}: root PUT /other", key_put(m, "/other", "r", ROOT) in (200, 201), True)
    status, _, body = send(m, "GET", "/v2/auth/users", headers=ROOT)
    names = [u["user"] for u in json.loads(body)["users"]] if status == 200 else None
    h.expect(f"{label}: root lists users", (status, names), (200, ["alice", "dan", "root"]))
    h.expect(f"{label}: alice lists users",
             send(m, "GET", "/v2/auth/users", headers=basic("alice", password))[0], 401)
    h.expect(f"{label}: enable state", send(m, "GET", "/v2/auth/enable")[2], b'{"enabled":true}\n')


def log_since(m, offset):
    with open(m.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


# --- the cluster sequence ---

def setup_through_a(h, c):
    a = c.members[0]
    before = etcd_index(a)
    h.expect("root created through A", auth_put(a, "users/root", {"user": "root",
                                                                   "password": ROOT_PW})[0], 201)
    h.expect("role app created through A", auth_put(a, "roles/app", {
        "role": "app", "permissions": {"kv": {"read": ["/app/*"], "write": ["/app/*"]}}})[0], 201)
    h.expect("user alice created through A", auth_put(a, "users/alice", {
        "user": "alice", "password": "a1", "roles": ["app"]})[0], 200)
    # "dan:d1" is 6 bytes: its Basic token has no base64 padding ("ZGFuOmQx").
    h.expect("user dan created through A", auth_put(a, "users/dan", {
        "user": "dan", "password": "d1", "roles": ["app"]})[0], 200)
    h.expect("auth enabled through A", send(a, "PUT", "/v2/auth/enable")[0], 200)
    h.expect("guest loses write through A", auth_put(a, "roles/guest", {
        "role": "guest", "revoke": {"kv": {"write": ["/*"]}}})[0], 200)
    after = etcd_index(a)
    # root +5 (the /2 dirs first), role +1, two users +2, enable +2 (guest role), guest +1.
    h.expect("index moved by the auth writes on A", after - before, 11)
    h.expect("B and C applied the auth writes", applied(c.members, after), True)
    idx = [etcd_index(m) for m in c.members]
    h.expect("X-Etcd-Index after the auth writes equal on all members",
             len(set(idx)) == 1 and idx[0] == after, True)
    h.expect("root PUT /app/k0 through A", key_put(a, "/app/k0", "0", ROOT), 201)
    applied(c.members, etcd_index(a))
    for m in c.members[1:]:
        enforcement(h, f"set up through A, on {m.name[-1]}", m)
    h.expect("dan (a Basic token without base64 padding) reads on B",
             key_get(c.members[1], "/app/k0", basic("dan", "d1")), (200, "0"))


def disable_enable(h, c):
    a, b, cc = c.members
    h.expect("disable through B", send(b, "DELETE", "/v2/auth/enable", headers=ROOT)[0], 200)
    idx = etcd_index(b)
    h.expect("A and C applied the disable", applied(c.members, idx), True)
    for m in (a, cc):
        h.expect(f"disabled: guest PUT on {m.name[-1]}", key_put(m, "/guest", m.name), 200
                 if m is cc else 201)
        h.expect(f"disabled: wrong password ignored on {m.name[-1]}",
                 key_get(m, "/app/k0", basic("alice", "nope")), (200, "0"))
        h.expect(f"disabled: state on {m.name[-1]}", send(m, "GET", "/v2/auth/enable")[2],
                 b'{"enabled":false}\n')
    h.expect("enable through C", send(cc, "PUT", "/v2/auth/enable")[0], 200)
    h.expect("A and B applied the enable", applied(c.members, etcd_index(cc)), True)
    for m in (a, b):
        h.expect(f"enabled again: guest PUT on {m.name[-1]}", key_put(m, "/guest", "x"), 401)
        h.expect(f"enabled again: alice on {m.name[-1]}",
                 key_put(m, "/app/again", "x", basic("alice", "a1")), 201 if m is a else 200)


def restarts(h, c):
    lead = c.leader()
    victim = c.followers(lead)[0]
    c.kill(victim)
    c.restart(victim)
    h.expect("restarted member applied everything",
             applied([victim], etcd_index(lead, quorum=True)), True)
    enforcement(h, "after kill -9 and restart of one member", victim)

    for m in c.members:
        c.kill(m)
    for m in c.members:
        m.spawn()
    for m in c.members:
        m.wait_ready(40.0)
    h.expect("a leader after the full restart", c.leader() is not None, True)
    for m in c.members:
        harness.wait_cluster_version(m)
    h.expect("same X-Etcd-Index on all members after the full restart",
             harness.wait_for(lambda: len({etcd_index(m) for m in c.members}) == 1,
                              APPLY_TIMEOUT_S) is True, True)
    for m in c.members:
        enforcement(h, f"after a full-cluster restart, on {m.name[-1]}", m)


def catch_up(h, c):
    lead = c.leader()
    lagger = c.followers(lead)[0]
    live = [m for m in c.members if m is not lagger]
    c.kill(lagger)
    lead_log_at = os.path.getsize(lead.log_path)
    lagger_log_at = os.path.getsize(lagger.log_path)
    h.expect("bob created while a member is down", auth_put(lead, "users/bob", {
        "user": "bob", "password": "b12", "roles": ["app"]})[0], 200)
    h.expect("alice's password changed while a member is down",
             auth_put(lead, "users/alice", {"user": "alice", "password": "a2"})[0], 200)
    statuses = set()
    for i in range(CATCHUP_WRITES):
        statuses.add(key_put(live[i % 2], f"/app/bulk{i % 30}", str(i), ROOT))
    h.expect(f"{CATCHUP_WRITES} writes while a member is down", statuses <= {200, 201}, True)
    want = etcd_index(lead, quorum=True)
    if c.kind == "kvd":
        snaps = re.findall(r"saved snapshot at index (\d+)", log_since(lead, lead_log_at))
        R.check(len(snaps) >= 3, f"[kvd] the leader compacted while a member was down: {snaps}")
    c.restart(lagger)
    h.expect("the restarted member catches up to the leader's index",
             applied([lagger], want), True)
    if c.kind == "kvd":
        text = log_since(lagger, lagger_log_at)
        R.check(re.search(r"installed the snapshot at index \d+", text) is not None,
                f"[kvd] {lagger.name} installed a snapshot from the leader")
    h.expect("caught up: bob reads", key_get(lagger, "/app/bulk0", basic("bob", "b12")),
             (200, "90"))
    h.expect("caught up: bob writes under /app",
             key_put(lagger, "/app/bob", "b", basic("bob", "b12")), 201)
    h.expect("caught up: alice's old password refused",
             key_get(lagger, "/app/bulk0", basic("alice", "a1")), (401, None))
    h.expect("caught up: alice's new password accepted",
             key_get(lagger, "/app/bulk0", basic("alice", "a2")), (200, "90"))
    h.expect("caught up: guest still may not write", key_put(lagger, "/guest", "x"), 401)
    h.expect("identical stores after the catch-up", c.converged(timeout=20) is not None, True)
    idx = [etcd_index(m) for m in c.members]
    h.expect("X-Etcd-Index equal on all members after the catch-up", len(set(idx)) == 1, True)


def through_proxy(h, c):
    """A proxy of the cluster's kind in front: auth managed and Authorization passed through."""
    p = harness.Proxy(c.kind, c.initial_cluster(), c.workdir)
    ro = harness.Proxy(c.kind, c.initial_cluster(), c.workdir, mode="readonly", name="ro")
    try:
        p.start(want_endpoints=3)
        ro.start(want_endpoints=3)
        h.expect("proxy: disable with alice refused",
                 send(p, "DELETE", "/v2/auth/enable", headers=basic("alice", "a2"))[0], 401)
        h.expect("proxy: disable with root", send(p, "DELETE", "/v2/auth/enable",
                                                   headers=ROOT)[0], 200)
        # The proxy may send the next requests to another member: wait until all applied it.
        h.expect("proxy: every member applied the disable",
                 applied(c.members, etcd_index(c.members[0], quorum=True)), True)
        h.expect("proxy: role cfg created", auth_put(p, "roles/cfg", {
            "role": "cfg", "permissions": {"kv": {"read": ["/cfg/*"], "write": ["/cfg/*"]}}},
            headers=None)[0], 201)
        h.expect("proxy: user carol created", auth_put(p, "users/carol", {
            "user": "carol", "password": "c1", "roles": ["cfg"]}, headers=None)[0], 200)
        h.expect("proxy: enable", send(p, "PUT", "/v2/auth/enable")[0], 200)
        h.expect("proxy: every member applied the enable",
                 applied(c.members, etcd_index(c.members[0], quorum=True)), True)
        h.expect("proxy: state", send(p, "GET", "/v2/auth/enable")[2], b'{"enabled":true}\n')
        h.expect("proxy: user list without root refused",
                 send(p, "GET", "/v2/auth/users", headers=basic("carol", "c1"))[0], 401)
        status, _, body = send(p, "GET", "/v2/auth/users/carol", headers=ROOT)
        h.expect("proxy: GET user carol with root", (status, body),
                 (200, b'{"user":"carol","roles":[{"role":"cfg","permissions":{"kv":{"read":'
                       b'["/cfg/*"],"write":["/cfg/*"]}}}]}\n'))
        h.expect("proxy: carol writes under /cfg",
                 key_put(p, "/cfg/a", "1", basic("carol", "c1")), 201)
        h.expect("proxy: carol reads it", key_get(p, "/cfg/a", basic("carol", "c1")), (200, "1"))
        h.expect("proxy: carol refused elsewhere",
                 key_put(p, "/app/carol", "1", basic("carol", "c1")), 401)
        status, _, body = send(p, "GET", "/v2/keys/app/k0", headers=basic("carol", "c1"))
        h.expect("proxy: carol's read refused elsewhere, the etcd error",
                 (status, body), (401, b'{"errorCode":110,"message":"The request requires user '
                                        b'authentication","cause":"Insufficient credentials",'
                                        b'"index":0}\n'))
        h.expect("proxy: carol wrong password",
                 key_put(p, "/cfg/b", "1", basic("carol", "bad")), 401)
        h.expect("proxy: anonymous write refused", key_put(p, "/cfg/c", "1"), 401)
        h.expect("proxy: anonymous read (guest)", key_get(p, "/cfg/a"), (200, "1"))
        status, hdrs, body = send(ro, "PUT", "/v2/keys/cfg/ro", "value=1", ROOT)
        h.expect("readonly proxy: root write refused with 501", (status, body), (501, b""))
        status, hdrs, body = send(ro, "DELETE", "/v2/auth/enable", headers=ROOT)
        h.expect("readonly proxy: disable with root refused with 501", (status, body),
                 (501, b""))
        h.expect("readonly proxy: root reads", key_get(ro, "/cfg/a", ROOT), (200, "1"))
        h.expect("readonly proxy: carol reads", key_get(ro, "/cfg/a", basic("carol", "c1")),
                 (200, "1"))
        h.expect("readonly proxy: carol refused elsewhere",
                 key_get(ro, "/app/k0", basic("carol", "c1")), (401, None))
    finally:
        p.kill()
        ro.kill()


def run_half(kind):
    h = Half(kind)
    t0 = time.monotonic()
    with cluster.Cluster(kind, 3, snapshot_count=SNAPSHOT_COUNT, results=R,
                         workdir_prefix=f"kvd-auth-{kind}") as c:
        R.check(c.leader() is not None, f"[{kind}] three members agree on a leader")
        for m in c.members:
            R.check(harness.wait_cluster_version(m), f"[{kind}] {m.name}: cluster version decided")
        for step in (setup_through_a, disable_enable, restarts, catch_up, through_proxy):
            print(f"-- [{kind}] {step.__name__}", flush=True)
            step(h, c)
    print(f"[{kind}] took {time.monotonic() - t0:.1f}s", flush=True)
    return h


# --- --host-whitelist ---

def host_status(target, host, path="/v2/keys/hw"):
    status, _, body = send(target, "GET", path, headers={"Host": host})
    return status, body


def host_whitelist(kinds):
    workdir = harness.new_workdir("kvd-auth-whitelist-")
    procs = []
    wl = ["--host-whitelist", "example.com,127.0.0.1"]
    seen = {}
    try:
        for kind in kinds:
            m = harness.Member(kind, name=f"wl-{kind}", workdir=workdir, extra_args=wl)
            procs.append(m)
            m.start(timeout=30)
            harness.put(m, "/hw", kind)
            port = m.client_port
            got = (host_status(m, f"evil.example:{port}"), host_status(m, f"example.com:{port}"),
                   host_status(m, f"127.0.0.1:{port}")[0], host_status(m, "EXAMPLE.COM")[0],
                   host_status(m, "evil.example", "/health")[0])
            seen[kind] = got
            R.check(got[0][0] == 421 and b'etcd --host-whitelist "evil.example"' in got[0][1],
                    f"[{kind}] member: another Host is refused with 421: {got[0]!r}")
            R.check(got[1][0] == 200 and f'"value":"{kind}"'.encode() in got[1][1],
                    f"[{kind}] member: a listed Host is served: {got[1]!r}")
            R.check(got[2:] == (200, 421, 421), f"[{kind}] member: 127.0.0.1 served, "
                    f"EXAMPLE.COM and /health with another Host refused: {got[2:]}")
            if kind == "kvd":
                px = harness.Proxy("kvd", f"wl-kvd={m.peer_url}", workdir, extra_args=wl,
                                   name="wl-proxy")
                procs.append(px)
                px.start(want_endpoints=1)
                pp = px.port
                a = host_status(px, f"evil.example:{pp}")
                R.check(a[0] == 421 and b'etcd --host-whitelist "evil.example"' in a[1],
                        f"[kvd] proxy: another Host is refused with 421: {a!r}")
                b = host_status(px, f"example.com:{pp}")
                R.check(b[0] == 200 and b'"value":"kvd"' in b[1],
                        f"[kvd] proxy: a listed Host is served: {b!r}")
                R.check(host_status(px, f"127.0.0.1:{pp}")[0] == 200,
                        "[kvd] proxy: 127.0.0.1 is served")
                status, _, body = send(px, "PUT", "/v2/keys/hw", "value=x",
                                       {"Host": "evil.example"})
                R.check(status == 421, f"[kvd] proxy: a write with another Host is refused: "
                        f"{status}")
                R.check(harness.get(m, "/hw")[2].find(b'"value":"kvd"') >= 0,
                        "[kvd] proxy: the refused write did not reach the member")
        if "etcd" in seen:
            R.check(seen["kvd"][0] == seen["etcd"][0] and seen["kvd"][2:] == seen["etcd"][2:],
                    f"member 421 answers: kvd {seen['kvd']!r}\n  etcd {seen['etcd']!r}")
    except Exception as e:  # a start failure is reported, then the run ends
        R.check(False, f"--host-whitelist: {type(e).__name__}: {e}")
    finally:
        for p in procs:
            p.kill()
        harness.remove_workdir(workdir, R)


def main():
    t_start = time.monotonic()
    kinds = ["kvd"] + (["etcd"] if cluster.etcd_half_runs() else [])
    halves = {k: run_half(k) for k in kinds}
    if "etcd" in halves:
        cluster.check_halves_agree(R, halves["kvd"].seen, halves["etcd"].seen,
                                   lambda k: f"kvd and etcd differ at step {k!r}")
    host_whitelist(kinds)
    print(f"took {time.monotonic() - t_start:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
