"""A writer process that cannot start: /ping says contact is down, and why, while no writer has
opened the database since (every POST /contact is 503 meanwhile), and running again by itself
once one has (the store's probe starts one every PROBE_SECONDS). The writer processes are played
by the test, on a fake process reactor and a Clock; their jobs run on the real database."""

from __future__ import annotations

import json
import pickle
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessProtocol, IReactorProcess
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from jupybot.config.contact import ContactConfig
from jupybot.contact.part import ContactPart, database_path
from jupybot.contact.registry import ChannelRegistry
from jupybot.contact.store import PROBE_SECONDS
from jupybot.contact.writer import (
    FRAME_LENGTH,
    JobRunner,
    Opened,
    frame,
    open_database,
    wal_path,
)
from jupybot.service import JupybotService
from jupybot.state import StateDirectory
from jupybot.web import PingResource
from tests.logs import logged

from .test_durable_answer import contact_request


class PlayedWriter:
    """One writer process as the store sees it: what the store writes to its stdin is kept;
    the test says when it opens the database, runs its jobs, says something, or ends."""

    def __init__(self, protocol: IProcessProtocol, pid: int, runner: JobRunner) -> None:
        self.protocol = protocol
        self.pid = pid
        self._runner = runner
        self._stdin = b""
        self.stdin_closed = False

    def write(self, data: bytes) -> None:
        self._stdin += data

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def opens(self, problem: str | None = None) -> None:
        self.protocol.childDataReceived(1, frame(Opened(problem)))

    def says(self, line: str) -> None:
        self.protocol.childDataReceived(2, line.encode() + b"\n")

    def ends(self, code: int) -> None:
        self._end(ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code))

    def is_killed(self) -> None:
        self._end(ProcessTerminated(signal=signal.SIGKILL))

    def _end(self, reason: Exception) -> None:
        self._runner.close()
        self.protocol.processEnded(Failure(reason))

    def runs_its_jobs(self) -> None:
        """What the real writer does with each job the store wrote: run it, answer it."""
        while self._stdin:
            end = FRAME_LENGTH.size + FRAME_LENGTH.unpack_from(self._stdin)[0]
            job = pickle.loads(self._stdin[FRAME_LENGTH.size : end])
            self._stdin = self._stdin[end:]
            self.protocol.childDataReceived(1, frame(self._runner.run(job)))


@implementer(IReactorProcess)
class ProcessReactor(Clock):
    """Time by hand; each writer process spawned is a L{PlayedWriter}, or refused with
    C{refusal} while it is set."""

    def __init__(self, database: Path) -> None:
        super().__init__()
        self._database = database
        self.writers: list[PlayedWriter] = []
        self.refusal: OSError | None = None

    def spawnProcess(self, processProtocol: IProcessProtocol, executable: Any, args: Any, env: Any = None, path: Any = None, uid: Any = None, gid: Any = None, usePTY: Any = False, childFDs: Any = None) -> Any:  # fmt: skip
        if self.refusal is not None:
            raise self.refusal
        runner = JobRunner(open_database(self._database), wal_path(self._database))
        writer = PlayedWriter(processProtocol, 1000 + len(self.writers), runner)
        self.writers.append(writer)
        processProtocol.makeConnection(writer)  # type: ignore[arg-type]
        return writer

    def callFromThread(self, callable: Callable[..., object], *args: object, **kwargs: object) -> None:  # fmt: skip
        callable(*args, **kwargs)


class Contact:
    def __init__(self, tmp_path: Path) -> None:
        state = StateDirectory(tmp_path)
        self.database = database_path(state)
        self.reactor = ProcessReactor(self.database)
        config = ContactConfig(rate_limit=1000, deliver_to=(), fallback_to=())
        self.part = ContactPart(config, (), self.reactor, state, ChannelRegistry())
        self.top = JupybotService(self.reactor, stop_timeout=5)
        self.top.add_part(self.part)
        root = Resource()
        root.putChild(b"contact", self.part.resource)
        self.site = Site(root, reactor=self.reactor)

    @property
    def writer(self) -> PlayedWriter:
        """The last writer process spawned."""
        return self.reactor.writers[-1]

    def ping(self) -> tuple[int, str]:
        """/ping's code and what it says of contact."""
        request = DummyRequest([b""])
        body = json.loads(PingResource("test", self.top).render_GET(request))  # type: ignore[arg-type]
        return request.responseCode or 200, body["services"]["contact"]

    def post(self, text: str) -> StringTransport:
        visitor = StringTransport()
        channel = self.site.buildProtocol(visitor.getPeer())
        assert channel is not None
        channel.makeConnection(visitor)
        channel.dataReceived(contact_request(text))
        return visitor

    def stored(self) -> list[str]:
        with sqlite3.connect(self.database) as db:
            return [text for (text,) in db.execute("SELECT message FROM messages ORDER BY id")]


def answered(visitor: StringTransport) -> int | None:
    """The HTTP status written so far, or None."""
    raw = visitor.value()
    return int(raw.split(b" ", 2)[1]) if raw else None


@pytest.fixture
def contact(tmp_path: Path) -> Iterator[Contact]:
    made = Contact(tmp_path)
    made.top.startService()
    made.writer.opens()
    made.writer.runs_its_jobs()  # the outbox asks what waits from before: nothing
    assert made.ping() == (200, "running")
    yield made
    stopped = made.top.stopService()
    made.writer.runs_its_jobs()
    if made.writer.stdin_closed:
        made.writer.ends(0)
    assert stopped.called


def test_down_while_no_writer_can_start_then_running_by_itself(contact: Contact) -> None:
    with logged() as lines:
        # A writer that had opened the database dies: nothing to say until one cannot start.
        contact.writer.is_killed()
        assert contact.ping() == (200, "running")

        # The next one cannot open the database (a folder now stands at its path).
        visitor = contact.post("while the database is a folder")
        contact.writer.opens("unable to open database file")
        contact.writer.ends(1)
        assert answered(visitor) == 503
        assert contact.ping() == (
            503,
            f"down: cannot store (the writer process cannot open {contact.database}: "
            "unable to open database file)",
        )

        # The store's probe tries another: one that ends as it starts, saying why on stderr.
        spawned = len(contact.reactor.writers)
        for _ in range(2):
            contact.reactor.advance(PROBE_SECONDS)
            contact.writer.says("ModuleNotFoundError: No module named 'jupybot'")
            contact.writer.ends(1)
        assert len(contact.reactor.writers) == spawned + 2
        assert contact.ping() == (
            503,
            "down: cannot store (the writer process exited with code 1 as it started, saying "
            "why in the log)",
        )
        said = [line for line in lines if "No module named 'jupybot'" in line]
        assert len(said) == 1, "what a failing writer says is logged once, not at each try"

        # A POST still tries a writer of its own; one that cannot be spawned at all.
        contact.reactor.refusal = FileNotFoundError(2, "No such file or directory")
        assert answered(contact.post("while python is gone")) == 503
        assert contact.ping() == (
            503,
            "down: cannot store (the writer process cannot be spawned: No such file or directory)",
        )

        # Fixed: the probe's writer opens the database, and contact runs again at once.
        contact.reactor.refusal = None
        contact.reactor.advance(PROBE_SECONDS)
        contact.writer.opens()
        assert contact.ping() == (200, "running")
        contact.writer.runs_its_jobs()
        assert contact.ping() == (200, "running")
        visitor = contact.post("once it is fixed")
        contact.writer.runs_its_jobs()
        assert answered(visitor) == 202
        assert contact.stored() == ["once it is fixed"]
    assert sum("contact: the store cannot write: " in line for line in lines) == 3
    assert sum("contact: the store takes writes again" in line for line in lines) == 1
