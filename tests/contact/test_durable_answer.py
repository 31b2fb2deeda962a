"""POST /contact is answered 202 only once its message is committed: the contact part on a
site over StringTransport, the store's jobs held in a thread pool the test runs by hand, and the
database read through a connection of its own at the moment each answer is written."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from jupybot.config.contact import ContactConfig
from jupybot.contact.part import ContactPart, database_path
from jupybot.contact.registry import ChannelRegistry
from jupybot.state import StateDirectory


class HeldPool(ThreadPool):
    """A thread pool whose jobs wait in C{jobs} until the test runs one, in its own thread."""

    def __init__(self) -> None:
        super().__init__(minthreads=0, maxthreads=1)
        self.jobs: list[Callable[[], None]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], object] | None,
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        def job() -> None:
            try:
                result, ok = func(*args, **kw), True
            except BaseException:
                result, ok = Failure(), False
            if onResult is not None:
                onResult(ok, result)

        self.jobs.append(job)

    def run_next(self) -> None:
        self.jobs.pop(0)()


@implementer(IReactorFromThreads)
class Reactor(Clock):
    """Time by hand; what a pool job hands back runs at once (the test's thread is the pool's),
    counted: one hop back per job."""

    def __init__(self) -> None:
        super().__init__()
        self.hops = 0

    def callFromThread(self, callable: Callable[..., object], *args: object, **kwargs: object) -> None:  # fmt: skip
        self.hops += 1
        callable(*args, **kwargs)


class Visitor(StringTransport):
    """One connection to the site; notes how many messages another connection to the database
    sees committed when the answer's first bytes are written."""

    def __init__(self, database: Path) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "10.0.0.1", 40000))
        self._database = database
        self.committed_when_answered: int | None = None

    def write(self, data: bytes) -> None:
        self._answering()
        super().write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self._answering()
        super().writeSequence(data)

    def _answering(self) -> None:
        if self.committed_when_answered is None:
            self.committed_when_answered = committed(self._database)

    def answer(self) -> tuple[int, dict[str, Any]] | None:
        """The status and JSON body written so far, or None before anything is."""
        raw = self.value()
        if not raw:
            return None
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)


def committed(database: Path) -> int:
    """The messages another connection sees: only what was committed (WAL)."""
    with sqlite3.connect(database) as db:
        (count,) = db.execute("SELECT count(*) FROM messages").fetchone()
    return int(count)


class Contact:
    def __init__(self, tmp_path: Path) -> None:
        self.pool = HeldPool()
        self.reactor = Reactor()
        state = StateDirectory(tmp_path)
        self.database = database_path(state)
        config = ContactConfig(rate_limit=1000, fallback_to=())
        self.part = ContactPart(config, (), self.reactor, state, ChannelRegistry(), pool=self.pool)  # fmt: skip
        root = Resource()
        root.putChild(b"contact", self.part.resource)
        self.site = Site(root, reactor=self.reactor)

    def post(self, text: str) -> Visitor:
        visitor = Visitor(self.database)
        channel = self.site.buildProtocol(visitor.getPeer())
        assert channel is not None
        channel.makeConnection(visitor)
        channel.dataReceived(contact_request(text))
        return visitor


def contact_request(text: str) -> bytes:
    """POST /contact of a message C{text}, as a page sends it."""
    body = json.dumps({"name": "Ada", "email": "ada@example.org", "message": text}).encode()
    return (
        b"POST /contact HTTP/1.1\r\nHost: example.org\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


@pytest.fixture
def contact(tmp_path: Path) -> Contact:
    made = Contact(tmp_path)
    made.part.startService()
    made.pool.run_next()  # the outbox asks what waits from before: nothing
    assert made.part.status == "running" and made.pool.jobs == []
    return made


def test_the_202_is_written_once_the_message_is_committed_and_not_before(contact: Contact) -> None:  # fmt: skip
    visitor = contact.post("Hello")
    assert visitor.answer() is None and committed(contact.database) == 0
    assert len(contact.pool.jobs) == 1  # the commit, waiting for the pool's thread

    contact.pool.run_next()
    assert visitor.answer() == (202, {"status": "accepted", "id": 1})
    assert visitor.committed_when_answered == 1
    assert contact.part.accepted == 1


def test_what_arrives_during_a_commit_shares_the_next_one(contact: Contact) -> None:
    first = contact.post("first")
    others = [contact.post(f"meanwhile {n}") for n in range(3)]
    assert len(contact.pool.jobs) == 1  # the first one's commit, not yet run
    assert [v.answer() for v in [first, *others]] == [None] * 4

    contact.pool.run_next()
    assert first.answer() == (202, {"status": "accepted", "id": 1})
    assert [v.answer() for v in others] == [None] * 3
    assert len(contact.pool.jobs) == 1  # one commit for the three that waited

    hops = contact.reactor.hops
    contact.pool.run_next()
    assert [v.answer() for v in others] == [(202, {"status": "accepted", "id": n}) for n in (2, 3, 4)]  # fmt: skip
    assert [v.committed_when_answered for v in others] == [4, 4, 4]
    assert contact.reactor.hops == hops + 1  # one hop back to the reactor for the batch
    assert contact.pool.jobs == []
