#!/usr/bin/env python3
"""A member whose disk fills up, on a small tmpfs the test mounts (root only; skipped
otherwise): writes are refused with a clear error and never acknowledged, the process stays up,
reads go on and /health says false; once space is freed, writes work again without a restart,
and every acknowledged write is there, also after kill -9 and a restart. kvd keeps 64 MiB free
for the database (storage::RaftLog::kReservedDiskBytes) and refuses writes below that.

Then a data dir that turns read-only under a running member, the same way: writes fail with the
cause, reads go on, /health is false, and once the file system is writable again writes work
without a restart. The kernel refuses `mount -o remount,ro` while a process holds a file open
for writing, as kvd always does (checked while the first member runs), so the data dir is on a
FUSE layer over the tmpfs (readonly_fs.py) that answers EROFS to every change, also on files
already open, as a file system the kernel forced read-only after an error."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

R = harness.Results()
FS_MB = 160
FILLER_BYTES = 60 * 1000 * 1000  # leaves about 100 MB: 36 MB of writes until the reserve
VALUE = "x" * 200000


def acked_writes(m, limit=2000):
    """Writes 200 KB values until one is refused; returns (acknowledged indexes, the refusal)."""
    acked = []
    for i in range(limit):
        status, _, body = harness.put(m, f"big/{i}", VALUE, timeout=30.0)
        if status not in (200, 201):
            return acked, (status, body)
        acked.append(i)
    return acked, None


def all_present(m, acked):
    """The acknowledged writes that are missing: an int i is big/<i> (ro/<i> in the read-only
    scenario, told by the member's name), a string is a key."""
    prefix = "ro" if m.name == "ro" else "big"
    keys = [k if isinstance(k, str) else f"{prefix}/{k}" for k in acked]
    return [k for k in keys if harness.get(m, k, catch=True)[0] != 200]


def refused_with(status, body, cause):
    err = json.loads(body) if status == 500 else {}
    return status == 500 and err.get("errorCode") == 300 and cause in err.get("cause", "")


def read_only_scenario(mnt):
    try:
        import fusepy  # noqa: F401
    except ImportError:
        print("SKIP (read-only data dir): python3-fusepy is not installed")
        return
    base = os.path.join(mnt, "ro")
    backing, fuse_mnt, control = (os.path.join(base, n) for n in ("backing", "mnt", "read-only"))
    os.makedirs(backing)
    os.makedirs(fuse_mnt)
    fs_log = open(os.path.join(base, "readonly_fs.log"), "wb")
    fuse = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__),
                                                          "readonly_fs.py"),
                             backing, fuse_mnt, control], stdout=fs_log, stderr=subprocess.STDOUT)
    m = harness.Member("kvd", "ro", workdir=base)  # the log beside, the data dir on the layer
    m.data_dir = os.path.join(fuse_mnt, "ro.data")
    try:
        if not harness.wait_for(lambda: os.path.ismount(fuse_mnt), 10):
            R.check(False, "the FUSE layer is mounted")
            return
        m.start()
        acked = [i for i in range(50) if harness.put(m, f"ro/{i}", f"v{i}")[0] in (200, 201)]
        R.check(len(acked) == 50, f"writes work on the FUSE layer ({len(acked)} of 50)")

        open(control, "w").close()  # the data dir is read-only from now on
        # The write in flight when it turned read-only may time out (its outcome unknown); the
        # ones after it are refused at once with the cause.
        harness.put(m, "ro-first", "x", timeout=30.0, catch=True)
        refusals = [harness.put(m, f"ro-refused/{i}", "x", timeout=30.0, catch=True)
                    for i in range(5)]
        R.check(all(refused_with(st, body, "Read-only file system") for st, _, body in refusals),
                "writes to the read-only data dir are refused with the cause: "
                f"{refusals[0][0]} {refusals[0][2][:300]!r}")
        R.check(m.proc.poll() is None, "the member is still running")
        missing = all_present(m, acked)
        R.check(not missing, f"reads go on: missing {missing}")
        status, _, body = harness.request("GET", m.url + "/health")
        R.check(status == 503 and b'"false"' in body, f"/health is false: {status} {body!r}")

        os.remove(control)  # writable again
        writable = time.monotonic()
        resumed = harness.wait_for(
            lambda: harness.put(m, "after-rw", "x", catch=True)[0] in (200, 201), 30)
        took = time.monotonic() - writable
        R.check(resumed, "writes work again once the data dir is writable, without a restart")
        print(f"read-only data dir: writes worked again {took:.1f} s after it became writable")
        status, _, body = harness.request("GET", m.url + "/health")
        R.check(status == 200, f"/health is true again: {status} {body!r}")

        m.kill()
        m.start()
        missing = all_present(m, acked + ["after-rw"])
        R.check(not missing, f"every acknowledged write is there after kill -9 and a restart: "
                f"missing {missing}")
        applied = [i for i in range(5) if harness.get(m, f"ro-refused/{i}", catch=True)[0] == 200]
        R.check(not applied, f"no refused write was applied: {applied}")
    finally:
        if R.failed:
            print(m.read_log())
        m.kill()
        subprocess.run(["umount", fuse_mnt], capture_output=True)
        try:
            fuse.wait(timeout=10)
        except subprocess.TimeoutExpired:
            fuse.kill()
        fs_log.close()


def main():
    if os.geteuid() != 0:
        print("SKIP: mounting a tmpfs needs root")
        sys.exit(harness.SKIP)
    mnt = tempfile.mkdtemp(prefix="kvd-full-disk-")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_MB}m", "tmpfs", mnt],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        print(f"SKIP: cannot mount a tmpfs: {mounted.stderr.strip()}")
        os.rmdir(mnt)
        sys.exit(harness.SKIP)
    m = harness.Member("kvd", "full", workdir=mnt)
    filler = os.path.join(mnt, "filler")
    try:
        with open(filler, "wb") as f:
            f.write(b"\0" * FILLER_BYTES)
        m.start()
        acked, refusal = acked_writes(m)
        R.check(refusal is not None and len(acked) > 0,
                f"writes are refused once the disk is nearly full ({len(acked)} acknowledged)")
        # The write in flight when the disk filled up may have timed out (its outcome unknown);
        # the ones after it are refused at once with the cause.
        status, _, body = harness.put(m, "while-full", "x", timeout=30.0)
        err = json.loads(body) if status == 500 else {}
        R.check(status == 500 and err.get("errorCode") == 300
                and "no space left on device" in err.get("cause", ""),
                f"a write on the full disk is refused with the cause: {status} {body[:300]!r}")
        R.check(m.proc.poll() is None, "the member is still running")
        # A file system cannot be remounted read-only under a process writing to it.
        remount = subprocess.run(["mount", "-o", "remount,ro", mnt], capture_output=True,
                                 text=True)
        R.check(remount.returncode != 0, "mount -o remount,ro is refused while kvd runs on the "
                f"file system: {remount.stderr.strip()!r}")
        if remount.returncode == 0:
            subprocess.run(["mount", "-o", "remount,rw", mnt], capture_output=True)
        status, _, body = harness.get(m, "big/0")
        R.check(status == 200, f"reads go on: {status}")
        status, _, body = harness.request("GET", m.url + "/health")
        R.check(status == 503 and b'"false"' in body, f"/health is false: {status} {body!r}")

        os.remove(filler)
        resumed = harness.wait_for(
            lambda: harness.put(m, "after-freeing", "x", catch=True)[0] in (200, 201), 30)
        R.check(resumed, "writes work again once space is freed, without a restart")
        status, _, body = harness.request("GET", m.url + "/health")
        R.check(status == 200, f"/health is true again: {status} {body!r}")
        missing = all_present(m, acked)
        R.check(not missing, f"every acknowledged write is there: missing {missing}")

        m.kill()
        m.start()
        missing = all_present(m, acked)
        R.check(not missing, f"... and after kill -9 and a restart: missing {missing}")
        status, _, _ = harness.get(m, "after-freeing")
        R.check(status == 200, f"the write after freeing survived the restart: {status}")
        m.kill()
        shutil.rmtree(m.data_dir, ignore_errors=True)  # room for the next member

        read_only_scenario(mnt)
    finally:
        if R.failed:
            print(m.read_log())
        m.kill()
        subprocess.run(["umount", mnt], capture_output=True)
        os.rmdir(mnt)
    R.finish()


if __name__ == "__main__":
    main()
