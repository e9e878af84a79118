#!/usr/bin/env python3
"""Runs deploy/switchover-demo.sh on free ports (its own kvd cluster and proxy, two backends,
nginx re-rendered through the proxy by kvctl exec-watch, a client loop) and checks its verdict:
zero failed requests, answers moving from backend 1 to backend 2. Skips without nginx."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402

R = harness.Results()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not nginx:
        print("SKIP: nginx not installed (apt-get install nginx-light)")
        sys.exit(harness.SKIP)
    workdir = harness.new_workdir("kvd-switchover-")
    env = cluster.deploy_env(("ETCD0_CLIENT", "ETCD0_PEER", "ETCD1_CLIENT", "ETCD1_PEER",
                              "ETCD2_CLIENT", "ETCD2_PEER", "PROXY_PORT", "NGINX_PORT",
                              "BACKEND1_PORT", "BACKEND2_PORT"),
                             NGINX_BIN=nginx, DEMO_DIR=os.path.join(workdir, "demo"))
    try:
        r = subprocess.run([os.path.join(REPO, "deploy", "switchover-demo.sh")], env=env,
                           capture_output=True, text=True, timeout=180)
        print(r.stdout)
        if r.returncode != 0:
            print(r.stderr)
        m = re.search(r"requests: (\d+)  failed: (\d+)", r.stdout)
        R.check(r.returncode == 0, f"demo exit status {r.returncode}: {r.stderr[-800:]}")
        R.check(m is not None and m.group(2) == "0", "zero failed requests")
        R.check(m is not None and int(m.group(1)) >= 50, "the client ran throughout")
        R.check("switchover complete: backend 1 -> backend 2" in r.stdout, "answers switched")
        both = re.search(r"both backends:\s+(\d+) requests: backend 1 (\d+), backend 2 (\d+)", r.stdout)
        R.check(both is not None and int(both.group(2)) > 0 and int(both.group(3)) > 0,
                "both backends answered during stage 1")
    finally:
        harness.remove_workdir(workdir)
    R.finish()


if __name__ == "__main__":
    main()
