"""A channel that refuses a message for good hands it on: the refusal is kept for the owner, said
in /ping and the log, and the message reaches the next channel of `contact.fallback_to`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from jupybot.contact.api import ContactMessage, DeliveryRefused, DeliveryUnavailable
from jupybot.contact.outbox import Outbox
from jupybot.contact.registry import ChannelRegistry
from jupybot.contact.store import ContactStore, NewMessage
from jupybot.reactor import installed_reactor
from tests.matrix.user import asyncio_test
from tests.peers.fake_discord import FakeDiscord, contact_server


class Channel:
    """Refuses, is down or delivers, as told; C{received} fires with each message delivered."""

    def __init__(self, name: str, refuse: bool = False, up: bool = True) -> None:
        self.name = name
        self.refuse = refuse
        self.up = up
        self.delivered: list[int] = []
        self.received: Deferred[int] = Deferred()
        self.tried: Deferred[None] = Deferred()

    def deliver(self, message: ContactMessage, delayed_seconds: float) -> Deferred[None]:
        tried, self.tried = self.tried, Deferred()
        reactor.callLater(0, tried.callback, None)
        if self.refuse:
            return fail(DeliveryRefused(f"{self.name} will not take it"))
        if not self.up:
            return fail(DeliveryUnavailable(f"{self.name} is down"))
        self.delivered.append(message.id)
        received, self.received = self.received, Deferred()
        # Told on the reactor's next turn: by then the outbox has asked the store to record it,
        # so what the test asks the store next is answered after that.
        reactor.callLater(0, received.callback, message.id)
        return succeed(None)

    def next_one(self) -> Deferred[int]:
        """The next message delivered; fails after 10 s without."""
        return self.received.addTimeout(10, reactor)


def new(text: str) -> NewMessage:
    return NewMessage("Ada", "ada@example.org", None, text, "10.0.0.1")


class World:
    def __init__(self, tmp_path: Path, *channels: Channel, fallback: tuple[str, ...]) -> None:
        self.store = ContactStore(installed_reactor(), tmp_path / "contact.sqlite3")
        self.store.start()
        registry = ChannelRegistry()
        for channel in channels:
            registry.register(channel)
        self.problems: list[tuple[str, str | None]] = []
        self.outbox = Outbox(
            Clock(),
            self.store,
            registry,
            ("discord",),
            fallback=fallback,
            on_problem=lambda name, problem: self.problems.append((name, problem)),
        )

    async def accept(self, text: str) -> ContactMessage:
        message = await self.store.add(new(text), ("discord",))
        self.outbox.enqueue(message)
        return message

    async def states(self) -> dict[tuple[int, str], str]:
        rows = await self.store.waiting()
        return {(d.message.id, d.channel): d.state for d in rows}

    async def close(self) -> None:
        self.outbox.stop()
        await self.store.stop()


@pytest_twisted.ensureDeferred
async def test_a_refused_message_goes_to_the_fallback_and_the_refusal_is_kept(
    tmp_path: Path,
) -> None:
    discord, file = Channel("discord", refuse=True), Channel("file")
    world = World(tmp_path, discord, file, fallback=("file",))
    try:
        arrived = file.next_one()
        message = await world.accept("hello")
        assert await arrived == message.id
        # The refused delivery stays, failed, for `python -m jupybot.contact list` and `retry`.
        assert await world.states() == {(message.id, "discord"): "failed"}
        assert world.problems[0] == (
            "discord",
            f"refused message {message.id}: discord will not take it",
        )
        # The owner lets the bot DM them again: the next message goes to Discord, not the file.
        discord.refuse = False
        arrived = discord.next_one()
        second = await world.accept("again")
        assert await arrived == second.id
        assert file.delivered == [message.id]
        await settled(world)  # the store recorded it, and the outbox went on
        assert world.problems[-1] == ("discord", None)  # /ping no longer shows it
    finally:
        await world.close()


@pytest_twisted.ensureDeferred
async def test_each_fallback_in_turn_until_one_takes_it(tmp_path: Path) -> None:
    channels = Channel("discord", refuse=True), Channel("matrix", refuse=True), Channel("file")
    world = World(tmp_path, *channels, fallback=("matrix", "file"))
    try:
        arrived = channels[2].next_one()
        message = await world.accept("hello")
        assert await arrived == message.id
        assert channels[1].delivered == []
        assert await world.states() == {
            (message.id, "discord"): "failed",
            (message.id, "matrix"): "failed",
        }
    finally:
        await world.close()


@pytest_twisted.ensureDeferred
async def test_a_fallback_delivery_is_stored_and_resumed_after_a_restart(tmp_path: Path) -> None:
    discord, file = Channel("discord", refuse=True), Channel("file", up=False)
    world = World(tmp_path, discord, file, fallback=("file",))
    try:
        tried = file.tried.addTimeout(10, reactor)
        message = await world.accept("hello")
        await tried
        await settled(world)
        assert await world.states() == {
            (message.id, "discord"): "failed",
            (message.id, "file"): "pending",
        }
    finally:
        await world.close()
    file.up = True
    again = World(tmp_path, discord, file, fallback=("file",))
    try:
        arrived = file.next_one()
        assert await again.outbox.resume() == 1
        assert await arrived == message.id
    finally:
        await again.close()


async def settled(world: World) -> None:
    """The store has handled every call queued so far (it answers in order)."""
    await world.store.pending()


@pytest.mark.peers
@asyncio_test
async def test_discord_refusing_to_dm_the_owner_delivers_to_the_file(tmp_path: Path) -> None:
    """`twistd jupybot` with the fake Discord answering 50007 to the owner's DM."""
    fake = FakeDiscord()
    await fake.start()
    owner = fake.add_user("owner")
    fake.closed_dms.add(owner["id"])
    server = contact_server(tmp_path, fake, owner)
    try:
        await asyncio.to_thread(server.wait_listening)
        await asyncio.to_thread(server.wait_for, "contact: running")
        body = {"name": "Ada", "email": "ada@example.org", "message": "Hire me?"}
        async with aiohttp.ClientSession() as http:
            async with http.post(server.base_url + "/contact", json=body) as response:
                assert response.status == 202
                message_id = (await response.json())["id"]
            await asyncio.to_thread(
                server.wait_for, f"contact: message {message_id} delivered to file", 60
            )
            async with http.get(server.base_url + "/ping") as response:
                ping = await response.json()
        refusal = "Discord refused to message the owner (error 50007"
        assert refusal in ping["details"]["contact"]
        assert refusal in server.output()
        assert f"message {message_id} goes to file instead of discord" in server.output()
        [line] = (tmp_path / "var" / "contact-messages.jsonl").read_text().splitlines()
        assert json.loads(line)["message"] == "Hire me?"
    finally:
        server.stop()
        await fake.stop()
