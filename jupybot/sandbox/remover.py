"""Removing the cgroups of ended sandboxes away from the reactor, a batch at a time.

A cgroup v1 rmdir takes the kernel's cgroup lock, which the workers destroying the groups
removed before hold too: while a thousand sessions ended, the reactor spent 0.43 s of their
2 s in rmdir (3000 of them: p50 26 us, p90 71 us, the slowest 24 ms), and every session's
signal, reaping and log line waited behind it. Here one thread at a time removes whatever
groups were handed in meanwhile; the reactor only learns the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from ..reactor import Clock
from .cgroups import SessionCgroup

__all__ = ["CgroupRemover"]

# How long an emptied cgroup may take to be removable, in tries this far apart (seconds).
REMOVE_TRIES = 100
RETRY_INTERVAL = 0.05
# The last tries only wait: what was killed at the one before them has this many tries (half
# a second) to leave, on a loaded machine, before the group is given up on and its uid kept.
TRIES_AFTER_THE_LAST_KILL = 10


class Threads(Protocol):
    """The reactor's thread pool, and the way back from it (Twisted's C{IReactorThreads})."""

    def callInThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None: ...

    def callFromThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None: ...


@dataclass
class _Removal:
    cgroup: SessionCgroup
    removed: Deferred[bool] = field(default_factory=Deferred)
    tries_left: int = REMOVE_TRIES

    @property
    def kills(self) -> bool:
        """SIGKILL what still runs in the group (a sandbox outliving its program) at each try
        but the last few: a process that forked past one kill meets the next."""
        return self.tries_left > TRIES_AFTER_THE_LAST_KILL


class CgroupRemover:
    """Removes sandboxes' cgroups in a thread, retrying a group still busy every
    L{RETRY_INTERVAL} with the others. C{threads} is the reactor (L{Threads}): a batch runs
    in its thread pool (whose threads stay: starting a thread waits for it to
    run, which the reactor must not), and its outcome is handed back to the reactor's thread."""

    def __init__(self, clock: Clock, threads: Threads) -> None:
        self._clock = clock
        self._threads = threads
        self._waiting: list[_Removal] = []
        self._retrying: list[_Removal] = []
        self._retry: IDelayedCall | None = None
        self._working = False
        self._idle: list[Deferred[None]] = []

    def remove(self, cgroup: SessionCgroup) -> Deferred[bool]:
        """Remove C{cgroup}, killing what still runs in it; fires True once it is gone, False
        once given up on (something of the sandbox may still run)."""
        removal = _Removal(cgroup)
        self._waiting.append(removal)
        self._work()
        return removal.removed

    def idle(self) -> Deferred[None]:
        """Fires once every group handed in is removed or given up on."""
        done: Deferred[None] = Deferred()
        if self._busy:
            self._idle.append(done)
        else:
            done.callback(None)
        return done

    @property
    def _busy(self) -> bool:
        return bool(self._working or self._waiting or self._retrying)

    def _work(self) -> None:
        if self._working or not self._waiting:
            return
        self._working = True
        batch, self._waiting = self._waiting, []
        self._threads.callInThread(self._remove, batch)

    def _remove(self, batch: list[_Removal]) -> None:
        """In the thread: remove each group, or kill what runs in it; never raises, never logs
        (the reactor's log is written from its own thread only)."""
        outcomes = []
        for removal in batch:
            try:
                gone = (
                    removal.cgroup.kill_all()
                    if removal.kills
                    else removal.cgroup.remove(quiet=True)
                )
            except Exception:
                gone = False
            outcomes.append(gone)
        self._threads.callFromThread(self._removed, batch, outcomes)

    def _removed(self, batch: list[_Removal], outcomes: list[bool]) -> None:
        self._working = False
        for removal, gone in zip(batch, outcomes, strict=True):
            removal.tries_left -= 1
            if gone or removal.tries_left <= 0:
                removal.removed.callback(gone)
            else:
                self._retrying.append(removal)
        if self._retrying and self._retry is None:
            self._retry = self._clock.callLater(RETRY_INTERVAL, self._try_again)
        self._work()
        if not self._busy:
            waiting, self._idle = self._idle, []
            for done in waiting:
                done.callback(None)

    def _try_again(self) -> None:
        self._retry = None
        self._waiting += self._retrying
        self._retrying = []
        self._work()
