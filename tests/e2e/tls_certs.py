"""A throw-away PKI for the TLS tests, made with the `openssl` command (OpenSSL 3.0) and the
standard library: one CA per Pki, leaves it signs (server and/or client, IP and DNS SANs, valid
or already expired) and CRLs of the leaves it revoked. ECDSA P-256 keys (fast to make), PEM
files, unencrypted keys.

    pki = tls_certs.Pki(workdir)                      # workdir/ca.pem, workdir/ca-key.pem
    cert, key = pki.issue("server")                   # 127.0.0.1 and localhost, both usages
    old, old_key = pki.issue("old", expired=True)     # notAfter yesterday
    crl = pki.revoke(cert)                            # workdir/ca-crl.pem

The CA keeps `openssl ca`'s database in <dir>/<name>-db/ (the index of issued and revoked
certificates, the serial and CRL numbers), so leaves are issued with `openssl ca`, which, unlike
`openssl x509 -req` in 3.0, takes explicit validity dates and can revoke. Several Pki objects
may share a directory if their names differ, and so do the names of the leaves they issue
there (a leaf is <dir>/<leaf name>.pem). Not thread-safe per Pki.
"""
import datetime
import ipaddress
import os
import secrets
import subprocess

_CA_CONFIG = """\
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ ca ]
default_ca = this_ca
[ this_ca ]
dir = {db}
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir/issued
certificate = {cert}
private_key = {key}
default_md = sha256
default_days = 365
default_crl_days = 30
policy = any_name
unique_subject = no
email_in_dn = no
copy_extensions = none
[ any_name ]
commonName = supplied
organizationName = optional
"""


def _run(args):
    """Runs one openssl command; its chatter goes nowhere unless it fails, then it is raised."""
    p = subprocess.run(["openssl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({p.returncode}):\n"
                           f"{p.stderr.decode(errors='replace')}")


def _asn1_time(t):
    """openssl ca's -startdate/-enddate format (GeneralizedTime, UTC)."""
    return t.strftime("%Y%m%d%H%M%SZ")


def _is_ip(s):
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


class Pki:
    """A CA in `dirpath`: its certificate is <dir>/<name>.pem (the attribute `ca`), its key
    <dir>/<name>-key.pem; subject CN=<name>, valid for ten years from now."""

    def __init__(self, dirpath, name="ca"):
        self.dir = os.path.abspath(dirpath)
        self.name = name
        os.makedirs(self.dir, exist_ok=True)
        self.ca = os.path.join(self.dir, f"{name}.pem")
        self.ca_key = os.path.join(self.dir, f"{name}-key.pem")
        self.crl = os.path.join(self.dir, f"{name}-crl.pem")
        self._db = os.path.join(self.dir, f"{name}-db")
        os.makedirs(os.path.join(self._db, "issued"), exist_ok=True)
        open(os.path.join(self._db, "index.txt"), "w").close()
        # A random first serial, so that leaves of two CAs (almost surely) differ in serial.
        with open(os.path.join(self._db, "serial"), "w") as f:
            f.write(secrets.token_hex(8).upper() + "\n")
        with open(os.path.join(self._db, "crlnumber"), "w") as f:
            f.write("01\n")
        self._config = os.path.join(self._db, "openssl.cnf")
        with open(self._config, "w") as f:
            f.write(_CA_CONFIG.format(db=self._db, cert=self.ca, key=self.ca_key))
        _run(["req", "-config", self._config, "-x509", "-newkey", "ec",
              "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.ca_key,
              "-out", self.ca, "-subj", f"/CN={name}", "-extensions", "v3_ca",
              "-days", "3650", "-sha256", "-set_serial", "0x" + secrets.token_hex(8)])

    def issue(self, name, cn=None, sans=("127.0.0.1", "localhost"), server=True, client=True,
              days=365, expired=False):
        """A leaf signed by this CA: <dir>/<name>.pem and <dir>/<name>-key.pem, returned as
        (cert_path, key_path). `sans`: entries that parse as IP addresses become IP SANs, the
        others DNS SANs (none: no SAN extension at all). `server`/`client`: the extended key
        usages serverAuth/clientAuth (at least one). Valid from an hour ago for `days` days, or
        with `expired`, for `days` days up to yesterday."""
        if not (server or client):
            raise ValueError("a leaf needs serverAuth, clientAuth or both")
        cert = os.path.join(self.dir, f"{name}.pem")
        key = os.path.join(self.dir, f"{name}-key.pem")
        csr = os.path.join(self._db, f"{name}.csr")
        ext = os.path.join(self._db, f"{name}.ext")
        usages = [u for u, on in (("serverAuth", server), ("clientAuth", client)) if on]
        lines = ["[ leaf ]",
                 "basicConstraints = critical, CA:FALSE",
                 "keyUsage = critical, digitalSignature, keyEncipherment",
                 "extendedKeyUsage = " + ", ".join(usages),
                 "subjectKeyIdentifier = hash",
                 "authorityKeyIdentifier = keyid"]
        if sans:
            lines.append("subjectAltName = " + ", ".join(
                ("IP:" if _is_ip(s) else "DNS:") + s for s in sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        _run(["req", "-config", self._config, "-new", "-newkey", "ec",
              "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
              "-subj", f"/CN={cn or name}"])
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            not_after = now - datetime.timedelta(days=1)
        else:
            not_after = now + datetime.timedelta(days=days)
        not_before = (not_after - datetime.timedelta(days=days)) if expired \
            else now - datetime.timedelta(hours=1)
        _run(["ca", "-batch", "-config", self._config, "-notext", "-in", csr, "-out", cert,
              "-startdate", _asn1_time(not_before), "-enddate", _asn1_time(not_after),
              "-extfile", ext, "-extensions", "leaf"])
        return cert, key

    def revoke(self, cert_path):
        """Revokes a leaf of this CA and writes the CA's CRL (every leaf revoked so far), PEM,
        signed by the CA, valid 30 days: <dir>/<name>-crl.pem, whose path is returned."""
        _run(["ca", "-batch", "-config", self._config, "-revoke", cert_path])
        _run(["ca", "-batch", "-config", self._config, "-gencrl", "-out", self.crl])
        return self.crl
