#!/usr/bin/python3
"""Durability of the server under test (kvd only; with KVD_UNDER_TEST=etcd the crash part runs
against etcd to prove the test itself, and the corruption part is skipped).

1. A burst of PUTs over many keep-alive connections; every acknowledged (key, value,
   modifiedIndex) is recorded; the process is SIGKILLed once half of them are acknowledged.
   After a restart on the same data dir every acknowledged write is there with its
   modifiedIndex, nothing unknown appeared, and the next write continues the index sequence.
2. RocksDB files under <data-dir>/member/ damaged (CURRENT garbage, MANIFEST truncated, CURRENT
   removed): the server exits non-zero with a message naming the file, and never serves.
3. The newest WAL of a killed member flipped, truncated or removed: refused, naming the file,
   nothing changed; after a clean stop the WAL is empty and the same damage loses nothing.

Run: KVD_BIN=build/kvd /usr/bin/python3 tests/e2e/test_durability.py
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import difflib_v2 as dl  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
THREADS = 32
PER_THREAD = 63          # 2016 PUTs in all
KILL_AFTER = 1000        # acknowledged writes before SIGKILL


def burst_and_kill(member):
    acked = {}            # key -> (value, modifiedIndex)
    lock = threading.Lock()
    enough = threading.Event()
    errors = []

    def worker(t):
        conn = dl.Conn(member.url, timeout=10)
        try:
            for i in range(PER_THREAD):
                key, value = f"/burst/t{t:02d}/k{i:03d}", f"v{t}-{i}"
                try:
                    r = conn.request("PUT", "/v2/keys" + key, f"value={value}")
                except (OSError, Exception):  # the kill: the outcome of this PUT is unknown
                    return
                if r.status not in (200, 201):
                    errors.append(f"{key}: {r!r}")
                    return
                mi = json.loads(r.body)["node"]["modifiedIndex"]
                with lock:
                    acked[key] = (value, mi)
                    if len(acked) >= KILL_AFTER:
                        enough.set()
        finally:
            conn.close()

    ts = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    for t in ts:
        t.start()
    got = enough.wait(60)
    member.kill()         # SIGKILL while the other writers are still sending
    for t in ts:
        t.join(15)
    R.check(got, f"burst: only {len(acked)} writes acknowledged within 60 s")
    R.check(not errors, f"burst writes refused: {errors[:3]}")
    with lock:
        return dict(acked)


def collect(node, out):
    for n in node.get("nodes", []):
        if n.get("dir"):
            collect(n, out)
        else:
            out[n["key"]] = (n.get("value"), n.get("modifiedIndex"))


def crash_test(kind):
    print("-- SIGKILL mid-burst, restart, check acknowledged writes", flush=True)
    member = harness.Member(kind)
    try:
        member.start()
        acked = burst_and_kill(member)
        print(f"acknowledged before/around the kill: {len(acked)}", flush=True)
        member.start()
        status, hdrs, body = harness.request("GET", member.url + "/v2/keys/burst?recursive=true")
        R.check(status == 200, f"after restart GET /burst: {status} {body[:300]!r}")
        stored = {}
        if status == 200:
            collect(json.loads(body)["node"], stored)
        missing = [k for k in acked if k not in stored]
        wrong = [(k, acked[k], stored[k]) for k in acked if k in stored and stored[k] != acked[k]]
        R.check(not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}")
        R.check(not wrong, f"{len(wrong)} acknowledged writes changed, e.g. {wrong[:5]}")
        extra = [k for k in stored if k not in acked]
        R.check(len(extra) <= THREADS,
                f"{len(extra)} unacknowledged keys appeared (at most {THREADS} were in flight)")
        bad_extra = [k for k in extra if stored[k][0] != _value_for(k)]
        R.check(not bad_extra, f"keys with values never written: {bad_extra[:5]}")
        indexes = sorted(mi for _, mi in stored.values())
        R.check(len(indexes) == len(set(indexes)), "duplicate modifiedIndex values after restart")
        cur = int(hdrs.get("x-etcd-index", "0"))
        R.check(indexes and cur >= indexes[-1],
                f"X-Etcd-Index {cur} after restart is below the highest stored index "
                f"{indexes[-1] if indexes else None}")
        status, hdrs2, body = harness.request("PUT", member.url + "/v2/keys/after", body="value=1")
        mi = json.loads(body)["node"]["modifiedIndex"] if status in (200, 201) else None
        R.check(mi == cur + 1, f"next write after restart got index {mi}, expected {cur + 1}: {body[:200]!r}")
        # A second restart (clean this time) keeps everything too.
        member.stop()
        member.start()
        status, _, body = harness.request("GET", member.url + "/v2/keys/after")
        R.check(status == 200 and json.loads(body)["node"]["modifiedIndex"] == mi,
                f"write after restart lost over a clean restart: {status} {body[:200]!r}")
        return member.data_dir, member
    except Exception:
        member.cleanup()
        raise


def _value_for(key):
    # /burst/tTT/kIII -> vT-I
    t, i = key.split("/")[2][1:], key.split("/")[3][1:]
    return f"v{int(t)}-{int(i)}"


def find(root, pred):
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.join(d, f) for f in files if pred(f)]
    return sorted(out)


def corruption_test(member):
    print("-- corrupt data dir: refuse to start, name the file", flush=True)
    member.stop()
    pristine = member.data_dir
    member_dir = os.path.join(pristine, "member")
    R.check(os.path.isdir(member_dir), f"no member/ directory in the data dir: {os.listdir(pristine)}")
    currents = find(member_dir, lambda f: f == "CURRENT")
    manifests = find(member_dir, lambda f: f.startswith("MANIFEST-"))
    R.check(bool(currents) and bool(manifests),
            f"no RocksDB CURRENT/MANIFEST under member/: {find(member_dir, lambda f: True)[:20]}")
    if not currents or not manifests:
        return

    def damage_current_garbage(d):
        path = _same(d, pristine, currents[0])
        with open(path, "wb") as f:
            f.write(b"\x00\xffgarbage-not-a-manifest\n")
        return path

    def damage_manifest_truncated(d):
        path = _same(d, pristine, manifests[-1])
        with open(path, "r+b") as f:
            f.truncate(max(1, os.path.getsize(path) // 3))
        return path

    def damage_manifest_overwritten(d):
        path = _same(d, pristine, manifests[-1])
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 4)
            f.write(os.urandom(max(16, size // 2)))
        return path

    def damage_current_removed(d):
        path = _same(d, pristine, currents[0])
        os.remove(path)
        return path

    for what, damage in [("CURRENT overwritten with garbage", damage_current_garbage),
                         ("MANIFEST truncated", damage_manifest_truncated),
                         ("MANIFEST overwritten", damage_manifest_overwritten),
                         ("CURRENT removed", damage_current_removed)]:
        work = tempfile.mkdtemp(prefix="kvd-corrupt-")
        try:
            copy = os.path.join(work, "default.data")
            shutil.copytree(pristine, copy)
            path = damage(copy)
            rc, text = _start_refused(work, what)
            if rc is None:
                continue
            named = os.path.basename(path) in text or path in text
            R.check(named, f"{what}: message does not name {os.path.basename(path)}: {text[-600:]}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _start_refused(work, what):
    """Starts kvd on <work>/default.data, which must refuse to start: checks a clean non-zero
    exit and returns (exit code, output); (None, output) if it kept running."""
    m = harness.Member("kvd", workdir=work)
    proc = subprocess.Popen(m.args(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        # Still running: it must at least not serve an empty store.
        status, _, body = _try_get(m.url + "/v2/keys/after")
        proc.kill()
        out, _ = proc.communicate()
        R.check(False, f"{what}: kvd kept running on a damaged data dir "
                       f"(GET /after -> {status} {body[:120]!r}); output: {out[-400:]!r}")
        return None, out.decode(errors="replace")
    text = out.decode(errors="replace")
    R.check(proc.returncode > 0,
            f"{what}: expected a clean non-zero exit, got {proc.returncode}; output: {text[-600:]}")
    return proc.returncode, text


def _listing(d):
    return {f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if not f.startswith("LOG")}


def wal_damage_test():
    """3. The newest RocksDB WAL of a member killed with SIGKILL (it holds the last writes)
    flipped, truncated or removed: kvd refuses to start, names the file (or says none is left),
    and changes no file; restored, the member starts with every write. After a clean stop the
    WAL holds nothing the table files lack: the same damage loses nothing."""
    print("-- damaged newest WAL: refuse when it held acknowledged writes, name it", flush=True)
    m = harness.Member("kvd", name="wal").start()
    keys = [f"/wal/k{i:03d}" for i in range(300)]
    try:
        for k in keys:
            harness.put(m, k, "v" * 100)
        m.kill(signal.SIGKILL)
        db = os.path.join(m.data_dir, "member", "kvd")
        for what in ("flipped", "truncated", "removed"):
            work = tempfile.mkdtemp(prefix="kvd-wal-")
            try:
                copy = os.path.join(work, "default.data")
                shutil.copytree(m.data_dir, copy)
                cdb = os.path.join(copy, "member", "kvd")
                wal = max((f for f in os.listdir(cdb) if f.endswith(".log")), key=lambda f: int(f[:-4]))
                path = os.path.join(cdb, wal)
                # The records, not the zeros an open WAL file goes on with (kvd writes it over
                # a file prepared with zeros: storage/prefilled_wal.h).
                with open(path, "rb") as f:
                    size = len(f.read().rstrip(b"\0"))
                R.check(size > 0, f"the newest WAL {wal} of a killed member is empty")
                if what == "flipped":
                    with open(path, "r+b") as f:
                        f.seek(size // 2)
                        b = f.read(1)
                        f.seek(size // 2)
                        f.write(bytes([b[0] ^ 0xFF]))
                elif what == "truncated":
                    os.truncate(path, size // 2)
                else:
                    os.remove(path)
                before = _listing(cdb)
                rc, text = _start_refused(work, f"newest WAL {what}")
                if rc is None:
                    continue
                R.check("lost acknowledged writes" in text, f"WAL {what}: no refusal saying so: {text[-600:]}")
                want = "no write-ahead log file is left" if what == "removed" else path
                R.check(want in text, f"WAL {what}: message does not name {want}: {text[-600:]}")
                R.check(_listing(cdb) == before, f"WAL {what}: the refused start changed files: "
                                                 f"{before} -> {_listing(cdb)}")
            finally:
                shutil.rmtree(work, ignore_errors=True)
        # The undamaged data dir starts with every write; stopped cleanly, its WAL is then empty.
        m.start()
        have = sum(1 for k in keys if harness.get(m, k, catch=True)[0] == 200)
        R.check(have == len(keys), f"after the SIGKILL the member has {have} of {len(keys)} keys")
        m.stop()
        wals = [f for f in os.listdir(db) if f.endswith(".log")]
        for f in wals:
            R.check(os.path.getsize(os.path.join(db, f)) == 0, f"after a clean stop {f} is not empty")
            os.remove(os.path.join(db, f))
        m.start()
        have = sum(1 for k in keys if harness.get(m, k, catch=True)[0] == 200)
        R.check(have == len(keys), f"clean stop, WAL {wals} removed: {have} of {len(keys)} keys")
    finally:
        m.cleanup()


def _same(copy_root, pristine_root, path):
    return os.path.join(copy_root, os.path.relpath(path, pristine_root))


def _try_get(url):
    try:
        return harness.request("GET", url, timeout=2)
    except OSError as e:
        return None, {}, str(e).encode()


def main():
    dl.need_binaries()
    kind = "etcd" if dl.UNDER_TEST == "etcd" else "kvd"
    print(f"server under test: {kind}")
    try:
        data_dir, member = crash_test(kind)
    except Exception as e:  # e.g. the server did not come back after the kill
        R.check(False, f"crash test aborted: {type(e).__name__}: {e}")
        R.finish()
    try:
        if kind == "kvd":
            corruption_test(member)
            wal_damage_test()
        else:
            print("corruption checks are kvd-only: skipped for etcd")
    finally:
        member.cleanup()
    R.finish()


if __name__ == "__main__":
    main()
