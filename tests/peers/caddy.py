"""A real Caddy (Debian's package) with TLS on loopback, in front of a jupybot in the tests.

Its site block is the one docs/deploy.md gives ("Behind Caddy"), with the deployment's name
replaced by a loopback address and port, the test's certificate in place of Caddy's automatic
one, and the upstream's port: the documented configuration is the tested one. Caddy runs in the
foreground with its admin endpoint off and its data under a temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.harness import ChildProcess, free_port

from .nginx import DEPLOY_DOC, Certificate, replace_once

__all__ = ["Caddy", "documented_caddyfile", "running_caddy"]

DOC_SITE = "jupybot.example.org {"
DOC_UPSTREAM = "reverse_proxy 127.0.0.1:8080"


def documented_caddyfile(doc: str | None = None) -> str:
    """The ```caddy block of docs/deploy.md's "Behind Caddy" section."""
    text = DEPLOY_DOC.read_text() if doc is None else doc
    section = text.split("\n## Behind Caddy\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```caddy\n(.*?)```", section, re.S)
    assert match, "docs/deploy.md: no ```caddy block under ## Behind Caddy"
    return match.group(1)


class Caddy:
    """Caddy with docs/deploy.md's Caddyfile, proxying to C{upstream} (`http://host:port`)."""

    def __init__(self, workdir: Path, certificate: Certificate, upstream: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.https_port = free_port()
        self.config_path = workdir / "Caddyfile"
        self.config_path.write_text(self.render(certificate, upstream))
        self.process: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def render(self, certificate: Certificate, upstream: str) -> str:
        site = documented_caddyfile()
        site = replace_once(
            site,
            DOC_SITE,
            f"https://127.0.0.1:{self.https_port} {{\n"
            "    bind 127.0.0.1\n"
            f"    tls {certificate.path} {certificate.key_path}",
        )
        site = replace_once(site, DOC_UPSTREAM, "reverse_proxy " + upstream.removeprefix("http://"))
        # No admin endpoint, no listener on port 80, no change to the system's trust store.
        options = (
            "{\n"
            "    admin off\n"
            "    auto_https disable_redirects\n"
            f"    http_port {free_port()}\n"
            "    skip_install_trust\n"
            "    grace_period 1s\n"
            "}\n"
        )
        return options + site

    def start(self) -> None:
        binary = shutil.which("caddy")
        if binary is None:
            raise RuntimeError("caddy is not installed: run scripts/install-system-packages")
        env = dict(os.environ)
        for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
            env[name] = str(self.workdir)
        argv = [binary, "run", "--config", str(self.config_path), "--adapter", "caddyfile"]
        self.process = ChildProcess(argv, name="caddy", env=env, cwd=self.workdir)
        self.process.wait_for(r"serving initial configuration", timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def running_caddy(workdir: Path, certificate: Certificate, upstream: str) -> Iterator[Caddy]:
    """A L{Caddy} started in front of C{upstream}, stopped after."""
    proxy = Caddy(workdir, certificate, upstream)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
