"""Contact messages posted in a Matrix room by the bot, once each, against the real Synapse."""

from __future__ import annotations

import time

import pytest

from jupybot.aio import await_deferred
from jupybot.contact.api import ContactMessage
from jupybot.matrix import MatrixContactRoom

from .conftest import BotRunner
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


@asyncio_test
async def test_a_contact_message_is_posted_once(bot: BotRunner, alice_client: UserClient) -> None:
    part = await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    channel = MatrixContactRoom(part.connected_api, room)
    message = ContactMessage(
        5, "Ada", "ada@example.org", "Hello", "Nice site!", "203.0.113.9", time.time() - 3600
    )
    await await_deferred(channel.deliver(message, delayed_seconds=3600))
    await await_deferred(channel.deliver(message, delayed_seconds=3600))  # as after a crash
    _, event = await alice_client.wait_for(
        lambda r, e: r == room and "contact #5" in e["content"].get("body", "")
    )
    body = event["content"]["body"]
    assert "Ada <ada@example.org>, 203.0.113.9" in body and "Nice site!" in body
    assert "delivered 60 min after it was sent" in body
    marker = await alice_client.send(room, "after")
    await alice_client.wait_for(lambda r, e: e.get("event_id") == marker)
    posted = [
        e
        for r, e in alice_client.events
        if r == room and "contact #5" in e["content"].get("body", "")
    ]
    assert len(posted) == 1
