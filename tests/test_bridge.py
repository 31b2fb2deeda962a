"""jupybot.aio: Deferreds and asyncio awaitables cross on the one shared loop."""

from __future__ import annotations

import asyncio

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred

from jupybot.aio import await_deferred, deferred_from_coroutine


@pytest_twisted.ensureDeferred
async def test_twisted_code_awaits_an_asyncio_coroutine() -> None:
    async def asyncio_work() -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, "from asyncio")
        return await future

    assert await deferred_from_coroutine(asyncio_work()) == "from asyncio"


@pytest_twisted.ensureDeferred
async def test_asyncio_code_awaits_a_deferred() -> None:
    async def asyncio_caller() -> str:
        d: Deferred[str] = Deferred()
        reactor.callLater(0, d.callback, "from twisted")
        return await await_deferred(d)

    assert await deferred_from_coroutine(asyncio_caller()) == "from twisted"


@pytest_twisted.ensureDeferred
async def test_both_sides_share_one_loop() -> None:
    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop = await deferred_from_coroutine(running_loop())
    assert loop is reactor._asyncioEventloop  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_cancelling_the_deferred_cancels_the_task() -> None:
    started: Deferred[None] = Deferred()
    cancelled: list[bool] = []

    async def forever() -> None:
        started.callback(None)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    d = deferred_from_coroutine(forever())
    await started
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    assert cancelled == [True]


@pytest_twisted.ensureDeferred
async def test_errors_cross_unchanged() -> None:
    async def fails() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await deferred_from_coroutine(fails())

    async def awaits_failed_deferred() -> None:
        d: Deferred[None] = Deferred()
        d.errback(KeyError("gone"))
        await await_deferred(d)

    with pytest.raises(KeyError):
        await deferred_from_coroutine(awaits_failed_deferred())
