"""Shared fixtures. The reactor is Twisted's asyncio reactor (pytest-twisted, --reactor=asyncio)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import JupybotProcess, jupybot_config

pytest_plugins = ["tests.peers.kernel_gateway", "tests.peers.synapse"]


@pytest.fixture
def jupybot(tmp_path: Path) -> Iterator[JupybotProcess]:
    """A running `twistd -n jupybot` with the minimal test config, stopped after the test."""
    process = JupybotProcess(jupybot_config(tmp_path), tmp_path)
    try:
        process.wait_listening()
        yield process
    finally:
        process.stop()
