"""A real Jupyter Server on loopback, for the kernel tests: a user's own server, started once.

It is what a JupyterLab or a JupyterHub single-user server runs: `/api/kernels` behind a token,
here under a URL prefix as JupyterHub gives one (`/user/tester/`). It runs from jupybot's own
venv (Jupyter Server 2, ipykernel 7; the Kernel Gateway is built on it), with Jupyter directories
of its own so that nothing is written to the home directory. Readiness is its own "is running
at" line.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ChildProcess
from tests.peers.enterprise_gateway import free_port

__all__ = ["JupyterServer", "jupyter_server"]

PREFIX = "/user/tester"


class JupyterServer:
    """One `python -m jupyter_server` with a token and a URL prefix."""

    kind = "jupyter-server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.token = secrets.token_urlsafe(16)
        self.port = free_port()
        self.process: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def start(self) -> None:
        home = self.workdir / "home"
        notebooks = self.workdir / "notebooks"
        home.mkdir(exist_ok=True)
        notebooks.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "JUPYTER_CONFIG_DIR": str(self.workdir / "config"),
        }
        self.process = ChildProcess(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.base_url={PREFIX}/",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={notebooks}",
                "--ServerApp.open_browser=False",
                # The tests run as root; a user's own server would not.
                "--ServerApp.allow_root=True",
            ],
            name="jupyter-server",
            env=env,
            cwd=self.workdir,
        )
        self.process.wait_for(r"Jupyter Server .* is running at", timeout=60)
        self.process.wait_for(rf"http://127\.0\.0\.1:{self.port}{PREFIX}/", timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """The real Jupyter Server of this test run."""
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
