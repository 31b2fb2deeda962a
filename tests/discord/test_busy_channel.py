"""What a busy channel expects, on real discord.py and the fake Discord: edit a command to run
it again, 🔁 its reply to repeat it, one run per person at a time, in the order sent."""

from __future__ import annotations

import pytest

from tests.matrix.kernels_double import CannedKernels
from tests.matrix.user import asyncio_test
from tests.peers.fake_discord import Json

from .conftest import World

pytestmark = pytest.mark.peers


def _executed(world: World) -> list[str]:
    assert isinstance(world.kernels, CannedKernels)
    return [str(call[2]) for call in world.kernels.calls if call[0] == "execute"]


def _replies(world: World, channel: Json) -> list[Json]:
    return world.discord.bot_messages(channel["id"])


async def _user_edits(world: World, message: Json, content: str) -> None:
    """The user edits their message: stored, and MESSAGE_UPDATE dispatched to the bot."""
    message["content"] = content
    message["edited_timestamp"] = message["timestamp"]
    await world.discord._dispatch("MESSAGE_UPDATE", message)


async def _user_reacts(world: World, user: Json, message: Json, emoji: str) -> None:
    await world.discord._dispatch(
        "MESSAGE_REACTION_ADD",
        {
            "user_id": user["id"],
            "channel_id": message["channel_id"],
            "message_id": message["id"],
            "emoji": {"id": None, "name": emoji},
            "type": 0,
            "burst": False,
        },
    )


@asyncio_test
async def test_editing_a_command_reruns_it_in_the_same_reply(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    command = await world.discord.user_says(world.alice, channel, "run 1+")
    [reply] = await world.discord.wait_for(lambda: _replies(world, channel))
    assert "echo: 1+" in reply["content"]
    # Discord updates a message when it adds a link preview: same text, nothing runs.
    command["embeds"] = [{"type": "link", "url": "https://example.org"}]
    await _user_edits(world, command, "run 1+")
    await _user_edits(world, command, "run 1+1")
    await world.discord.wait_for(lambda: "echo: 1+1" in reply["content"])
    assert "[2]" in reply["content"]
    assert len(_replies(world, channel)) == 1
    assert _executed(world) == ["1+", "1+1"]


@asyncio_test
async def test_a_repeat_reaction_on_the_reply_runs_it_again(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    await world.discord.user_says(world.alice, channel, "run roll()")
    [reply] = await world.discord.wait_for(lambda: _replies(world, channel))
    assert "[1]" in reply["content"]
    await _user_reacts(world, world.mallory, reply, "🔁")  # not allowed: nothing happens
    await _user_reacts(world, world.alice, reply, "🔁")
    await world.discord.wait_for(lambda: "[2]" in reply["content"])
    assert "echo: roll()" in reply["content"]
    assert len(_replies(world, channel)) == 1
    assert _executed(world) == ["roll()", "roll()"]


@asyncio_test
async def test_a_second_run_waits_for_the_first_in_order(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    first = await world.discord.user_says(world.alice, channel, "run stream 2")
    second = await world.discord.user_says(world.alice, channel, "run after()")
    # The second one is queued, and says so with ⏳ on the command.
    await world.discord.wait_for(lambda: second.get("reactions"))
    assert second["reactions"] == [{"emoji": {"name": "⏳"}}]
    assert _executed(world) == ["stream 2"]
    assert isinstance(world.kernels, CannedKernels)
    world.kernels.print_next_line()
    await world.discord.wait_for(
        lambda: [m for m in _replies(world, channel) if "echo: after()" in m["content"]]
    )
    assert _executed(world) == ["stream 2", "after()"]
    # The first ran at once: its only reaction says it is done.
    assert first["reactions"] == [{"emoji": {"name": "✅"}}]
