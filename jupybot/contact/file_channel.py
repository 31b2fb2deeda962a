"""The "file" delivery channel: each message appended to a JSON-lines file (and fsynced).

For owners without a chat bot, and for the tests: idempotent per message id, so a delivery
repeated after a crash is not written twice. The append and its fsync run on the contact part's
thread pool: on the reactor, each delivery held every visitor up for the length of an fsync.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import asdict
from pathlib import Path

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ..reactor import ThreadReactor
from .api import ContactMessage, DeliveryUnavailable


class FileChannel:
    name = "file"

    def __init__(self, path: Path, reactor: ThreadReactor, pool: ThreadPool) -> None:
        self.path = path
        self._reactor = reactor
        self._pool = pool
        self._written: set[int] = set()
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                # A line cut short by a crash: end it, so the next record starts on its own line.
                with path.open("a", encoding="utf-8") as f:
                    f.write("\n")
            for line in text.splitlines():
                try:
                    self._written.add(int(json.loads(line)["id"]))
                except (ValueError, KeyError, TypeError):
                    continue  # that cut-short line: its message is written again

    def deliver(self, message: ContactMessage, delayed_seconds: float) -> Deferred[None]:
        if message.id in self._written:
            return succeed(None)
        record = asdict(message) | {"delayed_seconds": round(delayed_seconds, 3)}
        line = (json.dumps(record) + "\n").encode()
        reactor = IReactorFromThreads(self._reactor)
        appended = deferToThreadPool(reactor, self._pool, _append, self.path, line)
        return appended.addCallbacks(self._appended, self._not_appended, (message.id,))

    def _appended(self, _: None, message_id: int) -> None:
        self._written.add(message_id)

    def _not_appended(self, failure: Failure) -> None:
        failure.trap(OSError)
        error = failure.value
        assert isinstance(error, OSError)
        raise DeliveryUnavailable(f"cannot write {self.path}: {error.strerror}") from error


def _append(path: Path, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        _append_whole(fd, line)
    finally:
        os.close(fd)


def _append_whole(fd: int, line: bytes) -> None:
    """Append C{line} and fsync it, or leave the file as it was: a disk that fills halfway
    through takes part of a line, which the next attempt's line would be glued to."""
    start = os.fstat(fd).st_size
    try:
        if os.write(fd, line) != len(line):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise
