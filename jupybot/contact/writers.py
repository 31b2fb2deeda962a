"""How the contact store reaches its writer: a process of its own (L{ProcessWriter}, running
jupybot/contact/writer.py), or, for tests, a thread pool of this process (L{ThreadWriter}).

A writer process says first whether it opened the database (L{writer.Opened}); then it answers
one frame per job. One that dies fails the job it ran (L{WriterDied}), and the next job starts a
new one; one that cannot start is reported to the store (C{on_start}) with why, for /ping.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport, IReactorFromThreads, IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from .writer import FRAME_LENGTH, Done, Job, JobError, JobRunner, Opened, frame

__all__ = ["ProcessWriter", "ThreadWriter", "Writer", "WriterDied"]

log = Logger()


class WriterDied(Exception):
    """The store's writer process ended while a job ran, or could not start: whether that job
    committed is unknown, and none of its pieces is acknowledged."""


class Writer(Protocol):
    """Where the store's jobs run, one at a time."""

    def run(self, job: Job) -> Deferred[Done]: ...

    def close(self) -> Deferred[None]:
        """Close the database once the job running is done; fires once it is closed."""


class ThreadWriter:
    """The jobs on a thread pool of this process, on the connection the store opened."""

    def __init__(self, reactor: IReactorFromThreads, pool: ThreadPool, runner: JobRunner) -> None:
        self._reactor = reactor
        self._pool = pool
        self._runner = runner

    def run(self, job: Job) -> Deferred[Done]:
        return deferToThreadPool(self._reactor, self._pool, self._runner.run, job)

    def close(self) -> Deferred[None]:
        return deferToThreadPool(self._reactor, self._pool, self._runner.close)


@dataclass(frozen=True)
class _StartFailure:
    """Why a writer process could not start, for /ping, and what it said on its stderr."""

    problem: str
    said: tuple[str, ...]


class ProcessWriter:
    """The jobs in a writer process, `python -m jupybot.contact.writer DATABASE`; when it dies,
    the next job starts a new one. C{on_start} is told None when a writer process has opened
    the database, and why (for people) when one ended before it had, or could not be spawned."""

    def __init__(self, reactor: IReactorProcess, path: Path, on_start: Callable[[str | None], None]) -> None:  # fmt: skip
        self._reactor = reactor
        self._path = path
        self._on_start = on_start
        self._process: _WriterProcess | None = None
        # The last start failure, while writers keep failing to start: what they say on their
        # stderr is logged once, not at each of the store's tries.
        self._failing: _StartFailure | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        process = _WriterProcess(self._path, self._opened, self._ended)
        # -P: nothing is imported from the server's working directory.
        argv = [sys.executable, "-P", "-m", "jupybot.contact.writer", str(self._path)]
        self._reactor.spawnProcess(process, sys.executable, argv, env=os.environ)
        self._process = process

    def run(self, job: Job) -> Deferred[Done]:
        try:
            data = frame(job)
            if self._process is None:
                self.start()
        except OSError as e:  # no process could be spawned: the interpreter gone, no fork
            problem = f"the writer process cannot be spawned: {e.strerror or type(e).__name__}"
            self._start_failed(_StartFailure(problem, ()))
            return fail(WriterDied(problem))
        except Exception:
            return fail()
        assert self._process is not None
        return self._process.ask(data)

    def close(self) -> Deferred[None]:
        """Fires once the writer process has exited (at the end of its stdin)."""
        process, self._process = self._process, None
        return process.close() if process is not None else succeed(None)

    def _opened(self) -> None:
        self._failing = None
        self._on_start(None)

    def _ended(self, process: _WriterProcess, failure: _StartFailure | None) -> None:
        if process is self._process:
            self._process = None
        if failure is not None:
            self._start_failed(failure)

    def _start_failed(self, failure: _StartFailure) -> None:
        if failure != self._failing:
            _say(failure.said)
            self._failing = failure
        self._on_start(failure.problem)


class _WriterProcess(ProcessProtocol):
    """One writer process: its first frame on its stdout says whether it opened the database,
    then a frame written to its stdin per job, what it did read back from its stdout; what it
    says on its stderr is logged (once it has opened the database: before, its owner decides)."""

    transport: IProcessTransport | None

    def __init__(self, path: Path, on_opened: Callable[[], None], on_ended: Callable[[_WriterProcess, _StartFailure | None], None]) -> None:  # fmt: skip
        self._path = path
        self._on_opened = on_opened
        self._on_ended = on_ended
        self._received = bytearray()
        self._answer: Deferred[Done] | None = None
        self._closing = False
        self._exited: Deferred[None] = Deferred()
        self.pid: int | None = None
        self.opened = False
        # Before it has opened the database: what it said on its stderr, and SQLite's words if
        # it could not open it.
        self._said: list[str] = []
        self._cannot_open: str | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.pid = self.transport.pid

    def ask(self, data: bytes) -> Deferred[Done]:
        assert self.transport is not None
        self._answer = Deferred()
        self.transport.write(data)
        return self._answer

    def close(self) -> Deferred[None]:
        assert self.transport is not None
        self._closing = True
        self.transport.closeStdin()
        return self._exited

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != 1:
            lines = data.decode(errors="replace").splitlines()
            if self.opened:
                _say(lines)
            else:
                self._said += lines
            return
        received = self._received
        received += data
        while len(received) >= FRAME_LENGTH.size:
            end = FRAME_LENGTH.size + FRAME_LENGTH.unpack_from(received)[0]
            if len(received) < end:
                return
            data = bytes(received[FRAME_LENGTH.size : end])
            del received[:end]
            if not self.opened:
                self._opening(pickle.loads(data))
                continue
            waiting, self._answer = self._answer, None
            if waiting is None:
                log.error("contact: the store's writer process answered what was not asked")
                continue
            try:
                answer = pickle.loads(data)
            except Exception:
                waiting.errback()
                continue
            if isinstance(answer, JobError):
                waiting.errback(answer)
            else:
                waiting.callback(answer)

    def _opening(self, opened: Opened) -> None:
        if opened.problem is not None:
            self._cannot_open = opened.problem
            return
        self.opened = True
        _say(self._said)
        self._said = []
        self._on_opened()

    def processEnded(self, reason: Failure) -> None:
        ending = _ending(reason.value)
        failure = None if self.opened or self._closing else self._start_failure(ending)
        self._on_ended(self, failure)
        waiting, self._answer = self._answer, None
        how = f"(pid {self.pid}) {ending}"
        if failure is not None:  # the store says so, once
            if waiting is not None:
                waiting.errback(WriterDied(failure.problem))
        elif waiting is not None:
            log.error(
                "contact: the store's writer process {how} while a job ran: its messages are "
                "not acknowledged (503); the next job starts a new writer",
                how=how,
            )
            waiting.errback(WriterDied(f"the store's writer process {how} while a job ran"))
        elif not self._closing:
            log.error("contact: the store's writer process {how}; the next job starts a new one", how=how)  # fmt: skip
        self._exited.callback(None)

    def _start_failure(self, ending: str) -> _StartFailure:
        if self._cannot_open is not None:
            problem = f"the writer process cannot open {self._path}: {self._cannot_open}"
        else:
            problem = f"the writer process {ending} as it started"
            if self._said:
                problem += ", saying why in the log"
        return _StartFailure(problem, tuple(self._said))


def _say(lines: Iterable[str]) -> None:
    for line in lines:
        log.warn("contact: the store's writer process says: {line}", line=line)


def _ending(reason: BaseException | None) -> str:
    """How a process ended, for people: C{was killed by SIGKILL}, C{exited with code 1}."""
    if isinstance(reason, ProcessTerminated) and reason.signal is not None:
        return f"was killed by {signal.Signals(reason.signal).name}"
    if isinstance(reason, ProcessTerminated | ProcessDone):
        return f"exited with code {reason.exitCode}"
    return f"ended ({reason})"
