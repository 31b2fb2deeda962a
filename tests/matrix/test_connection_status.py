"""/ping's view of the Matrix part: down while no sync has come back for longer than a sync
takes, running again with the next one (real Synapse; the part's clock pushed forward instead of
waiting 45 s)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jupybot.aio import await_deferred

from .conftest import BotRunner, ObservedMatrixPart
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


class ShiftedClock:
    """The reactor, with its time pushed forward at will; L{read} is set whenever someone reads
    the time (the part does when a sync came back)."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.offset = 0.0
        self.read = asyncio.Event()

    def seconds(self) -> float:
        self.read.set()
        return float(self._reactor.seconds()) + self.offset

    def callLater(self, delay: float, f: Any, *args: Any, **kwargs: Any) -> Any:
        return self._reactor.callLater(delay, f, *args, **kwargs)

    def getDelayedCalls(self) -> Any:
        return self._reactor.getDelayedCalls()


@asyncio_test
async def test_the_part_is_down_while_syncs_stall_and_up_with_the_next(
    bot: BotRunner, alice_client: UserClient
) -> None:
    from twisted.internet import reactor

    clock = ShiftedClock(reactor)
    part = ObservedMatrixPart(
        bot.config, bot.kernels, bot.state, clock, backoff=lambda attempt: 0.2, render=bot.render
    )
    part.startService()
    try:
        await await_deferred(part.serving)
        assert part.status == "running"
        clock.offset = 60  # the pending sync is now a minute old
        assert part.status == "down: no sync from the homeserver for 60 s"
        # An invitation ends the bot's long poll: a sync comes back.
        room = await alice_client.create_room(invite=[bot.user_id])
        await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
        # (The bot joined while handling that sync, just before the sync counts as done.)
        async with asyncio.timeout(10):
            while part.status != "running":
                clock.read.clear()
                await clock.read.wait()
    finally:
        await await_deferred(part.stopService())
