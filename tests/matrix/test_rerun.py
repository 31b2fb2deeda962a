"""Edit to re-run, 🔁 to repeat, output shown as printed: the Matrix bot on a real Synapse."""

from __future__ import annotations

from typing import Any

import pytest
from nio import RoomSendResponse

from jupybot.commands.safety import WORD_JOINER

from .conftest import BotRunner
from .kernels_double import CannedKernels
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


async def send_event(client: UserClient, room: str, kind: str, content: dict[str, Any]) -> str:
    response = await client.client.room_send(room, kind, content)
    assert isinstance(response, RoomSendResponse), response
    event_id: str = response.event_id
    return event_id


async def edit(client: UserClient, room: str, event_id: str, body: str) -> str:
    """An m.replace edit as Element sends it: a "* " fallback and the new content."""
    return await send_event(
        client,
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": f"* {body}",
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        },
    )


def executed(bot: BotRunner) -> list[str]:
    assert isinstance(bot.kernels, CannedKernels)
    return [str(call[2]) for call in bot.kernels.calls if call[0] == "execute"]


@asyncio_test
async def test_editing_a_run_reruns_it_in_the_same_reply(
    bot: BotRunner, alice_client: UserClient
) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    command = await alice_client.send(room, "!bot run 1 +")
    await alice_client.answer(room, command, "echo: 1 +")
    await edit(alice_client, room, command, "!bot run 1 + 1")
    reply = await alice_client.answer(room, command, "echo: 1 + 1")
    assert "[2]" in reply["content"]["body"]
    assert len(alice_client.replies_to(room, command)) == 1
    # An edit of something that was not a run starts nothing.
    help_id = await alice_client.send(room, "!bot help")
    await alice_client.answer(room, help_id, "Commands:")
    await edit(alice_client, room, help_id, "!bot run sneaky()")
    after = await alice_client.send(room, "!bot run after()")
    await alice_client.answer(room, after, "echo: after()")
    assert executed(bot) == ["1 +", "1 + 1", "after()"]


@asyncio_test
async def test_a_repeat_reaction_runs_the_code_again(
    bot: BotRunner, alice_client: UserClient
) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    command = await alice_client.send(room, "!bot run roll()")
    reply = await alice_client.answer(room, command, "echo: roll()")
    await send_event(
        alice_client,
        room,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": reply["event_id"], "key": "🔁"}},
    )
    await alice_client.answer(room, command, "[2]")
    assert executed(bot) == ["roll()", "roll()"]
    assert len(alice_client.replies_to(room, command)) == 1


@asyncio_test
async def test_output_is_shown_as_printed_and_pings_nobody(
    bot: BotRunner, alice_client: UserClient
) -> None:
    await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    command = await alice_client.send(room, '!bot run {"user": "@bot:localhost"} @room')
    reply = await alice_client.answer(room, command, "✅ done")
    body = reply["content"]["body"]
    assert '{"user": "@bot:localhost"} @room' in body
    assert WORD_JOINER not in body + reply["content"]["formatted_body"]
    # What stops the ping: intentional mentions, empty (Matrix 1.7).
    assert reply["content"]["m.mentions"] == {}
