"""A real Jupyter Server on loopback, for the kernel tests: a user's own server, started once.

It is what a JupyterLab or a JupyterHub single-user server runs: `/api/kernels` behind a token,
here under a URL prefix as JupyterHub gives one (`/user/tester/`). It runs from jupybot's own
venv (Jupyter Server 2, ipykernel 7; the Kernel Gateway is built on it), with Jupyter directories
of its own so that nothing is written to the home directory. Readiness is its port accepting
connections, after its own "Use Control-C" line.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ChildProcess, free_port

__all__ = ["JupyterServer", "jupyter_server"]

PREFIX = "/user/tester"


class JupyterServer:
    """One `python -m jupyter_server` with a token and a URL prefix."""

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
        self.process.wait_for(r"Use Control-C to stop this server", timeout=60)
        self._wait_listening(deadline=time.monotonic() + 30)

    def _wait_listening(self, deadline: float) -> None:
        """Jupyter Server prints that it is running just before it binds its port (in the first
        turn of its event loop): connect until it accepts."""
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process is not None
                if self.process.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"Jupyter Server is not listening on {self.port}:\n" + self.process.output()
                    ) from None
                time.sleep(0.05)

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
