#!/usr/bin/env python3
"""kvd's own limits on client input (where kvd is stricter than etcd, README "Where kvd differs
from etcd"), against a real kvd member: a key deeper than 1,024 levels is refused with 209
before it reaches raft, the deepest allowed key works end to end (recursive read from the root,
recursive delete), and the member keeps serving. etcd accepts such keys, so there is no oracle
here; the expected answers are kvd's documented ones."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

R = harness.Results()
MAX_DEPTH = 1024  # api_v2/keys_request.h kMaxKeyDepth


def main():
    m = harness.Member("kvd", "limits").start()
    try:
        # 30,000 levels (a 60 KB URL): refused at once, nothing written.
        deep = "/".join(["a"] * 30000)
        status, _, body = harness.put(m, deep, "x", timeout=10.0)
        err = json.loads(body) if status == 400 else {}
        R.check(status == 400 and err.get("errorCode") == 209
                and err.get("cause") == f"key too deep: 30000 levels, at most {MAX_DEPTH}",
                f"30,000 levels refused with 209: {status} {body[:200]!r}")
        status, _, body = harness.get(m, "a")
        R.check(status == 404, f"nothing of it was written: {status} {body[:200]!r}")

        # The deepest allowed key, and one level more.
        deepest = "/".join(["d"] * MAX_DEPTH)
        status, _, body = harness.put(m, deepest, "bottom")
        R.check(status == 201, f"{MAX_DEPTH} levels accepted: {status} {body[:200]!r}")
        status, _, body = harness.put(m, deepest + "/e", "x")
        R.check(status == 400 and json.loads(body).get("errorCode") == 209,
                f"{MAX_DEPTH + 1} levels refused: {status} {body[:200]!r}")
        status, _, body = harness.request("POST", f"{m.url}/v2/keys/{deepest}", body="value=x")
        R.check(status == 400 and json.loads(body).get("errorCode") == 209,
                f"an in-order POST below {MAX_DEPTH} levels refused: {status} {body[:200]!r}")

        # The whole tree read recursively from the root, then deleted recursively.
        status, _, body = harness.get(m, "", query="recursive=true")
        R.check(status == 200 and b'"value":"bottom"' in body,
                f"recursive read from the root: {status} {len(body)} bytes")
        status, _, body = harness.request("DELETE", f"{m.url}/v2/keys/d?recursive=true")
        R.check(status == 200, f"recursive delete of the deep tree: {status} {body[:200]!r}")
        ok, status, body = harness.healthy(m)
        R.check(ok, f"the member is alive and healthy: {status} {body!r}")
    finally:
        m.cleanup()
    R.finish()


if __name__ == "__main__":
    main()
