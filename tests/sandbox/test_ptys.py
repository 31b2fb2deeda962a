"""PTYs are bounded per sandbox (issue 24): four sessions from one address, each trying to take
a thousand PTYs, leave the next visitor's program its PTY.

bubblewrap's /dev/pts is a devpts instance of the sandbox's own, which the launch mounts with
``sandbox.max_ptys`` (4 by default). With the bound at 1024 (about what the open-file limit let
a session take before), the same four sessions take every PTY sandboxes may have
(kernel.pty.max less kernel.pty.reserve, which only the host's own /dev/pts may use) and the
fifth visitor's program gets none: the test fails with the protection switched off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from jupybot.config.sandbox import SandboxConfig
from jupybot.config.terminal import ProgramConfig, TerminalConfig
from jupybot.sandbox import Sandbox
from jupybot.terminal import ExitStatus, TerminalSessions
from tests.kernels.test_gateway import timeboxed

SURFACE = Path(__file__).with_name("surface.py").read_text()
HOARDERS = 4


class Verdict:
    """A viewer that fires L{said} with the first JSON line its program prints."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.said: Deferred[dict[str, Any]] = Deferred()
        self.end: Deferred[ExitStatus] = Deferred()

    def output(self, data: bytes) -> None:
        self.data += data
        if self.said.called:
            return
        for line in self.data.decode("utf-8", "replace").splitlines(keepends=True):
            if line.startswith("{") and line.endswith("\n"):
                self.said.callback(json.loads(line))
                return

    def ended(self, status: ExitStatus) -> None:
        self.end.callback(status)
        if not self.said.called:
            self.said.errback(AssertionError(f"ended without a verdict: {self.data!r}"))

    def stopped(self, reason: str, message: str) -> None:
        pass


def program(name: str, *args: str) -> ProgramConfig:
    return ProgramConfig(
        name=name, title=name, description="", argv=("python3", "-c", SURFACE, name, *args)
    )


async def next_visitor_after_hoarders(max_ptys: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What four hoarding sessions of one address held, and what the next visitor got."""
    for sandbox in prepared(max_ptys):
        sessions = TerminalSessions(
            reactor,
            TerminalConfig(),
            {p.name: p for p in (program("hoard_ptys", "2000"), program("open_pty"))},
            sandbox,
        )
        try:
            hoarders = [Verdict() for _ in range(HOARDERS)]
            for viewer in hoarders:
                sessions.open("hoard_ptys", 80, 24, "192.0.2.1", viewer)
            held = [await timeboxed(v.said, 60) for v in hoarders]
            visitor = Verdict()
            sessions.open("open_pty", 80, 24, "192.0.2.2", visitor)
            return held, await timeboxed(visitor.said, 60)
        finally:
            await sessions.close_all()
    raise AssertionError("unreachable")


def prepared(max_ptys: int) -> Iterator[Sandbox]:
    sandbox = Sandbox(SandboxConfig(max_ptys=max_ptys))
    sandbox.prepare()
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest_twisted.ensureDeferred
async def test_four_sessions_leave_the_next_visitor_a_pty() -> None:
    held, visitor = await next_visitor_after_hoarders(SandboxConfig().max_ptys)
    assert held == [{"held": 4, "error": "ENOSPC"}] * HOARDERS, held
    assert visitor == {"succeeded": True}, visitor
    # Without the bound (as many as the open-file limit allows), they take every one.
    held, visitor = await next_visitor_after_hoarders(1024)
    assert sum(h["held"] for h in held) > 3000, held
    assert visitor == {"succeeded": False, "error": "ENOSPC"}, (visitor, held)
