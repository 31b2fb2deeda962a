"""The one retry mechanism: Twisted's C{backoffPolicy} delays, counted by L{Backoff}, driven on an
injected clock by L{retrying}.

L{retrying} is for a call made again until it succeeds (Discord's login). Loops of another
shape keep their own driver and share only L{Backoff}, the delay after each failure in a row:
the embedded gateway's supervisor restarts a process when it dies (procmon's semantics, not a
call that fails), the contact outbox keeps a timer per channel queue whose retries are driven by
what waits, and a L{jupybot.parts.RetryingPart} is started again by the service machinery.
C{MatrixApi.retrying} stays a loop of its own too: a 429 waits exactly what the homeserver
asks, sends take turns while the account is held back, and a refused token is renewed before
the call is made again; its network and 5xx failures use a C{backoffPolicy} like the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from .reactor import Clock

__all__ = ["Backoff", "retrying"]

T = TypeVar("T")

Policy = Callable[[int], float]


class Backoff:
    """Failures in a row and the delay before the next attempt, from a C{backoffPolicy}:
    C{policy(0)} after the first failure, C{policy(1)} after the second, until L{succeeded}."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.failures = 0

    def failed(self) -> float:
        """Counts a failure; the seconds to wait before the next attempt."""
        delay = self._policy(self.failures)
        self.failures += 1
        return delay

    def succeeded(self) -> None:
        """The next failure waits the first delay again."""
        self.failures = 0


def retrying(
    clock: Clock,
    policy: Policy,
    call: Callable[[], Deferred[T]],
    *,
    should_retry: Callable[[Failure], bool] = lambda failure: True,
    on_retry: Callable[[Failure, float], None] = lambda failure, delay: None,
) -> Deferred[T]:
    """C{call()}'s result once it succeeds, made again after C{policy}'s delays while it fails
    with a failure C{should_retry} accepts; any other failure ends the Deferred with it.
    C{on_retry} hears each failure retried and the delay before the next attempt (to log it).
    Cancelling the Deferred stops the attempts: the one under way is cancelled, a wait ends."""
    backoff = Backoff(policy)
    pending: list[Deferred[T]] = []
    waiting: list[IDelayedCall] = []

    def cancel(_: Deferred[T]) -> None:
        for timer in waiting:
            if timer.active():
                timer.cancel()
        for attempt in pending:
            attempt.cancel()

    result: Deferred[T] = Deferred(cancel)

    def attempt() -> None:
        waiting.clear()
        d: Deferred[T] = maybeDeferred(call)
        pending.append(d)
        d.addBoth(settle, d)

    def settle(outcome: T | Failure, d: Deferred[T]) -> None:
        pending.remove(d)
        if result.called:  # cancelled meanwhile: the result has fired with CancelledError
            return
        if not isinstance(outcome, Failure):
            result.callback(outcome)
        elif outcome.check(CancelledError) or not should_retry(outcome):
            result.errback(outcome)
        else:
            delay = backoff.failed()
            on_retry(outcome, delay)
            waiting.append(clock.callLater(delay, attempt))

    attempt()
    return result
