"""The store's writer process: killed with SIGKILL in the middle of a job, that job's message is
answered 503 and the death is logged; the next message is stored by a new writer, and nothing
committed is lost. A server killed with SIGKILL leaves no writer behind (it exits at the end of
its stdin)."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from jupybot.config.contact import ContactConfig
from jupybot.contact.part import ContactPart, database_path
from jupybot.contact.registry import ChannelRegistry
from jupybot.reactor import installed_reactor
from jupybot.service import STOPPED
from jupybot.state import StateDirectory
from tests.harness import JupybotProcess, descendants, jupybot_config
from tests.logs import logged


async def until(condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
    """Wait for C{condition}, which another process makes true."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within:g}s: {what}"
        await deferLater(reactor, 0.01, lambda: None)


def bytes_read(pid: int) -> int:
    """What process C{pid} has read so far (its stdin's jobs among it)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"process {pid} has no rchar")


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class Contact:
    def __init__(self, tmp_path: Path) -> None:
        state = StateDirectory(tmp_path)
        self.database = database_path(state)
        config = ContactConfig(rate_limit=1000, deliver_to=(), fallback_to=())
        self.part = ContactPart(config, (), installed_reactor(), state, ChannelRegistry())
        root = Resource()
        root.putChild(b"contact", self.part.resource)
        self.site = Site(root)
        self.url = ""

    async def post(self, text: str) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"name": "Ada", "email": "ada@example.org", "message": text})
        headers = Headers({"Content-Type": ["application/json"]})
        response = await treq.post(self.url, data=body.encode(), headers=headers)
        return response.code, json.loads(await response.text())

    def stored(self) -> list[str]:
        with sqlite3.connect(self.database) as db:
            return [text for (text,) in db.execute("SELECT message FROM messages ORDER BY id")]


@pytest_twisted.async_yield_fixture
async def contact(tmp_path: Path) -> AsyncIterator[Contact]:
    made = Contact(tmp_path)
    made.part.startService()
    await made.part.when_started()
    assert made.part.status == "running"
    port: Any = reactor.listenTCP(0, made.site, interface="127.0.0.1")  # type: ignore[arg-type]
    made.url = f"http://127.0.0.1:{port.getHost().port}/contact"
    try:
        yield made
    finally:
        await port.stopListening()
        if made.part.status != STOPPED:
            await made.part.stopService()


@pytest_twisted.ensureDeferred
async def test_a_writer_killed_mid_job_fails_that_job_alone(contact: Contact) -> None:
    for number in range(3):
        assert await contact.post(f"before {number}") == (202, {"status": "accepted", "id": number + 1})  # fmt: skip
    writer = contact.part.store.writer_pid
    assert writer is not None and running(writer)

    # Another connection holds the write lock: the writer's job waits for it, mid-transaction.
    blocker = sqlite3.connect(contact.database, isolation_level=None)
    with logged() as lines:
        try:
            blocker.execute("BEGIN IMMEDIATE")
            read_before = bytes_read(writer)
            answer = Deferred.fromCoroutine(contact.post("during the kill"))
            await until(lambda: bytes_read(writer) > read_before, "the writer reads its job")
            os.kill(writer, signal.SIGKILL)
            code, body = await answer
            assert code == 503 and "could not be stored" in body["error"]
        finally:
            blocker.close()
    assert any(
        f"writer process (pid {writer}) was killed by SIGKILL while a job ran" in line
        for line in lines
    ), lines
    assert contact.part.store.problem is None  # the disk is fine: /ping still says running

    assert await contact.post("after") == (202, {"status": "accepted", "id": 4})
    new_writer = contact.part.store.writer_pid
    assert new_writer is not None and new_writer != writer
    assert contact.stored() == ["before 0", "before 1", "before 2", "after"]

    await contact.part.stopService()
    assert contact.part.store.writer_pid is None and not running(new_writer)


@pytest.mark.peers
def test_a_server_killed_with_sigkill_leaves_no_writer_behind(tmp_path: Path) -> None:
    server = JupybotProcess(jupybot_config(tmp_path, "contact: {rate_limit: 100}\n"), tmp_path)
    server.wait_listening()
    server.wait_for("contact: running")
    writers = [
        pid
        for pid in descendants(server.pid)
        if b"jupybot.contact.writer" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(writers) == 1
    server.signal(signal.SIGKILL)
    server.wait()
    # It ends at the end of its stdin; its pidfd is readable once it has.
    exited = os.pidfd_open(writers[0])
    try:
        assert select.select([exited], [], [], 20)[0], "the writer outlived its server"
    finally:
        os.close(exited)
