"""The log is for people: no "Starting factory"/"Stopping factory" line per connection.

Twisted logs both around every connection of a noisy factory; with a kernel's channels
reconnecting and a connection per REST request to the gateway they were a third of all lines.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock

from jupybot.kernels import KernelError
from jupybot.kernels.channels import _ChannelsFactory
from jupybot.kernels.rest import GatewayRest
from jupybot.terminal.websocket import TerminalFactory
from tests.logs import logged


def start_and_stop(factory: Factory) -> list[str]:
    with logged() as lines:
        for _ in range(3):  # a connection, lost, made again...
            factory.doStart()
            factory.doStop()
    return [line for line in lines if "factory" in line.lower()]


def test_a_kernels_channels_connect_and_reconnect_without_factory_lines() -> None:
    assert start_and_stop(_ChannelsFactory("ws://127.0.0.1:8888/api/kernels/k/channels")) == []


def test_the_terminal_listens_without_factory_lines() -> None:
    sessions: Any = SimpleNamespace(config=SimpleNamespace(max_frame_kb=64))
    assert start_and_stop(TerminalFactory(sessions, (), None, Clock())) == []


@pytest_twisted.ensureDeferred
async def test_requests_to_the_gateway_leave_no_factory_lines() -> None:
    """Each REST request (treq over Agent) makes a connection of its own, on a real reactor."""
    from twisted.internet import reactor

    with socket.socket() as unused:  # a loopback port nobody listens on: refused at once
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    rest = GatewayRest(reactor, f"http://127.0.0.1:{port}", None, timeout=5)
    with logged() as lines:
        for _ in range(2):
            with pytest.raises(KernelError):
                await rest.kernelspecs()
    assert lines, "the refusals are logged"
    assert [line for line in lines if "factory" in line.lower()] == []


def test_a_noisy_factory_would_be_seen() -> None:
    """The check above sees the lines when they are there (Twisted's default)."""
    assert len(start_and_stop(Factory())) == 6
