"""A real nginx (Debian's package) with TLS on loopback, in front of a jupybot in the tests.

Its `server` blocks are the ones docs/deploy.md gives ("Behind nginx"), read from there with the
deployment's names replaced by the test's (ports, certificate paths, upstream): the documented
configuration is the tested one. nginx runs in the foreground (`daemon off`) as a child of the
test run, with its own prefix, pid file and temp folders under a temporary folder; it is ready
once its master has started a worker, which it does after binding its listening sockets.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness import ROOT, ChildProcess, free_port

__all__ = [
    "Certificate",
    "Nginx",
    "documented_nginx_config",
    "proxy_certificate",
    "replace_once",
]

DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# What docs/deploy.md names for a real deployment, each replaced once for the test.
DOC_UPSTREAM = "http://127.0.0.1:8080"
DOC_CERTIFICATE = "/etc/letsencrypt/live/jupybot.example.org/fullchain.pem"
DOC_KEY = "/etc/letsencrypt/live/jupybot.example.org/privkey.pem"


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise RuntimeError("nginx is not installed: run scripts/install-system-packages")
    return found


def documented_nginx_config(doc: str | None = None) -> str:
    """The ```nginx block of docs/deploy.md's "Behind nginx" section."""
    text = DEPLOY_DOC.read_text() if doc is None else doc
    section = text.split("\n## Behind nginx\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert match, "docs/deploy.md: no ```nginx block under ## Behind nginx"
    return match.group(1)


def replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    assert count == 1, f"docs/deploy.md's block has {old!r} {count} times, not once"
    return text.replace(old, new)


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost; clients trust C{path}."""

    path: Path
    key_path: Path


def make_certificate(folder: Path) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jupybot test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = folder / "cert.pem"
    key_path = folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Certificate(cert_path, key_path)


class Nginx:
    """nginx with docs/deploy.md's configuration, proxying to C{upstream} (`http://host:port`)."""

    def __init__(self, workdir: Path, certificate: Certificate, upstream: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.https_port = free_port()
        self.http_port = free_port()
        self.config_path = workdir / "nginx.conf"
        self.config_path.write_text(self.render(certificate, upstream))
        self.process: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def render(self, certificate: Certificate, upstream: str) -> str:
        servers = documented_nginx_config()
        # Loopback only, on free ports; no IPv6 listener.
        servers = replace_once(
            servers, "listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;"
        )
        servers = replace_once(servers, "listen [::]:443 ssl;", "")
        servers = replace_once(servers, "listen 80;", f"listen 127.0.0.1:{self.http_port};")
        servers = replace_once(servers, "listen [::]:80;", "")
        servers = replace_once(servers, DOC_CERTIFICATE, str(certificate.path))
        servers = replace_once(servers, DOC_KEY, str(certificate.key_path))
        servers = replace_once(servers, DOC_UPSTREAM, upstream)
        temp = self.workdir / "temp"
        # As root, nginx's workers would run as `nobody`, who cannot enter pytest's folders.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (
            f"{user}"
            "daemon off;\n"
            "worker_processes 1;\n"
            f"pid {self.workdir / 'nginx.pid'};\n"
            "error_log stderr notice;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            f"    access_log {self.workdir / 'access.log'};\n"
            f"    client_body_temp_path {temp / 'body'};\n"
            f"    proxy_temp_path {temp / 'proxy'};\n"
            f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
            f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
            f"    scgi_temp_path {temp / 'scgi'};\n"
            f"{servers}"
            "}\n"
        )

    def start(self) -> None:
        (self.workdir / "temp").mkdir(exist_ok=True)
        argv = [
            nginx_binary(),
            "-p",
            str(self.workdir),
            "-c",
            str(self.config_path),
            "-e",
            "stderr",
        ]
        self.process = ChildProcess(argv, name="nginx", cwd=self.workdir)
        self.process.wait_for(r"start worker process \d+", timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            # SIGTERM: nginx's fast shutdown, workers included.
            self.process.stop()


@pytest.fixture(scope="session")
def proxy_certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def running_nginx(workdir: Path, certificate: Certificate, upstream: str) -> Iterator[Nginx]:
    """An L{Nginx} started in front of C{upstream}, stopped after."""
    proxy = Nginx(workdir, certificate, upstream)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
