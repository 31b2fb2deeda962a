"""The bot survives its homeserver restarting under it (one test: it restarts the shared Synapse)."""

from __future__ import annotations

import asyncio

import pytest

from tests.peers.synapse import Synapse

from .conftest import BotRunner
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


@asyncio_test
async def test_homeserver_restart_is_survived(
    bot: BotRunner, alice_client: UserClient, synapse: Synapse
) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    first = await alice_client.send(room, "!bot run one")
    await alice_client.answer(room, first, "echo: one")
    # Synapse's stop and start block on its output: keep the shared loop free meanwhile.
    await asyncio.to_thread(synapse.restart)
    second = await alice_client.send(room, "!bot run two")
    await alice_client.answer(room, second, "echo: two", within=60)
