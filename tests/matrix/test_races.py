"""Two people racing in one room, and a restart in between: commands run in the order sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_twisted

from jupybot.aio import deferred_from_coroutine
from tests.peers.synapse import Synapse

from .conftest import BotRunner
from .kernels_double import CannedKernels
from .user import Event, UserClient, asyncio_test

pytestmark = pytest.mark.peers


@pytest_twisted.async_yield_fixture
async def bob_client(synapse: Synapse) -> AsyncIterator[UserClient]:
    client = UserClient(synapse, synapse.register(synapse.unique_localpart("bob")))
    await deferred_from_coroutine(client.start())
    yield client
    await deferred_from_coroutine(client.stop())


def executed(bot: BotRunner) -> list[str]:
    assert isinstance(bot.kernels, CannedKernels)
    return [str(call[2]) for call in bot.kernels.calls if call[0] == "execute"]


def sent_order(watcher: UserClient, room: str, codes: set[str]) -> list[str]:
    """The codes of the run commands in C{room}, in origin_server_ts order."""
    runs: list[tuple[int, str]] = []
    for room_id, event in watcher.events:
        body: str = event.get("content", {}).get("body", "")
        if room_id == room and body.startswith("!bot run ") and body[9:] in codes:
            runs.append((event["origin_server_ts"], body[9:]))
    # Stable: events of the same millisecond stay in timeline order, as the bot sees them.
    return [code for _, code in sorted(runs, key=lambda run: run[0])]


async def _runs_of(client: UserClient, room: str, codes: list[str]) -> list[str]:
    ids = []
    for code in codes:
        ids.append(await client.send(room, f"!bot run {code}"))
    return ids


async def _room_with(bot: BotRunner, alice: UserClient, bob: UserClient) -> str:
    room = await alice.create_room(invite=[bot.user_id, bob.user_id])
    await bob.join(room)
    await alice.wait_until(
        lambda: alice.joined(room, bot.user_id) and alice.joined(room, bob.user_id)
    )
    return room


def _last_answer(alice: UserClient, room: str, ids: list[str]) -> Event | None:
    return next(
        (r for r in alice.replies_to(room, ids[-1]) if "✅" in r["content"].get("body", "")), None
    )


@asyncio_test
async def test_two_people_racing_each_run_once_in_their_own_order(
    bot: BotRunner, alice_client: UserClient, bob_client: UserClient
) -> None:
    """Truly concurrent sends: the homeserver may stamp one event earlier and yet deliver it
    in a later sync, so only each person's own order is certain (the bot never holds commands
    back to wait for one that might still come: that would delay every answer)."""
    await bot.start(allowed_users=(alice_client.user_id, bob_client.user_id))
    room = await _room_with(bot, alice_client, bob_client)
    alice_codes = [f"a{i}" for i in range(3)]
    bob_codes = [f"b{i}" for i in range(3)]
    sent = await asyncio.gather(
        _runs_of(alice_client, room, alice_codes), _runs_of(bob_client, room, bob_codes)
    )
    for ids in sent:

        def answered(ids: list[str] = ids) -> Event | None:
            return _last_answer(alice_client, room, ids)

        await alice_client.wait_until(answered)
    runs = executed(bot)
    assert sorted(runs) == sorted(alice_codes + bob_codes)
    assert [c for c in runs if c.startswith("a")] == alice_codes
    assert [c for c in runs if c.startswith("b")] == bob_codes


@asyncio_test
async def test_two_people_taking_turns_fast_run_in_the_order_they_sent(
    bot: BotRunner, alice_client: UserClient, bob_client: UserClient
) -> None:
    await bot.start(allowed_users=(alice_client.user_id, bob_client.user_id))
    room = await _room_with(bot, alice_client, bob_client)
    codes = []
    for i in range(3):
        for client, who in ((alice_client, "a"), (bob_client, "b")):
            codes.append(f"{who}{i}")
            await client.send(room, f"!bot run {who}{i}")  # no waiting for answers
    await alice_client.wait_until(lambda: len(executed(bot)) == len(codes))
    assert executed(bot) == sent_order(alice_client, room, set(codes)) == codes


@asyncio_test
async def test_commands_sent_while_the_bot_was_down_run_in_order(
    bot: BotRunner, alice_client: UserClient, bob_client: UserClient
) -> None:
    await bot.start(allowed_users=(alice_client.user_id, bob_client.user_id))
    room = await _room_with(bot, alice_client, bob_client)
    await bot.stop()
    codes = []
    for i in range(3):
        for client, who in ((alice_client, "a"), (bob_client, "b")):
            codes.append(f"{who}{i}")
            await client.send(room, f"!bot run {who}{i}")
    await bot.start()
    await alice_client.wait_until(
        lambda: len([c for c in executed(bot) if c in codes]) == len(codes)
    )
    assert executed(bot) == sent_order(alice_client, room, set(codes)) == codes
