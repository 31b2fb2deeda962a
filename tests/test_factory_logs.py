"""The log is for people: no "Starting factory"/"Stopping factory" line per connection.

Twisted logs both around every connection of a noisy factory; with a kernel's channels
reconnecting they were a third of all lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import implementer

from jupybot.kernels.channels import _ChannelsFactory
from jupybot.terminal.websocket import TerminalFactory


@contextmanager
def logged() -> Iterator[list[str]]:
    lines: list[str] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        yield lines
    finally:
        globalLogPublisher.removeObserver(observe)


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


def test_a_noisy_factory_would_be_seen() -> None:
    """The check above sees the lines when they are there (Twisted's default)."""
    assert len(start_and_stop(Factory())) == 6
