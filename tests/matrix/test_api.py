"""Retries of the bot's homeserver calls, on a fake clock: 429 waits, backoff, idempotent sends."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from nio import ErrorResponse, RoomSendResponse
from twisted.internet.task import Clock

from jupybot.aio import await_deferred, deferred_from_coroutine
from jupybot.matrix.api import MatrixApi, MatrixError

from .user import asyncio_test


class FlakyClient:
    """Answers room_send with the scripted responses (or raises the scripted errors) in turn."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.transactions: list[str] = []

    async def room_send(self, room_id: str, event_type: str, content: Any, **kw: Any) -> Any:
        self.transactions.append(kw["tx_id"])
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


async def until_scheduled(clock: Clock) -> float:
    """Let the loop run until the retry is scheduled; its delay."""
    for _ in range(1000):
        if clock.getDelayedCalls():
            return clock.getDelayedCalls()[0].getTime() - clock.seconds()
        await asyncio.sleep(0)
    raise AssertionError("no retry was scheduled")


def limited(ms: int | None) -> ErrorResponse:
    return ErrorResponse("Too Many Requests", "M_LIMIT_EXCEEDED", ms)


@asyncio_test
async def test_429_waits_exactly_retry_after_ms_and_reuses_the_transaction() -> None:
    clock = Clock()
    client = FlakyClient([limited(1500), RoomSendResponse("$ok", "!r")])
    api = MatrixApi(client, clock, policy=lambda attempt: 99.0)
    sent = deferred_from_coroutine(api.send("!r", "m.room.message", {}))
    assert await until_scheduled(clock) == pytest.approx(1.5)
    assert not sent.called
    clock.advance(1.5)
    assert await await_deferred(sent) == "$ok"
    assert len(client.transactions) == 2 and len(set(client.transactions)) == 1


@asyncio_test
async def test_network_errors_back_off_then_give_up() -> None:
    clock = Clock()
    error = aiohttp.ClientConnectionError("refused")
    client = FlakyClient([error, error, error])
    api = MatrixApi(client, clock, policy=lambda attempt: 2.0**attempt, max_attempts=3)
    sent = deferred_from_coroutine(api.send("!r", "m.room.message", {}))
    assert await until_scheduled(clock) == 1.0
    clock.advance(1.0)
    assert await until_scheduled(clock) == 2.0
    clock.advance(2.0)
    with pytest.raises(
        MatrixError, match="failed after 3 attempts: ClientConnectionError: refused"
    ):
        await await_deferred(sent)


@asyncio_test
async def test_permanent_errors_are_not_retried() -> None:
    clock = Clock()
    client = FlakyClient([ErrorResponse("Forbidden", "M_FORBIDDEN")])
    api = MatrixApi(client, clock)
    with pytest.raises(MatrixError, match="M_FORBIDDEN"):
        await api.send("!r", "m.room.message", {})
    assert clock.getDelayedCalls() == []
