"""The one retry mechanism (jupybot/retry.py), on task.Clock: a call made again on the backoff's
delays until it succeeds, a failure not worth retrying ending it, and cancellation."""

from __future__ import annotations

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from jupybot.retry import Backoff, retrying

POLICY = backoffPolicy(initialDelay=1.0, maxDelay=8.0, factor=2.0, jitter=lambda: 0.0)


class Flaky:
    """Fails with C{error} its first C{failures} calls, then answers "ok"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> Deferred[str]:
        self.calls += 1
        if self.calls <= self.failures:
            return fail(self.error)
        return succeed("ok")


def test_backoff_grows_to_its_maximum_and_starts_over_after_a_success() -> None:
    backoff = Backoff(POLICY)
    assert [backoff.failed() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.succeeded()
    assert backoff.failed() == 1.0


def test_retries_on_the_policy_delays_until_the_call_succeeds() -> None:
    clock = Clock()
    call = Flaky(3, OSError("unreachable"))
    heard: list[tuple[str, float]] = []
    d = retrying(
        clock, POLICY, call, on_retry=lambda f, delay: heard.append((f.getErrorMessage(), delay))
    )
    results: list[str] = []
    d.addCallback(results.append)
    assert call.calls == 1
    clock.advance(0.9)
    assert call.calls == 1  # not before the delay
    clock.pump([0.1, 2, 4])
    assert results == ["ok"] and call.calls == 4
    assert heard == [("unreachable", 1.0), ("unreachable", 2.0), ("unreachable", 4.0)]


def test_a_failure_not_worth_retrying_ends_it() -> None:
    clock = Clock()
    call = Flaky(5, ValueError("refused"))
    d = retrying(clock, POLICY, call, should_retry=lambda f: f.check(OSError) is not None)
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert call.calls == 1 and failures[0].check(ValueError)
    assert not clock.getDelayedCalls()


def test_cancelling_stops_the_attempts() -> None:
    clock = Clock()
    call = Flaky(100, OSError("unreachable"))
    d = retrying(clock, POLICY, call)
    clock.advance(1)
    assert call.calls == 2
    d.cancel()
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures[0].check(CancelledError)
    assert not clock.getDelayedCalls()
    clock.advance(100)
    assert call.calls == 2


def test_cancelling_cancels_the_attempt_under_way() -> None:
    clock = Clock()
    cancelled: list[bool] = []
    d: Deferred[str] = retrying(clock, POLICY, lambda: Deferred(lambda _: cancelled.append(True)))
    d.cancel()
    assert cancelled == [True]
    d.addErrback(lambda f: f.trap(CancelledError))
    assert not clock.getDelayedCalls()
