"""Retries of the bot's homeserver calls, on a fake clock: 429 waits, backoff, idempotent sends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from nio import ErrorResponse, RoomSendResponse
from twisted.internet import reactor

from jupybot.aio import await_deferred, deferred_from_coroutine
from jupybot.matrix.api import MatrixApi, MatrixError
from tests.clocks import SchedulingClock

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


async def until_scheduled(clock: SchedulingClock) -> float:
    """Wait (up to 10 s) until the next retry is put on the clock; its delay."""
    return await await_deferred(clock.scheduled.addTimeout(10, reactor))


def limited(ms: int | None) -> ErrorResponse:
    return ErrorResponse("Too Many Requests", "M_LIMIT_EXCEEDED", ms)


@asyncio_test
async def test_429_waits_exactly_retry_after_ms_and_reuses_the_transaction() -> None:
    clock = SchedulingClock()
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
    clock = SchedulingClock()
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


def server_error(status: int) -> ErrorResponse:
    response = ErrorResponse("Bad Gateway", "M_UNKNOWN")
    response.transport_response = SimpleNamespace(status=status)  # what nio keeps of the answer
    return response


@asyncio_test
async def test_5xx_answers_back_off_and_reuse_the_transaction() -> None:
    clock = SchedulingClock()
    client = FlakyClient([server_error(502), server_error(503), RoomSendResponse("$ok", "!r")])
    api = MatrixApi(client, clock, policy=lambda attempt: 2.0**attempt)
    sent = deferred_from_coroutine(api.send("!r", "m.room.message", {}))
    assert await until_scheduled(clock) == 1.0
    clock.advance(1.0)
    assert await until_scheduled(clock) == 2.0
    assert not sent.called
    clock.advance(2.0)
    assert await await_deferred(sent) == "$ok"
    assert len(client.transactions) == 3 and len(set(client.transactions)) == 1


@asyncio_test
async def test_permanent_errors_are_not_retried() -> None:
    clock = SchedulingClock()
    client = FlakyClient([ErrorResponse("Forbidden", "M_FORBIDDEN")])
    api = MatrixApi(client, clock)
    with pytest.raises(MatrixError, match="M_FORBIDDEN"):
        await api.send("!r", "m.room.message", {})
    assert clock.getDelayedCalls() == []
