"""The terminal core without any websocket: caps, per-address limits, shutdown."""

from __future__ import annotations

import contextlib

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import provider

from jupybot.config.sandbox import SandboxConfig
from jupybot.config.terminal import ProgramConfig, TerminalConfig
from jupybot.sandbox import Sandbox
from jupybot.terminal import ExitStatus, SessionRefused, TerminalSessions

from ..conftest import prepared_sandbox


class Recorder:
    def __init__(self) -> None:
        self.data = bytearray()
        self.stops: list[str] = []
        self.end: Deferred[ExitStatus] = Deferred()

    def output(self, data: bytes) -> None:
        self.data += data

    def ended(self, status: ExitStatus) -> None:
        self.end.callback(status)

    def stopped(self, reason: str, message: str) -> None:
        self.stops.append(reason)


CAT = ProgramConfig(name="cat", title="cat", description="", argv=("cat",))


@pytest_twisted.ensureDeferred
async def test_caps_per_address_and_for_the_server() -> None:
    sandbox = Sandbox(SandboxConfig())
    sandbox.prepare()
    sessions = TerminalSessions(
        reactor, TerminalConfig(max_sessions=3, max_sessions_per_ip=2), {"cat": CAT}, sandbox
    )
    viewers = [Recorder() for _ in range(4)]
    sessions.open("cat", 80, 24, "10.0.0.1", viewers[0])
    sessions.open("cat", 80, 24, "10.0.0.1", viewers[1])
    with pytest.raises(SessionRefused) as third_from_one_address:
        sessions.open("cat", 80, 24, "10.0.0.1", viewers[2])
    assert third_from_one_address.value.reason == "too-many"
    sessions.open("cat", 80, 24, "10.0.0.2", viewers[2])
    with pytest.raises(SessionRefused) as over_the_server_cap:
        sessions.open("cat", 80, 24, "10.0.0.3", viewers[3])
    assert over_the_server_cap.value.reason == "busy"
    await sessions.close_all()
    assert len(sessions) == 0
    for viewer in viewers[:3]:
        status = await viewer.end
        assert status.signal is not None  # SIGHUP ended cat
        assert viewer.stops == ["shutdown"]
    # A closed session frees its address's slot.
    sessions.open("cat", 80, 24, "10.0.0.1", Recorder())
    await sessions.close_all()
    sandbox.close()


BC = ProgramConfig(name="bc", title="bc", description="", argv=("bc", "-q"))
BRACKETED_PASTE_ON = b"\x1b[?2004h"


class Awaiting(Recorder):
    """A viewer that fires L{seen} once its output holds C{wanted}."""

    def __init__(self, wanted: bytes) -> None:
        super().__init__()
        self.wanted = wanted
        self.seen: Deferred[None] = Deferred()

    def output(self, data: bytes) -> None:
        super().output(data)
        if self.wanted in self.data and not self.seen.called:
            self.seen.callback(None)


async def bc_output(sandbox: Sandbox, line_mode: bool) -> bytes:
    """What bc prints at start and for one sum, in a session opened as a script or a page would."""
    sessions = TerminalSessions(reactor, TerminalConfig(), {"bc": BC}, sandbox)
    viewer = Awaiting(b"42\r\n")
    session = sessions.open("bc", 80, 24, "10.0.0.1", viewer, line_mode=line_mode)
    session.pty.write(b"20+22\r")
    await viewer.seen.addTimeout(20, reactor)
    await sessions.close_all()
    return bytes(viewer.data)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("mode", ["bubblewrap", "none"])
async def test_line_mode_programs_never_switch_bracketed_paste_on(mode: str) -> None:
    """readline wraps every prompt in bracketed-paste switches for a terminal; a line-mode
    session's program is told not to, so answers hold only what the program printed."""
    with contextlib.contextmanager(prepared_sandbox)(mode) as sandbox:
        assert BRACKETED_PASTE_ON in await bc_output(sandbox, line_mode=False)
        line_mode = await bc_output(sandbox, line_mode=True)
    assert b"42" in line_mode
    assert BRACKETED_PASTE_ON not in line_mode


@pytest_twisted.ensureDeferred
async def test_ended_sandboxes_never_wait_for_the_grace_of_a_held_terminal(
    sandbox: Sandbox,
) -> None:
    """A sandbox often still holds its terminal when jupybot reaps it: what is left is killed
    at once, so no session waits out the grace (nor is logged as leaving processes behind)."""
    warnings: list[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        if "holding its terminal" in str(event.get("log_format", "")):
            warnings.append(str(event.get("pid")))

    globalLogPublisher.addObserver(observe)
    sessions = TerminalSessions(
        reactor, TerminalConfig(max_sessions=20, max_sessions_per_ip=20), {"cat": CAT}, sandbox
    )
    try:
        viewers = [Recorder() for _ in range(12)]
        for viewer in viewers:
            sessions.open("cat", 80, 24, "10.0.0.1", viewer)
        await sessions.close_all()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert warnings == []
