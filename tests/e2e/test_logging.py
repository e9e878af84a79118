#!/usr/bin/env python3
"""--logger, --log-outputs, --log-level and PUT /config/local/log, as etcd 3.4.

  - --logger zap --log-outputs FILE,stderr: every line in the file (and on stderr) is one JSON
    object with etcd's fields (level, ts as ISO 8601 UTC with milliseconds, caller, msg);
  - --logger capnslog (the default): "2026-12-03 14:17:51.963815 I | message" lines;
  - --log-level warn: no info line after start-up;
  - bad settings exit non-zero before serving, with etcd's message: an unknown logger, an
    output that cannot be opened, an unknown level;
  - PUT /config/local/log side by side with etcd: statuses and bodies for a good level, a bad
    level, a body that is not JSON, another method; the new level takes effect at once.
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ZAP_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CAPNSLOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} [DIWEC] \| .+")


def zap_lines(R, text, where):
    lines = [line for line in text.splitlines() if line.strip()]
    bad = []
    for line in lines:
        try:
            j = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not (j.get("level") in ("debug", "info", "warn", "error", "fatal") and
                ZAP_TS.match(j.get("ts", "")) and isinstance(j.get("msg"), str) and
                re.match(r"^[\w/.-]+\.(cc|h):\d+$", j.get("caller", ""))):
            bad.append(line)
    R.check(lines and not bad, f"{where}: {len(lines)} lines, each a zap JSON object "
                               f"(bad: {bad[:2]})")
    return [json.loads(line) for line in lines if line not in bad]


def exits_with(R, args, text, workdir):
    m = harness.Member("kvd", name="bad", workdir=workdir, extra_args=args)
    p = subprocess.run(m.args(), capture_output=True, text=True, timeout=30)
    R.check(p.returncode != 0 and text in p.stdout + p.stderr,
            f"{' '.join(args)}: exit {p.returncode}, says {text!r}: {(p.stdout + p.stderr)[-200:]!r}")


def log_endpoint(R, workdir):
    kvd = harness.Member("kvd", name="k", workdir=workdir, extra_args=["--log-level", "error"])
    etcd = harness.Member("etcd", name="e", workdir=workdir)
    kvd.start()
    etcd.start()
    try:
        cases = [("PUT", b'{"Level":"DEBUG"}'), ("PUT", b'{"level":"info"}'),
                 ("PUT", b'{"Level":"nope"}'), ("PUT", b"xx"), ("PUT", b'{"Level":5}'),
                 ("GET", None), ("PUT", b'{"Level":"ERROR"}')]
        for method, body in cases:
            got = [harness.request(method, m.url + "/config/local/log", body=body)
                   for m in (kvd, etcd)]
            (ks, kh, kb), (es, eh, eb) = got
            R.check(ks == es and kb == eb and kh.get("content-type") == eh.get("content-type"),
                    f"{method} {body}: kvd {ks} {kb!r}, etcd {es} {eb!r}")
        # At level error an online backup logs nothing; at info it logs its line.
        harness.request("GET", kvd.url + "/kvd/backup")
        R.check("backup: sending" not in kvd.read_log(), "level error: no info line")
        harness.request("PUT", kvd.url + "/config/local/log", body=b'{"Level":"info"}')
        harness.request("GET", kvd.url + "/kvd/backup")
        R.check(harness.wait_for(lambda: "backup: sending" in kvd.read_log(), 10.0),
                "after PUT info, the same request logs its info line")
        R.check('globalLogLevel set to "INFO"' in kvd.read_log(), "the change is logged")
    finally:
        kvd.kill()
        etcd.kill()


def main():
    harness.require_etcd()
    R = harness.Results()
    workdir = harness.new_workdir("logging")
    try:
        out = os.path.join(workdir, "kvd.json.log")
        m = harness.Member("kvd", name="zap", workdir=workdir,
                           extra_args=["--logger", "zap", "--log-outputs", f"{out},stderr"])
        m.start()
        harness.put(m, "/a", "b")
        m.stop()
        with open(out) as f:
            lines = zap_lines(R, f.read(), "the --log-outputs file")
        R.check(any("serving clients" in j["msg"] for j in lines),
                "the file holds the start-up line")
        zap_lines(R, m.read_log(), "stderr")

        c = harness.Member("kvd", name="capns", workdir=workdir)
        c.start()
        c.stop()
        text = [line for line in c.read_log().splitlines() if line.strip()]
        R.check(text and all(CAPNSLOG.match(line) for line in text),
                f"capnslog lines ({[x for x in text if not CAPNSLOG.match(x)][:2]})")

        w = harness.Member("kvd", name="warn", workdir=workdir, extra_args=["--log-level", "warn"])
        w.start()
        harness.put(w, "/a", "b")
        w.stop()
        R.check(" I | " not in w.read_log(), "--log-level warn: no info lines")

        exits_with(R, ["--logger", "bogus"], 'unknown logger option "bogus"', workdir)
        exits_with(R, ["--logger", "zap", "--log-outputs", "/nonexistent/dir/x.log"],
                   'open sink "/nonexistent/dir/x.log"', workdir)
        exits_with(R, ["--log-level", "bogus"], "bogus", workdir)
        log_endpoint(R, workdir)
    finally:
        harness.remove_workdir(workdir)
    R.finish()


if __name__ == "__main__":
    main()
