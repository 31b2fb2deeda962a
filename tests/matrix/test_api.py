"""Retries of the bot's homeserver calls, on a fake clock: 429 waits, backoff, idempotent sends,
and edits of one event coalesced while the rate limit holds them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from nio import ErrorResponse, RoomSendResponse
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue

from jupybot.aio import await_deferred, deferred_from_coroutine
from jupybot.matrix.api import MatrixApi, MatrixError
from tests.clocks import SchedulingClock

from .user import asyncio_test


class FlakyClient:
    """Answers room_send with the scripted responses (or raises the scripted errors) in turn."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.transactions: list[str] = []
        self.contents: list[Any] = []

    async def room_send(self, room_id: str, event_type: str, content: Any, **kw: Any) -> Any:
        self.transactions.append(kw["tx_id"])
        self.contents.append(content)
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


@asyncio_test
async def test_429s_are_waited_out_however_many_and_counted() -> None:
    clock = SchedulingClock()
    client = FlakyClient([limited(5000)] * 4 + [RoomSendResponse("$ok", "!r")])
    api = MatrixApi(client, clock, policy=lambda attempt: 99.0, max_attempts=2)
    sent = deferred_from_coroutine(api.send("!r", "m.room.message", {}))
    for _ in range(4):
        assert await until_scheduled(clock) == pytest.approx(5.0)
        clock.advance(5.0)
    assert await await_deferred(sent) == "$ok"
    assert api.rate_limited == 4


@asyncio_test
async def test_a_429_holds_back_every_send_of_the_account() -> None:
    clock = SchedulingClock()
    client = FlakyClient(
        [limited(5000), RoomSendResponse("$a", "!r"), RoomSendResponse("$b", "!r")]
    )
    api = MatrixApi(client, clock)
    first = deferred_from_coroutine(api.send("!r", "m.room.message", {"n": 1}))
    assert await until_scheduled(clock) == pytest.approx(5.0)
    clock.advance(2.0)
    second = deferred_from_coroutine(api.send("!other", "m.room.message", {"n": 2}))
    await asyncio.sleep(0)  # one turn of the loop: the second send starts, and waits its turn
    # The second send waits for the rest of the hold instead of asking (and being refused).
    clock.advance(2.9)
    assert client.contents == [{"n": 1}] and not second.called
    clock.advance(0.1)
    assert await await_deferred(first) == "$a"
    assert await await_deferred(second) == "$b"
    assert client.contents == [{"n": 1}, {"n": 1}, {"n": 2}]


@asyncio_test
async def test_while_the_account_is_held_rooms_take_turns() -> None:
    clock = SchedulingClock()
    client = FlakyClient([limited(5000)] + [RoomSendResponse(f"${n}", "!r") for n in range(7)])
    api = MatrixApi(client, clock)
    flood = [
        deferred_from_coroutine(api.send("!flood", "m.room.message", {"n": f"f{n}"}))
        for n in range(5)
    ]
    assert await until_scheduled(clock) == pytest.approx(5.0)
    quiet = deferred_from_coroutine(api.send("!quiet", "m.room.message", {"n": "q"}))
    await asyncio.sleep(0)  # one turn of the loop: the quiet room's send waits its turn
    clock.advance(5.0)
    for sent in [*flood, quiet]:
        await await_deferred(sent)
    # The flooded room's 429 goes again first, then the quiet room: not after the backlog.
    assert [c["n"] for c in client.contents] == ["f0", "f0", "q", "f1", "f2", "f3", "f4"]


def edit(target: str, text: str) -> dict[str, Any]:
    return {
        "body": f"* {text}",
        "m.new_content": {"body": text},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
    }


@asyncio_test
async def test_an_edit_waiting_for_the_limit_is_replaced_by_the_newer_one() -> None:
    clock = SchedulingClock()
    client = FlakyClient([limited(5000), RoomSendResponse("$e2", "!r")])
    api = MatrixApi(client, clock)
    older = deferred_from_coroutine(api.send("!r", "m.room.message", edit("$reply", "line 0")))
    assert await until_scheduled(clock) == pytest.approx(5.0)
    newer = deferred_from_coroutine(
        api.send("!r", "m.room.message", edit("$reply", "line 0 line 1 done"))
    )
    clock.advance(5.0)
    assert await await_deferred(newer) == "$e2"
    assert await await_deferred(older) == "$e2"
    # One slot of the limit for both: the waiting edit went out as the newer one, with the
    # newer one's own transaction (a transaction id is bound to its content).
    assert [c["m.new_content"]["body"] for c in client.contents] == ["line 0", "line 0 line 1 done"]
    assert len(set(client.transactions)) == 2


class WireClient(FlakyClient):
    """Each send stays on the wire until the test answers it; C{arrived} hands them out."""

    def __init__(self) -> None:
        super().__init__([])
        self.arrived: DeferredQueue[tuple[str, Deferred[Any]]] = DeferredQueue()

    async def room_send(self, room_id: str, event_type: str, content: Any, **kw: Any) -> Any:
        self.contents.append(content)
        answer: Deferred[Any] = Deferred()
        self.arrived.put((content["m.new_content"]["body"], answer))
        return await await_deferred(answer)


async def next_on_the_wire(client: WireClient) -> tuple[str, Deferred[Any]]:
    return await await_deferred(client.arrived.get().addTimeout(10, reactor))


@asyncio_test
async def test_edits_of_one_event_never_overtake_each_other() -> None:
    client = WireClient()
    api = MatrixApi(client, SchedulingClock())
    first = deferred_from_coroutine(api.send("!r", "m.room.message", edit("$reply", "a")))
    other = deferred_from_coroutine(api.send("!r", "m.room.message", edit("$another", "x")))
    (body_a, answer_a), (body_x, answer_x) = [await next_on_the_wire(client) for _ in "ax"]
    assert (body_a, body_x) == ("a", "x")
    second = deferred_from_coroutine(api.send("!r", "m.room.message", edit("$reply", "a b")))
    third = deferred_from_coroutine(api.send("!r", "m.room.message", edit("$reply", "a b c")))
    # While "a" is on the wire nothing else of $reply is sent; then only the newest.
    assert not client.arrived.pending
    answer_a.callback(RoomSendResponse("$e1", "!r"))
    assert await await_deferred(first) == "$e1"
    body, answer = await next_on_the_wire(client)
    assert body == "a b c"
    answer.callback(RoomSendResponse("$e3", "!r"))
    assert await await_deferred(second) == await await_deferred(third) == "$e3"
    answer_x.callback(RoomSendResponse("$x", "!r"))
    assert await await_deferred(other) == "$x"
    assert len(client.contents) == 3
