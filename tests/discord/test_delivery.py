"""Contact messages delivered as the owner's Discord DM, through real discord.py."""

from __future__ import annotations

import time

import pytest

from jupybot.aio import await_deferred
from jupybot.contact.api import ContactMessage, DeliveryRefused, DeliveryUnavailable
from jupybot.discord import OwnerDirectMessages
from tests.matrix.user import asyncio_test

from .conftest import World

pytestmark = pytest.mark.peers


def message(number: int) -> ContactMessage:
    return ContactMessage(
        number, "Ada", "ada@example.org", "Hello", "Nice site!", "203.0.113.9", time.time() - 7200
    )


@asyncio_test
async def test_the_owner_gets_one_dm_per_message_with_the_details(world: World) -> None:
    channel = OwnerDirectMessages(world.part.client, int(world.owner["id"]))
    await await_deferred(channel.deliver(message(7), delayed_seconds=7200))
    await await_deferred(channel.deliver(message(7), delayed_seconds=7200))  # after a "crash"
    dm = world.discord.dm_channel(world.owner)
    [sent] = world.discord.bot_messages(dm["id"])
    [embed] = sent["embeds"]
    assert embed["title"] == "Hello" and embed["description"] == "Nice site!"
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert fields["From"] == "Ada" and fields["Email"] == "ada@example.org"
    assert fields["Client IP"] == "203.0.113.9"
    assert fields["Delayed"] == "delivered 120 min after it was sent"
    assert embed["footer"]["text"] == "contact #7"


@asyncio_test
async def test_an_owner_who_refuses_dms_is_a_refusal(world: World) -> None:
    world.discord.closed_dms.add(world.owner["id"])
    channel = OwnerDirectMessages(world.part.client, int(world.owner["id"]))
    with pytest.raises(DeliveryRefused, match="refused to message the owner"):
        await await_deferred(channel.deliver(message(8), delayed_seconds=0))


@asyncio_test
async def test_discord_down_is_retried_later(world: World) -> None:
    world.discord.down = True
    channel = OwnerDirectMessages(world.part.client, int(world.owner["id"]))
    with pytest.raises(DeliveryUnavailable):
        await await_deferred(channel.deliver(message(9), delayed_seconds=0))
