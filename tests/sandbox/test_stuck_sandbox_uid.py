"""A sandbox whose cgroup cannot be removed keeps its host uid (``sandbox.uids``): something of
it may still run as that uid (a process that escaped the kill, a group the remover gave up on),
and the next stranger's session must not run as the same uid beside it.

The session's program really runs and ends (a PTY on the reactor); its cgroup is one that never
empties, removed by the real L{CgroupRemover} on a fake clock, its thread run at once. With the
protection switched off (the uid given back when the group is given up on) the stranger gets
that uid and the test fails.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from jupybot.sandbox import Launch
from jupybot.sandbox.cgroups import SessionCgroup
from jupybot.sandbox.remover import REMOVE_TRIES, RETRY_INTERVAL, CgroupRemover
from jupybot.sandbox.uids import UidPool
from jupybot.terminal.pty import ExitStatus, PtySession

UID = 70000


class AtOnce:
    """The reactor's thread pool, as the remover uses it, with each job run where it is
    handed in: the outcome is back before the next step of the fake clock."""

    def callInThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        callable(*args, **kwargs)

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        callable(*args, **kwargs)


class StuckGroup(SessionCgroup):
    """A session's cgroup where something outlives every SIGKILL (C{stuck}), or one that is
    gone at the first try; C{handed_in} fires at the remover's first try."""

    def __init__(self, stuck: bool) -> None:
        super().__init__([])
        self.stuck = stuck
        self.tries = 0
        self.handed_in: Deferred[None] = Deferred()

    def _try(self) -> bool:
        self.tries += 1
        if self.tries == 1:
            self.handed_in.callback(None)
        return not self.stuck

    def kill_all(self) -> bool:
        return self._try()

    def remove(self, quiet: bool = False) -> bool:
        return self._try()


class Nobody:
    def output(self, data: bytes) -> None:
        pass

    def ended(self, status: ExitStatus) -> None:
        pass


async def end_session(pool: UidPool, group: StuckGroup) -> int:
    """Run a session as a uid leased from C{pool} in C{group} until its program ends and the
    remover is done with the group; the remover's tries."""
    uid = pool.lease()
    assert uid == UID
    launch = Launch(["/bin/true"], {}, group, True, uid, functools.partial(pool.release, uid))
    clock = Clock()
    session = PtySession(
        reactor, "true", launch, 80, 24, Nobody(), remover=CgroupRemover(clock, AtOnce())
    )
    session.start()
    await session.ended
    await group.handed_in  # the program was reaped: its group went to the remover
    for _ in range(REMOVE_TRIES):
        if session.released.called:
            break
        clock.advance(RETRY_INTERVAL)
    assert session.released.called
    return group.tries


@pytest_twisted.ensureDeferred
async def test_a_sandbox_whose_cgroup_stays_keeps_its_uid_from_the_next_stranger(
    tmp_path: Path,
) -> None:
    pool = UidPool(range(UID, UID + 1), tmp_path)
    other_jupybot = UidPool(range(UID, UID + 1), tmp_path)
    # A group removed at once: its uid is the next stranger's.
    assert await end_session(pool, StuckGroup(stuck=False)) == 1
    # A group that never empties: tried until given up, and its uid stays leased.
    assert await end_session(pool, StuckGroup(stuck=True)) == REMOVE_TRIES
    with pytest.raises(OSError) as refused:
        pool.lease()
    assert refused.value.errno == errno.EAGAIN
    # Its lock stays held too: another jupybot over the same range does not take it either.
    assert pool.leased == 1 and other_jupybot.leased_elsewhere(UID)
    with pytest.raises(OSError):
        other_jupybot.lease()
    pool.close()
