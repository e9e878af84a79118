#!/usr/bin/python3
"""Seeded random v2 operations sent in lockstep to a real etcd and to the server under test, each
answer compared after index normalization (difflib_v2.py). The key space is small so that
conflicts, compare failures, not-a-file/dir errors and deletes of non-empty directories happen.

Environment: KVD_SEED (default: random, printed), KVD_OPS (default 3000),
KVD_UNDER_TEST=etcd to run etcd against etcd. Replay a failure with the printed command.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import difflib_v2 as dl  # noqa: E402
import harness  # noqa: E402

MAX_REPORTED = 15
NAMES = ["a", "b", "c", "_h"]
VALUES = ["x", "y", "zz", "", "v%3Cw%3E", "%C3%A9"]


def random_path(rng):
    depth = rng.choice([1, 1, 1, 2, 2, 3])
    return "/r/" + "/".join(rng.choice(NAMES) for _ in range(depth))


def random_op(rng, cur_rel, known):
    """Returns (description, method, path, body, unordered). cur_rel is etcd's current index
    relative to its start and known maps a key to its last seen relative modifiedIndex, so
    prevIndex guesses hit often enough."""
    path = random_path(rng)
    keys = "/v2/keys" + path
    val = rng.choice(VALUES)
    ttl = "&ttl=1000" if rng.random() < 0.05 else ""
    nvos = "&noValueOnSuccess=true" if rng.random() < 0.05 else ""
    guess = max(1, cur_rel - rng.randint(0, 6))
    if path in known and rng.random() < 0.6:
        guess = known[path]
    kind = rng.choices(
        ["set", "create", "update", "cas_v", "cas_i", "cas_vi", "cad_v", "cad_i", "delete",
         "delete_dir", "delete_rec", "mkdir", "setdir", "get", "ls", "ls_root", "post",
         "get_unsorted"],
        weights=[14, 6, 6, 6, 5, 2, 4, 4, 6, 3, 5, 3, 2, 10, 6, 2, 3, 3])[0]
    if kind == "set":
        return kind, "PUT", keys, f"value={val}{ttl}{nvos}", False
    if kind == "create":
        return kind, "PUT", keys + "?prevExist=false", f"value={val}{ttl}{nvos}", False
    if kind == "update":
        return kind, "PUT", keys + "?prevExist=true", f"value={val}{ttl}{nvos}", False
    if kind == "cas_v":
        return kind, "PUT", keys + f"?prevValue={rng.choice(['x', 'y', 'zz'])}", f"value={val}", False
    if kind == "cas_i":
        return kind, "PUT", keys + f"?prevIndex={{i:{guess}}}", f"value={val}", False
    if kind == "cas_vi":
        return kind, "PUT", keys + f"?prevIndex={{i:{guess}}}&prevValue=x", f"value={val}", False
    if kind == "cad_v":
        return kind, "DELETE", keys + f"?prevValue={rng.choice(['x', 'y', 'zz'])}", None, False
    if kind == "cad_i":
        return kind, "DELETE", keys + f"?prevIndex={{i:{guess}}}", None, False
    if kind == "delete":
        return kind, "DELETE", keys, None, False
    if kind == "delete_dir":
        return kind, "DELETE", keys + "?dir=true", None, False
    if kind == "delete_rec":
        return kind, "DELETE", keys + "?recursive=true", None, False
    if kind == "mkdir":
        return kind, "PUT", keys + "?dir=true&prevExist=false", None, False
    if kind == "setdir":
        return kind, "PUT", keys + "?dir=true", None, False
    if kind == "get":
        return kind, "GET", keys + "?sorted=true", None, False
    if kind == "ls":
        return kind, "GET", keys + "?recursive=true&sorted=true", None, False
    if kind == "ls_root":
        return kind, "GET", "/v2/keys/r?recursive=true&sorted=true", None, False
    if kind == "post":
        return kind, "POST", rng.choice(["/v2/keys/r/q", "/v2/keys/r/a"]), f"value={val}", False
    return kind, "GET", keys + "?recursive=true", None, True


def remember(resp, start, known):
    """Records the relative modifiedIndex of the node in a successful etcd answer."""
    if resp.status not in (200, 201):
        return
    try:
        node = resp.json().get("node", {})
    except ValueError:
        return
    key, mi = node.get("key"), node.get("modifiedIndex")
    if key and mi:
        known[key] = mi - start


def main():
    dl.need_binaries()
    seed = int(os.environ.get("KVD_SEED") or random.SystemRandom().randrange(1 << 32))
    n_ops = int(os.environ.get("KVD_OPS", "3000"))
    replay = (f"KVD_SEED={seed} KVD_OPS={n_ops} KVD_UNDER_TEST={dl.UNDER_TEST} "
              f"KVD_BIN={harness.KVD_BIN} /usr/bin/python3 {os.path.abspath(__file__)}")
    print(f"seed {seed}, {n_ops} ops, server under test: {dl.UNDER_TEST}", flush=True)
    rng = random.Random(seed)
    results = harness.Results()
    p = dl.start_pair(results)
    counts = {}
    try:
        cur_rel = 0
        known = {}
        for op in range(n_ops):
            kind, method, path, body, unordered = random_op(rng, cur_rel, known)
            a, b = p.send(method, path, body)
            d = dl.diff(a, b, p.ref.start_index, p.sut.start_index, unordered)
            st = a.status
            counts[(kind, st)] = counts.get((kind, st), 0) + 1
            if a.header("x-etcd-index") and a.header("x-etcd-index") != "0":
                cur_rel = max(cur_rel, p.ref.rel(a))
            remember(a, p.ref.start_index, known)
            if d:
                results.check(False, f"seed {seed} op #{op} {kind}: {method} {path} body={body!r}\n  "
                              + "\n  ".join(d) + f"\n  raw etcd: {a!r}\n  raw got:  {b!r}"
                              + f"\n  replay: {replay}")
                if results.failed >= MAX_REPORTED:
                    print(f"stopping after {MAX_REPORTED} mismatches (later ones would cascade)")
                    break
            else:
                results.passed += 1
        # Final state: the whole tree must match.
        a, b = p.send("GET", "/v2/keys/?recursive=true&sorted=true")
        d = dl.diff(a, b, p.ref.start_index, p.sut.start_index)
        results.check(not d, f"seed {seed}: final tree differs\n  " + "\n  ".join(d))
        a, b = p.send("GET", "/v2/stats/store")
        try:
            ja, jb = a.json(), b.json()
            for k in ("setsSuccess", "setsFail", "deleteSuccess", "deleteFail", "createSuccess",
                      "createFail", "updateSuccess", "updateFail", "compareAndSwapSuccess",
                      "compareAndSwapFail", "compareAndDeleteSuccess", "compareAndDeleteFail"):
                results.check(ja.get(k) == jb.get(k),
                              f"seed {seed}: /v2/stats/store {k}: etcd {ja.get(k)} got {jb.get(k)}")
        except ValueError as e:
            results.check(False, f"/v2/stats/store not JSON ({e}): {b!r}")
    finally:
        p.cleanup()
    hit = sorted(f"{k}:{s}={n}" for (k, s), n in counts.items())
    print("op/status mix: " + " ".join(hit))
    if results.failed:
        print(f"replay: {replay}")
    results.finish()


if __name__ == "__main__":
    main()
