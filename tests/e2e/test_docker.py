#!/usr/bin/env python3
"""The book's topology in Docker: deploy/docker/compose.yml with the kvd image.

The test runs a Docker daemon of its own (Debian's docker.io; its own data root and socket in
the work dir, no bridge and no iptables rules, so it never touches the host's network or another
daemon), makes the debian:bookworm-slim base image itself (`mmdebstrap --variant=minbase
bookworm - | docker import -`: no registry is reachable), builds the kvd image from the Debian
package (deploy/docker/Dockerfile.deb, the runtime stage of the repository's Dockerfile; the
full two-stage build compiles kvd for 15-25 minutes and is checked outside the suite), and brings
up the compose file on free ports (the same variables as deploy/cluster.sh). Then the book's
walkthrough through the proxy, with docker-compose and kvctl:
  - set and ls through the proxy; the three members list each other;
  - one member killed: writes go on; a second killed: a write fails (no quorum) while a plain
    read still answers; both started again: writes work and every key is there;
  - the containers run as the unprivileged kvd user; `down -v` removes them.
Skips (77), saying why, without root, docker.io (dockerd), docker-compose or mmdebstrap.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("KVD_BUILD_DIR") or \
    os.path.dirname(os.path.dirname(os.path.abspath(harness.KVD_BIN)))
COMPOSE = os.path.join(REPO, "deploy", "docker", "compose.yml")
DOCKERD = shutil.which("dockerd")
DOCKER = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")
COMPOSE_BIN = shutil.which("docker-compose")


def sh(args, env=None, timeout=600, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, **kw)


def main():
    missing = [what for what, ok in (("root", os.geteuid() == 0), ("dockerd", DOCKERD),
                                     ("docker", DOCKER), ("docker-compose", COMPOSE_BIN),
                                     ("mmdebstrap", shutil.which("mmdebstrap"))) if not ok]
    if missing:
        print(f"SKIP: Docker test needs {', '.join(missing)} (apt-get install docker.io "
              "docker-compose mmdebstrap, as root)")
        sys.exit(harness.SKIP)
    R = harness.Results()
    workdir = tempfile.mkdtemp(prefix="kvd-docker-", dir="/var/tmp")
    sock = os.path.join(workdir, "docker.sock")
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_BUILDKIT="0")
    daemon = None
    project = f"kvde2e{os.getpid()}"
    try:
        with open(os.path.join(workdir, "dockerd.log"), "wb") as log:
            daemon = subprocess.Popen(
                [DOCKERD, "--host", f"unix://{sock}", "--data-root",
                 os.path.join(workdir, "data"), "--exec-root", os.path.join(workdir, "exec"),
                 "--pidfile", os.path.join(workdir, "dockerd.pid"), "--iptables=false",
                 "--bridge=none"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if not harness.wait_for(lambda: sh([DOCKER, "info"], env, 10).returncode == 0
                                or daemon.poll() is not None, 60) or daemon.poll() is not None:
            print("SKIP: dockerd does not start here: " +
                  open(os.path.join(workdir, "dockerd.log")).read()[-400:])
            sys.exit(harness.SKIP)
        base = subprocess.run(
            f"mmdebstrap --variant=minbase bookworm - | {DOCKER} import - debian:bookworm-slim",
            shell=True, capture_output=True, text=True, timeout=900, env=env)
        R.check(base.returncode == 0, f"base image from mmdebstrap: {base.stderr.strip()[-200:]}")
        built = sh([os.path.join(REPO, "deploy", "package", "build-deb.sh"), BUILD_DIR],
                   timeout=1200)
        debs = [w for w in built.stdout.split() if w.endswith(".deb")]
        R.check(built.returncode == 0 and debs, f"the package: {built.stderr.strip()[-200:]}")
        if R.failed:
            R.finish()
        ctx = os.path.join(workdir, "ctx")
        os.makedirs(ctx)
        shutil.copy(debs[0], ctx)
        image = f"kvd-e2e:{os.getpid()}"
        b = sh([DOCKER, "build", "--network", "host", "-q", "-f",
                os.path.join(REPO, "deploy", "docker", "Dockerfile.deb"), "-t", image, ctx],
               env, 900)
        R.check(b.returncode == 0, f"docker build of the image: {b.stderr.strip()[-300:]}")
        if b.returncode != 0:
            R.finish()

        ports = cluster.deploy_env(("ETCD0_CLIENT", "ETCD0_PEER", "ETCD1_CLIENT", "ETCD1_PEER",
                                    "ETCD2_CLIENT", "ETCD2_PEER", "PROXY_PORT"))
        cenv = dict(env, KVD_IMAGE=image, HOST="127.0.0.1",
                    **{k: ports[k] for k in ports if k.endswith(("_CLIENT", "_PEER", "_PORT"))})
        compose = [COMPOSE_BIN, "-f", COMPOSE, "-p", project]
        up = sh(compose + ["up", "-d"], cenv, 300)
        R.check(up.returncode == 0, f"compose up: {up.stderr.strip()[-300:]}")
        walkthrough(R, compose, cenv, ports, env, project)
    finally:
        if daemon and daemon.poll() is None:
            sh([COMPOSE_BIN, "-f", COMPOSE, "-p", project, "down", "-v"], env, 120)
            daemon.terminate()
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=30)
        # Whatever dockerd left mounted under the work dir goes before the dir.
        for line in reversed(open("/proc/mounts").read().splitlines()):
            point = line.split()[1]
            if point.startswith(workdir):
                subprocess.run(["umount", "-l", point])
        shutil.rmtree(workdir, ignore_errors=True)
    R.finish()


def walkthrough(R, compose, cenv, ports, env, project):
    proxy = f"http://127.0.0.1:{ports['PROXY_PORT']}"

    def kv(*args):
        return sh([harness.KVCTL_BIN, "--no-sync", "-C", proxy, *args], timeout=30)

    R.check(harness.wait_for(lambda: kv("set", "/app/upstream/py1", "10.0.0.1:32768")
                             .returncode == 0, 60), "set through the proxy")
    kv("set", "/app/upstream/py2", "10.0.0.2:32768")
    ls = kv("ls", "--sort", "/app/upstream").stdout.split()
    R.check(ls == ["/app/upstream/py1", "/app/upstream/py2"], f"ls through the proxy: {ls}")
    members = sh([harness.KVCTL_BIN, "-C", proxy, "member", "list"], timeout=30).stdout
    R.check(all(f"name={n}" in members for n in ("etcd0", "etcd1", "etcd2")),
            f"member list: {members.strip()}")
    users = set()
    for svc in ("etcd0", "etcd1", "etcd2", "proxy"):
        cid = sh(compose + ["ps", "-q", svc], cenv, 60).stdout.strip()
        info = sh([DOCKER, "inspect", cid], env, 60).stdout
        users.add(json.loads(info)[0]["Config"]["User"] if info else None)
    R.check(users == {"kvd"}, f"containers run as the kvd user: {users}")

    sh(compose + ["kill", "etcd1"], cenv, 60)
    R.check(harness.wait_for(lambda: kv("set", "/after-one", "x").returncode == 0, 30),
            "one member killed: writes go on")
    sh(compose + ["kill", "etcd2"], cenv, 60)
    t0 = time.monotonic()
    failed = kv("set", "/no-quorum", "x")
    R.check(failed.returncode != 0, f"two killed: a write fails ({failed.stderr.strip()[:120]}, "
                                    f"{time.monotonic() - t0:.1f} s)")
    got = kv("get", "/app/upstream/py1")
    R.check(got.returncode == 0 and got.stdout.strip() == "10.0.0.1:32768",
            "two killed: a plain read still answers")
    sh(compose + ["start", "etcd1", "etcd2"], cenv, 120)
    R.check(harness.wait_for(lambda: kv("set", "/recovered", "x").returncode == 0, 60),
            "both started again: writes work")
    for key, want in (("/app/upstream/py1", "10.0.0.1:32768"), ("/after-one", "x"),
                      ("/recovered", "x")):
        got = kv("get", key)
        R.check(got.stdout.strip() == want, f"{key} is there after the recovery")
    down = sh(compose + ["down", "-v"], cenv, 120)
    left = sh([DOCKER, "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
              env, 60).stdout.split()
    R.check(down.returncode == 0 and not left, f"down -v removes the containers ({left})")


if __name__ == "__main__":
    main()
