"""The one bridge between Twisted Deferreds and asyncio awaitables.

Both sides run on the same loop (see L{jupybot.reactor}); nothing else in jupybot converts
between the two by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

T = TypeVar("T")

__all__ = ["await_deferred", "deferred_from_coroutine", "future_from_deferred"]


def deferred_from_coroutine(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Run an asyncio coroutine as a task on the shared loop; its result fires the Deferred.

    Cancelling the Deferred cancels the task; Twisted code then sees Twisted's CancelledError.
    """
    d = Deferred.fromFuture(asyncio.ensure_future(coro))
    return d.addErrback(_twisted_cancellation)


def _twisted_cancellation(failure: Failure) -> Failure:
    if failure.check(asyncio.CancelledError):
        return Failure(CancelledError())
    return failure


def future_from_deferred(d: Deferred[T]) -> asyncio.Future[T]:
    """An asyncio future for a Deferred, on the running loop (call from asyncio code)."""
    return d.asFuture(asyncio.get_running_loop())


async def await_deferred(d: Deferred[T]) -> T:
    """Await a Deferred from asyncio code; cancelling the awaiting task cancels the Deferred."""
    return await future_from_deferred(d)
