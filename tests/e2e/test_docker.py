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
  - the containers run as the unprivileged kvd user;
  - the book's zero-downtime switchover with the compose file's "switchover" profile: nginx and
    confd from the switchover image (deploy/docker/Dockerfile.switchover, confd built from its
    source), two backends (`python3 -m http.server` on free ports, different pages) standing for
    the old and the new app container; /app/upstream/old set through the proxy: nginx answers
    with old's page; new registered, old removed, through the proxy, while a client requests
    nginx's page in a loop: nginx answers with new's page, and not one request failed (each
    change is made once confd watches again: the members' /v2/stats/store watcher count);
  - `down -v` removes every container.
confd is no Debian package: its source comes from CONFD_SRC (a checkout of its v0.16.0 tag:
`git clone --branch v0.16.0 https://github.com/kelseyhightower/confd`), else a confd binary from
CONFD_BIN, else the checkout at /usr/local/src/confd; with none of them the switchover is skipped
with a note and the rest runs. The image is built beside the kvd image, before the cluster starts.
Skips (77), saying why, without root, docker.io (dockerd), docker-compose or mmdebstrap.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
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
SWITCHOVER_DOCKERFILE = os.path.join(REPO, "deploy", "docker", "Dockerfile.switchover")
CONFD_SRC_DEFAULT = "/usr/local/src/confd"


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
    sw_build = None
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
        # The switchover image (confd compiled from source: minutes) builds while the package
        # and the kvd image are made.
        sw_image = f"kvd-switchover-e2e:{os.getpid()}"
        sw_ctx = confd_context(R, workdir)
        if sw_ctx and not R.failed:
            sw_log = open(os.path.join(workdir, "switchover-build.log"), "w")
            sw_build = subprocess.Popen([DOCKER, "build", "--network", "host", "-f",
                                         SWITCHOVER_DOCKERFILE, "-t", sw_image, sw_ctx],
                                        env=env, stdout=sw_log, stderr=subprocess.STDOUT)
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

        sw_ok = False
        if sw_build:
            try:
                sw_build.wait(timeout=900)
            except subprocess.TimeoutExpired:
                sw_build.kill()
                sw_build.wait()
            sw_log.close()
            sw_ok = R.check(sw_build.returncode == 0, "docker build of the switchover image: " +
                            open(os.path.join(workdir, "switchover-build.log")).read()[-400:])
            sw_build = None

        ports = cluster.deploy_env(("ETCD0_CLIENT", "ETCD0_PEER", "ETCD1_CLIENT", "ETCD1_PEER",
                                    "ETCD2_CLIENT", "ETCD2_PEER", "PROXY_PORT", "NGINX_PORT"))
        cenv = dict(env, KVD_IMAGE=image, SWITCHOVER_IMAGE=sw_image, HOST="127.0.0.1",
                    **{k: ports[k] for k in ports if k.endswith(("_CLIENT", "_PEER", "_PORT"))})
        compose = [COMPOSE_BIN, "-f", COMPOSE, "-p", project]
        up = sh(compose + ["up", "-d"], cenv, 300)
        R.check(up.returncode == 0, f"compose up: {up.stderr.strip()[-300:]}")
        listed = sh([DOCKER, "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                     "--format", '{{.Label "com.docker.compose.service"}}'], env, 60).stdout.split()
        R.check(sorted(listed) == ["etcd0", "etcd1", "etcd2", "proxy"],
                f"without the switchover profile only the four kvd services run: {listed}")
        walkthrough(R, compose, cenv, ports, env)
        if sw_ok:
            switchover(R, compose, cenv, ports, env, workdir)
        down = sh(compose + ["--profile", "switchover", "down", "-v"], cenv, 120)
        left = sh([DOCKER, "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                  env, 60).stdout.split()
        R.check(down.returncode == 0 and not left, f"down -v removes the containers ({left})")
    finally:
        if sw_build and sw_build.poll() is None:
            sw_build.kill()
            sw_build.wait()
        if daemon and daemon.poll() is None:
            sh([COMPOSE_BIN, "-f", COMPOSE, "-p", project, "--profile", "switchover", "down",
                "-v"], env, 120)
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


def walkthrough(R, compose, cenv, ports, env):
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
    # Quorum reads: a plain read through the proxy may reach a member just started again that
    # has not applied the latest entries yet (etcd's v2 reads are served locally).
    for key, want in (("/app/upstream/py1", "10.0.0.1:32768"), ("/after-one", "x"),
                      ("/recovered", "x")):
        got = kv("get", "--quorum", key)
        R.check(got.stdout.strip() == want, f"{key} is there after the recovery "
                                            f"({got.stdout.strip()!r} {got.stderr.strip()[:120]})")


def confd_context(R, workdir):
    """The switchover image's build context (a dir holding confd's source as confd/, or a confd
    binary as confd), or None, said in a SKIP note, when neither is at hand."""
    src = os.environ.get("CONFD_SRC")
    binary = os.environ.get("CONFD_BIN")
    if not src and not binary and os.path.isfile(os.path.join(CONFD_SRC_DEFAULT, "confd.go")):
        src = CONFD_SRC_DEFAULT
    ctx = os.path.join(workdir, "switchover-ctx")
    os.makedirs(ctx)
    if src:
        if not R.check(os.path.isfile(os.path.join(src, "confd.go")) and
                       os.path.isdir(os.path.join(src, "vendor")),
                       f"CONFD_SRC={src} holds confd's source (confd.go, vendor/)"):
            return None
        shutil.copytree(src, os.path.join(ctx, "confd"), symlinks=True,
                        ignore=shutil.ignore_patterns(".git"))
        print(f"switchover: confd built from the source in {src}")
        return ctx
    if binary:
        if not R.check(os.access(binary, os.X_OK), f"CONFD_BIN={binary} is an executable"):
            return None
        shutil.copy(binary, os.path.join(ctx, "confd"))
        print(f"switchover: confd from CONFD_BIN={binary}")
        return ctx
    print("SKIP switchover: no confd source (CONFD_SRC unset and no checkout at "
          f"{CONFD_SRC_DEFAULT}; git clone --branch v0.16.0 "
          "https://github.com/kelseyhightower/confd) nor CONFD_BIN; the rest runs")
    return None


class Client(threading.Thread):
    """Requests nginx's page in a loop, one fresh connection each, until stopped; keeps every
    answer as "200 <body>" or "FAIL <why>"."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.answers = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                status, _, body = harness.request("GET", self.url, timeout=5)
                text = " ".join(body.decode(errors="replace").split())
                self.answers.append(f"200 {text}" if status == 200 else
                                    f"FAIL {status} {text[:60]}")
            except Exception as e:  # noqa: BLE001 - any failure counts
                self.answers.append(f"FAIL {type(e).__name__}: {e}")
            time.sleep(0.005)

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)


def switchover(R, compose, cenv, ports, env, workdir):
    proxy = f"http://127.0.0.1:{ports['PROXY_PORT']}"
    page = f"http://127.0.0.1:{ports['NGINX_PORT']}/"
    members = [f"http://127.0.0.1:{ports[v]}" for v in ("ETCD0_CLIENT", "ETCD1_CLIENT",
                                                         "ETCD2_CLIENT")]

    def kv(*args):
        return sh([harness.KVCTL_BIN, "--no-sync", "-C", proxy, *args], timeout=30)

    def answer():
        status, _, body = harness.try_request("GET", page, timeout=5)
        return f"{status} {' '.join(body.decode(errors='replace').split())}"

    def confd_watches():
        # confd watches / through the proxy with a plain (non-stream) watch: a member counts
        # it until the next change, then confd renders, reloads nginx and watches again.
        total = 0
        for m in members:
            _, stats, _ = harness.get_json(m, "/v2/stats/store", catch=True)
            total += (stats or {}).get("watchers", 0)
        return total >= 1

    backends = {}
    client = None
    try:
        for name in ("old", "new"):
            root = os.path.join(workdir, f"backend-{name}")
            os.makedirs(root)
            with open(os.path.join(root, "index.html"), "w") as f:
                f.write(f"backend {name}\n")
            port = harness.free_port()
            backends[name] = (port, subprocess.Popen(
                [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                 "--directory", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        R.check(all(harness.wait_for(lambda p=p: harness.try_request(
            "GET", f"http://127.0.0.1:{p}/", timeout=2)[0] == 200, 30)
            for p, _ in backends.values()), "switchover: both backends answer")

        kv("rm", "--recursive", "/app/upstream")
        kv("set", "/app/upstream/old", f"127.0.0.1:{backends['old'][0]}")
        up = sh(compose + ["--profile", "switchover", "up", "-d", "nginx", "confd"], cenv, 300)
        R.check(up.returncode == 0, f"compose --profile switchover up: {up.stderr.strip()[-300:]}")
        R.check(harness.wait_for(lambda: answer() == "200 backend old", 60),
                f"nginx answers with old's page (confd rendered the upstream): {answer()}")
        users = {}
        for svc in ("nginx", "confd"):
            cid = sh(compose + ["ps", "-q", svc], cenv, 60).stdout.strip()
            info = sh([DOCKER, "inspect", cid], env, 60).stdout if cid else ""
            users[svc] = json.loads(info)[0]["Config"]["User"] if info else None
        R.check(set(users.values()) == {"www-data"}, f"nginx and confd run as www-data: {users}")

        client = Client(page)
        client.start()
        R.check(harness.wait_for(lambda: "200 backend old" in client.answers, 30),
                "the client gets old's page")
        t0 = time.monotonic()
        R.check(harness.wait_for(confd_watches, 30), "confd watches /app/upstream")
        kv("set", "/app/upstream/new", f"127.0.0.1:{backends['new'][0]}")
        R.check(harness.wait_for(lambda: "200 backend new" in client.answers, 30),
                "new registered: nginx answers with new's page too")
        R.check(harness.wait_for(confd_watches, 30), "confd watches /app/upstream again")
        kv("rm", "/app/upstream/old")
        R.check(harness.wait_for(lambda: client.answers[-30:] == ["200 backend new"] * 30, 30),
                f"old removed: only new answers ({client.answers[-3:]})")
        backends["old"][1].terminate()
        backends["old"][1].wait(timeout=30)
        seen = len(client.answers)
        R.check(harness.wait_for(lambda: len(client.answers) >= seen + 30, 30),
                "the client goes on once old is stopped")
        client.stop()
        answers = client.answers
        failed = [a for a in answers if not a.startswith("200 ")]
        n_old = answers.count("200 backend old")
        n_new = answers.count("200 backend new")
        print(f"switchover: {len(answers)} requests in {time.monotonic() - t0:.1f} s: "
              f"old {n_old}, new {n_new}, failed {len(failed)}")
        R.check(not failed and n_old + n_new == len(answers),
                f"zero downtime: no request failed ({len(failed)} of {len(answers)}: "
                f"{failed[:3]})")
        R.check(answers and answers[0] == "200 backend old" and answers[-1] == "200 backend new",
                "the answers moved from old's page to new's")
    finally:
        if client:
            client.stop()
        for _, proc in backends.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        if R.failed:
            logs = sh(compose + ["logs", "--no-color", "--tail", "20", "nginx", "confd"], cenv, 60)
            print(logs.stdout[-3000:])


if __name__ == "__main__":
    main()
