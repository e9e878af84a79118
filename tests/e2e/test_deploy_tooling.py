#!/usr/bin/env python3
"""The book's tooling (deploy/) is safe to run anywhere:

  - cluster.sh up refuses busy ports before starting anything (no pid file, no data dir);
  - cluster.sh up with members that cannot start fails at once, quoting the log line why;
  - cluster.sh up records the cluster id it created and says it; `status` of a cluster dir
    whose processes are not running shows no cluster view (another cluster answering on the
    same ports is not reported as this one);
  - switchover-demo.sh refuses busy ports before starting anything, and refuses to write to a
    cluster it did not start (PROXY_URL) unless WRITE_TO_PROXY_URL=1: the other cluster's keys
    under /app/upstream are untouched;
  - render-upstream.sh fails loudly (exit 1, the reason, the file left as it was) when kvctl is
    missing or the store cannot be read; with no backend registered it renders a placeholder
    that nginx accepts (check-upstream.sh, confd's check_cmd, runs nginx -t on the rendered file
    inside the site's use of it);
  - with confd (CONFD_BIN or on PATH; skipped otherwise): the shipped resource and template
    render an empty /app/upstream to a file check-upstream.sh accepts, then the servers.
Needs nginx (skips otherwise).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(REPO, "deploy")
PORTS = ("ETCD0_CLIENT", "ETCD0_PEER", "ETCD1_CLIENT", "ETCD1_PEER", "ETCD2_CLIENT",
         "ETCD2_PEER", "PROXY_PORT")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                  else None)
CONFD = os.environ.get("CONFD_BIN") or shutil.which("confd")


def run(args, env, timeout=90):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def held_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def main():
    if not NGINX:
        print("SKIP: nginx not installed (apt-get install nginx-light)")
        sys.exit(harness.SKIP)
    R = harness.Results()
    workdir = tempfile.mkdtemp(prefix="kvd-tooling-")
    try:
        env = cluster_checks(R, workdir)
        demo_checks(R, workdir, env)
        render_checks(R, workdir, env)
    finally:
        run([os.path.join(DEPLOY, "cluster.sh"), "down"],
            dict(env_of(workdir, "main"), CLUSTER_DIR=os.path.join(workdir, "main")))
        harness.remove_workdir(workdir, R)
    R.finish()


ENVS = {}


def env_of(workdir, name):
    if name not in ENVS:
        ENVS[name] = cluster.deploy_env(PORTS, CLUSTER_DIR=os.path.join(workdir, name))
    return ENVS[name]


def cluster_checks(R, workdir):
    sh = os.path.join(DEPLOY, "cluster.sh")
    # A busy port: nothing starts.
    env = dict(env_of(workdir, "busy"))
    sock, port = held_port()
    with sock:
        env["ETCD1_PEER"] = str(port)
        p = run([sh, "up"], env)
    d = env["CLUSTER_DIR"]
    R.check(p.returncode != 0 and f"127.0.0.1:{port} (etcd1)" in p.stderr and
            "nothing started" in p.stderr and not [f for f in os.listdir(d) if f != "cluster-id"],
            f"busy port: refused, nothing started ({p.stderr.strip()}; {os.listdir(d)})")

    # Members that cannot start: the reason from their logs, at once.
    env = dict(env_of(workdir, "bad"), MEMBER_FLAGS="--snapshot-count abc")
    p = run([sh, "up"], env)
    R.check(p.returncode != 0 and 'invalid value "abc" for flag -snapshot-count' in p.stderr,
            f"dead members: up fails quoting their log ({p.stderr.strip()[:200]})")
    run([sh, "down"], env)

    # The real one.
    env = env_of(workdir, "main")
    p = run([sh, "up"], env)
    m = re.search(r"cluster ([0-9a-f]+): etcd0, etcd1, etcd2", p.stdout)
    recorded = open(os.path.join(env["CLUSTER_DIR"], "cluster-id")).read().strip() \
        if os.path.exists(os.path.join(env["CLUSTER_DIR"], "cluster-id")) else None
    R.check(p.returncode == 0 and m and m.group(1) == recorded,
            f"up: cluster id said and recorded ({p.stdout.strip()[-120:]}, {recorded})")
    st = run([sh, "status"], env)
    R.check(st.returncode == 0 and f"cluster {recorded}" in st.stdout and "leader: etcd" in
            st.stdout, f"status shows this cluster ({st.stdout.strip()[-200:]})")
    # Another cluster dir on the same ports: its processes do not run, it shows no cluster.
    other = dict(env, CLUSTER_DIR=os.path.join(workdir, "other"))
    st = run([sh, "status"], other)
    R.check("no cluster view" in st.stdout and "members (through" not in st.stdout and
            "running" not in st.stdout.split("\n\n")[0],
            f"status of a cluster it did not start: nothing reported ({st.stdout.strip()})")
    up = run([sh, "up"], other)
    R.check(up.returncode != 0 and "ports in use" in up.stderr,
            f"up of another cluster dir on the same ports: refused ({up.stderr.strip()[:160]})")
    return env


def demo_checks(R, workdir, env):
    demo = os.path.join(DEPLOY, "switchover-demo.sh")
    proxy = f"http://127.0.0.1:{env['PROXY_PORT']}"
    kv = [harness.KVCTL_BIN, "--no-sync", "-C", proxy]
    run(kv + ["set", "/app/upstream/keep", "10.0.0.9:80"], env)
    demo_env = cluster.deploy_env(PORTS + ("NGINX_PORT", "BACKEND1_PORT", "BACKEND2_PORT"),
                                  NGINX_BIN=NGINX, DEMO_DIR=os.path.join(workdir, "demo"))
    sock, port = held_port()
    with sock:
        p = run([demo], dict(demo_env, NGINX_PORT=str(port)))
    R.check(p.returncode != 0 and "ports in use" in p.stderr and
            not os.path.exists(os.path.join(workdir, "demo", "cluster")),
            f"demo with a busy nginx port: refused before any cluster ({p.stderr.strip()})")
    p = run([demo], dict(demo_env, PROXY_URL=proxy))
    got = run(kv + ["get", "/app/upstream/keep"], env)
    R.check(p.returncode != 0 and "WRITE_TO_PROXY_URL=1" in p.stderr and
            got.stdout.strip() == "10.0.0.9:80",
            f"demo pointed at a cluster it did not start: refused, keys untouched "
            f"({p.stderr.strip()[:120]}; {got.stdout.strip()})")


def render_checks(R, workdir, env):
    proxy = f"http://127.0.0.1:{env['PROXY_PORT']}"
    kv = [harness.KVCTL_BIN, "--no-sync", "-C", proxy]
    render = os.path.join(DEPLOY, "render-upstream.sh")
    check = os.path.join(DEPLOY, "nginx", "check-upstream.sh")
    out = os.path.join(workdir, "upstream.conf")
    renv = dict(env, KV_URL=proxy, KVCTL_BIN=harness.KVCTL_BIN, NGINX_BIN=NGINX)

    run(kv + ["rm", "--recursive", "/app/upstream"], env)
    p = run([render, out], renv)
    text = open(out).read() if os.path.exists(out) else ""
    c = run([check, out], renv)
    R.check(p.returncode == 0 and "down;" in text and c.returncode == 0,
            f"no backend: a placeholder nginx accepts ({text!r}, check {c.returncode} "
            f"{c.stderr.strip()})")
    run(kv + ["set", "/app/upstream/py1", "127.0.0.1:8001"], env)
    p = run([render, out], renv)
    text = open(out).read()
    R.check(p.returncode == 0 and "server 127.0.0.1:8001;" in text and "down" not in text and
            run([check, out], renv).returncode == 0, f"one backend rendered ({text!r})")
    before = text
    for what, e in (("the store down", dict(renv, KV_URL="http://127.0.0.1:1")),
                    ("no kvctl", dict(renv, KVCTL_BIN="/nonexistent/kvctl"))):
        p = run([render, out], e)
        R.check(p.returncode == 1 and "render-upstream:" in p.stderr and
                open(out).read() == before,
                f"{what}: exit {p.returncode}, file kept ({p.stderr.strip()[:120]})")
    bad = os.path.join(workdir, "bad.conf")
    with open(bad, "w") as f:
        f.write("upstream app {\n}\n")
    R.check(run([check, bad], renv).returncode != 0,
            "check-upstream refuses an upstream without servers")
    # Its temporary nginx prefix is removed whatever nginx said (confd runs it on every change).
    tmp = os.path.join(workdir, "check-tmp")
    os.mkdir(tmp)
    codes = [run([check, f], dict(renv, TMPDIR=tmp)).returncode for f in (out, bad)]
    R.check(codes[0] == 0 and codes[1] != 0 and os.listdir(tmp) == [],
            f"check-upstream leaves nothing in TMPDIR (exit {codes}, left {os.listdir(tmp)})")

    if not CONFD:
        print("note: confd not found (CONFD_BIN): the shipped confd resource is not exercised")
        return
    confdir = os.path.join(workdir, "confd")
    shutil.copytree(os.path.join(DEPLOY, "confd"), confdir)
    dest = os.path.join(workdir, "confd-upstream.conf")
    toml = os.path.join(confdir, "conf.d", "app-upstream.toml")
    text = open(toml).read()
    text = text.replace('dest = "/etc/nginx/conf.d/app-upstream.conf"', f'dest = "{dest}"')
    text = text.replace("/usr/local/bin/check-upstream", check)
    text = re.sub(r'reload_cmd = .*', 'reload_cmd = "true"', text)
    with open(toml, "w") as f:
        f.write(text)
    cenv = dict(renv, NGINX_BIN=NGINX)
    run(kv + ["rm", "--recursive", "/app/upstream"], env)
    run(kv + ["mkdir", "/app/upstream"], env)
    c = run([CONFD, "-onetime", "-backend", "etcd", "-node", proxy, "-confdir", confdir,
             "-log-level", "info"], cenv)
    text = open(dest).read() if os.path.exists(dest) else ""
    R.check(c.returncode == 0 and "down;" in text,
            f"confd, no backend: rendered and checked ({c.returncode}, {text!r}, "
            f"{c.stderr.strip()[-200:]})")
    run(kv + ["set", "/app/upstream/py2", "127.0.0.1:8002"], env)
    c = run([CONFD, "-onetime", "-backend", "etcd", "-node", proxy, "-confdir", confdir], cenv)
    text = open(dest).read() if os.path.exists(dest) else ""
    R.check(c.returncode == 0 and "server 127.0.0.1:8002;" in text and "down" not in text,
            f"confd, one backend ({text!r})")


if __name__ == "__main__":
    main()
