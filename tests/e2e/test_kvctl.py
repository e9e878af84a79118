"""kvctl against etcdctl: the same command sequence is run by `ETCDCTL_API=2 etcdctl` against one
etcd member and by kvctl against a second etcd member (and a kvd member when KVD_BIN starts);
stdout, stderr and exit codes must match after normalising what legitimately differs between
servers (index numbers relative to each server's start, endpoint addresses, member IDs, TTL
countdowns and expiration times).

Run: KVCTL_BIN=build/cli/kvctl [KVD_BIN=build/server/kvd] python3 tests/e2e/test_kvctl.py
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

STEP_TIMEOUT = 30.0


class Target:
    """One tool talking to one server: runs commands and normalises their output."""

    def __init__(self, label, tool, member, dead_port):
        self.label = label
        self.tool = tool
        self.member = member
        self.dead_port = dead_port
        self.base_index = None

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
        env["ETCDCTL_API"] = "2"
        for k, v in (extra or {}).items():
            env[k] = v.replace("{EP}", self.member.url).replace("{DEAD}", str(self.dead_port))
        return env

    def expand(self, args):
        return [a.replace("{EP}", self.member.url).replace("{DEAD}", str(self.dead_port))
                .replace("{PEER}", self.member.peer_url) for a in args]

    def argv(self, args, with_endpoint=True):
        a = self.expand(args)
        if with_endpoint:
            a = ["--endpoints", self.member.url] + a
        return [self.tool] + a

    def run(self, args, stdin=None, env=None, with_endpoint=True):
        p = subprocess.run(self.argv(args, with_endpoint), input=(stdin or "").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(env),
                           timeout=STEP_TIMEOUT)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def current_index(self):
        _, headers, _ = harness.request("GET", self.member.url + "/v2/keys/")
        return int(headers["x-etcd-index"])

    def watchers(self):
        status, _, body = harness.request("GET", self.member.url + "/v2/stats/store")
        if status != 200:
            return None
        return json.loads(body).get("watchers")

    def start_watch(self, args):
        """Starts the tool with `args` (a watch) and waits (bounded) until the server counts one
        watcher more than before, or the tool exited."""
        before = self.watchers()
        proc = subprocess.Popen(self.argv(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env())
        if before is not None:
            harness.wait_for(lambda: self.watchers() > before or proc.poll() is not None, 10,
                             interval=0.01)
        return proc

    def normalize(self, text):
        base = self.base_index

        def rel(m):
            return f"{m.group(1)}<{int(m.group(2)) - base}>"

        text = text.replace(self.member.url, "<EP>").replace(self.member.peer_url, "<PEER>")
        text = text.replace(f"127.0.0.1:{self.dead_port}", "<DEAD>")
        text = re.sub(r"(Created-Index: |Modified-Index: |Index: |\"createdIndex\":|"
                      r"\"modifiedIndex\":|ETCD_WATCH_MODIFIED_INDEX=|\) \[)(\d+)", rel, text)
        text = re.sub(r"(/0000)(\d{16})", lambda m: f"/<seq {int(m.group(2)) - base}>", text)
        text = re.sub(r"\"expiration\":\"[^\"]*\"", "\"expiration\":<T>", text)
        text = re.sub(r"(\"ttl\":|TTL: )[1-9]\d*", r"\1<ttl>", text)
        # Member and cluster IDs: Go prints them with %x, so without leading zeros (1-16 digits).
        text = re.sub(r"\b[0-9a-f]{16}\b", "<ID>", text)
        text = re.sub(r"(?m)^[0-9a-f]{1,16}(?=: name=)", "<ID>", text)
        text = re.sub(r"\b(member |ID |id )[0-9a-f]{1,16}\b", r"\1<ID>", text)
        text = re.sub(r"127\.0\.0\.1:\d+", "<ADDR>", text)
        # kvctl --version: etcdctl's lines, then kvctl's own two (test_identity checks them).
        text = re.sub(r"(?m)^kvctl version: \S+\nGit SHA: \S+\n", "", text)
        return text


class Comparison:
    def __init__(self, results, ref, others):
        self.results = results
        self.ref = ref
        self.others = others

    def compare(self, name, outputs_ref, outputs_other, other):
        ok = outputs_ref == outputs_other
        if not ok:
            detail = f"{name} [{other.label}]\n  etcdctl: {outputs_ref!r}\n  kvctl:   {outputs_other!r}"
        else:
            detail = name
        self.results.check(ok, detail)

    def step(self, args, stdin=None, env=None, with_endpoint=True, sort_lines=False):
        name = " ".join(args)
        got = {}
        for t in [self.ref] + self.others:
            rc, out, err = t.run(args, stdin, env, with_endpoint)
            out, err = t.normalize(out), t.normalize(err)
            # ls without --sort prints a directory in Go's map order, i.e. unspecified: a
            # successful listing is compared as a set of lines.
            unordered_ls = "ls" in args and "--sort" not in args and rc == 0
            if sort_lines or unordered_ls:
                out = "\n".join(sorted(out.split("\n")))
            got[t.label] = (rc, out, err)
        for t in self.others:
            self.compare(name, got[self.ref.label], got[t.label], t)

    def watch_step(self, watch_args, writes, expect_lines, forever=False):
        """Starts `watch_args` per target, waits for the server to register the watcher, runs
        `writes`, then collects the watcher's output (until it exits, or until expect_lines
        lines for --forever watches, which are then stopped with SIGINT)."""
        name = " ".join(watch_args)
        got = {}
        for t in [self.ref] + self.others:
            proc = t.start_watch(watch_args)
            for w in writes:
                t.run(w)
            if forever:
                out = b""
                os.set_blocking(proc.stdout.fileno(), False)
                deadline = time.monotonic() + 10
                while out.count(b"\n") < expect_lines and time.monotonic() < deadline:
                    chunk = proc.stdout.read()
                    if chunk:
                        out += chunk
                    else:
                        time.sleep(0.01)
                proc.send_signal(signal.SIGINT)
                rest, err = proc.communicate(timeout=STEP_TIMEOUT)
                out += rest or b""
            else:
                out, err = proc.communicate(timeout=STEP_TIMEOUT)
            got[t.label] = (proc.returncode, t.normalize(out.decode()), t.normalize(err.decode()))
        for t in self.others:
            self.compare(name, got[self.ref.label], got[t.label], t)

    def exec_watch_step(self, args_fn, writes, expect_lines, expect_exit=False):
        """exec-watch whose command appends its environment to a file; compares that file."""
        name = "exec-watch " + " ".join(args_fn("<OUT>"))
        got = {}
        for t in [self.ref] + self.others:
            fd, path = tempfile.mkstemp(prefix="kvctl-ew-")
            os.close(fd)
            proc = t.start_watch(["exec-watch"] + args_fn(path))
            for w in writes:
                t.run(w)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with open(path) as f:
                    if f.read().count("\n") >= expect_lines:
                        break
                if expect_exit and proc.poll() is not None:
                    break
                time.sleep(0.01)
            if not expect_exit:
                proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=STEP_TIMEOUT)
            with open(path) as f:
                lines = sorted(f.read().splitlines())
            os.unlink(path)
            got[t.label] = (proc.returncode, t.normalize(out.decode()), t.normalize(err.decode()),
                            t.normalize("\n".join(lines)))
        for t in self.others:
            self.compare(name, got[self.ref.label], got[t.label], t)


def sequence(c):
    s = c.step
    # Command line shape, help and version.
    s([], with_endpoint=False)
    s(["--version"], with_endpoint=False)
    s(["-v"], with_endpoint=False)
    s(["help", "set"], with_endpoint=False)
    s(["help", "member"], with_endpoint=False)
    s(["help", "frobnicate"], with_endpoint=False)
    s(["frobnicate"], with_endpoint=False)
    s(["--bogus", "ls"], with_endpoint=False)
    s(["--timeout", "5", "ls"])
    s(["--timeout", "500ms", "--total-timeout", "1m30s", "ls"])
    s(["ls", "--bogus"])
    s(["set", "--ttl", "abc", "/k", "v"])
    s(["set", "--ttl"])
    s(["get", "-h"])
    s(["member"])
    s(["member", "list", "-h"])
    # set / get and their options.
    s(["set", "/app/dash", "1"])
    s(["get", "/app/dash"])
    s(["set", "/app/dash", "-v"])
    s(["get", "/app/dash"])
    s(["set", "/app/ttl", "v", "--ttl", "100"])
    s(["-o", "extended", "get", "/app/ttl"])
    s(["set", "--swap-with-value", "-v", "/app/dash", "2"])
    s(["set", "--swap-with-value", "nope", "/app/dash", "3"])
    s(["set", "--swap-with-index", "1", "/app/dash", "3"])
    s(["set", "/app/stdin"], stdin="hello\n")
    s(["get", "/app/stdin"])
    s(["set", "/app/empty"], stdin="")
    s(["set"])
    s(["get"])
    s(["get", "/app/nothere"])
    s(["get", "/app"])
    s(["get", "/"])
    s(["get", "--quorum", "/app/dash"])
    s(["set", "/sp ace/k?x&y=z", "escaped"])
    s(["get", "/sp ace/k?x&y=z"])
    s(["set", "noslash", "v"])
    s(["get", "/noslash"])
    # Output formats.
    s(["-o", "extended", "set", "/fmt/a", "1"])
    s(["-o", "extended", "set", "/fmt/a", "2"])
    s(["-o", "json", "set", "/fmt/b", "a<b>&\"c\""])
    s(["-o", "json", "get", "/fmt"])
    s(["-o", "json", "get", "/fmt/nothere"])
    s(["-o", "yaml", "get", "/fmt/a"])
    s(["-o", "json", "ls", "--sort", "/fmt"])
    s(["-o", "extended", "ls", "/fmt"])
    # mk, mkdir, setdir, update, updatedir.
    s(["mk", "/app/new", "x"])
    s(["mk", "/app/new", "y"])
    s(["mk", "--in-order", "/app/queue", "job1"])
    s(["mk", "--in-order", "--ttl", "100", "/app/queue", "job2"])
    s(["mkdir", "/app/dir1"])
    s(["mkdir", "/app/dir1"])
    s(["mkdir", "/app/dash"])
    s(["-o", "extended", "mkdir", "/app/dir2"])
    s(["setdir", "/app/dir1"])
    s(["setdir", "/app/ftod"], stdin="")
    s(["set", "/app/ftod2", "f"])
    s(["setdir", "/app/ftod2"])
    s(["update", "/app/nothere", "v"])
    s(["update", "/app/dash", "u"])
    s(["update", "/app/dir1", "u"])
    s(["updatedir", "/app/nothere"])
    s(["updatedir", "/app/dash"])
    s(["get", "/app/dash"])
    s(["updatedir", "--ttl", "100", "/app/dir2"])
    s(["-o", "json", "updatedir", "/app/dir2"])
    # ls.
    s(["ls", "--sort", "/app"])
    s(["ls", "-r", "-p", "--sort", "/app"])
    s(["ls", "--sort", "-r", "/"])
    s(["ls"], sort_lines=True)
    s(["ls", "/app/dash"])
    s(["ls", "/nothere"])
    s(["ls", "-q", "--sort", "/fmt"])
    s(["ls", "--sort", "/app", "-p"])
    # rm and rmdir.
    s(["rm", "/app/nothere"])
    s(["rm", "/app/dir1"])
    s(["rm", "--with-value", "nope", "/app/new"])
    s(["rm", "--with-value", "x", "/app/new"])
    s(["set", "/app/idx", "i"])
    s(["rm", "--with-index", "1", "/app/idx"])
    s(["rm", "/app/idx"])
    s(["set", "/app/dir1/f", "1"])
    s(["rm", "--dir", "/app/dir1"])
    s(["rm", "-r", "/app/dir1"])
    s(["set", "/app/dir3/f", "1"])
    s(["rm", "--recursive", "/app/dir3"])
    s(["ls", "--recursive", "--sort", "-p", "/app"])
    s(["rm", "-r", "/"])
    s(["-o", "extended", "rm", "/app/stdin"])
    s(["rmdir", "/app/dir2"])
    s(["rmdir", "/app/ftod2"])
    s(["set", "/app/rf", "1"])
    s(["rmdir", "/app/rf"])
    # Endpoints, sync, failover, errors.
    s(["ls", "/fmt"], env={"ETCDCTL_ENDPOINTS": "{EP}"}, with_endpoint=False)
    s(["-C", "http://127.0.0.1:{DEAD}", "ls", "/fmt"], env={"ETCDCTL_ENDPOINTS": "{EP}"},
      with_endpoint=False)
    s(["-C", "{EP}", "ls", "/fmt"], with_endpoint=False)
    s(["--endpoint", "{EP}", "ls", "/fmt"], env={"ETCDCTL_PEERS": "http://127.0.0.1:{DEAD}"},
      with_endpoint=False)
    s(["ls", "/fmt"], env={"ETCDCTL_PEERS": "{EP}"}, with_endpoint=False)
    s(["--peers", "http://127.0.0.1:{DEAD},{EP}", "get", "/fmt/a"], with_endpoint=False)
    s(["--output", "json", "--peers", "{EP}", "get", "/fmt/a"], with_endpoint=False)
    s(["--endpoints", "http://127.0.0.1:{DEAD},{EP}", "get", "/fmt/a"], with_endpoint=False)
    s(["--no-sync", "--endpoints", "http://127.0.0.1:{DEAD},{EP}", "set", "/fo/a", "1"],
      with_endpoint=False)
    s(["--endpoints", "{EP}/", "get", "/fmt/a"], with_endpoint=False)
    s(["--endpoints", "http://127.0.0.1:{DEAD}", "get", "/fmt/a"], with_endpoint=False)
    s(["--endpoints", "http://127.0.0.1:{DEAD}", "set", "/fmt/a"], with_endpoint=False)
    s(["--no-sync", "--endpoints", "http://127.0.0.1:{DEAD}", "get", "/fmt/a"],
      with_endpoint=False)
    s(["--no-sync", "--endpoints", "http://127.0.0.1:{DEAD}", "mk", "/fmt/z", "1"],
      with_endpoint=False)
    s(["--endpoints", "127.0.0.1:{DEAD}", "get", "/fmt/a"], with_endpoint=False)
    s(["--endpoints", "localhost:{DEAD}", "get", "/fmt/a"], with_endpoint=False)
    s(["--debug", "--no-sync", "get", "/fmt/a"])
    # member and cluster-health.
    s(["member", "list"])
    s(["member", "list", "extra"])
    s(["--no-sync", "--endpoints", "http://127.0.0.1:{DEAD}", "member", "list"],
      with_endpoint=False)
    s(["--endpoints", "http://127.0.0.1:{DEAD}", "member", "list"], with_endpoint=False)
    s(["member", "add", "onlyname"])
    s(["member", "add", "m2", "foo"])
    s(["member", "add", "m2", "{PEER}"])
    s(["member", "remove"])
    s(["member", "remove", "etcd4"])
    s(["member", "update", "1234", "http://127.0.0.1:1"])
    s(["member", "update", "1234"])
    s(["member", "frob"])
    s(["cluster-health"])
    s(["--endpoints", "http://127.0.0.1:{DEAD}", "cluster-health"], with_endpoint=False)
    # watch and exec-watch.
    c.watch_step(["watch", "/w/k"], [["set", "/w/k", "1"]], 1)
    c.watch_step(["-o", "json", "watch", "/w/k"], [["set", "/w/k", "2"]], 1)
    c.watch_step(["watch", "-f", "-r", "/w"],
                 [["set", "/w/a", "1"], ["mkdir", "/w/d"], ["set", "/w/a", "2"], ["rm", "/w/a"]],
                 6, forever=True)
    c.watch_step(["watch", "--after-index", "1", "/w/k"], [], 1)
    c.watch_step(["watch", "--forever", "--recursive", "/w"],
                 [["set", "/w/b", "1"], ["rm", "/w/b"]], 4, forever=True)
    s(["watch"])
    c.exec_watch_step(
        lambda out: ["-r", "/ew", "--", "sh", "-c",
                     "echo \"$ETCD_WATCH_ACTION $ETCD_WATCH_KEY $ETCD_WATCH_VALUE "
                     "$ETCD_WATCH_MODIFIED_INDEX\" >> " + out],
        [["set", "/ew/a", "v1"]], 1)
    c.exec_watch_step(
        lambda out: ["-r", "/ew/k", "--", "/nonexistent/prog", out],
        [["set", "/ew/k", "v"]], 0, expect_exit=True)
    s(["exec-watch", "/ew"])
    s(["set", "/k", "--", "-x"])
    s(["set", "--ttl", "--", "/k", "v"])


def main():
    def set_base(t):
        t.base_index = t.current_index()

    def run(ref, others):
        results = harness.Results()
        sequence(Comparison(results, ref, others))
        results.finish()
    harness.run_kvctl_sides(Target, run, before=set_base)

if __name__ == "__main__":
    main()
