"""The layout rules of README "Architecture", checked by reading the tree: which module may
include which, what the member, the store and the HTTP layer must not touch, how the libraries
link, and the size of source files. Prints a table of the includes between modules and every
rule it checked; exits 1 when one is broken. Standard library only.

Run as: python3 tests/layering_test.py [REPO]   (ctest runs it as `layering`)
"""
import os
import re
import sys

REPO = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), ".."))

# Module -> the modules its files may include (besides its own). A module is a folder; the
# longest matching prefix wins, so server/http is not server.
ALLOWED = {
    "common": [],
    "metrics": [],
    "raft": ["common"],
    "storage": ["raft", "common"],
    "api_v2": ["common"],
    "etcd_data": ["common"],
    "server/tls": ["common"],
    "server/auth": ["common"],
    "server/http": ["server/tls", "common"],
    "server/peer": ["server/tls", "raft", "metrics", "common"],
    "server/member": ["api_v2", "storage", "raft", "metrics", "common", "server/peer/peer_link.h"],
    "server/proxy": ["server/http", "server/tls", "metrics", "common"],
    "server/discovery": ["server/http", "server/tls", "common"],
    "server": ["server/tls", "server/auth", "server/http", "server/peer", "server/member", "server/proxy", "server/discovery", "offline", "metrics", "api_v2",
               "storage", "raft", "common"],
    "offline": ["storage", "api_v2", "etcd_data", "raft", "common"],
    "cli": ["offline", "common"],
}
# From raft, server/peer may use the message types only (and what they are made of).
RAFT_FOR_PEER = {"raft/message.h", "raft/types.h"}
MAX_LINES = 800
# raft.cc is one concern (the Raft state machine), in sections by role.
LINE_LIMIT_EXEMPT = {"raft/raft.cc"}
SOURCE_EXT = (".cc", ".h", ".py", ".sh")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')

failures = []
checks = []


def check(ok, what):
    checks.append(what)
    if not ok:
        failures.append(what)


def module_of(rel):
    best = None
    for m in ALLOWED:
        if rel == m or rel.startswith(m + "/"):
            if best is None or len(m) > len(best):
                best = m
    return best


def tracked_files():
    out = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.startswith("build")]
        for f in files:
            out.append(os.path.relpath(os.path.join(root, f), REPO))
    return sorted(out)


def allowed(src_module, target):
    tmod = module_of(target)
    if tmod is None:
        return False
    if tmod == src_module:
        return True
    for a in ALLOWED[src_module]:
        if a.endswith(".h"):
            if target == a:
                return True
        elif tmod == a:
            if src_module == "server/peer" and a == "raft":
                return target in RAFT_FOR_PEER
            return True
    return False


files = tracked_files()
edges = {}
for rel in files:
    if not rel.endswith((".cc", ".h")):
        continue
    mod = module_of(rel)
    if mod is None:
        continue  # tests/, bench/: may use anything
    with open(os.path.join(REPO, rel), encoding="utf-8", errors="replace") as f:
        text = f.read()
    for n, line in enumerate(text.split("\n"), 1):
        m = INCLUDE.match(line)
        if not m:
            continue
        target = m.group(1)
        tmod = module_of(target)
        edges[(mod, tmod)] = edges.get((mod, tmod), 0) + 1
        check(allowed(mod, target), f"{rel}:{n} ({mod}) may include {target}")
    # What a module must not touch, whatever it includes.
    if mod == "server/member":
        check("HttpResponse" not in text and "http_status" not in text,
              f"{rel}: the member answers with typed results (no HTTP statuses or responses)")
        check('"api_v2/render.h"' not in text, f"{rel}: the member renders no JSON responses")
    if rel.startswith("api_v2/store"):
        check("nlohmann" not in text and '"api_v2/render.h"' not in text,
              f"{rel}: the store renders no JSON")
    if mod == "server/http":
        check("Node" not in re.sub(r"//.*", "", text),
              f"{rel}: the HTTP layer knows nothing of the member")

# Libraries: the proxy's must not link the member's (CMake would let a wrong include link).
with open(os.path.join(REPO, "server/proxy/CMakeLists.txt")) as f:
    proxy_cmake = f.read()
check("kvd_member" not in proxy_cmake and "kvd_server" not in proxy_cmake,
      "server/proxy/CMakeLists.txt: kvd_proxy links neither kvd_member nor kvd_server")
with open(os.path.join(REPO, "server/member/CMakeLists.txt")) as f:
    member_cmake = f.read()
check("kvd_peer" not in member_cmake and "kvd_http" not in member_cmake,
      "server/member/CMakeLists.txt: kvd_member links neither the transport nor HTTP")
with open(os.path.join(REPO, "tests/CMakeLists.txt")) as f:
    tests_cmake = f.read()
check(re.search(r"kvd_module_tests\(proxy kvd_proxy\)", tests_cmake) is not None,
      "tests/CMakeLists.txt: proxy_tests is linked with kvd_proxy alone")

# File sizes.
for rel in files:
    if not rel.endswith(SOURCE_EXT) or rel in LINE_LIMIT_EXEMPT:
        continue
    with open(os.path.join(REPO, rel), encoding="utf-8", errors="replace") as f:
        n = sum(1 for _ in f)
    check(n <= MAX_LINES, f"{rel}: {n} lines <= {MAX_LINES}")

mods = list(ALLOWED)
print("includes between modules (row includes column; own module on the diagonal):")
width = max(len(m) for m in mods)
print(" " * (width + 1) + " ".join(f"{m.split('/')[-1][:6]:>6}" for m in mods))
for a in mods:
    row = [f"{edges.get((a, b), 0) or '.':>6}" for b in mods]
    print(f"{a:<{width}} " + " ".join(row))
print(f"{len(checks)} checks, {len(failures)} broken")
for f in failures:
    print("BROKEN:", f)
sys.exit(1 if failures else 0)
