"""kvctl's v2 auth commands against etcdctl's: the same command sequence (user, role and auth
commands, the global -u/--username and ETCDCTL_USERNAME, their errors and the 401s once auth is
on) is run by `ETCDCTL_API=2 etcdctl` against one etcd member and by kvctl against a second etcd
member (and a kvd member when KVD_BIN starts); stdout, stderr and exit codes must match after
normalising the endpoint addresses. Password prompts run on a pseudo-terminal: the reply is
typed only once the prompt is shown and the terminal's echo is off, and it must not be echoed.
Without a terminal the password is read from standard input, as etcdctl does.

Run: KVCTL_BIN=build/cli/kvctl [KVD_BIN=build/server/kvd] python3 tests/e2e/test_kvctl_auth.py
"""
import os
import re
import select
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

STEP_TIMEOUT = 30.0


class Target:
    """One tool talking to one server: runs commands (plainly or on a pseudo-terminal) and
    normalises their output."""

    def __init__(self, label, tool, member, dead_port):
        self.label = label
        self.tool = tool
        self.member = member
        self.dead_port = dead_port

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
        env["ETCDCTL_API"] = "2"
        env.update(extra or {})
        return env

    def argv(self, args):
        a = [x.replace("{EP}", self.member.url).replace("{DEAD}", str(self.dead_port))
             for x in args]
        if "--endpoints" not in a:
            a = ["--endpoints", self.member.url] + a
        return [self.tool] + a

    def run(self, args, stdin=None, env=None):
        p = subprocess.run(self.argv(args), input=(stdin or "").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(env),
                           timeout=STEP_TIMEOUT)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def run_pty(self, args, replies, env=None):
        """Runs with stdin and stdout on a pseudo-terminal (stderr on a pipe). replies: a list of
        (prompt, text): once `prompt` has appeared (after the previous reply) and the terminal's
        echo is off, `text` is typed. Returns (rc, stdout, stderr, echo_off) where echo_off says,
        per reply, whether echo was off when it was typed."""
        master, slave = os.openpty()
        proc = subprocess.Popen(self.argv(args), stdin=slave, stdout=slave,
                                stderr=subprocess.PIPE, env=self.env(env),
                                start_new_session=True)
        os.close(slave)
        out = b""
        seen = 0  # output before this offset was there before the last reply
        pending = list(replies)
        echo_off = []

        def echo_is_off():
            try:
                return not termios.tcgetattr(master)[3] & termios.ECHO
            except termios.error:
                return True  # the terminal is gone: the process ended
        deadline = time.monotonic() + STEP_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if pending and pending[0][0].encode() in out[seen:]:
                    echo_off.append(bool(harness.wait_for(echo_is_off, 10, interval=0.005)))
                    os.write(master, pending.pop(0)[1].encode())
                    seen = len(out)
                    continue
                ready, _, _ = select.select([master], [], [], 0.05)
                if not ready:
                    continue
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every holder of the terminal's other side has exited
                    break
                if not chunk:
                    break
                out += chunk
            _, err = proc.communicate(timeout=STEP_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), \
            echo_off

    def normalize(self, text):
        text = text.replace(self.member.url, "<EP>").replace(self.member.peer_url, "<PEER>")
        text = text.replace(f"127.0.0.1:{self.dead_port}", "<DEAD>")
        text = re.sub(r"127\.0\.0\.1:\d+", "<ADDR>", text)
        return text


class Comparison:
    def __init__(self, results, ref, others):
        self.results = results
        self.ref = ref
        self.others = others

    def compare(self, name, got):
        want = got[self.ref.label]
        for t in self.others:
            ok = got[t.label] == want
            detail = name if ok else (f"{name} [{t.label}]\n  etcdctl: {want!r}\n"
                                      f"  kvctl:   {got[t.label]!r}")
            self.results.check(ok, detail)

    def step(self, args, stdin=None, env=None, expect_rc=None):
        """Runs args on every target; compares (rc, stdout, stderr). expect_rc: the exit code
        etcdctl must give, checked too so that a step cannot silently test the wrong thing."""
        name = " ".join(args) + (f" <<< {stdin!r}" if stdin else "") + \
            (f" [{' '.join(f'{k}={v}' for k, v in env.items())}]" if env else "")
        got = {}
        for t in [self.ref] + self.others:
            rc, out, err = t.run(args, stdin, env)
            got[t.label] = (rc, t.normalize(out), t.normalize(err))
        if expect_rc is not None:
            self.results.check(got[self.ref.label][0] == expect_rc,
                               f"{name}: etcdctl exited {got[self.ref.label][0]}, "
                               f"expected {expect_rc}: {got[self.ref.label]!r}")
        self.compare(name, got)

    def pty_step(self, args, replies, env=None, expect_rc=None):
        """As step, on a pseudo-terminal (Target.run_pty); also checks per target that echo was
        off for every reply and that no typed password shows in the output."""
        name = "[pty] " + " ".join(args) + (f" [{env}]" if env else "")
        got = {}
        for t in [self.ref] + self.others:
            rc, out, err, echo_off = t.run_pty(args, replies, env)
            self.results.check(echo_off == [True] * len(replies),
                               f"{name} [{t.label}]: echo off when typing: {echo_off}")
            for _, text in replies:
                secret = text.strip()
                self.results.check(not secret or secret not in out + err,
                                   f"{name} [{t.label}]: {secret!r} echoed: {out!r} {err!r}")
            got[t.label] = (rc, t.normalize(out), t.normalize(err))
        if expect_rc is not None:
            self.results.check(got[self.ref.label][0] == expect_rc,
                               f"{name}: etcdctl exited {got[self.ref.label][0]}, "
                               f"expected {expect_rc}: {got[self.ref.label]!r}")
        self.compare(name, got)


ROOT = ["-u", "root:rootpw"]


def sequence(c):
    s = c.step
    # Command line shape and help of the three command groups.
    for group in ("member", "user", "role", "auth"):
        s([group], expect_rc=0)
        s([group, "-h"], expect_rc=0)
        s(["help", group], expect_rc=0)
        s([group, "help"], expect_rc=0)
        s([group, "h", "help"], expect_rc=0)
        s([group, "help", "app"], expect_rc=3)
        s([group, "frob"], expect_rc=3)
        s([group, "help", "frob"], expect_rc=3)
        s([group, "--bogus"], expect_rc=1)
    for sub in ("add", "get", "list", "remove", "grant", "revoke", "passwd"):
        s(["user", sub, "-h"], expect_rc=0)
    for sub in ("add", "get", "list", "remove", "grant", "revoke"):
        s(["role", "help", sub], expect_rc=0)
    s(["auth", "enable", "--help"], expect_rc=0)
    s(["auth", "h", "disable"], expect_rc=0)
    # Argument checks, made before any request.
    s(["user", "get", "--detail", "root"], expect_rc=1)
    s(["user", "grant", "--roles"], expect_rc=1)
    s(["user", "list", "x"], expect_rc=1)
    s(["role", "list", "x"], expect_rc=1)
    s(["auth", "enable", "x"], expect_rc=1)
    s(["auth", "disable", "x"], expect_rc=1)
    s(["user", "get"], expect_rc=1)
    s(["user", "add", "a", "b"], expect_rc=1)
    s(["user", "passwd"], expect_rc=1)
    s(["user", "remove"], expect_rc=1)
    s(["role", "get"], expect_rc=1)
    s(["role", "add", "a", "b"], expect_rc=1)
    s(["user", "grant", "alice"], expect_rc=1)
    s(["user", "revoke", "alice"], expect_rc=1)
    s(["role", "grant", "r1"], expect_rc=1)
    s(["role", "revoke", "--path", "", "--read", "r1"], expect_rc=1)
    s(["role", "grant", "--path", "/foo", "r1"], expect_rc=1)
    s(["role", "grant", "--path", "/a", "--read", "--rw", "r1"], expect_rc=1)
    s(["role", "grant", "--path", "foo", "--read", "r1"], expect_rc=1)
    s(["role", "grant", "--path", "/foo//bar/.", "--write", "r1"], expect_rc=1)
    s(["role", "grant", "--path", "/x", "--read"], expect_rc=1)
    s(["role", "grant", "--read", "--path", "/x", "a", "b"], expect_rc=1)
    # Auth off, no users yet.
    s(["user", "list"], expect_rc=0)
    s(["role", "list"], expect_rc=0)
    s(["user", "get", "root"], expect_rc=1)
    s(["role", "get", "root"], expect_rc=0)
    s(["role", "get", "guest"], expect_rc=1)
    s(["auth", "enable"], expect_rc=1)
    s(["auth", "disable"], expect_rc=1)
    # Users.
    s(["user", "add", "root:rootpw"], expect_rc=0)
    s(["user", "add", "alice:alicepw"], expect_rc=0)
    s(["user", "add", "alice:again"], expect_rc=0)  # etcdctl 3.4 does not check existence
    s(["user", "add", "alice:alicepw"], expect_rc=0)
    s(["user", "add", "bob:"], expect_rc=1)
    s(["user", "add", ":nameless"], expect_rc=1)
    s(["user", "add", "a/b:pw"], expect_rc=1)
    s(["user", "add", "sp ace:a:b"], expect_rc=0)
    s(["user", "get", "sp ace"], expect_rc=0)
    s(["user", "get", ".."], expect_rc=1)
    s(["user", "get", "a%2Fb"], expect_rc=1)
    s(["user", "get", "root"], expect_rc=0)
    s(["user", "get", "alice"], expect_rc=0)
    s(["user", "get", "nobody"], expect_rc=1)
    s(["user", "add", "frank"], stdin="frankpw\nrest\n", expect_rc=0)  # no terminal: stdin
    s(["user", "add", "gina"], expect_rc=1)  # no terminal, empty stdin: empty password
    s(["user", "passwd", "frank"], stdin="frankpw2\r\n", expect_rc=0)
    s(["--debug", "--no-sync", "user", "add", "hal:<&>\"pw\""], expect_rc=0)
    s(["user", "list"], expect_rc=0)
    # Roles.
    s(["role", "add", "r1"], expect_rc=0)
    s(["role", "add", "r1"], expect_rc=1)
    s(["role", "add", "root"], expect_rc=1)
    s(["role", "add", "r2"], expect_rc=0)
    s(["role", "add", "sp ace"], expect_rc=0)
    s(["role", "get", "sp ace"], expect_rc=0)
    s(["role", "get", "nope"], expect_rc=1)
    s(["role", "get", ".."], expect_rc=1)
    s(["role", "grant", "--path", "/foo/", "--read", "r1"], expect_rc=0)
    s(["role", "grant", "--path", "/foo/*", "--read", "r1"], expect_rc=0)
    s(["role", "grant", "--path", "/foo/*", "--read", "r1"], expect_rc=1)
    s(["role", "grant", "--path", "/bar", "-rw", "r1"], expect_rc=0)
    s(["role", "grant", "--path=/baz", "--readwrite", "r1"], expect_rc=0)
    s(["role", "grant", "r1", "--path", "/wo", "--write"], expect_rc=0)
    s(["--debug", "--no-sync", "role", "grant", "--path", "/d", "--rw", "r2"], expect_rc=0)
    s(["role", "grant", "--path", "/x", "--read", "nope"], expect_rc=1)
    s(["role", "get", "r1"], expect_rc=0)
    s(["role", "revoke", "--path", "/foo/*", "--read", "r1"], expect_rc=0)
    s(["role", "revoke", "--path", "/foo/*", "--read", "r1"], expect_rc=1)
    s(["role", "revoke", "--path", "/bar", "--write", "r1"], expect_rc=0)
    s(["role", "revoke", "--path", "/nothere", "--rw", "r1"], expect_rc=1)
    s(["role", "revoke", "--path", "/x", "--read", "nope"], expect_rc=1)
    s(["role", "get", "r1"], expect_rc=0)
    s(["role", "list"], expect_rc=0)
    # Granting roles to users.
    s(["user", "grant", "--roles", "r1", "alice"], expect_rc=0)
    s(["user", "grant", "--roles", "r1", "alice"], expect_rc=1)
    s(["user", "grant", "--roles", "r2", "--roles", "r1", "frank"], expect_rc=0)
    s(["--debug", "--no-sync", "user", "grant", "--roles", "r2", "hal"], expect_rc=0)
    s(["user", "get", "frank"], expect_rc=0)
    s(["user", "get", "hal"], expect_rc=0)
    s(["user", "list"], expect_rc=0)
    s(["user", "grant", "--roles", "r1", "nobody"], expect_rc=1)
    s(["user", "revoke", "--roles", "r2", "frank"], expect_rc=0)
    s(["user", "revoke", "--roles", "r2", "frank"], expect_rc=1)
    s(["user", "revoke", "--roles", "r1", "nobody"], expect_rc=1)
    s(["user", "get", "frank"], expect_rc=0)
    # --roles is not split at commas: the user gets a role named "r1,r2".
    s(["user", "add", "ivan:ivanpw"], expect_rc=0)
    s(["user", "grant", "--roles", "r1,r2", "ivan"], expect_rc=0)
    s(["user", "get", "ivan"], expect_rc=1)
    # Prompts on a terminal.
    c.pty_step(["user", "add", "judy"], [("New password: ", "judypw\n")], expect_rc=0)
    c.pty_step(["user", "passwd", "judy"], [("New password: ", "judypw2\n")], expect_rc=0)
    c.pty_step(["user", "passwd", "newbie"], [("New password: ", "newbiepw\n")], expect_rc=1)
    c.pty_step(["user", "add", "kim:kimpw"], [], expect_rc=0)
    s(["user", "get", "judy"], expect_rc=0)
    s(["user", "get", "newbie"], expect_rc=0)
    # Removal.
    s(["user", "remove", "nobody"], expect_rc=1)
    s(["user", "remove", "ivan"], expect_rc=0)
    s(["user", "remove", "sp ace"], expect_rc=0)
    s(["role", "remove", "nope"], expect_rc=1)
    s(["role", "remove", "root"], expect_rc=1)
    s(["role", "remove", "sp ace"], expect_rc=0)
    s(["role", "list"], expect_rc=0)
    s(["user", "list"], expect_rc=0)
    s(["set", "/k", "v"], expect_rc=0)
    # Unreachable endpoints.
    s(["--no-sync", "--endpoints", "http://127.0.0.1:{DEAD}", "user", "list"], expect_rc=1)
    s(["--no-sync", "--endpoints", "http://127.0.0.1:{DEAD}", "role", "add", "r9"], expect_rc=1)
    s(["--endpoints", "http://127.0.0.1:{DEAD}", "auth", "enable"], expect_rc=2)
    # Auth on: anonymous requests get 401s from the auth API; the keys go by the guest role.
    s(["auth", "enable"], expect_rc=0)
    s(["auth", "enable"], expect_rc=1)
    s(["user", "list"], expect_rc=1)
    s(["role", "list"], expect_rc=1)
    s(["user", "get", "root"], expect_rc=1)
    s(["role", "get", "r1"], expect_rc=1)
    s(["role", "add", "r3"], expect_rc=1)
    s(["role", "grant", "--path", "/x", "--read", "r1"], expect_rc=1)
    s(["user", "add", "x:y"], expect_rc=1)
    s(["user", "grant", "--roles", "r1", "alice"], expect_rc=1)
    s(["auth", "disable"], expect_rc=1)
    s(["get", "/k"], expect_rc=0)
    s(["set", "/k", "v2"], expect_rc=0)
    s(["role", "get", "guest"], expect_rc=1)
    # Wrong or missing credentials.
    s(["-u", "root:wrong", "user", "list"], expect_rc=1)
    s(["-u", "root:wrong", "role", "list"], expect_rc=1)
    s(["-u", "root:wrong", "get", "/k"], expect_rc=4)
    s(["-u", "nobody:pw", "set", "/k", "x"], expect_rc=4)
    s(["--username", "alice:alicepw", "user", "list"], expect_rc=1)
    s(["-u", ":rootpw", "user", "list"], expect_rc=1)  # no user name: no credentials sent
    s(["get", "/k"], env={"ETCDCTL_USERNAME": "root:wrong"}, expect_rc=4)
    # Right credentials.
    s(ROOT + ["user", "list"], expect_rc=0)
    s(ROOT + ["role", "list"], expect_rc=0)
    s(ROOT + ["role", "get", "guest"], expect_rc=0)
    s(ROOT + ["user", "get", "root"], expect_rc=0)
    s(ROOT + ["get", "/k"], expect_rc=0)
    s(["--username", "root:rootpw", "auth", "enable"], expect_rc=1)
    s(["user", "list"], env={"ETCDCTL_USERNAME": "root:rootpw"}, expect_rc=0)
    s(ROOT + ["user", "list"], env={"ETCDCTL_USERNAME": "root:wrong"}, expect_rc=0)
    s(["--debug", "--no-sync"] + ROOT + ["role", "get", "r2"], expect_rc=0)
    s(["-u", "alice:alicepw", "get", "/k"])
    s(ROOT + ["role", "revoke", "--path", "/*", "--rw", "guest"], expect_rc=0)
    s(["get", "/k"], expect_rc=4)
    s(["-u", "alice:alicepw", "set", "/foo/a", "1"])
    s(ROOT + ["user", "grant", "--roles", "r2", "alice"], expect_rc=0)
    s(["-u", "alice:alicepw", "set", "/d", "1"], expect_rc=0)
    s(["-u", "alice:alicepw", "get", "/d"], expect_rc=0)
    # The -u password asked for: on a terminal, else read from stdin.
    c.pty_step(["-u", "root", "user", "list"], [("Password: ", "rootpw\n")], expect_rc=0)
    c.pty_step(["-u", "root", "user", "list"], [("Password: ", "bad\n")], expect_rc=1)
    c.pty_step(["get", "/d"], [("Password: ", "alicepw\n")],
               env={"ETCDCTL_USERNAME": "alice"}, expect_rc=0)
    c.pty_step(["-u", "root", "user", "add", "leo"],
               [("Password: ", "rootpw\n"), ("New password: ", "leopw\n")], expect_rc=0)
    c.pty_step(["-u", "leo", "user", "passwd", "leo"],
               [("Password: ", "leopw\n"), ("New password: ", "leopw2\n")], expect_rc=1)
    c.pty_step(["-u", "root", "user", "passwd", "leo"],
               [("Password: ", "rootpw\n"), ("New password: ", "leopw2\n")], expect_rc=0)
    s(["-u", "root", "role", "list"], stdin="rootpw\n", expect_rc=0)
    s(["-u", "alice", "set", "/d"], stdin="alicepw\nvalue from stdin\n", expect_rc=0)
    s(["-u", "alice:alicepw", "get", "/d"], expect_rc=0)
    s(["-u", "root", "user", "list"], expect_rc=1)  # empty stdin: empty password
    s(["-u", "root", "user", "add", "mia"], stdin="rootpw\nmiapw\n", expect_rc=0)
    s(["-u", "mia:miapw", "get", "/d"], expect_rc=4)
    # Auth off again.
    s(["-u", "alice:alicepw", "auth", "disable"], expect_rc=1)
    s(ROOT + ["auth", "disable"], expect_rc=0)
    s(["auth", "disable"], expect_rc=1)
    s(["user", "list"], expect_rc=0)
    s(["role", "get", "guest"], expect_rc=0)
    s(["get", "/d"], expect_rc=0)


def main():
    def run(ref, others):
        results = harness.Results()
        sequence(Comparison(results, ref, others))
        results.finish()
    harness.run_kvctl_sides(Target, run)

if __name__ == "__main__":
    main()
