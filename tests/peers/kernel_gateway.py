"""A real Jupyter Kernel Gateway with ipykernel on loopback, for the kernel tests.

One gateway serves the whole run (`kernel_gateway` fixture); tests that kill or restart a
gateway take their own (`own_kernel_gateway`). Readiness is the gateway's own "is available at"
line; the token is random per gateway.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ChildProcess, free_port

__all__ = ["KernelGateway", "kernel_gateway", "own_kernel_gateway"]


class KernelGateway:
    """One `python -m kernel_gateway`; L{restart} brings it back on the same port (no kernels)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.token = secrets.token_urlsafe(16)
        self.port = free_port()
        self.process: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        env["KG_AUTH_TOKEN"] = self.token
        env["JUPYTER_RUNTIME_DIR"] = str(self.workdir / "runtime")
        env["PYTHONUNBUFFERED"] = "1"
        self.process = ChildProcess(
            [
                sys.executable,
                "-m",
                "kernel_gateway",
                "--KernelGatewayApp.ip=127.0.0.1",
                f"--KernelGatewayApp.port={self.port}",
                "--KernelGatewayApp.port_retries=0",
            ],
            name="kernel-gateway",
            env=env,
            cwd=self.workdir,
        )
        self.process.wait_for(r"is available at http://", timeout=60)

    def kill(self) -> None:
        """SIGKILL the gateway (its kernels exit on their own when their parent dies)."""
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture(scope="session")
def kernel_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelGateway]:
    gateway = KernelGateway(tmp_path_factory.mktemp("kernel-gateway"))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def own_kernel_gateway(tmp_path: Path) -> Iterator[KernelGateway]:
    gateway = KernelGateway(tmp_path)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
