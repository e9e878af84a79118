#!/usr/bin/env python3
"""Stream watches under bursts, against a real kvd member: 5,000 keys whose TTLs run out
together deliver 5,000 expire events to a recursive stream=true watcher, and its stream stays
open (a later write is delivered too). etcd delivers about a hundred of them and then nothing:
its watcher is dropped when its 100-event buffer is full. A client that stops reading is still
closed, once more than 4 MiB waits for it (http/types.h Exchange::kMaxQueuedBytes)."""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

R = harness.Results()
N = 5000


class StreamReader:
    """Reads a chunked stream watch's events on a thread of its own."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: kvd\r\n\r\n".encode())
        self.actions = []
        self.ended = False
        self.lock = threading.Lock()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line = line.strip()
                    if line.startswith(b"{"):
                        with self.lock:
                            self.actions.append(json.loads(line)["action"])
        except OSError:
            pass
        self.ended = True

    def count(self, action):
        with self.lock:
            return self.actions.count(action)


def main():
    m = harness.Member("kvd", "bursts").start()
    try:
        w = StreamReader(m.client_port, "/v2/keys/t?wait=true&recursive=true&stream=true")
        harness.wait_for(lambda: harness.get_json(m, "/v2/stats/store")[1]["watchers"] == 1, 10)
        for i in range(N):
            status, _, _ = harness.put(m, f"t/k{i}", "v", query="ttl=3")
            if status != 201:
                R.check(False, f"write {i}: {status}")
                break
        got = harness.wait_for(lambda: w.count("expire") >= N, 30)
        R.check(got, f"all {N} expire events delivered: {w.count('expire')}, sets "
                     f"{w.count('set')}")
        R.check(not w.ended, "the stream is still open after the burst")
        harness.put(m, "t/after", "1")
        R.check(harness.wait_for(lambda: w.count("set") == N + 1, 10),
                f"a later write is delivered too: {w.count('set')} sets")

        # A watcher that never reads: the server's socket buffers fill, then 4 MiB waits for it,
        # and the server closes the stream instead of buffering without bound.
        stuck = socket.create_connection(("127.0.0.1", m.client_port), timeout=60)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /v2/keys/s?wait=true&recursive=true&stream=true HTTP/1.1\r\n"
                      b"Host: kvd\r\n\r\n")
        harness.wait_for(lambda: harness.get_json(m, "/v2/stats/store")[1]["watchers"] >= 2, 10)
        value = "x" * 8192
        for i in range(2000):  # about 17 MB of events
            harness.put(m, f"s/k{i}", value)
        closed = harness.wait_for(
            lambda: harness.get_json(m, "/v2/stats/store")[1]["watchers"] == 1, 20)
        R.check(closed, "a watcher that stopped reading is closed (its watcher removed)")
        stuck.close()
        ok, status, body = harness.healthy(m)
        R.check(ok, f"the member is alive and healthy: {status} {body!r}")
    finally:
        m.cleanup()
    R.finish()


if __name__ == "__main__":
    main()
