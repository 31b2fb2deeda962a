"""A real Jupyter Enterprise Gateway 3.3 on loopback, for the kernel tests, started once per run.

Enterprise Gateway pins jupyter_client < 7 and jupyter_server < 2, and its kernels need
ipykernel 6 (with 7 they are never reported idle), so it runs from a venv of its own: `make test`
builds `.cache/enterprise-gateway-venv` and passes its python as
`$JUPYBOT_ENTERPRISE_GATEWAY_PYTHON`. Its kernels are that venv's `python3` kernelspec, launched
by its local process proxy; its token is on. Readiness is its own "is available at" line.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.harness import ROOT, ChildProcess, free_port

__all__ = ["EnterpriseGateway", "enterprise_gateway", "enterprise_gateway_python"]

_DEFAULT_PYTHON = ROOT / ".cache" / "enterprise-gateway-venv" / "bin" / "python"


class EnterpriseGateway:
    """One `python -m enterprise_gateway` with its auth token on; C{options} are more of its
    command-line settings (culling, limits), as an operator would set them."""

    def __init__(self, python: str, workdir: Path, options: Sequence[str] = ()) -> None:
        self.python = python
        self.workdir = workdir
        self.options = list(options)
        self.token = secrets.token_urlsafe(16)
        self.port = free_port()
        self.process: ChildProcess | None = None

    def add_kernelspec(self, name: str, unauthorized_users: Sequence[str]) -> None:
        """A Python kernelspec launched by EG's local process proxy, refused to the users listed
        (EG adds a kernelspec's `unauthorized_users` to its own). Before L{start}."""
        directory = self.workdir / "data" / "kernels" / name
        directory.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": name,
            "language": "python",
            "metadata": {
                "process_proxy": {
                    "class_name": "enterprise_gateway.services.processproxies.processproxy"
                    ".LocalProcessProxy",
                    "config": {"unauthorized_users": ",".join(unauthorized_users)},
                }
            },
        }
        (directory / "kernel.json").write_text(json.dumps(spec))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "JUPYTER_CONFIG_DIR": str(self.workdir / "config"),
            "EG_AUTH_TOKEN": self.token,
            # EG refuses kernels to the users listed here (default: root) and takes its own
            # process's user as the kernel's when the client sends no KERNEL_USERNAME, as
            # jupybot never does; the tests run as root.
            "EG_UNAUTHORIZED_USERS": "nobody-is-refused-here",
        }
        self.process = ChildProcess(
            [
                self.python,
                "-m",
                "enterprise_gateway",
                "--EnterpriseGatewayApp.ip=127.0.0.1",
                f"--EnterpriseGatewayApp.port={self.port}",
                "--EnterpriseGatewayApp.port_retries=0",
                *self.options,
            ],
            name="enterprise-gateway",
            env=env,
            cwd=self.workdir,
        )
        self.process.wait_for(r"Enterprise Gateway .* is available at http://", timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def enterprise_gateway_python() -> str | None:
    configured = os.environ.get("JUPYBOT_ENTERPRISE_GATEWAY_PYTHON")
    if configured:
        return configured
    return str(_DEFAULT_PYTHON) if _DEFAULT_PYTHON.exists() else None


@pytest.fixture(scope="session")
def enterprise_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnterpriseGateway]:
    """The real Enterprise Gateway of this test run."""
    python = enterprise_gateway_python()
    if python is None:
        pytest.fail(
            "Jupyter Enterprise Gateway is not installed: run the tests with `make test` (it "
            "builds .cache/enterprise-gateway-venv) or set JUPYBOT_ENTERPRISE_GATEWAY_PYTHON",
            pytrace=False,
        )
    gateway = EnterpriseGateway(python, tmp_path_factory.mktemp("enterprise-gateway"))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
