"""Accepted contact messages in SQLite: durable before they are acknowledged.

The store's work runs in a writer process of its own (L{ProcessWriter}, writers.py, running
writer.py), one job at a time, on one connection (WAL, synchronous=FULL): the reactor never
waits on SQLite, nor shares the GIL with it. What is asked while a job runs waits in the next L{_Batch}: its new
messages and delivery records are written in one transaction (one fsync for many messages, and
one frame each way for the batch rather than one per message), then its reads run, so every
answer reflects everything asked before it. A message is answered only once the writer says it
is committed; a writer that dies fails its job's pieces, and the next job starts a new one.
A writer that cannot start (it ends before it has opened the database, or cannot be spawned)
makes L{ContactStore.problem} say why until one has opened it again: the store takes no message
meanwhile, and its probe (below) tries a new writer every L{PROBE_SECONDS}.

The store also keeps its footprint and health: the WAL is checkpointed and truncated once the
store has been idle for a second (on the reactor's clock), and at once when it outgrows
L{writer.WAL_CHECKPOINT_BYTES}, so it never holds the disk (SQLite's own checkpoint, at 4 MB, keeps the
file at its largest size). A write the disk refuses (full, read-only, failing) makes
L{ContactStore.problem} say so until a write succeeds again; meanwhile the store tries a small
write of its own every L{PROBE_SECONDS}, so it knows when space came back without waiting for a
message.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFromThreads,
    IReactorProcess,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ..reactor import Clock, ThreadReactor
from .api import ContactMessage
from .writer import (
    Delivery,
    Done,
    Job,
    JobRunner,
    NewMessage,
    open_database,
    pending_deliveries,
    settled,
    waiting_deliveries,
    wal_path,
)
from .writers import ProcessWriter, ThreadWriter, Writer, WriterDied

__all__ = [
    "IDLE_CHECKPOINT_SECONDS",
    "PROBE_SECONDS",
    "ContactStore",
    "Delivery",
    "NewMessage",
    "StoreReactor",
    "StoreStopped",
]

T = TypeVar("T")

log = Logger()

# Once the store has had nothing to do for this long after a write, the WAL is checkpointed.
IDLE_CHECKPOINT_SECONDS = 1.0
# While writes fail: how often the store tries one of its own, to learn that they work again.
PROBE_SECONDS = 2.0


class StoreStopped(Exception):
    """The store was asked something after it stopped."""


class StoreReactor(Clock, ThreadReactor, Protocol):
    """Time for the store's idle checkpoints and probes; the store also spawns its writer
    process (the reactor is adapted to IReactorProcess at the start), or, given a thread pool,
    runs its jobs there and is called back from it."""


@dataclass
class _Batch:
    """What one job does, gathered on the reactor while the job before it runs: messages to
    add and delivery records to write (one transaction), then reads; or, once the store has
    been idle, its upkeep (a checkpoint, and a probe while writes fail). Each piece's Deferred
    fires with its result once the job is done."""

    adds: list[tuple[NewMessage, tuple[str, ...], Deferred[ContactMessage]]] = field(
        default_factory=list
    )
    updates: list[tuple[str, tuple[Any, ...], Deferred[None]]] = field(default_factory=list)
    reads: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]]] = field(
        default_factory=list
    )
    upkeep: bool = False
    probe: bool = False

    def __bool__(self) -> bool:
        return bool(self.adds or self.updates or self.reads or self.upkeep)

    def job(self) -> Job:
        return Job(
            [(new, channels) for new, channels, _ in self.adds],
            [(sql, parameters) for sql, parameters, _ in self.updates],
            [read for read, _ in self.reads],
            self.upkeep,
            self.probe,
        )

    def waiters(self) -> list[Deferred[Any]]:
        """Every piece's Deferred, in the order of the job's results."""
        return [p[-1] for p in self.adds] + [p[-1] for p in self.updates] + [p[-1] for p in self.reads]  # fmt: skip


class ContactStore:
    """The database behind its writer process; every method returns a Deferred."""

    def __init__(self, reactor: StoreReactor, path: Path, pool: ThreadPool | None = None) -> None:
        """C{pool}: run the jobs there, in this process, rather than in a writer process (for
        tests that hold the pool's jobs by hand)."""
        self._reactor = reactor
        self._pool = pool
        self.path = path
        self._writer: Writer | None = None
        self._next = _Batch()
        self._running: _Batch | None = None
        self._stopping = False
        # Why the last write failed (None: it worked), and why the last writer process could
        # not start (None: it opened the database), as the reactor last heard them.
        self._write_problem: str | None = None
        self._start_problem: str | None = None
        # Why the store cannot take messages (None: it can), the first of those; read by /ping.
        self.problem: str | None = None
        # When the last job ended (the reactor's time), and the timer of the next upkeep.
        self._last_done = 0.0
        self._upkeep: IDelayedCall | None = None

    def start(self) -> None:
        """Open the database here, so that a mistake (a missing folder, a file not ours) is
        told at once and precisely; then start the writer. The reactor is adapted now: one that
        only builds the service tree need not spawn or call from threads."""
        connection = open_database(self.path)
        self.path.chmod(0o600)
        if self._pool is None:
            connection.close()
            writer = ProcessWriter(IReactorProcess(self._reactor), self.path, self._writer_started)
            writer.start()
            self._writer = writer
        else:
            runner = JobRunner(connection, wal_path(self.path))
            self._writer = ThreadWriter(IReactorFromThreads(self._reactor), self._pool, runner)
        self._flush()  # what was asked before the start

    def stop(self) -> Deferred[None]:
        """Finish what was asked, then close; fires once the database is closed (and the
        writer process has exited). Whatever is asked afterwards fails with L{StoreStopped}."""
        writer = self._writer
        if writer is None or self._stopping:
            self._stopping = True
            return succeed(None)
        finished = self._call(settled)
        self._stopping = True
        if self._upkeep is not None and self._upkeep.active():
            self._upkeep.cancel()
        return finished.addBoth(lambda _: writer.close())

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id, while one runs."""
        return self._writer.pid if isinstance(self._writer, ProcessWriter) else None

    # What the reactor asks for.

    def add(self, new: NewMessage, channels: tuple[str, ...]) -> Deferred[ContactMessage]:
        """Store C{new} with a pending delivery per channel; fires once it is on disk."""
        if self._stopping:
            return fail(StoreStopped("the contact store has stopped"))
        d: Deferred[ContactMessage] = Deferred()
        self._next.adds.append((new, channels, d))
        if self._running is None:
            self._flush()
        return d

    def waiting(self) -> Deferred[list[Delivery]]:
        """Every delivery not done yet (pending or failed), oldest first."""
        return self._call(waiting_deliveries)

    def pending(self) -> Deferred[list[Delivery]]:
        return self._call(pending_deliveries)

    def delivered(self, message_id: int, channel: str) -> Deferred[None]:
        return self._update(
            "UPDATE deliveries SET state='delivered', attempts=attempts+1, delivered_at=?, "
            "last_error=NULL WHERE message_id=? AND channel=?",
            (time.time(), message_id, channel),
        )

    def add_delivery(self, message_id: int, channel: str) -> Deferred[None]:
        """A pending delivery of a stored message to one more channel (a fallback); nothing
        if that channel already has one."""
        return self._update(
            "INSERT OR IGNORE INTO deliveries (message_id, channel) VALUES (?, ?)",
            (message_id, channel),
        )

    def attempt_failed(self, message_id: int, channel: str, error: str, final: bool) -> Deferred[None]:  # fmt: skip
        state = "failed" if final else "pending"
        return self._update(
            "UPDATE deliveries SET state=?, attempts=attempts+1, last_error=? "
            "WHERE message_id=? AND channel=?",
            (state, error, message_id, channel),
        )

    def _update(self, sql: str, parameters: tuple[Any, ...]) -> Deferred[None]:
        """Run C{sql} in the next batch's transaction; fires once committed."""
        if self._stopping:
            return fail(StoreStopped("the contact store has stopped"))
        d: Deferred[None] = Deferred()
        self._next.updates.append((sql, parameters, d))
        if self._running is None:
            self._flush()
        return d

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Run C{work} in the next batch, after its writes: a module-level function (the writer
        process receives it by reference)."""
        if self._stopping:
            return fail(StoreStopped("the contact store has stopped"))
        d: Deferred[T] = Deferred()
        self._next.reads.append((work, d))
        if self._running is None:
            self._flush()
        return d

    # The batches, on the reactor.

    def _flush(self) -> None:
        """Hand the next batch to the writer, unless a job runs (it follows that one)."""
        if self._running is not None or self._writer is None or not self._next:
            return
        batch, self._next = self._next, _Batch()
        self._running = batch
        job = self._writer.run(batch.job())
        job.addCallbacks(self._done, self._job_failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _done(self, done: Done, batch: _Batch) -> None:
        self._running = None
        self._last_done = self._reactor.seconds()
        if done.wrote and done.problem != self._write_problem:
            # Before the pieces are answered: a 503 is never sent while /ping says running.
            self._write_problem = done.problem
            self._problem_changed()
        # The next batch starts on the disk while this one is answered.
        self._flush()
        self._arm_upkeep(done.wal_written)
        for d, result in zip(batch.waiters(), done.results, strict=True):
            if isinstance(result, Exception):
                d.errback(result)
            else:
                d.callback(result)

    def _job_failed(self, failure: Failure, batch: _Batch) -> None:
        """A bug in a job (SQLite's own errors are results), or a writer that died (logged
        already): its pieces fail, the next runs."""
        self._running = None
        if not failure.check(WriterDied):
            log.failure("contact: a store job failed", failure)
        self._flush()
        self._arm_upkeep(wal_written=True)  # what the job wrote is unknown; a probe goes on
        for d in batch.waiters():
            d.errback(failure)

    def _writer_started(self, problem: str | None) -> None:
        """A writer process opened the database (None), or why one could not start. Told
        before the job it was started for fails, so /ping says down before that 503."""
        if problem == self._start_problem:
            return
        self._start_problem = problem
        self._problem_changed()
        self._arm_upkeep(wal_written=False)  # the probe starts the next writer

    def _problem_changed(self) -> None:
        problem = self._start_problem or self._write_problem
        if problem == self.problem:
            return
        if problem is None:
            log.info("contact: the store takes writes again")
        else:
            log.error("contact: the store cannot write: {problem}", problem=problem)
        self.problem = problem

    def _arm_upkeep(self, wal_written: bool) -> None:
        """Look after the store once it has been idle a while: the WAL's space back after a
        write, or a probe every L{PROBE_SECONDS} while writes fail."""
        if self._upkeep is not None or self._stopping:
            return
        if self.problem is not None:
            delay = PROBE_SECONDS
        elif wal_written:
            delay = IDLE_CHECKPOINT_SECONDS
        else:
            return
        self._upkeep = self._reactor.callLater(delay, self._upkeep_due, delay)

    def _upkeep_due(self, delay: float) -> None:
        self._upkeep = None
        if self._running is not None:
            return  # the job's end arms it again
        idle = self._reactor.seconds() - self._last_done
        if idle < delay:
            self._upkeep = self._reactor.callLater(delay - idle, self._upkeep_due, delay)
            return
        self._next.upkeep = True
        self._next.probe = self.problem is not None
        self._flush()
