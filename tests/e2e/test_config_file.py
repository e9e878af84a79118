#!/usr/bin/python3
"""--config-file (and ETCD_CONFIG_FILE) with etcd 3.4's YAML, side by side with the real etcd:

  - a single member from a file serves as the file says (name, URLs, data dir, TLS through
    client-transport-security with auto-tls), and so does one named by ETCD_CONFIG_FILE;
  - flags and ETCD_* variables given beside the file are ignored, as etcd ignores them (a bad
    flag beside it still stops both with exit 2);
  - a three-member cluster from three files; a proxy (and a readonly one) from a file;
  - bad files: an unknown key (etcd starts, ignoring it; kvd refuses), a key given twice (etcd
    keeps the last; kvd refuses), a string for a number, a bad value, unquoted `proxy: on`, a
    bad URL, a scalar for a list, a bad TLS setting, a bad log level (etcd panics), text that is
    not YAML, a file that is not a map, a missing file: kvd exits 1 with one line naming the
    file, the line and the key, and with nothing started (no data dir, no listener); etcd's
    exit status and message are checked beside it.

Run: KVD_BIN=build/server/kvd /usr/bin/python3 tests/e2e/test_config_file.py
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

R = harness.Results()
KINDS = ("etcd", "kvd")


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    env.update(extra or {})
    return env


def kind_dirs(workdir, prefix):
    """(kind, a new directory of workdir for it) for etcd, then kvd."""
    for kind in KINDS:
        d = os.path.join(workdir, f"{prefix}-{kind}")
        os.makedirs(d)
        yield kind, d


def binary(kind):
    return harness.KVD_BIN if kind == "kvd" else harness.ETCD_BIN


def member_yaml(m, cluster, extra=""):
    """The file of member m (a FileMember) in `cluster` ({name: peer URL})."""
    initial = ",".join(f"{n}={u}" for n, u in cluster.items())
    return (f"# {m.kind} member {m.name}\n"
            f"name: '{m.name}'\n"
            f"data-dir: {m.data_dir}\n"
            f"listen-client-urls: {m.url}\n"
            f"advertise-client-urls: {m.url}\n"
            f"listen-peer-urls: {m.peer_url}\n"
            f"initial-advertise-peer-urls: {m.peer_url}\n"
            f"initial-cluster: {initial}\n"
            f"initial-cluster-token: 'cfg-{m.kind}'\n"
            f"initial-cluster-state: 'new'\n"
            f"heartbeat-interval: 50\n"
            f"election-timeout: 500\n"
            f"snapshot-count: 10000\n"
            f"enable-v2: true\n"
            f"strict-reconfig-check: true\n"
            f"logger: capnslog\n"
            f"log-outputs: [stderr]\n" + extra)


class FileMember(harness.Member):
    """A member started from its config file (written by write()): `--config-file FILE`, or
    ETCD_CONFIG_FILE with via_env; `extra_args` and `env_extra` come beside it."""

    def __init__(self, kind, name, workdir, via_env=False, extra_args=(), env_extra=None):
        super().__init__(kind, name=name, workdir=workdir, extra_args=extra_args)
        self.config_path = os.path.join(workdir, f"{name}.yml")
        self.via_env = via_env
        extra = dict(env_extra or {})
        if via_env:
            extra["ETCD_CONFIG_FILE"] = self.config_path
        self.env = clean_env(extra)

    def write(self, text):
        with open(self.config_path, "w") as f:
            f.write(text)
        return self

    def args(self):
        if self.via_env:
            return [binary(self.kind)] + self.extra_args
        return [binary(self.kind), "--config-file", self.config_path] + self.extra_args


class FileProxy(harness.Proxy):
    def __init__(self, kind, workdir, yaml_extra, name="proxy"):
        super().__init__(kind, "", workdir, name=name)
        self.config_path = os.path.join(workdir, f"{name}-{kind}.yml")
        self.env = clean_env()
        with open(self.config_path, "w") as f:
            f.write(f"data-dir: {self.data_dir}\nlisten-client-urls: {self.url}\n" + yaml_extra)

    def args(self):
        return [binary(self.kind), "--config-file", self.config_path]


def self_member(m):
    """This member's entry of /v2/members (found by its name) and /v2/stats/self's name."""
    _, members, _ = harness.get_json(m, "/v2/members")
    _, stats, _ = harness.get_json(m, "/v2/stats/self")
    mine = [x for x in members["members"] if x["name"] == m.name]
    return (mine[0] if mine else None), stats.get("name")


def serves_as_configured(m, what):
    entry, stats_name = self_member(m)
    R.check(entry is not None and entry["clientURLs"] == [m.url] and entry["peerURLs"] == [m.peer_url],
            f"{what}: /v2/members lists {m.name} with the file's URLs: {entry}")
    R.check(stats_name == m.name, f"{what}: /v2/stats/self names {stats_name!r}")
    st, _, _ = harness.put(m, "/cfg/k", f"v-{m.kind}")
    st2, body, _ = harness.get_json(m, "/v2/keys/cfg/k")
    R.check(st in (200, 201) and st2 == 200 and body["node"]["value"] == f"v-{m.kind}",
            f"{what}: writes and reads ({st}, {st2})")
    R.check(os.path.isdir(os.path.join(m.data_dir, "member")),
            f"{what}: data dir {m.data_dir} in use")


def single_members(workdir):
    print("-- one member from a file; from ETCD_CONFIG_FILE; flags and variables beside it", flush=True)
    for kind, d in kind_dirs(workdir, "single"):
        # Flags and variables that would change everything, all to be ignored.
        decoy = harness.free_port()
        m = FileMember(kind, "filemember", d,
                       extra_args=["--name", "flagname", "--listen-client-urls",
                                   f"http://127.0.0.1:{decoy}", "--data-dir",
                                   os.path.join(d, "flagdir")],
                       env_extra={"ETCD_HEARTBEAT_INTERVAL": "abc", "ETCD_INITIAL_CLUSTER_TOKEN": "x"})
        m.write(member_yaml(m, {m.name: m.peer_url}))
        try:
            m.start()
            serves_as_configured(m, f"{kind} --config-file with flags beside")
            R.check(not os.path.exists(os.path.join(d, "flagdir")),
                    f"{kind}: the --data-dir flag beside the file is ignored")
            R.check(harness.try_request("GET", f"http://127.0.0.1:{decoy}/health", timeout=1)[0] is None,
                    f"{kind}: nothing listens on the --listen-client-urls flag's port")
            log = m.read_log()
            R.check(f'Loading server configuration from "{m.config_path}". Other configuration '
                    "command line flags and environment variables will be ignored if provided." in log,
                    f"{kind}: logs that it loaded the file:\n{log[-1500:]}")
            if kind == "kvd":
                R.check("ignoring command-line flags given beside the config file: --data-dir, "
                        "--listen-client-urls, --name" in log, f"kvd: names the ignored flags:\n{log[-1500:]}")
                R.check("ignoring environment variables given beside the config file: "
                        "ETCD_HEARTBEAT_INTERVAL, ETCD_INITIAL_CLUSTER_TOKEN" in log,
                        f"kvd: names the ignored variables:\n{log[-1500:]}")
        finally:
            m.cleanup()

        m = FileMember(kind, "envmember", d, via_env=True)
        m.write(member_yaml(m, {m.name: m.peer_url}))
        try:
            m.start()
            serves_as_configured(m, f"{kind} ETCD_CONFIG_FILE")
        finally:
            m.cleanup()


def tls_member(workdir):
    print("-- client-transport-security: auto-tls on an https URL", flush=True)
    for kind, d in kind_dirs(workdir, "tls"):
        m = FileMember(kind, "tls", d)
        https = f"https://127.0.0.1:{m.client_port}"
        text = member_yaml(m, {m.name: m.peer_url}).replace(
            f"listen-client-urls: {m.url}", f"listen-client-urls: {https}").replace(
            f"advertise-client-urls: {m.url}", f"advertise-client-urls: {https}")
        m.write(text + "client-transport-security:\n  auto-tls: true\n  client-cert-auth: false\n")
        m.spawn()
        try:
            def answers():
                p = subprocess.run(["curl", "-sk", "--max-time", "2", https + "/health"],
                                   capture_output=True, timeout=10)
                return m.exited() or (p.returncode == 0 and b'"health":"true"' in p.stdout)
            ok = harness.wait_for(answers, 30, interval=0.1) and not m.exited()
            R.check(ok, f"{kind}: https /health with auto-tls from the file:\n{m.read_log()[-1500:]}")
            R.check(os.path.isdir(os.path.join(m.data_dir, "fixtures", "client")),
                    f"{kind}: auto-tls certificate under the data dir")
        finally:
            m.cleanup()


def clusters(workdir):
    print("-- three members from three files; a proxy and a readonly proxy from files", flush=True)
    for kind, d in kind_dirs(workdir, "cluster"):
        ms = [FileMember(kind, f"m{i}", d) for i in range(3)]
        cluster = {m.name: m.peer_url for m in ms}
        proxies = []
        try:
            for m in ms:
                m.write(member_yaml(m, cluster)).spawn()
            for m in ms:
                m.wait_ready(30)
            _, members, _ = harness.get_json(ms[0], "/v2/members")
            names = sorted(x["name"] for x in members["members"])
            R.check(names == ["m0", "m1", "m2"], f"{kind} cluster: members {names}")
            for m in ms:
                serves_as_configured(m, f"{kind} cluster member {m.name}")
            initial = ",".join(f"{n}={u}" for n, u in cluster.items())
            rw = FileProxy(kind, d, f"proxy: 'on'\ninitial-cluster: {initial}\n"
                                    "proxy-refresh-interval: 1000\n")
            ro = FileProxy(kind, d, f"proxy: readonly\ninitial-cluster: {initial}\n", name="ro")
            proxies = [rw, ro]
            rw.start(want_endpoints=3, timeout=30)
            ro.start(want_endpoints=3, timeout=30)
            st, _, _ = harness.put(rw, "/cfg/viaproxy", "p")
            st2, body, _ = harness.get_json(ms[2], "/v2/keys/cfg/viaproxy?quorum=true")
            R.check(st == 201 and st2 == 200 and body["node"]["value"] == "p",
                    f"{kind} proxy from a file forwards writes ({st}, {st2})")
            st, _, _ = harness.request("PUT", ro.url + "/v2/keys/cfg/ro", b"value=1",
                                       {"Content-Type": "application/x-www-form-urlencoded"})
            st2, body, _ = harness.get_json(ro, "/v2/keys/cfg/viaproxy?quorum=true")
            R.check(st == 501 and st2 == 200, f"{kind} readonly proxy from a file: PUT {st}, GET {st2}")
        finally:
            for p in proxies:
                p.kill()
            for m in ms:
                m.cleanup()


# --- refusals ---

def listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_file(kind, text, args_after=(), path=None):
    """Starts `kind` with a config file holding `text` (or `path` as it is) in an empty
    directory. Returns (exit status or "started", stderr+stdout, what it left in the directory,
    whether its client port listened)."""
    cwd = tempfile.mkdtemp(prefix=f"cfg-{kind}-")
    try:
        client, peer = harness.free_port(), harness.free_port()
        if path is None:
            path = os.path.join(cwd, "conf", "member.yml")
            os.makedirs(os.path.dirname(path))
            with open(path, "w") as f:
                f.write(text.format(client=client, peer=peer, dir=os.path.join(cwd, "data")))
        log_path = os.path.join(cwd, "..", os.path.basename(cwd) + ".log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([binary(kind), "--config-file", path, *args_after], cwd=cwd,
                                    env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        url = f"http://127.0.0.1:{client}/health"

        def settled():
            if proc.poll() is not None:
                return True
            return harness.try_request("GET", url, timeout=1)[0] == 200
        harness.wait_for(settled, 20, interval=0.05)
        rc = proc.poll()
        served = listening(client)
        if rc is None:
            os.kill(proc.pid, 9)
            proc.wait(timeout=30)
            rc = "started"
        with open(log_path, "rb") as f:
            out = f.read().decode(errors="replace")
        os.remove(log_path)
        left = sorted(e for e in os.listdir(cwd) if e != "conf")
        return rc, out, left, served
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


BASE = ("name: n1\n"
        "data-dir: {dir}\n"
        "listen-client-urls: http://127.0.0.1:{client}\n"
        "advertise-client-urls: http://127.0.0.1:{client}\n"
        "listen-peer-urls: http://127.0.0.1:{peer}\n"
        "initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        "initial-cluster: n1=http://127.0.0.1:{peer}\n"
        "enable-v2: true\n")


def refusals(workdir):
    print("-- bad files and flags beside files, compared with etcd", flush=True)
    missing = os.path.join(workdir, "no-such-dir", "missing.yml")
    # (what, file text, etcd's exit status or "started", a fragment of etcd's message,
    #  kvd's whole message after `kvd: `, with FILE for the path and N for a line number)
    cases = [
        ("unknown key", BASE + "heartbeat-intervall: 100\n", "started", None,
         'config file "FILE", line 9: unknown key "heartbeat-intervall"'),
        ("key given twice", BASE + "name: n2\n", 1, 'couldn\'t find local name "n2"',
         'config file "FILE", line 9: key "name" given twice (first on line 1)'),
        ("string for a number", BASE + "heartbeat-interval: abc\n", 1,
         "configYAML.heartbeat-interval of type uint",
         'config file "FILE", line 9: heartbeat-interval must be an integer, not the string "abc"'),
        ("bad cluster state", BASE + "initial-cluster-state: bogus\n", 1,
         'unexpected clusterState "bogus"',
         'config file "FILE", line 9: invalid value "bogus" for initial-cluster-state: invalid value'),
        ("unquoted proxy: on (a YAML 1.1 boolean)", BASE + "proxy: on\n", 1,
         "unexpected error setting up proxyFlag: invalid value",
         'config file "FILE", line 9: proxy must be a string, not the boolean on (quote it: "on")'),
        ("bad URL", BASE.replace("listen-client-urls: http://127.0.0.1:{client}",
                                 "listen-client-urls: notaurl"), 1,
         "unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, "
         "or unixs: notaurl",
         'config file "FILE", line 3: invalid value "notaurl" for listen-client-urls: URL scheme '
         "must be http, https, unix, or unixs: notaurl"),
        ("scalar for a list", BASE + "log-outputs: stderr\n", 1,
         "configYAML.log-outputs of type []string",
         'config file "FILE", line 9: log-outputs must be a list of strings, not the string '
         '"stderr" (write [stderr])'),
        ("bad TLS map key", BASE + "client-transport-security:\n  auto-tls: maybe\n", 1,
         "client-transport-security.auto-tls of type bool",
         'config file "FILE", line 10: client-transport-security.auto-tls must be a boolean '
         '(true or false), not the string "maybe"'),
        ("not YAML", BASE + "cors: [unclosed\n", 1, "error converting YAML to JSON: yaml: line",
         None),
        ("not a map", "just a sentence\n", 1, "cannot unmarshal string into Go value of type "
         "embed.configYAML", 'config file "FILE": expected a map of settings (key: value), found '
         'the string "just a sentence"'),
    ]
    for what, text, etcd_rc, etcd_msg, kvd_msg in cases:
        rc_e, out_e, _, _ = run_file("etcd", text)
        rc_k, out_k, left_k, served_k = run_file("kvd", text)
        R.check(rc_e == etcd_rc, f"{what}: etcd ends {rc_e!r}, expected {etcd_rc!r} (spec "
                f"changed?):\n{out_e[-1000:]}")
        R.check(etcd_msg is None or etcd_msg in out_e, f"{what}: etcd says {etcd_msg!r}:\n{out_e[-1000:]}")
        R.check(rc_k == 1, f"{what}: kvd exits {rc_k!r}, expected 1:\n{out_k[-1000:]}")
        lines = out_k.splitlines()
        if kvd_msg is None:
            R.check(len(lines) == 1 and re.match(r'kvd: config file "[^"]+", line \d+: not YAML: '
                                                 r"line \d+, column \d+: ", lines[0]),
                    f"{what}: kvd prints {lines!r}")
        else:
            want = "kvd: " + kvd_msg
            R.check(len(lines) == 1 and re.fullmatch(re.escape(want).replace("FILE", '[^"]+'), lines[0]),
                    f"{what}: kvd prints {lines!r}, expected {want!r}")
        R.check(left_k == [] and not served_k,
                f"{what}: kvd started nothing (left {left_k}, listened {served_k})")

    # A file that is not there.
    rc_e, out_e, _, _ = run_file("etcd", None, path=missing)
    rc_k, out_k, left_k, _ = run_file("kvd", None, path=missing)
    R.check(rc_e == 1 and f"open {missing}: no such file or directory" in out_e,
            f"missing file: etcd {rc_e}:\n{out_e[-600:]}")
    R.check(rc_k == 1 and out_k.splitlines() == [f"kvd: cannot load config file: open {missing}: "
                                                 "No such file or directory"] and left_k == [],
            f"missing file: kvd {rc_k} {out_k!r}")

    # A log level etcd does not know: etcd panics (exit 2), kvd refuses it as the flag does.
    rc_e, out_e, _, _ = run_file("etcd", BASE + "log-level: loud\n")
    rc_k, out_k, _, _ = run_file("kvd", BASE + "log-level: loud\n")
    R.check(rc_e == 2 and 'unknown level "loud"' in out_e, f"log-level loud: etcd {rc_e}:\n{out_e[-600:]}")
    R.check(rc_k == 1 and re.fullmatch(r'kvd: config file "[^"]+", line 9: invalid value "loud" for '
                                       r"log-level: invalid value\n", out_k),
            f"log-level loud: kvd {rc_k} {out_k!r}")

    # A flag beside the file is still parsed first: a bad one stops both with Go's flag error.
    rc_e, out_e, _, _ = run_file("etcd", BASE, ["--heartbeat-interval", "abc"])
    rc_k, out_k, left_k, _ = run_file("kvd", BASE, ["--heartbeat-interval", "abc"])
    msg = 'invalid value "abc" for flag -heartbeat-interval: parse error'
    R.check(rc_e == 2 and out_e.startswith(msg), f"bad flag beside the file: etcd {rc_e} {out_e[:200]!r}")
    R.check(rc_k == 2 and out_k == msg + "\n" and left_k == [],
            f"bad flag beside the file: kvd {rc_k} {out_k!r}")


def main():
    harness.require_etcd()
    if not os.access(harness.KVD_BIN, os.X_OK):
        print(f"FAIL: kvd binary not found (KVD_BIN={harness.KVD_BIN!r})")
        sys.exit(1)
    workdir = harness.new_workdir("kvd-config-file-")
    try:
        refusals(workdir)
        single_members(workdir)
        tls_member(workdir)
        clusters(workdir)
    finally:
        harness.remove_workdir(workdir, R)
    R.finish()


if __name__ == "__main__":
    main()
