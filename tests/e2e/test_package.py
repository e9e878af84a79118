#!/usr/bin/env python3
"""The Debian package, built and installed as an operator would:

  - deploy/package/build-deb.sh makes kvd_<version>_<arch>.deb from the build dir; it holds
    /usr/bin/kvd and kvctl, their man pages, kvctl's bash completion, kvd.service and
    kvd-proxy.service, /etc/default/kvd and kvd-proxy (conffiles), and depends on the runtime
    libraries (found by dpkg-shlibdeps) and adduser;
  - a fresh Debian 12 root made with mmdebstrap (minbase, plus systemd and man-db):
    `apt-get install ./kvd_*.deb` succeeds there, creates the kvd system user and /var/lib/kvd
    (0700, owned by kvd), enables kvd.service; `systemd-analyze verify` of both units inside the
    root prints nothing and succeeds; `man kvd` and `man kvctl` render there;
  - kvd from /usr/bin in that root, run as the kvd user with the unit's settings (ETCD_NAME,
    ETCD_DATA_DIR=/var/lib/kvd/default), serves: a key set through it reads back, and its
    /version names the packaged version.
Root and mmdebstrap (and a reachable Debian mirror) are needed for the second and third parts:
without them the test skips (77) after saying why.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("KVD_BUILD_DIR") or \
    os.path.dirname(os.path.dirname(os.path.abspath(harness.KVD_BIN)))


def sh(args, timeout=600, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


def main():
    R = harness.Results()
    built = sh([os.path.join(REPO, "deploy", "package", "build-deb.sh"), BUILD_DIR], timeout=1200)
    debs = [line for line in built.stdout.split() if line.endswith(".deb")]
    R.check(built.returncode == 0 and len(debs) == 1,
            f"build-deb.sh: {built.returncode} {debs} {built.stderr.strip()[-300:]}")
    if not debs:
        R.finish()
    deb = debs[0]
    contents = sh(["dpkg-deb", "-c", deb]).stdout
    for path in ("./usr/bin/kvd", "./usr/bin/kvctl", "./usr/share/man/man1/kvd.1",
                 "./usr/share/man/man1/kvctl.1",
                 "./usr/share/bash-completion/completions/kvctl",
                 "./usr/lib/systemd/system/kvd.service",
                 "./usr/lib/systemd/system/kvd-proxy.service", "./etc/default/kvd",
                 "./etc/default/kvd-proxy"):
        R.check(f" {path}\n" in contents + "\n" or f" {path} " in contents,
                f"the package holds {path}")
    depends = sh(["dpkg-deb", "-f", deb, "Depends"]).stdout
    R.check(all(lib in depends for lib in ("librocksdb", "libssl3", "libyaml-cpp", "adduser")),
            f"Depends names the runtime libraries and adduser: {depends.strip()}")
    conffiles = sh(["sh", "-c", f"dpkg-deb --ctrl-tarfile {deb} | tar -xO ./conffiles"]).stdout
    R.check(conffiles.split() == ["/etc/default/kvd", "/etc/default/kvd-proxy"],
            f"conffiles: {conffiles.split()}")

    if os.geteuid() != 0 or not shutil.which("mmdebstrap"):
        print("SKIP: installing into a fresh root needs root and mmdebstrap "
              "(apt-get install mmdebstrap)")
        if R.failed:
            R.finish()
        sys.exit(harness.SKIP)
    workdir = tempfile.mkdtemp(prefix="kvd-package-", dir="/var/tmp")
    root = os.path.join(workdir, "root")
    proc_mounted = False
    member = None
    try:
        boot = sh(["mmdebstrap", "--variant=minbase", "--include=systemd,man-db", "bookworm",
                   root], timeout=900)
        if boot.returncode != 0:
            print(f"SKIP: mmdebstrap could not make a Debian 12 root (no mirror?): "
                  f"{boot.stderr.strip()[-300:]}")
            if R.failed:
                R.finish()
            sys.exit(harness.SKIP)
        shutil.copy(deb, os.path.join(root, "tmp", os.path.basename(deb)))
        # mmdebstrap leaves no package lists behind: fetch them, as on a fresh machine.
        upd = sh(["chroot", root, "apt-get", "update", "-q"], timeout=600)
        R.check(upd.returncode == 0, f"apt-get update in the fresh root: "
                                     f"{upd.stderr.strip()[-200:]}")
        inst = sh(["chroot", root, "apt-get", "install", "-y", "-q",
                   f"/tmp/{os.path.basename(deb)}"], timeout=600,
                  env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        R.check(inst.returncode == 0, f"apt-get install ./{os.path.basename(deb)} in a fresh "
                                      f"Debian 12: {inst.stdout.strip()[-300:]} "
                                      f"{inst.stderr.strip()[-300:]}")
        if inst.returncode != 0:
            R.finish()
        user = sh(["chroot", root, "getent", "passwd", "kvd"]).stdout.strip()
        st = os.stat(os.path.join(root, "var", "lib", "kvd"))
        uid = int(user.split(":")[2]) if user else -1
        R.check(user and st.st_uid == uid and (st.st_mode & 0o777) == 0o700,
                f"the kvd system user and /var/lib/kvd 0700 ({user}; {oct(st.st_mode)})")
        enabled = sh(["chroot", root, "systemctl", "is-enabled", "kvd.service"]).stdout.strip()
        R.check(enabled == "enabled", f"kvd.service enabled ({enabled})")
        subprocess.run(["mount", "-t", "proc", "proc", os.path.join(root, "proc")], check=True)
        proc_mounted = True
        verify = sh(["chroot", root, "systemd-analyze", "verify",
                     "/lib/systemd/system/kvd.service", "/lib/systemd/system/kvd-proxy.service"])
        R.check(verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(),
                f"systemd-analyze verify: clean ({verify.returncode} "
                f"{(verify.stdout + verify.stderr).strip()[:300]})")
        for page, words in (("kvd", "etcd-compatible key-value store"),
                            ("kvctl", "command line client")):
            m = sh(["chroot", root, "man", "-P", "cat", page],
                   env=dict(os.environ, MANWIDTH="200"))
            R.check(m.returncode == 0 and words in m.stdout, f"man {page} renders")

        # kvd from /usr/bin, as the unit runs it: the kvd user, the unit's environment.
        client, peer = harness.free_port(), harness.free_port()
        cu, pu = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        log = open(os.path.join(workdir, "kvd.log"), "wb")
        member = subprocess.Popen(
            ["chroot", "--userspec=kvd:kvd", root, "/usr/bin/env", "ETCD_NAME=pkg",
             "ETCD_DATA_DIR=/var/lib/kvd/default", "/usr/bin/kvd", "--listen-client-urls", cu,
             "--advertise-client-urls", cu, "--listen-peer-urls", pu,
             "--initial-advertise-peer-urls", pu, "--initial-cluster", f"pkg={pu}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        up = harness.wait_for(lambda: harness.try_request("GET", cu + "/health")[0] == 200, 30)
        R.check(up, "the installed kvd serves as the kvd user")
        status, _, _ = harness.try_request("PUT", cu + "/v2/keys/pkg", body=b"value=ok",
                                           headers={"Content-Type":
                                                    "application/x-www-form-urlencoded"})
        got = harness.try_request("GET", cu + "/v2/keys/pkg")
        R.check(status == 201 and b'"value":"ok"' in got[2], f"a key set reads back ({status})")
        version = harness.try_request("GET", cu + "/version")[2]
        pkg_version = sh(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()
        R.check(f'"kvd":"{pkg_version}"'.encode() in version,
                f"/version names the packaged version {pkg_version}: {version[:120]}")
        owner = os.stat(os.path.join(root, "var", "lib", "kvd", "default")).st_uid
        R.check(owner == uid, "the data dir belongs to the kvd user")
    finally:
        if member:
            member.kill()
            member.wait(timeout=30)
        if proc_mounted:
            subprocess.run(["umount", os.path.join(root, "proc")])
        shutil.rmtree(workdir, ignore_errors=True)
    R.finish()


if __name__ == "__main__":
    main()
