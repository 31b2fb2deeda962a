"""A session ends, and gives back its slot, PTY, token, timers, processes and cgroup, however its
program ends and whatever its viewer did: the visitor who walks away costs nobody a slot."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults

from jupybot.config.sandbox import SandboxConfig
from jupybot.config.terminal import ProgramConfig, TerminalConfig
from jupybot.sandbox import Sandbox
from jupybot.terminal import ExitStatus, SessionRefused, TerminalSessions
from tests.harness import rss_kb

PROGRAMS = {
    "cat": ProgramConfig(name="cat", title="cat", description="", argv=("cat",)),
    # Prints without end: a detached session holds it paused, which must not keep it alive.
    "flood": ProgramConfig(name="flood", title="yes", description="", argv=("yes",)),
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """The default sandbox, but for its uids (as root, one leased per session and locked
    host-wide): a range of its own. The default range is every jupybot's here, and a bench's
    thousand idle sessions (or their sandboxes still leaving, left out at start) leave fewer
    than the soak's batch of 50 needs: its sessions would be refused."""
    sandbox = Sandbox(SandboxConfig(uids="73000-73999"))
    sandbox.prepare()
    try:
        yield sandbox
    finally:
        sandbox.close()


class Walker:
    """A viewer who opens a session and leaves (reload, closed tab, lost network)."""

    def output(self, data: bytes) -> None:
        pass

    def ended(self, status: ExitStatus) -> None:
        pass

    def stopped(self, reason: str, message: str) -> None:
        pass


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def children() -> int:
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        return len(f.read().split())


async def abandon(sessions: TerminalSessions, program: str, address: str) -> ExitStatus:
    session = sessions.open(program, 80, 24, address, Walker())
    ended: Deferred[ExitStatus] = Deferred()
    session.pty.ended.addCallback(ended.callback)
    session.detach()
    status = await ended
    await session.pty.released  # its cgroup removed and its host uid (and that uid's lock) back
    return status


@pytest.mark.parametrize("program", ["cat", "flood"])
@pytest_twisted.ensureDeferred
async def test_an_abandoned_session_gives_its_slot_back(program: str, sandbox: Sandbox) -> None:
    config = TerminalConfig(max_sessions=2, max_sessions_per_ip=1, resume_seconds=0.2)
    sessions = TerminalSessions(reactor, config, PROGRAMS, sandbox)
    for _ in range(3):  # more than the caps: each needs the slot the last one left
        status = await abandon(sessions, program, "10.0.0.1")
        assert status.code is not None or status.signal is not None
        assert len(sessions) == 0
    with pytest.raises(SessionRefused):
        sessions.resume("no-such-token", Walker(), 0)


@pytest_twisted.ensureDeferred
async def test_soak_a_thousand_abandoned_sessions_from_many_addresses(sandbox: Sandbox) -> None:
    config = TerminalConfig(max_sessions=50, max_sessions_per_ip=1, resume_seconds=0.05)
    sessions = TerminalSessions(reactor, config, PROGRAMS, sandbox)
    await abandon(sessions, "cat", "10.0.0.1")  # warm up: the first spawn loads code
    fds, processes, rss = open_fds(), children(), rss_kb(os.getpid())
    total, batch = 1000, 50
    for start in range(0, total, batch):
        await gatherResults(
            [
                Deferred.fromCoroutine(
                    abandon(sessions, "flood" if n % 2 else "cat", f"10.{n // 250}.{n % 250}.1")
                )
                for n in range(start, start + batch)
            ]
        )
    assert len(sessions) == 0
    assert open_fds() <= fds
    assert children() <= processes
    # Python keeps some of what it allocated; a leak per session would be far more.
    assert rss_kb(os.getpid()) - rss < 30_000
    # Every slot is free again: as many sessions as the cap allows, from one batch of visitors.
    for n in range(config.max_sessions):
        sessions.open("cat", 80, 24, f"10.9.{n}.1", Walker())
    await sessions.close_all()
    assert len(sessions) == 0


@pytest_twisted.ensureDeferred
async def test_a_visitor_who_is_here_comes_before_one_who_left(sandbox: Sandbox) -> None:
    """Clicking through more programs than the per-address cap within resume_seconds, or a
    crowd arriving while others' sessions wait for a resume: the oldest abandoned session
    makes room, and its resume token is void."""
    config = TerminalConfig(max_sessions=3, max_sessions_per_ip=2, resume_seconds=600)
    sessions = TerminalSessions(reactor, config, PROGRAMS, sandbox)
    first = sessions.open("cat", 80, 24, "10.0.0.1", Walker())
    first_ended: Deferred[ExitStatus] = Deferred()
    first.pty.ended.addCallback(first_ended.callback)
    first.detach()
    second = sessions.open("cat", 80, 24, "10.0.0.1", Walker())
    second.detach()
    sessions.open("cat", 80, 24, "10.0.0.1", Walker())  # the cap is 2: the first goes
    await first_ended
    with pytest.raises(SessionRefused) as expired:
        sessions.resume(first.resume_token, Walker(), 0)
    assert expired.value.reason == "expired"
    # The server is full (second, third and a newcomer): the next newcomer gets the slot of
    # the abandoned second.
    sessions.open("cat", 80, 24, "10.0.0.2", Walker())
    sessions.open("cat", 80, 24, "10.0.0.3", Walker())
    with pytest.raises(SessionRefused):
        sessions.resume(second.resume_token, Walker(), 0)
    # Full of sessions someone watches: a newcomer is refused, nobody is evicted.
    with pytest.raises(SessionRefused) as busy:
        sessions.open("cat", 80, 24, "10.0.0.4", Walker())
    assert busy.value.reason == "busy"
    await sessions.close_all()
