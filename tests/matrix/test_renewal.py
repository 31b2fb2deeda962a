"""A refused access token is renewed once however many calls were refused, then each call is made
again (fake homeserver answers, the renewal a Deferred the test fires)."""

from __future__ import annotations

from typing import Any

import pytest
from nio import AsyncClient, ErrorResponse, RoomSendResponse
from twisted.internet.defer import Deferred

from jupybot.aio import await_deferred, deferred_from_coroutine
from jupybot.matrix.api import MatrixApi, MatrixError
from jupybot.matrix.tokens import RenewingClient
from tests.clocks import SchedulingClock

from .user import asyncio_test


def unknown_token(soft_logout: bool = True) -> ErrorResponse:
    return ErrorResponse("Access token has expired", "M_UNKNOWN_TOKEN", soft_logout=soft_logout)


class TokenClient:
    """Accepts a send only with the current token; records which token each send carried."""

    def __init__(self) -> None:
        self.access_token = "old"
        self.valid = "new"
        self.sent: list[tuple[str, str]] = []
        self.logged_in = True

    async def room_send(self, room_id: str, event_type: str, content: Any, **kw: Any) -> Any:
        self.sent.append((self.access_token, kw["tx_id"]))
        if self.access_token != self.valid:
            return unknown_token()
        return RoomSendResponse(f"$sent-{len(self.sent)}", room_id)


class ManualRenewal:
    """Renews when the test says so; counts the renewals started."""

    def __init__(self, client: TokenClient) -> None:
        self.client = client
        self.generation = 0
        self.started = 0
        self.release: Deferred[None] = Deferred()
        self._running: Deferred[None] | None = None

    async def renew(self, seen: int) -> None:
        if seen < self.generation:
            return
        if self._running is None:
            self.started += 1
            self._running = self.release
        await await_deferred(self._running)
        if self.generation == seen:
            self.client.access_token = self.client.valid
            self.generation += 1


@asyncio_test
async def test_calls_refused_together_wait_for_one_renewal_and_go_through() -> None:
    client = TokenClient()
    api = MatrixApi(client, SchedulingClock())
    renewal = ManualRenewal(client)
    api.renewal = renewal
    sends = [
        deferred_from_coroutine(api.send("!r", "m.room.message", {"n": n}, transaction=f"t{n}"))
        for n in range(3)
    ]
    # Let all three meet the refusal before the renewal ends.
    while len(client.sent) < 3:
        await await_deferred(_next_turn())
    assert renewal.started == 1
    assert not any(d.called for d in sends)
    renewal.release.callback(None)
    ids = [await await_deferred(d) for d in sends]
    assert len(set(ids)) == 3
    # Each send went again with the new token and its own transaction id (never posted twice).
    retried = client.sent[3:]
    assert sorted(retried) == [("new", "t0"), ("new", "t1"), ("new", "t2")]


@asyncio_test
async def test_without_a_renewal_a_refused_token_is_the_callers_error() -> None:
    """As before this existed (and with renewal switched off): the send fails for good."""
    client = TokenClient()
    api = MatrixApi(client, SchedulingClock())
    with pytest.raises(MatrixError, match="M_UNKNOWN_TOKEN"):
        await api.send("!r", "m.room.message", {}, transaction="t")
    assert client.sent == [("old", "t")]


@asyncio_test
async def test_the_renewals_own_calls_are_not_renewed() -> None:
    client = TokenClient()
    api = MatrixApi(client, SchedulingClock())
    renewal = ManualRenewal(client)
    api.renewal = renewal

    async def refused() -> ErrorResponse:
        return unknown_token(soft_logout=False)

    response = await api.retrying("refreshing", refused, renew=False)
    assert isinstance(response, ErrorResponse) and renewal.started == 0


def _next_turn() -> Deferred[None]:
    from twisted.internet import reactor

    d: Deferred[None] = Deferred()
    reactor.callLater(0, d.callback, None)
    return d


@asyncio_test
async def test_the_client_keeps_a_token_the_server_called_expired_until_it_is_renewed() -> None:
    """nio's own client forgets it (the control), and every call made during the renewal would
    fail as "not logged in", including the key claims nio makes inside an encrypted send."""
    refusal = unknown_token(soft_logout=True)
    ours = RenewingClient("http://127.0.0.1:9", "@bot:example.org")
    nios = AsyncClient("http://127.0.0.1:9", "@bot:example.org")
    for client in (ours, nios):
        client.access_token = "expired-token"
        await client.receive_response(refusal)
    assert ours.logged_in and ours.access_token == "expired-token"
    assert not nios.logged_in
    await ours.close()
    await nios.close()
