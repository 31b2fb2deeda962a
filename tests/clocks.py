"""A fake clock a test can wait on: the event is "something was scheduled", not a spin count."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock

__all__ = ["SchedulingClock"]


class SchedulingClock(Clock):
    """A L{Clock} that fires C{scheduled} with the delay of each call put on it."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled: Deferred[float] = Deferred()

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        call = super().callLater(delay, callable, *args, **kw)
        fired, self.scheduled = self.scheduled, Deferred()
        fired.callback(delay)
        return call
