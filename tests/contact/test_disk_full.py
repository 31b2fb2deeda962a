"""The disk under the store fills during a delivery outage, then is freed: contact says it is
down while it cannot store, never stalls, gives the WAL's space back, and delivers every message
it accepted exactly once within the backoff's maximum (issue 29). On a real tmpfs."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessTransport,
    IReactorFromThreads,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.task import Clock, deferLater
from zope.interface import implementer

from jupybot.config.contact import ContactConfig
from jupybot.contact.api import ContactMessage, DeliveryUnavailable
from jupybot.contact.part import ContactPart
from jupybot.contact.registry import ChannelRegistry
from jupybot.contact.store import IDLE_CHECKPOINT_SECONDS, PROBE_SECONDS, NewMessage
from jupybot.metrics import MetricSources, metrics_registry
from jupybot.reactor import installed_reactor
from jupybot.state import StateDirectory
from tests.contact.stores import file_channel, running_pool
from tests.contact.tiny_disk import TinyDisk, tiny_disk

RETRY_MAX = 60.0


class Owner:
    """The owner's channel: down until told otherwise; counts every message it is handed."""

    name = "discord"

    def __init__(self) -> None:
        self.up = False
        self.attempts = 0
        self.received: Counter[int] = Counter()

    def deliver(self, message: ContactMessage, delayed_seconds: float) -> Deferred[None]:
        self.attempts += 1
        if not self.up:
            return fail(DeliveryUnavailable("the Discord bot is not connected"))
        self.received[message.id] += 1
        return succeed(None)


@implementer(IReactorTime, IReactorFromThreads, IReactorProcess)
class MixedReactor:
    """The test's clock for time (retries, ages, the store's upkeep), the real reactor for the
    store's writer process and the file channel's thread pool."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def seconds(self) -> float:
        return self.clock.seconds()

    def callLater(self, delay: float, callable: Callable[..., Any], *args: object, **kwargs: object) -> IDelayedCall:  # fmt: skip
        return self.clock.callLater(delay, callable, *args, **kwargs)

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:
        return self.clock.getDelayedCalls()

    def callFromThread(self, callable: Callable[..., object], *args: object, **kwargs: object) -> None:  # fmt: skip
        installed_reactor().callFromThread(callable, *args, **kwargs)

    def spawnProcess(self, *args: Any, **kwargs: Any) -> IProcessTransport:
        transport: IProcessTransport = installed_reactor().spawnProcess(*args, **kwargs)
        return transport


@dataclass
class Contact:
    part: ContactPart
    owner: Owner
    clock: Clock
    disk: TinyDisk
    accepted: list[int]

    @property
    def wal(self) -> Path:
        return self.disk.path / "contact.sqlite3-wal"

    def wal_bytes(self) -> int:
        return os.path.getsize(self.wal)

    async def post(self, text: str) -> bool:
        """What POST /contact does: True for a 202, False for a 503."""
        try:
            message = await self.part.accept(NewMessage("Ada", "a@example.org", None, text, "::1"))
        except sqlite3.OperationalError:
            return False
        self.accepted.append(message.id)
        return True

    async def settle(self) -> None:
        """Every store call made so far has been answered (the store answers in order)."""
        await self.part.store.waiting()
        await deferLater(reactor, 0, lambda: None)

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()


def metric(contact: Contact, name: str, **labels: str) -> float:
    """One value of what /metrics would answer now."""
    sources = MetricSources(lambda: {"contact": contact.part.status}, contact=contact.part)
    value = metrics_registry(sources).get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


async def until(condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
    """Wait for C{condition}, which the store's jobs make true on the pool's thread."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within:g}s: {what}"
        await deferLater(reactor, 0.05, lambda: None)


@pytest.fixture
def may_mount() -> None:
    """tiny_disk's skip as a normal user, taken before the fixture below: a skip raised in a
    pytest-twisted async fixture leaves its finalizer behind, and the next test using it errors
    ("assert not self._finalizers")."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root")


@pytest_twisted.async_yield_fixture
async def contact(tmp_path: Path, may_mount: None) -> AsyncIterator[Contact]:
    with tiny_disk(tmp_path / "disk", 1024) as disk:
        clock = Clock()
        clock.advance(time.time())  # messages are stamped with the real time: ages are true
        registry = ChannelRegistry()
        owner = Owner()
        registry.register(owner)
        config = ContactConfig(
            deliver_to=("discord",),
            fallback_to=(),
            retry_max_seconds=RETRY_MAX,
            degraded_after_seconds=600,
        )
        part = ContactPart(config, (), MixedReactor(clock), StateDirectory(disk.path), registry)
        part.startService()
        await part.when_started()
        try:
            yield Contact(part, owner, clock, disk, [])
        finally:
            await part.stopService()


@pytest_twisted.ensureDeferred
async def test_full_during_an_outage_then_freed_delivers_each_message_once(contact: Contact) -> None:  # fmt: skip
    for number in range(20):
        assert await contact.post(f"before the disk filled {number}")
    await contact.advance(1)
    assert contact.part.status == "running"

    contact.disk.fill()
    refused = 0
    for number in range(200):  # until a write needs space the WAL no longer has
        if not await contact.post(f"while full {number}"):
            refused += 1
            break
    assert refused, "the store kept accepting on a full disk"
    assert contact.part.status == "down: cannot store (disk full)"
    assert not await contact.post("one more while full")
    assert metric(contact, "jupybot_contact_store_writable") == 0
    assert metric(contact, "jupybot_part_up", part="contact") == 0

    # The outage goes on: the outbox keeps trying, though no attempt can be recorded.
    tried = contact.owner.attempts
    for _ in range(5):
        await contact.advance(RETRY_MAX)
    assert contact.owner.attempts >= tried + 5

    # Half an hour of outage: degraded once the store can write again, saying what waits.
    contact.disk.free()
    await contact.advance(PROBE_SECONDS)  # the store's probe finds out
    assert contact.part.store.problem is None
    await contact.advance(600)
    waiting = len(contact.accepted)
    assert contact.part.status.startswith(f"degraded: {waiting} messages waiting, the oldest for")
    assert "discord failing for" in contact.part.status
    assert "(the Discord bot is not connected)" in contact.part.status
    health = contact.part.health()
    assert health.pending == waiting and health.oldest_pending_seconds >= 600
    assert metric(contact, "jupybot_contact_store_writable") == 1
    assert metric(contact, "jupybot_contact_degraded") == 1
    assert metric(contact, "jupybot_contact_pending", channel="discord") == waiting
    assert metric(contact, "jupybot_contact_oldest_pending_seconds", channel="discord") >= 600
    assert metric(contact, "jupybot_contact_delivery_failing_seconds", channel="discord") >= 600

    # The WAL is checkpointed and truncated once the store is idle: the space it took comes
    # back. The outbox's retries write too, once a minute: one may come in between.
    for _ in range(3):
        await contact.advance(IDLE_CHECKPOINT_SECONDS)
        if contact.wal_bytes() == 0:
            break
    assert contact.wal_bytes() == 0, "the WAL is truncated"
    assert contact.disk.free_bytes() > contact.disk.total_bytes() // 2

    contact.owner.up = True
    await contact.advance(RETRY_MAX)  # the backoff's maximum: its next retry comes by then
    # One after another, each once the store recorded the one before: no more clock needed.
    await until(lambda: len(contact.owner.received) == len(contact.accepted), "all delivered")
    assert sorted(contact.owner.received) == sorted(contact.accepted)
    assert set(contact.owner.received.values()) == {1}
    await contact.settle()
    assert await contact.part.store.waiting() == []
    assert contact.part.status == "running"
    assert metric(contact, "jupybot_contact_degraded") == 0
    assert metric(contact, "jupybot_contact_oldest_pending_seconds", channel="discord") == 0


@pytest_twisted.ensureDeferred
async def test_delivered_while_full_is_recorded_later_and_never_sent_twice(contact: Contact) -> None:  # fmt: skip
    for number in range(10):
        assert await contact.post(f"message {number}")
    contact.disk.fill()
    while await contact.post("filling the WAL's last pages"):
        pass
    # The refused write's checkpoint may have given the WAL's space back (the database file
    # holds the schema's pages since the store's start: only the messages' pages are copied).
    contact.disk.fill()
    assert contact.part.status == "down: cannot store (disk full)"

    # Discord is back before the disk: every message is delivered, none can be recorded.
    contact.owner.up = True
    await contact.advance(RETRY_MAX)
    await until(lambda: len(contact.owner.received) == len(contact.accepted), "all delivered")
    assert sorted(contact.owner.received) == sorted(contact.accepted)
    for _ in range(5):  # the records are tried again; the deliveries are not made again
        await contact.advance(RETRY_MAX)
    assert set(contact.owner.received.values()) == {1}
    assert len(await contact.part.store.waiting()) == len(contact.accepted)

    contact.disk.free()
    await contact.advance(PROBE_SECONDS)  # the store's probe finds out
    assert contact.part.store.problem is None
    await contact.advance(RETRY_MAX)
    assert await contact.part.store.waiting() == []
    assert set(contact.owner.received.values()) == {1}


@pytest_twisted.ensureDeferred
async def test_the_file_channel_on_a_full_disk_leaves_no_line_cut_short(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", 256) as disk, running_pool() as pool:
        channel = file_channel(disk.path / "contact-messages.jsonl", pool)
        first = ContactMessage(1, "Ada", "a@example.org", None, "hi", "::1", time.time())
        await channel.deliver(first, 0)
        disk.fill()  # the file's last page still has room for part of a long message
        long = ContactMessage(2, "Ada", "a@example.org", None, "x" * 5000, "::1", time.time())
        try:
            await channel.deliver(long, 0)
        except DeliveryUnavailable as e:
            assert "No space left on device" in str(e)
        else:
            raise AssertionError("a full disk took the message")
        disk.free()
        await channel.deliver(long, 0)
        lines = channel.path.read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines] == [1, 2]
