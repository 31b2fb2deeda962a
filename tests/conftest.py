"""Shared fixtures. The reactor is Twisted's asyncio reactor (pytest-twisted, --reactor=asyncio)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox import Sandbox

from .harness import JupybotProcess, jupybot_config

pytest_plugins = [
    "tests.peers.kernel_gateway",
    "tests.peers.enterprise_gateway",
    "tests.peers.jupyter_server",
    "tests.peers.synapse",
    "tests.peers.element_client",
]


@pytest.fixture
def jupybot(tmp_path: Path) -> Iterator[JupybotProcess]:
    """A running `twistd -n jupybot` with the minimal test config, stopped after the test."""
    process = JupybotProcess(jupybot_config(tmp_path), tmp_path)
    try:
        process.wait_listening()
        yield process
    finally:
        process.stop()


def prepared_sandbox(mode: str = "bubblewrap", cgroups: str = "auto") -> Iterator[Sandbox]:
    """A L{Sandbox} prepared as the sandbox part prepares jupybot's, closed after."""
    sandbox = Sandbox(SandboxConfig(mode=mode, cgroups=cgroups))
    sandbox.prepare()
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """The sandbox of the defaults (bubblewrap, cgroups where this host allows)."""
    yield from prepared_sandbox()


@pytest.fixture
def gateway(kernel_gateway: object) -> object:
    """The gateway a kernel test runs on: its module's `kernel_gateway` (tests/kernels/test_gateway.py
    runs its tests on each peer instead; modules that import those tests give their own)."""
    return kernel_gateway
