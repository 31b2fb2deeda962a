"""The store and the outbox: durable, retried with backoff, delivered once, resumed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, globalLogPublisher
from zope.interface import implementer

from jupybot.contact.api import ContactMessage, DeliveryRefused, DeliveryUnavailable
from jupybot.contact.outbox import Outbox
from jupybot.contact.registry import ChannelRegistry
from jupybot.contact.store import ContactStore, NewMessage
from tests.contact.stores import file_channel, running_pool, running_store


class FlakyChannel:
    """Down until told otherwise; records what it delivered."""

    name = "discord"

    def __init__(self) -> None:
        self.up = False
        self.refuse = False
        self.delivered: list[tuple[int, float]] = []
        self.attempts = 0
        self.called: Deferred[None] = Deferred()
        self._counts: dict[int, Deferred[None]] = {}

    def has_delivered(self, count: int) -> Deferred[None]:
        """Fires once C{count} messages were delivered; fails after 10 s without."""
        if len(self.delivered) >= count:
            return succeed(None)
        waiter = self._counts.setdefault(count, Deferred())
        return waiter.addTimeout(10, reactor)

    def deliver(self, message: ContactMessage, delayed_seconds: float) -> Deferred[None]:
        self.attempts += 1
        waiter, self.called = self.called, Deferred()
        waiter.callback(None)
        if self.refuse:
            return fail(DeliveryRefused("the owner does not accept direct messages"))
        if not self.up:
            return fail(DeliveryUnavailable("not connected"))
        self.delivered.append((message.id, delayed_seconds))
        if len(self.delivered) in self._counts:
            self._counts.pop(len(self.delivered)).callback(None)
        return succeed(None)


def new(text: str) -> NewMessage:
    return NewMessage("Ada", "ada@example.org", None, text, "10.0.0.1")


async def settle(store: ContactStore) -> None:
    """Every database call queued so far has run (the store answers in order)."""
    await store.pending()


def outbox_for(store: ContactStore, channel: FlakyChannel, clock: Clock) -> Outbox:
    registry = ChannelRegistry()
    registry.register(channel)
    return Outbox(clock, store, registry, ("discord",))


@pytest_twisted.ensureDeferred
async def test_down_then_up_delivers_each_message_once_in_order(tmp_path: Path) -> None:
    async with running_store(tmp_path / "contact.sqlite3", ContactStore) as store:
        clock = Clock()
        channel = FlakyChannel()
        outbox = outbox_for(store, channel, clock)
        try:
            attempted = channel.called
            for text in ("one", "two", "three"):
                outbox.enqueue(await store.add(new(text), ("discord",)))
            await attempted
            await settle(store)
            assert channel.attempts == 1  # one message at a time, waiting for the backoff
            clock.advance(2)
            await settle(store)
            assert channel.attempts == 2
            channel.up = True
            all_three = channel.has_delivered(3)
            clock.advance(4)
            await all_three
            # The outbox asks the store to record the third delivery before anything this test
            # asks after it, and the store answers in order.
            await settle(store)
            assert [message_id for message_id, _ in channel.delivered] == [1, 2, 3]
            assert await store.waiting() == []
            clock.advance(600)
            await settle(store)
            assert len(channel.delivered) == 3
        finally:
            outbox.stop()


@pytest_twisted.ensureDeferred
async def test_refused_is_kept_as_failed_for_the_owner(tmp_path: Path) -> None:
    async with running_store(tmp_path / "contact.sqlite3", ContactStore) as store:
        channel = FlakyChannel()
        channel.refuse = True
        outbox = outbox_for(store, channel, Clock())
        try:
            attempted = channel.called
            outbox.enqueue(await store.add(new("hello"), ("discord",)))
            await attempted
            await settle(store)
            [failed] = await store.waiting()
            assert failed.state == "failed" and "direct messages" in (failed.last_error or "")
            assert await store.pending() == []
        finally:
            outbox.stop()


@pytest_twisted.ensureDeferred
async def test_a_restart_resumes_what_waits(tmp_path: Path) -> None:
    path = tmp_path / "contact.sqlite3"
    async with running_store(path, ContactStore) as store:
        await store.add(new("kept"), ("discord",))

    async with running_store(path, ContactStore) as store:
        channel = FlakyChannel()
        channel.up = True
        outbox = outbox_for(store, channel, Clock())
        try:
            assert await outbox.resume() == 1
            await channel.has_delivered(1)
            assert [message_id for message_id, _ in channel.delivered] == [1]
        finally:
            outbox.stop()


@implementer(ILogObserver)
class FirstFailure:
    """Fires C{logged} with the first logged event that carries a failure."""

    def __init__(self) -> None:
        self.logged: Deferred[dict[str, Any]] = Deferred()

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event and not self.logged.called:
            self.logged.callback(event)


@pytest_twisted.ensureDeferred
async def test_a_store_that_cannot_record_a_delivery_is_logged(tmp_path: Path) -> None:
    class DiskFull(ContactStore):
        def delivered(self, message_id: int, channel: str) -> Deferred[None]:
            return fail(sqlite3.OperationalError("database or disk is full"))

    async with running_store(tmp_path / "contact.sqlite3", DiskFull) as store:
        channel = FlakyChannel()
        channel.up = True
        outbox = outbox_for(store, channel, Clock())
        failures = FirstFailure()
        globalLogPublisher.addObserver(failures)
        try:
            outbox.enqueue(await store.add(new("hello"), ("discord",)))
            event = await failures.logged.addTimeout(10, reactor)
            assert event["log_format"].startswith("contact: recording the delivery of message {id}")
            assert event["log_failure"].check(sqlite3.OperationalError)
        finally:
            globalLogPublisher.removeObserver(failures)
            outbox.stop()


@pytest_twisted.ensureDeferred
async def test_a_full_disk_during_an_outage_never_stalls_the_retries(tmp_path: Path) -> None:
    class FullDisk(ContactStore):
        full = True

        def attempt_failed(
            self, message_id: int, channel: str, error: str, final: bool
        ) -> Deferred[None]:
            if self.full:
                return fail(sqlite3.OperationalError("database or disk is full"))
            return super().attempt_failed(message_id, channel, error, final)

    async with running_store(tmp_path / "contact.sqlite3", FullDisk) as store:
        clock = Clock()
        channel = FlakyChannel()
        outbox = outbox_for(store, channel, clock)
        try:
            attempted = channel.called
            outbox.enqueue(await store.add(new("hello"), ("discord",)))
            await attempted
            await settle(store)
            # The failed attempt could not be recorded: the retry comes all the same.
            again = channel.called
            clock.advance(2)
            await again.addTimeout(10, reactor)
            assert channel.attempts == 2
            # Space and Discord come back: the retries alone deliver it, no new message needed.
            store.full = False
            channel.up = True
            delivered = channel.has_delivered(1)
            clock.advance(600)
            await delivered
            await settle(store)
            assert await store.waiting() == []
        finally:
            outbox.stop()


@pytest_twisted.ensureDeferred
async def test_concurrent_submissions_share_commits(tmp_path: Path) -> None:
    async with running_store(tmp_path / "contact.sqlite3", ContactStore) as store:
        messages = [store.add(new(str(n)), ("file",)) for n in range(200)]
        stored = [await d for d in messages]
        assert sorted(m.id for m in stored) == list(range(1, 201))
        assert len(await store.pending()) == 200


@pytest_twisted.ensureDeferred
async def test_the_file_channel_recovers_from_a_line_cut_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    first = ContactMessage(1, "Ada", "a@example.org", None, "one", "10.0.0.1", 0.0)
    with running_pool() as pool:
        await file_channel(path, pool).deliver(first, 0)
        with path.open("a") as f:
            f.write('{"id": 2, "name": "Ad')  # the crash
        channel = file_channel(path, pool)
        second = ContactMessage(2, "Ada", "a@example.org", None, "two", "10.0.0.1", 0.0)
        await channel.deliver(first, 0)  # already there: not again
        await channel.deliver(second, 0)
        ids = []
        for line in path.read_text().splitlines():
            try:
                ids.append(json.loads(line)["id"])
            except ValueError:
                continue
        assert ids == [1, 2]
        assert file_channel(path, pool)._written == {1, 2}
