#!/usr/bin/env python3
"""DNS SRV discovery end to end, with a real DNS server: dnsmasq runs in the client namespace of a
netns.Net (members n0 n1 n2, a proxy node, the client), listening on the client's address, port
53, with no upstream (--no-resolv --no-hosts, --local=/test/: other names under .test are
NXDOMAIN) and the records below; every node namespace the test runs a process in gets an
/etc/netns/<namespace>/resolv.conf naming it (`ip netns exec` bind-mounts that file over
/etc/resolv.conf), so that kvd, etcd, kvctl and etcdctl ask this server, and only it.

    example.test  _etcd-server._tcp  -> nX.example.test:2380  (http records only)
                  _etcd-client._tcp  -> nX.example.test:2379
                  nX.example.test    -> node nX's address
    named.test    _etcd-server._tcp     -> decoy0/decoy1.named.test:2480 (no member's address)
                  _etcd-server-kv._tcp  -> n0.example.test:2480
    ssl.test      _etcd-server-ssl._tcp -> nX.example.test:2390  (https records only)
    empty.test    no record at all

Checked, kvd against etcd 3.4's rules (pkg/srv/srv.go GetCluster, embed/config.go
GetDNSClusterNames and PeerURLsMapAndToken, etcdmain/etcd.go startProxy):
  - three kvd members started with --discovery-srv example.test (no --initial-cluster) form one
    cluster: the same cluster id on all, /v2/members lists the three with the peer URLs from DNS
    (http://nX.example.test:2380) and, once published, their own names; a write on n0 is read
    (quorum) on n1. Each member asked for _etcd-server-ssl._tcp and _etcd-server._tcp.
  - a kvd proxy with --discovery-srv and no cluster file learns the members from the same
    records, proxies a write that a member then reads, and writes the DNS peer URLs to its
    cluster file.
  - --discovery-srv-name kv: a member of named.test uses the _etcd-server-kv._tcp records (and
    does not ask for the plain ones); without it the decoys are used and the member is refused.
  - refusals, each with exit 1 and nothing written to the data dir: a member not in the records
    (`cannot find local etcd member "n3" in SRV records`, on example.test and, side by side with
    etcd, on ssl.test); a domain without records (the error names the service queried, etcd:
    `error querying DNS SRV records for _etcd-server-ssl ...`); --discovery-srv with
    --initial-cluster (`multiple discovery or bootstrap flags are set. Choose one of
    "initial-cluster", "discovery" or "discovery-srv"`), for kvd and etcd.
  - kvctl and etcdctl v2 with --discovery-srv example.test (endpoints from _etcd-client-ssl._tcp
    and _etcd-client._tcp) list the same keys of the kvd cluster. etcdctl v2 drops http://
    endpoints found by SRV unless --insecure-discovery is given ("ignoring discovered insecure
    endpoint ..."; it then falls back to 127.0.0.1:2379 and fails, exit 2): the listing is
    compared with --insecure-discovery, and without it kvctl must behave as etcdctl does (the
    same exit status, the same "ignoring" lines).
  - https-only records (ssl.test, peer TLS from tests/e2e/tls_certs.py): etcd 3.4 forms its
    cluster from them, peer URLs https://nX.example.test:2390, and so does kvd with the same
    flags.
  - dnsmasq's query log shows the SRV queries each of them made (the real server answered).

etcd 3.4's bug, checked side by side. GetDNSClusterNames appends the http (_etcd-server._tcp)
records only when their lookup FAILED (`if httpCerr != nil`, inverted), and returns the https
(_etcd-server-ssl._tcp) lookup's error. With http records only, etcd 3.4 therefore asks for both
services, gets the three http records, drops them and exits 1 with (observed on 3.4.23)
    C | etcdmain: error setting up initial cluster: error querying DNS SRV records for
    _etcd-server-ssl lookup _etcd-server-ssl._tcp.example.test on <dns>:53: no such host
and its proxy likewise. etcd 3.5 fixed the condition (`httpCerr == nil`, errors combined, a
member refused only when no record was found at all); kvd does as 3.5: the same flags and records
form the kvd cluster above. With https records only (ssl.test), etcd 3.4 works.

Needs root, iproute2, iptables (netns.py) and dnsmasq (Debian's dnsmasq-base): exit 77, a skip,
without them. etcd and etcdctl (Debian's etcd-server, etcd-client) are the reference: their
checks are left out, with a note, when they are not installed. Every wait is a poll with a
deadline; none sleeps to synchronise. Namespaces, dnsmasq and the resolv.conf files are removed
also when a check fails or the run is interrupted (SIGTERM); the resolv.conf files of an earlier
run that was killed are removed at the start, as netns removes its namespaces.
"""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
import nscluster  # noqa: E402  (puts tests/e2e on the path)
import harness  # noqa: E402
import tls_certs  # noqa: E402

R = harness.Results()

DNSMASQ = "/usr/sbin/dnsmasq"
KVCTL_BIN = os.environ.get("KVCTL_BIN", "kvctl")
NETNS_ETC = "/etc/netns"  # `ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc/*

DOMAIN = "example.test"       # http records of the kvd cluster, client records
NAMED_DOMAIN = "named.test"   # decoys under the plain name, the real record under SRV_NAME
SRV_NAME = "kv"
SSL_DOMAIN = "ssl.test"       # https records only
EMPTY_DOMAIN = "empty.test"   # no record
TOKEN = "srv-token"

CLIENT_PORT = nscluster.CLIENT_PORT  # 2379
PEER_PORT = nscluster.PEER_PORT      # 2380
NAMED_CLIENT_PORT, NAMED_PEER_PORT = 2479, 2480
TLS_CLIENT_PORT, TLS_PEER_PORT = 2389, 2390

EXIT_S = 10.0     # a refused start exits within this (a DNS answer missing costs 2 x 1 s)
FORM_S = 20.0     # a member answers /health within this
PUBLISH_S = 15.0  # members' names published
TOOL_S = 20.0     # one kvctl/etcdctl run

CONFLICT = ('multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", '
            '"discovery" or "discovery-srv"')


def cannot_find(name):
    return f'cannot find local etcd member "{name}" in SRV records'


class Clock:
    def __init__(self):
        self.t0 = self.t = time.monotonic()

    def step(self, text):
        now = time.monotonic()
        print(f"{time.strftime('%H:%M:%S')} [{now - self.t0:5.1f} s] {text} "
              f"({now - self.t:.2f} s)", flush=True)
        self.t = now


CLOCK = Clock()


# --- DNS: a minimal client for the checks, dnsmasq, resolv.conf files ---

def _encode_name(name):
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"


def _read_name(data, off):
    """(name, offset after it) of the possibly compressed name at data[off:]."""
    labels, end, hops = [], None, 0
    while True:
        n = data[off]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | data[off + 1]
            hops += 1
            if hops > 32:
                raise ValueError("DNS name pointer loop")
            continue
        if n == 0:
            return ".".join(labels), (end if end is not None else off + 1)
        labels.append(data[off + 1:off + 1 + n].decode())
        off += 1 + n


def srv_query(server, name, timeout=0.5):
    """Asks server (UDP port 53, from the calling thread's namespace) for the SRV records of
    name: (rcode, [(priority, weight, port, target), ...]). Raises OSError on no answer."""
    qid = int.from_bytes(os.urandom(2), "big")
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) \
        + struct.pack("!HH", 33, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query, (server, 53))
        while True:
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                break
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", data[:12])
    off = 12
    for _ in range(qd):
        off = _read_name(data, off)[1] + 4
    records = []
    for _ in range(an):
        off = _read_name(data, off)[1]
        rtype, _, _, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        if rtype == 33:
            prio, weight, port = struct.unpack("!HHH", data[off:off + 6])
            records.append((prio, weight, port, _read_name(data, off + 6)[0]))
        off += rdlen
    return flags & 0xF, sorted(records, key=lambda r: r[3])


def dns_records(net):
    """dnsmasq's record options (see the module docstring)."""
    subnet = net.address(netns.CLIENT).rsplit(".", 1)[0]
    opts = []
    for m in net.members:
        host = f"{m}.{DOMAIN}"
        opts += [f"--host-record={host},{net.address(m)}",
                 f"--srv-host=_etcd-server._tcp.{DOMAIN},{host},{PEER_PORT},0,0",
                 f"--srv-host=_etcd-client._tcp.{DOMAIN},{host},{CLIENT_PORT},0,0",
                 f"--srv-host=_etcd-server-ssl._tcp.{SSL_DOMAIN},{host},{TLS_PEER_PORT},0,0"]
    for i in range(2):
        decoy = f"decoy{i}.{NAMED_DOMAIN}"
        opts += [f"--address=/{decoy}/{subnet}.{98 + i}",
                 f"--srv-host=_etcd-server._tcp.{NAMED_DOMAIN},{decoy},{NAMED_PEER_PORT},0,0"]
    opts.append(f"--srv-host=_etcd-server-{SRV_NAME}._tcp.{NAMED_DOMAIN},"
                f"{net.members[0]}.{DOMAIN},{NAMED_PEER_PORT},0,0")
    return opts


class Dnsmasq:
    """dnsmasq in the client namespace on the client's address, port 53, in the foreground
    (`ip netns exec` execs it in place: proc.pid is dnsmasq's), logging every query."""

    QUERY = re.compile(r"dnsmasq\[\d+\]: query\[(\w+)\] (\S+) from (\S+)")

    def __init__(self, net, workdir):
        self.net = net
        self.addr = net.address(netns.CLIENT)
        self.log_path = os.path.join(workdir, "dnsmasq.log")
        self.out_path = os.path.join(workdir, "dnsmasq.out")
        self.args = [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                     "--no-hosts", f"--listen-address={self.addr}", "--bind-interfaces",
                     "--port=53", "--pid-file=", "--user=root", "--group=root",
                     "--local=/test/", "--log-queries", f"--log-facility={self.log_path}",
                     *dns_records(net)]
        self.proc = None

    def start(self):
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(self.net.exec_prefix(netns.CLIENT) + self.args,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def queries(self, since=0):
        """The (type, name, source address) of the queries logged, from the since-th on."""
        return [m.groups() for m in self.QUERY.finditer(self.log())][since:]

    def mark(self):
        """The number of queries logged so far (dnsmasq writes a query's line before it answers,
        so a process that got its answers has its lines in the file)."""
        return len(self.queries())

    def asked(self, since, name, source, qtype="SRV"):
        return (qtype, name, source) in set(self.queries(since))


def remove_stale_resolv_confs():
    """Removes /etc/netns/<namespace> of earlier runs whose process is gone (killed before their
    cleanup), as netns.remove_stale does for the namespaces."""
    if not os.path.isdir(NETNS_ETC):
        return
    for entry in os.listdir(NETNS_ETC):
        m = re.match(re.escape(netns.NS_PREFIX) + r"(\d+)-", entry)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(os.path.join(NETNS_ETC, entry), ignore_errors=True)


class ResolvConfs:
    """/etc/netns/<namespace>/resolv.conf naming dnsmasq, for every node namespace of net."""

    def __init__(self, net, server):
        self.net = net
        self.server = server
        self.made_etc = False
        self.dirs = [os.path.join(NETNS_ETC, net.ns[node]) for node in net.nodes]

    def write(self):
        self.made_etc = not os.path.isdir(NETNS_ETC)
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "resolv.conf"), "w") as f:
                f.write(f"nameserver {self.server}\noptions timeout:1 attempts:2\n")
        return self

    def remove(self):
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        if self.made_etc:
            try:
                os.rmdir(NETNS_ETC)  # only if nothing else put a file there meanwhile
            except OSError:
                pass

    def left(self):
        return [d for d in self.dirs if os.path.exists(d)]


# --- servers ---

class SrvMember(harness.Member):
    """A kvd or etcd member in a node of the net, bootstrapped by --discovery-srv (no
    --initial-cluster unless in extra_args), with token TOKEN; the same flags for both kinds."""

    def __init__(self, kind, net, node, workdir, name=None, domain=DOMAIN, srv_name=None,
                 extra_args=(), client_port=CLIENT_PORT, peer_port=PEER_PORT,
                 peer_scheme="http"):
        os.makedirs(workdir, exist_ok=True)
        super().__init__(kind, name=name or node, workdir=workdir, extra_args=extra_args,
                         client_port=client_port, peer_port=peer_port, host=net.address(node),
                         command_prefix=net.exec_prefix(node), peer_scheme=peer_scheme)
        self.node = node
        self.domain = domain
        self.srv_name = srv_name

    def args(self):
        a = [harness.KVD_BIN if self.kind == "kvd" else harness.ETCD_BIN,
             "--name", self.name, "--data-dir", self.data_dir,
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster-token", TOKEN, "--discovery-srv", self.domain]
        if self.srv_name:
            a += ["--discovery-srv-name", self.srv_name]
        if self.kind == "etcd":
            a += ["--enable-v2"]
        return a + self.extra_args


class SrvProxy(harness.Proxy):
    """A proxy (--proxy on) in the proxy node, its members from --discovery-srv only."""

    def __init__(self, kind, net, workdir, domain=DOMAIN):
        os.makedirs(workdir, exist_ok=True)
        super().__init__(kind, None, workdir, host=net.address(netns.PROXY), port=CLIENT_PORT,
                         command_prefix=net.exec_prefix(netns.PROXY))
        self.domain = domain

    def args(self):
        return [harness.KVD_BIN if self.kind == "kvd" else harness.ETCD_BIN, "--proxy", "on",
                "--data-dir", self.data_dir, "--listen-client-urls", self.url,
                "--discovery-srv", self.domain]


def untouched(path):
    """Whether path is absent or an empty directory; else what it holds."""
    if not os.path.exists(path):
        return True, "absent"
    found = []
    for root, dirs, files in os.walk(path):
        found += [os.path.relpath(os.path.join(root, x), path) for x in dirs + files]
    return not found, (f"holds {found[:6]}" if found else "empty")


def line_with(log, needle):
    return next((ln.strip() for ln in log.splitlines() if needle in ln), None)


def refused(proc, what, needles, exit_code=1, data_dir=None):
    """Starts proc (an SrvMember or SrvProxy), which must exit (bounded) with exit_code, its
    output holding every needle, with nothing written to data_dir (default: a member's data
    dir; None for a proxy, whose data dir etcd creates before the lookup). Returns the log."""
    label = f"{proc.kind}: {what}"
    proc.spawn()
    done = harness.wait_for(proc.exited, EXIT_S)
    if not done:
        proc.kill()
    log = proc.read_log()
    rc = proc.proc.returncode
    tail = "\n    ".join(log.strip().splitlines()[-6:])
    R.check(done and rc == exit_code,
            f"{label}: exits {exit_code} (" + (f"got {rc}" if done else
                                                f"still running after {EXIT_S:g} s")
            + f"); log tail:\n    {tail}")
    for needle in needles:
        R.check(needle in log, f"{label}: the output says {needle!r}; log tail:\n    {tail}")
    if data_dir is not None:
        ok, state = untouched(data_dir)
        R.check(ok, f"{label}: nothing written to the data dir {data_dir} ({state})")
    print(f"  {label}: exit {rc if done else 'none'}: "
          f"{line_with(log, needles[0]) if needles else ''}", flush=True)
    return log


def stop_all(procs):
    for p in procs:
        try:
            p.kill()
        except Exception as e:  # noqa: BLE001 - the others still get killed
            print(f"kill {getattr(p, 'name', p)}: {e}", file=sys.stderr)


def cluster_id(m):
    status, hdrs, _ = harness.try_request("GET", m.url + "/v2/keys/", timeout=2.0)
    return hdrs.get("x-etcd-cluster-id") if status == 200 else None


def members_of(m):
    status, j, _ = harness.get_json(m, "/v2/members", timeout=2.0, catch=True)
    return j.get("members") if status == 200 and isinstance(j, dict) else None


def check_formed(label, members, scheme, peer_port):
    """The members (started) form one cluster from the records: all healthy, one cluster id,
    /v2/members the three DNS peer URLs with the real names, a write on the first read (quorum)
    on the second. Returns whether they formed at all."""
    for m in members:
        try:
            m.wait_ready(FORM_S)
        except RuntimeError as e:
            R.check(False, f"{label}: {m.name} answers /health within {FORM_S:g} s: {e}")
            return False
    CLOCK.step(f"{label}: the three members answer /health")
    ids = {m.name: cluster_id(m) for m in members}
    R.check(len(set(ids.values())) == 1 and None not in ids.values(),
            f"{label}: one cluster id on every member ({ids})")
    want_urls = {m.name: [f"{scheme}://{m.name}.{DOMAIN}:{peer_port}"] for m in members}
    seen = {}

    def published():
        for m in members:
            got = members_of(m)
            seen[m.name] = got
            if got is None or {x.get("name"): x.get("peerURLs") for x in got} != want_urls:
                return False
        return True
    ok = harness.wait_for(published, PUBLISH_S, interval=0.1)
    R.check(ok, f"{label}: /v2/members on every member lists the three with the peer URLs "
                f"from DNS and their own names, within {PUBLISH_S:g} s (want {want_urls}; "
                f"got {seen})")
    if ok:
        print(f"  {label}: members {json.dumps(seen[members[0].name])}", flush=True)
    key = "/srv/" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    value = "written-on-" + members[0].name
    status, _, body = harness.put(members[0], key, value, catch=True)
    R.check(status in (200, 201), f"{label}: a write on {members[0].name} ({status} {body!r})")
    status, _, body = harness.get(members[1], key, quorum=True, catch=True)
    got = json.loads(body).get("node", {}).get("value") if status == 200 else None
    R.check(got == value, f"{label}: {members[1].name} reads the write made on "
                          f"{members[0].name} ({status} {body!r})")
    return True


# --- the scenario, in a thread of the client namespace ---

def check_dns(net, dns):
    """dnsmasq answers (bounded wait), with the records the test relies on."""
    answers = {}

    def answered():
        if dns.proc.poll() is not None:
            return True
        answers["server"] = srv_query(dns.addr, f"_etcd-server._tcp.{DOMAIN}")
        return True
    harness.wait_for(answered, 10.0, interval=0.1)
    if not R.check("server" in answers, f"dnsmasq answers on {dns.addr}:53 within 10 s "
                                        f"(exit {dns.proc.poll()}; output "
                                        f"{open(dns.out_path, errors='replace').read()!r})"):
        return False
    want = [(0, 0, PEER_PORT, f"{m}.{DOMAIN}") for m in net.members]
    R.check(answers["server"] == (0, want),
            f"_etcd-server._tcp.{DOMAIN}: the three http records ({answers['server']})")
    ssl = srv_query(dns.addr, f"_etcd-server-ssl._tcp.{DOMAIN}")
    R.check(ssl == (3, []), f"_etcd-server-ssl._tcp.{DOMAIN}: NXDOMAIN, no https record ({ssl})")
    named = srv_query(dns.addr, f"_etcd-server-{SRV_NAME}._tcp.{NAMED_DOMAIN}")
    R.check(named == (0, [(0, 0, NAMED_PEER_PORT, f"n0.{DOMAIN}")]),
            f"_etcd-server-{SRV_NAME}._tcp.{NAMED_DOMAIN}: the one record ({named})")
    empty = srv_query(dns.addr, f"_etcd-server._tcp.{EMPTY_DOMAIN}")
    R.check(empty == (3, []), f"_etcd-server._tcp.{EMPTY_DOMAIN}: NXDOMAIN ({empty})")
    CLOCK.step(f"dnsmasq (pid {dns.proc.pid}) answers on {dns.addr}:53")
    return True


def etcd_refusals(net, dns, wd):
    """etcd 3.4 with the same flags: what it refuses and how (the reference messages)."""
    n0, dns_at = net.members[0], f"{dns.addr}:53"
    ssl_err = ("error setting up initial cluster: error querying DNS SRV records for "
               "_etcd-server-ssl lookup _etcd-server-ssl._tcp.{} on " + dns_at + ": no such host")

    mark = dns.mark()
    m = SrvMember("etcd", net, n0, os.path.join(wd, "etcd-http-only"))
    refused(m, f"http records only ({DOMAIN}): etcd 3.4's inverted condition",
            [ssl_err.format(DOMAIN)], data_dir=m.data_dir)
    src = net.address(n0)
    R.check(dns.asked(mark, f"_etcd-server._tcp.{DOMAIN}", src)
            and dns.asked(mark, f"_etcd-server-ssl._tcp.{DOMAIN}", src),
            "etcd: the bug: it asked for both services and got the three http records, then "
            "dropped them (query log: _etcd-server-ssl._tcp and _etcd-server._tcp from "
            f"{src}: {dns.queries(mark)})")

    m = SrvMember("etcd", net, n0, os.path.join(wd, "etcd-empty"), domain=EMPTY_DOMAIN)
    refused(m, f"no record ({EMPTY_DOMAIN})", [ssl_err.format(EMPTY_DOMAIN)],
            data_dir=m.data_dir)

    m = SrvMember("etcd", net, netns.PROXY, os.path.join(wd, "etcd-n3"), name="n3",
                  domain=SSL_DOMAIN, client_port=TLS_CLIENT_PORT, peer_port=TLS_PEER_PORT)
    refused(m, f"a member not in the records ({SSL_DOMAIN})",
            ["error setting up initial cluster: " + cannot_find("n3")], data_dir=m.data_dir)

    m = SrvMember("etcd", net, n0, os.path.join(wd, "etcd-conflict"), extra_args=[
        "--initial-cluster", f"{n0}=http://{net.address(n0)}:{PEER_PORT}"])
    refused(m, "--discovery-srv with --initial-cluster",
            [f"error verifying flags, {CONFLICT}. See 'etcd --help'."], data_dir=m.data_dir)

    m = SrvMember("etcd", net, n0, os.path.join(wd, "etcd-named"), domain=NAMED_DOMAIN,
                  srv_name=SRV_NAME, client_port=NAMED_CLIENT_PORT, peer_port=NAMED_PEER_PORT)
    refused(m, f"--discovery-srv-name {SRV_NAME} (http records only: the same bug)",
            ["error querying DNS SRV records for _etcd-server-ssl-kv lookup "
             f"_etcd-server-ssl-kv._tcp.{NAMED_DOMAIN} on {dns_at}: no such host"],
            data_dir=m.data_dir)

    p = SrvProxy("etcd", net, os.path.join(wd, "etcd-proxy"))
    refused(p, f"proxy, http records only ({DOMAIN}): the same bug", [ssl_err.format(DOMAIN)])
    CLOCK.step("etcd's refusals observed")


def kvd_refusals(net, wd):
    n0 = net.members[0]
    m = SrvMember("kvd", net, netns.PROXY, os.path.join(wd, "kvd-n3"), name="n3")
    refused(m, f"a member not in the records ({DOMAIN})", [cannot_find("n3")],
            data_dir=m.data_dir)
    m = SrvMember("kvd", net, netns.PROXY, os.path.join(wd, "kvd-n3-ssl"), name="n3",
                  domain=SSL_DOMAIN, client_port=TLS_CLIENT_PORT, peer_port=TLS_PEER_PORT)
    refused(m, f"a member not in the records ({SSL_DOMAIN}, as etcd)", [cannot_find("n3")],
            data_dir=m.data_dir)
    m = SrvMember("kvd", net, n0, os.path.join(wd, "kvd-empty"), domain=EMPTY_DOMAIN)
    refused(m, f"no record ({EMPTY_DOMAIN})",
            ["error querying DNS SRV records for _etcd-server"], data_dir=m.data_dir)
    m = SrvMember("kvd", net, n0, os.path.join(wd, "kvd-conflict"), extra_args=[
        "--initial-cluster", f"{n0}=http://{net.address(n0)}:{PEER_PORT}"])
    refused(m, "--discovery-srv with --initial-cluster", [CONFLICT], data_dir=m.data_dir)
    CLOCK.step("kvd's refusals checked")


def kvd_proxy(net, dns, wd, members):
    mark = dns.mark()
    p = SrvProxy("kvd", net, os.path.join(wd, "kvd-proxy"))
    cluster_file = os.path.join(p.data_dir, "proxy", "cluster")
    R.check(not os.path.exists(cluster_file), "the proxy starts without a cluster file")
    try:
        try:
            p.start(want_endpoints=len(members), timeout=FORM_S)
        except RuntimeError as e:
            R.check(False, f"kvd proxy: lists the {len(members)} members' endpoints, learnt "
                           f"from SRV, within {FORM_S:g} s: {e}")
            return
        eps = sorted(p.endpoints() or [])
        R.check(eps == sorted(m.url for m in members),
                f"kvd proxy: its endpoints are the members' client URLs ({eps})")
        status, _, body = harness.put(p, "/srv/via-proxy", "through-the-proxy", catch=True)
        R.check(status in (200, 201), f"kvd proxy: a write through it ({status} {body!r})")
        status, _, body = harness.get(members[2], "/srv/via-proxy", quorum=True, catch=True)
        R.check(status == 200 and b"through-the-proxy" in body,
                f"kvd proxy: {members[2].name} reads the write made through the proxy "
                f"({status} {body!r})")
        want = sorted(f"http://{m.name}.{DOMAIN}:{PEER_PORT}" for m in members)
        got = {}

        def written():
            with open(cluster_file) as f:
                got["urls"] = sorted(json.load(f).get("PeerURLs") or [])
            return got["urls"] == want
        R.check(harness.wait_for(lambda: _quiet(written), 10.0, interval=0.1),
                f"kvd proxy: its cluster file holds the DNS peer URLs {want} ({got})")
        src = net.address(netns.PROXY)
        R.check(dns.asked(mark, f"_etcd-server-ssl._tcp.{DOMAIN}", src)
                and dns.asked(mark, f"_etcd-server._tcp.{DOMAIN}", src),
                f"kvd proxy: asked for _etcd-server-ssl._tcp and _etcd-server._tcp "
                f"({dns.queries(mark)})")
    finally:
        p.kill()
    CLOCK.step("kvd proxy checked")


def _quiet(fn):
    try:
        return fn()
    except (OSError, ValueError):
        return False


def tool_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    return env


def run_tool(net, tool, args):
    try:
        p = subprocess.run(net.exec_prefix(netns.CLIENT) + [tool, *args], capture_output=True,
                           text=True, env=tool_env(), timeout=TOOL_S)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return None, "", f"no exit within {TOOL_S:g} s"


def clients(net, dns, members):
    """kvctl against etcdctl v2, both with --discovery-srv DOMAIN, on the kvd cluster."""
    have_etcdctl = os.access(harness.ETCDCTL_BIN, os.X_OK)
    if not have_etcdctl:
        print(f"note: no etcdctl at {harness.ETCDCTL_BIN}: kvctl checked alone")
    tools = [("kvctl", KVCTL_BIN)] + ([("etcdctl", harness.ETCDCTL_BIN)] if have_etcdctl else [])
    src = net.address(netns.CLIENT)
    listing, plain = {}, {}
    for label, tool in tools:
        mark = dns.mark()
        listing[label] = run_tool(net, tool, ["--discovery-srv", DOMAIN, "--insecure-discovery",
                                              "ls", "/"])
        rc, out, err = listing[label]
        R.check(rc == 0 and "/srv" in out.split(),
                f"{label} --discovery-srv {DOMAIN} --insecure-discovery ls /: lists the "
                f"cluster's keys (exit {rc}, out {out!r}, err {err!r})")
        R.check(dns.asked(mark, f"_etcd-client-ssl._tcp.{DOMAIN}", src)
                and dns.asked(mark, f"_etcd-client._tcp.{DOMAIN}", src),
                f"{label}: asked for _etcd-client-ssl._tcp and _etcd-client._tcp "
                f"({dns.queries(mark)})")
        plain[label] = run_tool(net, tool, ["--discovery-srv", DOMAIN, "ls", "/"])
        print(f"  {label}: with --insecure-discovery: exit {rc}, {out.split()}; without: "
              f"exit {plain[label][0]}, stderr {plain[label][2].strip()[:300]!r}", flush=True)
    if have_etcdctl:
        R.check(listing["kvctl"][:2] == listing["etcdctl"][:2],
                f"kvctl and etcdctl (--insecure-discovery) list the same keys: "
                f"{listing['kvctl'][:2]} vs {listing['etcdctl'][:2]}")
        ignoring = [f'ignoring discovered insecure endpoint "http://{m.name}.{DOMAIN}.:'
                    f'{CLIENT_PORT}"' for m in members]
        for label in ("etcdctl", "kvctl"):
            rc, _, err = plain[label]
            missing = [x for x in ignoring if x not in err]
            R.check(not missing, f"{label} without --insecure-discovery: ignores the http "
                                 f"endpoints from SRV as etcdctl v2 does (missing {missing}; "
                                 f"stderr {err!r})")
        R.check(plain["kvctl"][0] == plain["etcdctl"][0],
                f"without --insecure-discovery kvctl exits as etcdctl does (kvctl "
                f"{plain['kvctl'][0]}, etcdctl {plain['etcdctl'][0]})")
    CLOCK.step("kvctl and etcdctl compared")


def kvd_named(net, dns, wd):
    """--discovery-srv-name selects the suffixed records; the plain ones are decoys."""
    n0 = net.members[0]
    m = SrvMember("kvd", net, n0, os.path.join(wd, "kvd-named-plain"), domain=NAMED_DOMAIN,
                  client_port=NAMED_CLIENT_PORT, peer_port=NAMED_PEER_PORT)
    refused(m, f"{NAMED_DOMAIN} without --discovery-srv-name (decoys only)", [cannot_find(n0)],
            data_dir=m.data_dir)
    mark = dns.mark()
    m = SrvMember("kvd", net, n0, os.path.join(wd, "kvd-named"), domain=NAMED_DOMAIN,
                  srv_name=SRV_NAME, client_port=NAMED_CLIENT_PORT, peer_port=NAMED_PEER_PORT)
    try:
        m.spawn()
        try:
            m.wait_ready(FORM_S)
        except RuntimeError as e:
            R.check(False, f"kvd --discovery-srv-name {SRV_NAME}: the member starts: {e}")
            return
        want = [{"name": n0, "peerURLs": [f"http://{n0}.{DOMAIN}:{NAMED_PEER_PORT}"]}]
        seen = {}

        def published():
            got = members_of(m)
            seen["members"] = got
            return got is not None and \
                [{"name": x.get("name"), "peerURLs": x.get("peerURLs")} for x in got] == want
        R.check(harness.wait_for(published, PUBLISH_S, interval=0.1),
                f"kvd --discovery-srv-name {SRV_NAME}: one member, from the "
                f"_etcd-server-{SRV_NAME}._tcp record ({want}; got {seen})")
        status, _, body = harness.put(m, "/named", "yes", catch=True)
        R.check(status in (200, 201),
                f"kvd --discovery-srv-name: takes a write ({status} {body!r})")
        src = net.address(n0)
        R.check(dns.asked(mark, f"_etcd-server-ssl-{SRV_NAME}._tcp.{NAMED_DOMAIN}", src)
                and dns.asked(mark, f"_etcd-server-{SRV_NAME}._tcp.{NAMED_DOMAIN}", src)
                and not dns.asked(mark, f"_etcd-server._tcp.{NAMED_DOMAIN}", src),
                f"kvd --discovery-srv-name {SRV_NAME}: asked for the suffixed services, not the "
                f"plain ones ({dns.queries(mark)})")
    finally:
        m.kill()
    CLOCK.step("--discovery-srv-name checked")


def tls_clusters(net, wd, have_etcd):
    """https records only (SSL_DOMAIN): etcd 3.4 forms its cluster, and kvd with the same flags."""
    pki = tls_certs.Pki(os.path.join(wd, "pki"))
    sans = [f"{m}.{DOMAIN}" for m in net.members] + [net.address(m) for m in net.members]
    cert, key = pki.issue("peer", sans=sans)
    tls = ["--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", pki.ca,
           "--peer-client-cert-auth"]
    for kind in (["etcd"] if have_etcd else []) + ["kvd"]:
        members = [SrvMember(kind, net, node, os.path.join(wd, f"{kind}-tls"), domain=SSL_DOMAIN,
                             extra_args=tls, client_port=TLS_CLIENT_PORT,
                             peer_port=TLS_PEER_PORT, peer_scheme="https")
                   for node in net.members]
        try:
            for m in members:
                m.spawn()
            check_formed(f"{kind} tls", members, "https", TLS_PEER_PORT)
        finally:
            stop_all(members)
        CLOCK.step(f"{kind}: cluster from https-only records checked")


def scenario(net, dns, wd):
    if not check_dns(net, dns):
        return
    have_etcd = harness.have_etcd()
    if have_etcd:
        etcd_refusals(net, dns, wd)
    else:
        print(f"note: no etcd at {harness.ETCD_BIN}: etcd's side left out")
    kvd_refusals(net, wd)

    mark = dns.mark()
    members = [SrvMember("kvd", net, node, os.path.join(wd, "kvd-cluster"))
               for node in net.members]
    try:
        for m in members:
            m.spawn()
        formed = check_formed(f"kvd ({DOMAIN}, http records only)", members, "http", PEER_PORT)
        for m in members:
            src = net.address(m.node)
            R.check(dns.asked(mark, f"_etcd-server-ssl._tcp.{DOMAIN}", src)
                    and dns.asked(mark, f"_etcd-server._tcp.{DOMAIN}", src),
                    f"kvd {m.name}: asked dnsmasq for _etcd-server-ssl._tcp and "
                    f"_etcd-server._tcp ({[q for q in dns.queries(mark) if q[2] == src]})")
        if formed:
            kvd_proxy(net, dns, wd, members)
            clients(net, dns, members)
        else:
            R.check(False, "kvd proxy and kvctl: not checked, the kvd cluster did not form")
        kvd_named(net, dns, wd)
    finally:
        stop_all(members)
    CLOCK.step("kvd cluster stopped")
    tls_clusters(net, wd, have_etcd)


def main():
    # SIGTERM then also removes dnsmasq and the resolv.conf files.
    netns.start_test(None if os.access(DNSMASQ, os.X_OK)
                     else f"no dnsmasq at {DNSMASQ} (apt-get install dnsmasq-base)")
    print(f"binaries: {harness.KVD_BIN} {KVCTL_BIN}; reference {harness.ETCD_BIN}", flush=True)
    remove_stale_resolv_confs()
    wd = harness.new_workdir("kvd-srv-")
    dns = confs = None
    try:
        with netns.Net(3, proxy=True) as net:
            confs = ResolvConfs(net, net.address(netns.CLIENT))
            try:
                confs.write()
                dns = Dnsmasq(net, wd).start()
                try:
                    net.run_in(scenario, net, dns, wd)
                finally:
                    dns.stop()
                    print(f"dnsmasq: {len(dns.queries())} queries logged, "
                          f"{sum(1 for q in dns.queries() if q[0] == 'SRV')} of them SRV",
                          flush=True)
            finally:
                confs.remove()
    finally:
        harness.remove_workdir(wd, R)
    left = set(netns.namespaces()) & {net.bridge_ns, *net.ns.values()}
    R.check(not left, f"no namespace of the net is left: {sorted(left)}")
    R.check(not confs.left(), f"no /etc/netns file of the run is left: {confs.left()}")
    R.check(dns.proc is None or dns.proc.poll() is not None, "dnsmasq is gone")
    CLOCK.step("done")
    R.finish()


if __name__ == "__main__":
    main()
