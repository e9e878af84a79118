"""kvctl export and import: a tree built in a real etcd 3.4 is exported, imported into an empty
kvd, exported again and compared (equal but for indexes and TTL countdowns); the kvd export is
imported into a second, empty etcd and compared the same way. Also: a non-empty target is
refused (exit code 6, nothing written) unless --force; malformed files are refused before
anything is written; expired nodes are skipped; the progress line appears on a terminal only.

Run: KVCTL_BIN=build-cli/cli/kvctl [KVD_BIN=build/server/kvd] python3 tests/e2e/test_export_import.py
"""
import json
import os
import pty
import subprocess
import sys
import time
import urllib.parse

os.environ.setdefault("KVD_BIN", "/work/main/build/server/kvd")
os.environ.setdefault("KVCTL_BIN", "/work/main/build/cli/kvctl")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

KVCTL = os.environ["KVCTL_BIN"]
STEP_TIMEOUT = 30.0
TTL_SLACK_S = 5  # TTL countdown allowed between two exports of the same tree

R = harness.Results()


def kvctl(member, args, stdin=None, stderr_fd=None):
    """Runs kvctl against member; returns (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    p = subprocess.run([KVCTL, "--endpoints", member.url, *args],
                       input=(stdin if stdin is not None else "").encode(),
                       stdout=subprocess.PIPE,
                       stderr=stderr_fd if stderr_fd is not None else subprocess.PIPE,
                       env=env, timeout=STEP_TIMEOUT)
    err = p.stderr.decode(errors="replace") if p.stderr is not None else ""
    return p.returncode, p.stdout.decode(errors="replace"), err


def keys_call(member, method, key, form=None, query=""):
    body = urllib.parse.urlencode(form) if form is not None else None
    q = ("?" + query) if query else ""
    status, headers, data = harness.request(method, f"{member.url}/v2/keys{urllib.parse.quote(key)}{q}", body=body)
    assert status in (200, 201), (method, key, status, data)
    return json.loads(data)


def etcd_index(member):
    _, headers, _ = harness.request("GET", member.url + "/v2/keys/")
    return int(headers["x-etcd-index"])


def root_children(member):
    node = json.loads(harness.request("GET", member.url + "/v2/keys/")[2])["node"]
    return node.get("nodes") or []


def build_tree(m):
    """The source tree: nested dirs, 500+ keys, in-order keys, TTL keys and a TTL dir, empty
    dirs, awkward values, one hidden key (not exportable through the API)."""
    values = {}
    for d in range(10):
        for k in range(52):
            key = f"/bulk/d{d:02}/k{k:03}"
            values[key] = f"v{d}-{k}"
            keys_call(m, "PUT", key, {"value": values[key]})
    keys_call(m, "PUT", "/app/config/db/host", {"value": "db.local"})
    keys_call(m, "PUT", "/app/config/db/port", {"value": "5432"})
    keys_call(m, "PUT", "/app/unicode", {"value": "h\u00e9llo \u4e16\u754c \U0001F600"})
    keys_call(m, "PUT", "/app/multi", {"value": "line1\nline2\n\ttabbed \"quoted\" \\ end\n"})
    keys_call(m, "PUT", "/app/empty-value", {"value": ""})
    keys_call(m, "PUT", "/app/spaces and %25", {"value": "a=b&c=d"})
    for i in range(12):
        keys_call(m, "POST", "/queue", {"value": f"job {i}"})
    keys_call(m, "PUT", "/empty", query="dir=true")
    keys_call(m, "PUT", "/app/config/empty-sub", query="dir=true")
    keys_call(m, "PUT", "/ttl/key", {"value": "expires", "ttl": "300"})
    keys_call(m, "PUT", "/ttl/dir", {"ttl": "200"}, query="dir=true")
    keys_call(m, "PUT", "/ttl/dir/child", {"value": "in a ttl dir"})
    keys_call(m, "PUT", "/_hidden", {"value": "not listed"})
    keys_call(m, "PUT", "/top", {"value": "top-level"})


def load(text):
    return json.loads(text)


def comparable(doc):
    """The export without what legitimately differs between servers: indexes, and the TTL
    countdown (kept aside for a tolerance check)."""
    nodes, ttls = [], {}
    for n in doc["nodes"]:
        n = dict(n)
        for f in ("createdIndex", "modifiedIndex"):
            n.pop(f, None)
        if "ttl" in n:
            ttls[n["key"]] = (n.pop("ttl"), n.pop("expiration"))
        nodes.append(n)
    head = {k: v for k, v in doc.items() if k not in ("nodes", "etcdIndex")}
    return head, nodes, ttls


def parse_time(s):
    """RFC3339Nano in UTC (as export writes it) -> Unix seconds (float)."""
    base, _, frac = s.rstrip("Z").partition(".")
    t = time.mktime(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return t + (float("0." + frac) if frac else 0.0)


def same_tree(what, a, b):
    ha, na, ta = comparable(a)
    hb, nb, tb = comparable(b)
    ok = R.check(ha == hb, f"{what}: same header: {ha} vs {hb}")
    if na != nb:
        diff = [(x, y) for x, y in zip(na, nb) if x != y][:3]
        ok = R.check(False, f"{what}: same nodes ({len(na)} vs {len(nb)}); first differences "
                            f"{diff}")
    else:
        R.check(True, what)
    R.check(ta.keys() == tb.keys(), f"{what}: same TTL nodes: {sorted(ta)} vs {sorted(tb)}")
    for k in ta.keys() & tb.keys():
        (ttl_a, exp_a), (ttl_b, exp_b) = ta[k], tb[k]
        R.check(abs(ttl_a - ttl_b) <= TTL_SLACK_S and ttl_b > 0,
                f"{what}: {k} ttl {ttl_a} vs {ttl_b}")
        R.check(abs(parse_time(exp_a) - parse_time(exp_b)) <= TTL_SLACK_S,
                f"{what}: {k} expiration {exp_a} vs {exp_b}")
    return ok


def check_export_file(text, source):
    doc = load(text)
    R.check(doc.get("format") == "kvd-v2-export" and doc.get("version") == 1
            and doc.get("root") == "/", f"export header: {text[:120]!r}")
    R.check(isinstance(doc.get("etcdIndex"), int) and doc["etcdIndex"] <= etcd_index(source)
            and doc["etcdIndex"] > 500, f"etcdIndex {doc.get('etcdIndex')}")
    lines = text.splitlines()
    R.check(len(lines) == len(doc["nodes"]) + 2, "one node per line")
    keys = [n["key"] for n in doc["nodes"]]
    R.check(not any("/_" in k for k in keys), "hidden keys are not exported")
    R.check(sum(1 for n in doc["nodes"] if not n.get("dir")) >= 530, f"{len(keys)} nodes")
    R.check(all("createdIndex" in n and "modifiedIndex" in n for n in doc["nodes"]),
            "every node has its indexes")
    by_key = {n["key"]: n for n in doc["nodes"]}
    R.check(by_key.get("/empty") == {"key": "/empty", "dir": True,
                                     "createdIndex": by_key["/empty"]["createdIndex"],
                                     "modifiedIndex": by_key["/empty"]["modifiedIndex"]},
            f"empty dir: {by_key.get('/empty')}")
    R.check(by_key["/app/multi"]["value"] == "line1\nline2\n\ttabbed \"quoted\" \\ end\n",
            "newlines survive")
    R.check(by_key["/app/unicode"]["value"] == "h\u00e9llo \u4e16\u754c \U0001F600",
            "unicode survives")
    R.check(by_key["/app/empty-value"]["value"] == "", "empty value")
    R.check(0 < by_key["/ttl/key"]["ttl"] <= 300 and "expiration" in by_key["/ttl/key"],
            f"ttl key: {by_key['/ttl/key']}")
    R.check(by_key["/ttl/dir"].get("dir") and 0 < by_key["/ttl/dir"]["ttl"] <= 200,
            f"ttl dir: {by_key['/ttl/dir']}")
    queue = [k for k in keys if k.startswith("/queue/")]
    R.check(len(queue) == 12 and queue == sorted(queue), f"in-order keys: {queue[:3]}")
    # Pre-order: every directory before its children.
    pos = {k: i for i, k in enumerate(keys)}
    R.check(all(pos.get(k.rsplit("/", 1)[0], -1) < pos[k] for k in keys), "parents first")
    return doc


def malformed_cases(good):
    doc = load(good)
    bad_last = json.loads(good)
    del bad_last["nodes"][-1]["key"]
    wrong_parent = json.loads(good)
    wrong_parent["nodes"].append({"key": "/top/child", "value": "x"})
    return [
        ("not JSON", "this is not json", "not JSON"),
        ("empty input", "", "empty"),
        ("truncated", good[: len(good) // 2], "not JSON"),
        ("array", "[]", "not a JSON object"),
        ("wrong format", json.dumps({**doc, "format": "etcd-backup"}), "format"),
        ("wrong version", json.dumps({**doc, "version": 2}), "unsupported version 2"),
        ("missing version", json.dumps({k: v for k, v in doc.items() if k != "version"}),
         "version"),
        ("missing nodes", json.dumps({k: v for k, v in doc.items() if k != "nodes"}), "nodes"),
        ("last node without key", json.dumps(bad_last), "missing \"key\""),
        ("value missing", json.dumps({**doc, "nodes": [{"key": "/a"}]}), "missing \"value\""),
        ("bad expiration", json.dumps({**doc, "nodes": [
            {"key": "/a", "value": "x", "expiration": "tomorrow"}]}), "expiration"),
        ("relative key", json.dumps({**doc, "nodes": [{"key": "a", "value": "x"}]}), "key"),
        ("duplicate key", json.dumps({**doc, "nodes": [{"key": "/a", "value": "x"},
                                                       {"key": "/a", "value": "y"}]}),
         "duplicate"),
        ("child of a value", json.dumps(wrong_parent), "not a directory"),
    ]


def main():
    harness.require_etcd()
    if not os.access(KVCTL, os.X_OK):
        print(f"SKIP: kvctl not built at {KVCTL}")
        sys.exit(harness.SKIP)
    if not os.access(harness.KVD_BIN, os.X_OK):
        print(f"SKIP: kvd not built at {harness.KVD_BIN}")
        sys.exit(harness.SKIP)
    t0 = time.monotonic()
    members = []
    try:
        etcd_src = harness.Member("etcd", name="src")
        kvd = harness.Member("kvd", name="kvd")
        etcd_dst = harness.Member("etcd", name="dst")
        for m in (etcd_src, kvd, etcd_dst):
            members.append(m.spawn())
        for m in members:
            m.wait_ready()
        build_tree(etcd_src)
        print(f"tree built in {time.monotonic() - t0:.1f}s", flush=True)

        # etcd -> file
        rc, out, err = kvctl(etcd_src, ["export"])
        R.check(rc == 0, f"export from etcd: rc {rc} {err}")
        src_doc = check_export_file(out, etcd_src)
        rc, src_noidx, err = kvctl(etcd_src, ["export", "--no-index"])
        R.check(rc == 0 and "Index" not in src_noidx, f"export --no-index: rc {rc} {err}")

        # Malformed files: refused before anything is written.
        before = etcd_index(kvd)
        for name, text, want in malformed_cases(out):
            rc, sout, serr = kvctl(kvd, ["import"], stdin=text)
            R.check(rc == 1 and want in serr and "nothing was written" in serr,
                    f"malformed input ({name}): rc {rc}, stderr {serr!r}")
        R.check(etcd_index(kvd) == before and root_children(kvd) == [],
                "malformed inputs wrote nothing")

        # file -> kvd -> file
        t = time.monotonic()
        rc, sout, serr = kvctl(kvd, ["import"], stdin=out)
        R.check(rc == 0 and sout.startswith("import: created ") and serr == "",
                f"import into kvd: rc {rc} out {sout!r} err {serr!r}")
        R.check("\r" not in serr, "no progress line without a terminal")
        print(f"import into kvd: {sout.strip()} ({time.monotonic() - t:.2f}s)", flush=True)
        rc, kvd_out, err = kvctl(kvd, ["export"])
        R.check(rc == 0, f"export from kvd: rc {rc} {err}")
        kvd_doc = load(kvd_out)
        same_tree("etcd -> file -> kvd -> file", src_doc, kvd_doc)
        rc, kvd_noidx, _ = kvctl(kvd, ["export", "--no-index"])
        R.check(comparable(load(kvd_noidx)) == comparable(load(src_noidx))
                or same_tree("--no-index exports", load(src_noidx), load(kvd_noidx)),
                "--no-index exports of etcd and kvd agree")

        # kvd -> file -> etcd, with the progress line on a terminal.
        master, slave = pty.openpty()
        try:
            rc, sout, _ = kvctl(etcd_dst, ["import"], stdin=kvd_out, stderr_fd=slave)
            os.close(slave)
            slave = None
            tty_err = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                tty_err += chunk
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        R.check(rc == 0 and sout.startswith("import: created "),
                f"import into etcd: rc {rc} {sout!r}")
        R.check(b"\rimport: " in tty_err and b"100%" in tty_err,
                f"progress line on a terminal: {tty_err[-200:]!r}")
        rc, dst_out, err = kvctl(etcd_dst, ["export"])
        R.check(rc == 0, f"export from second etcd: rc {rc} {err}")
        same_tree("kvd -> file -> etcd -> file", kvd_doc, load(dst_out))

        # A non-empty target is refused, nothing written; --force imports anyway.
        before = etcd_index(kvd)
        rc, sout, serr = kvctl(kvd, ["import"], stdin=out)
        R.check(rc == 6 and "not empty" in serr and "--force" in serr,
                f"non-empty target refused: rc {rc} {serr!r}")
        R.check(etcd_index(kvd) == before, "refusal wrote nothing")
        keys_call(kvd, "PUT", "/app/config/db/host", {"value": "changed"})
        keys_call(kvd, "PUT", "/extra", {"value": "stays"})
        rc, sout, serr = kvctl(kvd, ["import", "--force"], stdin=out)
        R.check(rc == 0 and sout.startswith("import: created "),
                f"import --force: rc {rc} {sout!r} {serr!r}")
        forced = load(kvctl(kvd, ["export"])[1])
        forced["nodes"] = [n for n in forced["nodes"] if n["key"] != "/extra"]
        same_tree("import --force restores the file's values", src_doc, forced)

        # An expired node (and what is under it) is skipped, not created.
        rc, _, err = kvctl(kvd, ["rm", "--recursive", "/bulk"])
        small = {"format": "kvd-v2-export", "version": 1, "root": "/", "nodes": [
            {"key": "/old", "dir": True, "expiration": "2001-01-01T00:00:00Z", "ttl": 5},
            {"key": "/old/k", "value": "x"},
            {"key": "/fresh", "value": "y", "ttl": 100},
        ]}
        rc, sout, serr = kvctl(kvd, ["import", "--force"], stdin=json.dumps(small))
        R.check(rc == 0 and "skipped 2 expired" in sout, f"expired skipped: {sout!r} {serr!r}")
        s_old, _, _ = harness.get(kvd, "/old")
        fresh = json.loads(harness.get(kvd, "/fresh")[2])["node"]
        R.check(s_old == 404 and 95 <= fresh.get("ttl", 0) <= 100,
                f"expired dir absent ({s_old}), ttl from file: {fresh}")

        # Exporting a subtree; a missing key is an error.
        rc, sub, _ = kvctl(etcd_src, ["export", "--no-index", "/app/config"])
        sub_keys = [n["key"] for n in load(sub)["nodes"]] if rc == 0 else []
        R.check(rc == 0 and sub_keys[0] == "/app/config" and load(sub)["root"] == "/app/config"
                and "/app/config/db/host" in sub_keys, f"subtree export: {sub_keys}")
        rc, _, serr = kvctl(etcd_src, ["export", "/nope"])
        R.check(rc == 4 and "Key not found" in serr, f"missing key: rc {rc} {serr!r}")
    finally:
        for m in members:
            m.cleanup()
    print(f"total {time.monotonic() - t0:.1f}s")
    R.finish()


if __name__ == "__main__":
    main()
