"""What every part is built with: the composition root (L{jupybot.app}) hands each part builder
one L{PartContext}, and whatever else that part uses (the service tree, the site's root, the
kernel manager, the contact channel registry) as arguments of its own.

Also L{RetryingPart}: a part whose start failed a check that passes by itself (a
L{TransientProblem}: the sandbox user at its process limit, say) is started again on a backoff,
rather than staying failed until jupybot restarts. Its delays come from the one
L{jupybot.retry.Backoff}; it is not L{jupybot.retry.retrying} because what fails is the part's
start, which the service machinery drives and reports (C{fail}, C{_started})."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from .config import Config
from .reactor import Clock, Reactor
from .retry import Backoff
from .service import STARTING, Part
from .state import StateDirectory

__all__ = ["RETRY_DELAY", "PartContext", "RetryingPart", "TransientProblem"]


@dataclass(frozen=True)
class PartContext:
    config: Config
    reactor: Reactor
    state: StateDirectory


class TransientProblem(Exception):
    """A part cannot start for a reason that passes by itself (processes that end, a part it
    needs that is itself trying again): it is tried again later. The message says why, for
    /ping and the log."""


# 2 s, then growing to at most 2 minutes while the problem lasts (no jitter: one part per
# problem, nothing to spread out).
RETRY_DELAY = backoffPolicy(initialDelay=2.0, maxDelay=120.0, factor=2.0, jitter=lambda: 0.0)


class RetryingPart(Part):
    """A part started again while its start fails with a L{TransientProblem}: /ping shows
    C{failed: <why> (trying again in N s)} meanwhile, then C{running} once a start succeeds.
    Any other failure is final, as for every part."""

    def __init__(
        self, name: str, clock: Clock, retry_delay: Callable[[int], float] = RETRY_DELAY
    ) -> None:
        super().__init__(name)
        self._clock = clock
        self._retry: IDelayedCall | None = None
        self._backoff = Backoff(retry_delay)

    @property
    def attempts(self) -> int:
        """Failed starts in a row."""
        return self._backoff.failures

    def fail(self, reason: Failure | str) -> None:
        if isinstance(reason, Failure) and reason.check(TransientProblem) and self.running:
            delay = self._backoff.failed()
            super().fail(f"{reason.getErrorMessage()} (trying again in {delay:.0f} s)")
            self._retry = self._clock.callLater(delay, self._try_again)
            return
        super().fail(reason)

    def _try_again(self) -> Deferred[None]:
        self._retry = None
        self._state = STARTING
        self.log.info("{part}: trying to start again", part=self.name)
        d = maybeDeferred(self.start_part)
        d.addCallbacks(self._started, self.fail)
        return d.addCallback(lambda _: None)

    def _started(self, result: object) -> None:
        self._backoff.succeeded()
        super()._started(result)

    def stopService(self) -> Deferred[None]:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        return super().stopService()
