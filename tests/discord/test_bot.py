"""The Discord bot with real discord.py over loopback sockets to the fake Discord."""

from __future__ import annotations

import pytest

from tests.matrix.kernels_double import CannedKernels
from tests.matrix.user import asyncio_test
from tests.peers.fake_discord import Json

from .conftest import World

pytestmark = pytest.mark.peers


@asyncio_test
async def test_whoami_tells_users_their_id(world: World) -> None:
    channel = world.discord.dm_channel(world.mallory)
    interaction = await world.discord.user_runs(world.mallory, channel, "whoami")
    entry = world.discord.interactions[interaction["token"]]
    response = await world.discord.wait_for(lambda: entry["response"])
    assert response["content"] == f"Your Discord user id is {world.mallory['id']}."
    assert response["ephemeral"]


@asyncio_test
async def test_sync_is_for_the_owner_only(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    interaction = await world.discord.user_runs(world.alice, channel, "sync")
    entry = world.discord.interactions[interaction["token"]]
    refused = await world.discord.wait_for(lambda: entry["response"])
    assert refused["content"] == "Only the bot's owner may sync its commands."
    assert world.discord.commands == []

    channel = world.discord.dm_channel(world.owner)
    interaction = await world.discord.user_runs(world.owner, channel, "sync")
    entry = world.discord.interactions[interaction["token"]]
    synced = await world.discord.wait_for(lambda: entry["response"])
    names = sorted(command["name"] for command in world.discord.commands)
    assert names == ["kernel", "run", "sync", "whoami"]
    assert synced["content"] == "Synced 4 command(s)."


@asyncio_test
async def test_a_direct_message_runs_code_without_a_prefix(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    await world.discord.user_says(world.alice, channel, "run 1+1")
    answer = await world.discord.wait_for(
        lambda: [m for m in world.discord.bot_messages(channel["id"]) if "done" in m["content"]]
    )
    assert "echo: 1+1" in answer[0]["content"]
    assert answer[0]["allowed_mentions"]["parse"] == []  # nothing printed can ping anyone


@asyncio_test
async def test_slash_run_answers_in_the_channel(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    await world.discord.user_runs(world.alice, channel, "run", code="print(42)")
    answer = await world.discord.wait_for(
        lambda: [m for m in world.discord.bot_messages(channel["id"]) if "done" in m["content"]]
    )
    assert "echo: print(42)" in answer[0]["content"]


@asyncio_test
async def test_strangers_are_refused(world: World) -> None:
    channel = world.discord.dm_channel(world.mallory)
    await world.discord.user_says(world.mallory, channel, "run 1+1")
    refusal = await world.discord.wait_for(lambda: world.discord.bot_messages(channel["id"]))
    assert "not allowed" in refusal[0]["content"]


@asyncio_test
async def test_long_output_is_cut_and_attached(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    await world.discord.user_says(world.alice, channel, "run long")
    answer = await world.discord.wait_for(
        lambda: [m for m in world.discord.bot_messages(channel["id"]) if m["files"]]
    )
    assert len(answer[0]["content"]) <= 2000
    assert any(f["filename"] == "output.txt" for f in answer[0]["files"])


@asyncio_test
async def test_output_streams_into_one_edited_reply(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    assert isinstance(world.kernels, CannedKernels)
    await world.discord.user_says(world.alice, channel, "run stream 3")

    def reply_with(text: str) -> list[Json]:
        return [m for m in world.discord.bot_messages(channel["id"]) if text in m["content"]]

    # Each line is printed once the one before is shown: posted with line 0, edited with
    # line 1 (one edit per edit interval at most), edited a last time with line 2 and the end.
    await world.discord.wait_for(lambda: reply_with("line 0"))
    world.kernels.print_next_line()
    await world.discord.wait_for(lambda: reply_with("line 1"))
    world.kernels.print_next_line()
    [reply] = await world.discord.wait_for(lambda: reply_with("done"))
    assert "line 0\nline 1\nline 2" in reply["content"]
    assert reply.get("edits", 0) == 2
    assert len(world.discord.bot_messages(channel["id"])) == 1


@asyncio_test
async def test_input_is_answered_by_the_next_message(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    await world.discord.user_says(world.alice, channel, "run ask name?")
    await world.discord.wait_for(
        lambda: [m for m in world.discord.bot_messages(channel["id"]) if "name?" in m["content"]]
    )
    await world.discord.user_says(world.alice, channel, "Ada")
    await world.discord.wait_for(
        lambda: [m for m in world.discord.bot_messages(channel["id"]) if "got Ada" in m["content"]]
    )


@asyncio_test
async def test_errors_show_the_exception_first_without_colours(world: World) -> None:
    channel = world.discord.dm_channel(world.alice)
    await world.discord.user_says(world.alice, channel, "run fail")
    [reply] = await world.discord.wait_for(
        lambda: [m for m in world.discord.bot_messages(channel["id"]) if "error" in m["content"]]
    )
    assert "ValueError: bad" in reply["content"] and "\x1b" not in reply["content"]
