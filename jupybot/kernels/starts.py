"""Kernel starts in turn: at most a few at once, the rest waiting in order and told their place.

Fifty kernels asked for at once on a 2-core machine all import ipykernel at the same time: each
start then takes the time of all of them, and the first ones run out of their timeout while the
gateway is still spawning the last (bench/kernels.py failed so, with
`GatewayUnavailable: This kernel's connection is closed.`). Started a few at a time, each gets
the machine while it starts, and a timeout counts from its own attempt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from twisted.internet.defer import Deferred, succeed

__all__ = ["StartQueue", "StartWatcher", "machine_start_concurrency"]

# Called with how many starts wait before this one (0: it is next, or under way).
AheadCallback = Callable[[int], None]


@runtime_checkable
class StartWatcher(Protocol):
    """What an L{ExecutionListener} may also implement, to show a run that waits for its
    kernel (`starting a kernel… (3 ahead)`) rather than nothing."""

    def on_kernel_wait(self, ahead: int | None) -> None:
        """C{ahead} kernel starts are queued before this run's (0: its kernel is being
        started); called again whenever that changes, and with None once the kernel is ready."""


def machine_start_concurrency() -> int:
    """How many kernels to start at once here: one per core (a start is mostly CPU: importing
    ipykernel), at least two so a slow start does not hold up every other room."""
    return max(2, os.cpu_count() or 1)


@dataclass(eq=False)
class _Waiting:
    turn: Deferred[None]
    on_ahead: AheadCallback | None


class StartQueue:
    """At most C{concurrency} starts under way; the others wait first come, first served.
    A room's start goes before any warm-pool refill (C{urgent=False})."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._running = 0
        self._urgent: list[_Waiting] = []
        self._background: list[_Waiting] = []

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._background)

    def wait_turn(
        self, on_ahead: AheadCallback | None = None, urgent: bool = True
    ) -> Deferred[None]:
        """Fires when this start may begin; the caller must then call L{done} exactly once.
        Cancelling the Deferred leaves the queue (the others move up)."""
        if self._running < self.concurrency and not self.waiting:
            self._running += 1
            return succeed(None)
        queue = self._urgent if urgent else self._background
        entry = _Waiting(Deferred(lambda _: self._leave(entry)), on_ahead)
        queue.append(entry)
        if urgent and on_ahead is not None:
            on_ahead(len(queue) - 1)
        return entry.turn

    def done(self) -> None:
        """A start is over (started or failed): the next one in line begins."""
        self._running -= 1
        self._next()

    def _next(self) -> None:
        while self._running < self.concurrency and self.waiting:
            queue = self._urgent if self._urgent else self._background
            entry = queue.pop(0)
            self._running += 1
            self._moved_up(queue, 0)
            entry.turn.callback(None)

    def _leave(self, entry: _Waiting) -> None:
        for queue in (self._urgent, self._background):
            if entry in queue:
                index = queue.index(entry)
                queue.remove(entry)
                self._moved_up(queue, index)

    def _moved_up(self, queue: list[_Waiting], start: int) -> None:
        if queue is not self._urgent:
            return
        for ahead, entry in enumerate(queue[start:], start):
            if entry.on_ahead is not None:
                entry.on_ahead(ahead)
