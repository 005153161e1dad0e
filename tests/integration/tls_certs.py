"""tls_certs: test certificates made at test time with GnuTLS's certtool (never checked in).

    from tls_certs import CertFactory
    certs = CertFactory(t.tmp)              # makes a CA on first use
    server = certs.server()                 # CN and SAN localhost, IP 127.0.0.1
    worker = certs.client("worker-1")       # CN worker-1, TLS client purpose
    expired = certs.client("worker-1", expired=True)
    rogue = CertFactory(t.tmp, "rogue").client("worker-1")   # from a CA nobody trusts

Each certificate is a Cert with .cert and .key paths (PEM). ECDSA P-256 keys keep generation fast.
"""

import http.client
import os
import socket
import ssl
import subprocess

from entropy_test import Http, require_tool


def require_certtool(t=None):
    """certtool makes the certificates: without it the file (or with t, that test) is skipped, or
    fails as root (CI), where scripts/install-deps.sh installed it."""
    require_tool("certtool", "gnutls-bin", t)


class Cert:
    def __init__(self, cert, key, name):
        self.cert, self.key, self.name = cert, key, name


def _run(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr.strip()}")


class CertFactory:
    """A CA in its own directory, and the certificates it signs."""

    def __init__(self, tmp, name="ca", days=2):
        self.dir = os.path.join(tmp, f"pki-{name}")
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.serial = 1
        self.ca = self._make(name, [f'cn = "Entropy test CA {name}"', "ca", "cert_signing_key",
                                    f"expiration_days = {days}"], ca=None)

    @property
    def ca_file(self):
        return self.ca.cert

    def _key(self, stem):
        path = os.path.join(self.dir, f"{stem}.key")
        _run(["certtool", "--generate-privkey", "--key-type=ecdsa", "--outfile", path])
        os.chmod(path, 0o600)
        return path

    def _make(self, stem, template_lines, ca):
        key = self._key(stem)
        tmpl = os.path.join(self.dir, f"{stem}.tmpl")
        self.serial += 1
        with open(tmpl, "w") as f:
            f.write("\n".join(template_lines + [f"serial = {self.serial}"]) + "\n")
        out = os.path.join(self.dir, f"{stem}.pem")
        if ca is None:
            argv = ["certtool", "--generate-self-signed", "--load-privkey", key]
        else:
            argv = ["certtool", "--generate-certificate", "--load-privkey", key,
                    "--load-ca-certificate", ca.cert, "--load-ca-privkey", ca.key]
        _run(argv + ["--no-text", "--template", tmpl, "--outfile", out])
        return Cert(out, key, stem)

    @staticmethod
    def _validity(expired, not_yet_valid):
        if expired:
            return ['activation_date = "2019-01-01 00:00:00"', 'expiration_date = "2020-01-01 00:00:00"']
        if not_yet_valid:
            return ['activation_date = "2099-01-01 00:00:00"', 'expiration_date = "2100-01-01 00:00:00"']
        return ["expiration_days = 1"]

    def server(self, cn="localhost", stem=None):
        lines = [f'cn = "{cn}"', 'dns_name = "localhost"', 'ip_address = "127.0.0.1"', "tls_www_server",
                 "signing_key"] + self._validity(False, False)
        return self._make(stem or f"server-{self.serial}", lines, self.ca)

    def client(self, cn, sans=(), expired=False, not_yet_valid=False, server_only=False, stem=None):
        """A client certificate with subject CN cn and DNS SANs sans."""
        lines = [f'cn = "{cn}"'] + [f'dns_name = "{s}"' for s in sans]
        lines += ["tls_www_server" if server_only else "tls_www_client", "signing_key"]
        lines += self._validity(expired, not_yet_valid)
        return self._make(stem or f"client-{cn}-{self.serial}", lines, self.ca)


class TlsHttp(Http):
    """entropy_test.Http over TLS: verifies the server against ca_file, presents cert if given."""

    def __init__(self, host, port, ca_file, cert=None, token=None, timeout=10.0):
        super().__init__(host, port, token=token, timeout=timeout)
        self.context = ssl.create_default_context(cafile=ca_file)
        if cert is not None:
            self.context.load_cert_chain(cert.cert, cert.key)

    def raw(self, method, path, body=None, headers=None):
        hdrs = dict(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                        context=self.context)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def peer_certificate(self):
        """The DER certificate the server presented on the current connection (connects if needed)."""
        if self.conn is None:
            self.raw("GET", "/healthz")
        if self.conn is None:
            self.raw("GET", "/healthz")
        return self.conn.sock.getpeercert(binary_form=True)


def pem_to_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())
