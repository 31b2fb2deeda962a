"""A contact message Discord refuses reaches the owner's Matrix room instead (real Synapse)."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, fail

from jupybot.aio import await_deferred
from jupybot.contact.api import ContactMessage, DeliveryRefused
from jupybot.contact.outbox import Outbox
from jupybot.contact.part import ContactThreadPool
from jupybot.contact.registry import ChannelRegistry
from jupybot.contact.store import ContactStore, NewMessage
from jupybot.matrix import MatrixContactRoom
from jupybot.reactor import installed_reactor

from .conftest import BotRunner
from .user import UserClient, asyncio_test

pytestmark = pytest.mark.peers


class RefusedDirectMessages:
    """The owner's Discord DMs, closed (what OwnerDirectMessages says on Discord's 50007)."""

    name = "discord"

    def deliver(self, message: ContactMessage, delayed_seconds: float) -> Deferred[None]:
        return fail(DeliveryRefused("Discord refused to message the owner (error 50007: ...)"))


@asyncio_test
async def test_a_message_discord_refuses_is_posted_in_the_matrix_room(
    bot: BotRunner, alice_client: UserClient, tmp_path: Path
) -> None:
    from twisted.internet import reactor

    part = await bot.start()
    room = await alice_client.create_room(invite=[bot.user_id])
    await alice_client.wait_until(lambda: alice_client.joined(room, bot.user_id))
    registry = ChannelRegistry()
    registry.register(RefusedDirectMessages())
    registry.register(MatrixContactRoom(part.connected_api, room))
    pool = ContactThreadPool()
    pool.start()
    store = ContactStore(installed_reactor(), tmp_path / "contact.sqlite3", pool=pool)
    store.start()
    problems: list[tuple[str, str | None]] = []
    recorded: Deferred[None] = Deferred()

    def told(name: str, problem: str | None) -> None:
        problems.append((name, problem))
        if (name, problem) == ("matrix", None):  # said once the store recorded the delivery
            recorded.callback(None)

    outbox = Outbox(
        reactor, store, registry, ("discord",), fallback=("matrix", "file"), on_problem=told
    )
    try:
        new = NewMessage("Ada", "ada@example.org", "Hello", "Hire me?", "203.0.113.9")
        message = await await_deferred(store.add(new, ("discord",)))
        outbox.enqueue(message)
        _, event = await alice_client.wait_for(
            lambda r, e: r == room and f"contact #{message.id}" in e["content"].get("body", "")
        )
        assert "Hire me?" in event["content"]["body"]
        assert problems[0][0] == "discord" and "50007" in (problems[0][1] or "")
        await await_deferred(recorded.addTimeout(10, reactor))
        failed = {(d.channel, d.state) for d in await await_deferred(store.waiting())}
        assert failed == {("discord", "failed")}  # kept for the owner; the room has it
    finally:
        outbox.stop()
        await await_deferred(store.stop())
        pool.stop()
