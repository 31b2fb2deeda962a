"""The bot as an Element user of 2026 meets it: matrix-js-sdk's Rust crypto, excluding insecure
devices (OnlySignedDevicesIsolationMode), in an encrypted direct chat (tests/peers/element)."""

from __future__ import annotations

import asyncio

import pytest

from jupybot.config import Secret
from tests.peers.element_client import ElementClient, Event
from tests.peers.synapse import Synapse

from .conftest import BotRunner
from .user import asyncio_test

pytestmark = pytest.mark.peers


async def _direct_chat(element: ElementClient, bot: BotRunner) -> str:
    """A direct chat Alice opens with the bot as Element does (encrypted), once it joined."""
    room: str = (await asyncio.to_thread(element.call, "create_dm", user=bot.user_id))["room_id"]
    await asyncio.to_thread(element.wait_joined, room, bot.user_id)
    return room


async def _answer(element: ElementClient, room: str, sender: str, contains: str) -> Event:
    return await asyncio.to_thread(element.answer, room, sender, contains)


@asyncio_test
async def test_an_encrypted_direct_chat_is_answered_from_a_device_signed_by_its_owner(
    bot: BotRunner, element: ElementClient
) -> None:
    part = await bot.start(encryption=True)
    assert part.bot is not None
    room = await _direct_chat(element, bot)
    await asyncio.to_thread(element.call, "send", room_id=room, body="!bot run print(1)")
    answer = await _answer(element, room, bot.user_id, "✅ done")
    assert "echo: print(1)" in answer["content"]["body"]
    # Decrypted by the Rust crypto, from a device it does not warn about.
    assert answer["encrypted"] and answer["failure"] is None
    assert answer["shield"] == {"colour": 0, "reason": None}
    # What Element's member list shows: the bot's device signed by its owner.
    seen = await asyncio.to_thread(element.call, "devices", user=bot.user_id)
    devices = {d["device_id"]: d for d in seen["devices"]}
    assert devices[part.bot.client.device_id]["signed_by_owner"]
    assert seen["identity_known"]
    # An image (the canned kernel's PNG) is sent encrypted and decrypted by the client.
    await asyncio.to_thread(element.call, "send", room_id=room, body="!bot run image")
    image = await asyncio.to_thread(
        element.wait_for,
        lambda e: (
            e.get("event") == "message"
            and e["room_id"] == room
            and e["sender"] == bot.user_id
            and e["content"].get("msgtype") == "m.image"
        ),
    )
    assert image["encrypted"] and image["failure"] is None
    shown = await asyncio.to_thread(element.call, "image", content=image["content"])
    assert shown["head"] == "89504e470d0a1a0a"  # a PNG


@asyncio_test
async def test_without_cross_signing_the_key_is_withheld_and_the_bot_says_so(
    bot: BotRunner, element: ElementClient
) -> None:
    """The control: the bot's device unsigned, Element withholds the room key (m.unverified);
    the command is not run, and the bot's notice, sent in clear, tells the person why."""
    await bot.start(encryption=True, cross_signing=False)
    room = await _direct_chat(element, bot)
    await asyncio.to_thread(element.call, "send", room_id=room, body="!bot run print(1)")
    notice = await _answer(element, room, bot.user_id, "withheld from me (m.unverified")
    assert not notice["encrypted"]
    assert element.user_id in notice["content"]["body"]
    assert "matrix.cross_signing" in notice["content"]["body"]
    # The notice comes from the sync that carried the command: no answer was started.
    assert [m["event_id"] for m in element.messages(room, bot.user_id)] == [notice["event_id"]]


@asyncio_test
async def test_an_identity_made_in_element_is_used_through_its_recovery_key(
    bot: BotRunner, synapse: Synapse, element: ElementClient
) -> None:
    """The owner logged in to the bot's account with Element first, which made the identity and
    set up recovery: jupybot signs its device with that identity, read from secret storage."""
    owner = await asyncio.to_thread(ElementClient, synapse, bot.account)
    try:
        made = await asyncio.to_thread(owner.call, "secret_storage")
        seen_by_owner = await asyncio.to_thread(owner.call, "devices", user=bot.user_id)
    finally:
        await asyncio.to_thread(owner.stop)
    assert seen_by_owner["identity_known"]
    wrong = await bot.start(encryption=True)
    assert wrong.detail is not None and "matrix.recovery_key" in wrong.detail
    await bot.stop()
    part = await bot.start(recovery_key=Secret(made["recovery_key"]))
    assert part.detail is None and part.bot is not None
    room = await _direct_chat(element, bot)
    await asyncio.to_thread(element.call, "send", room_id=room, body="!bot run 6*7")
    answer = await _answer(element, room, bot.user_id, "✅ done")
    assert answer["encrypted"] and answer["failure"] is None
    # The bot's device is signed by the identity Element made, which signs the owner's
    # Element session too: nothing was replaced.
    seen = await asyncio.to_thread(element.call, "devices", user=bot.user_id)
    devices = {d["device_id"]: d for d in seen["devices"]}
    assert devices[part.bot.client.device_id]["signed_by_owner"]
    assert devices[owner.device_id]["signed_by_owner"]


@asyncio_test
async def test_a_person_verifies_the_bot_with_emoji(bot: BotRunner, element: ElementClient) -> None:
    """Element's "Verify" then "Verify by emoji" in the direct chat: the bot shows the same
    emojis in the room, and Element then trusts the bot's identity (not only its device)."""
    await bot.start(encryption=True)
    room = await _direct_chat(element, bot)
    verified = await asyncio.to_thread(element.call, "verify", user=bot.user_id, room_id=room)
    assert verified["verified"]
    shown = await _answer(element, room, bot.user_id, "To verify me, check that your screen shows")
    assert "  ".join(verified["emoji"]) in shown["content"]["body"]
