"""Accepted contact messages in SQLite: durable before they are acknowledged.

The store's work runs on the contact part's thread pool (L{deferToThreadPool}), one job at a
time, on one connection (WAL, synchronous=FULL): the reactor never waits on SQLite. What is
asked while a job runs waits in the next L{_Batch}: its new messages and delivery records are
written in one transaction (one fsync for many messages, and one thread hop each way for the
batch rather than one per message), then its reads run, so every answer reflects everything
asked before it.

The store also keeps its footprint and health: the WAL is checkpointed and truncated once the
store has been idle for a second (on the reactor's clock), and at once when it outgrows
L{WAL_CHECKPOINT_BYTES}, so it never holds the disk (SQLite's own checkpoint, at 4 MB, keeps the
file at its largest size). A write the disk refuses (full, read-only, failing) makes
L{ContactStore.problem} say so until a write succeeds again; meanwhile the store tries a small
write of its own every L{PROBE_SECONDS}, so it knows when space came back without waiting for a
message.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ..reactor import Clock, ThreadReactor
from .api import ContactMessage

T = TypeVar("T")

log = Logger()

# Checkpoint (and truncate) the WAL once it is this large, however busy the store is.
WAL_CHECKPOINT_BYTES = 1024 * 1024
# ... and once the store has had nothing to do for this long after a write.
IDLE_CHECKPOINT_SECONDS = 1.0
# While writes fail: how often the store tries one of its own, to learn that they work again.
PROBE_SECONDS = 2.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    subject TEXT,
    message TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    message_id INTEGER NOT NULL REFERENCES messages(id),
    channel TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at REAL,
    PRIMARY KEY (message_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries(state) WHERE state != 'delivered';
-- One row, rewritten by the store's probe while writes fail (does the disk take one again?).
CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);
"""

# Errors that are about one message's content (a lone surrogate, a value SQLite will not bind):
# that message fails alone. Any other error (the disk is full or failing, the database is
# read-only or locked) fails the whole transaction and says the store cannot write.
CONTENT_ERRORS = (
    ValueError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
)


class UnstorableMessage(Exception):
    """SQLite refused this message's content (the rest of its batch was stored)."""


class StoreStopped(Exception):
    """The store was asked something after it stopped."""


def write_problem(error: Exception) -> str:
    """What a failed write says of the store, for /ping: "disk full", or SQLite's words."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return "disk full"
    return str(error) or type(error).__name__


class StoreReactor(Clock, ThreadReactor, Protocol):
    """Time for the store's idle checkpoints and probes; its thread pool calls back."""


@dataclass(frozen=True)
class NewMessage:
    name: str
    email: str
    subject: str | None
    message: str
    client_ip: str


@dataclass(frozen=True)
class Delivery:
    message: ContactMessage
    channel: str
    state: str
    attempts: int
    last_error: str | None


def open_database(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(SCHEMA)
    return connection


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

    def waiters(self) -> list[Deferred[Any]]:
        """Every piece's Deferred, in the order of the job's results."""
        return [p[-1] for p in self.adds] + [p[-1] for p in self.updates] + [p[-1] for p in self.reads]  # fmt: skip


@dataclass(frozen=True)
class _Done:
    """What a job did, handed back to the reactor in one hop: one result per piece (an
    exception for a piece that failed), what its writes said of the store (when it wrote:
    None for a store that works), and whether the WAL holds frames since the last checkpoint."""

    results: list[object]
    wrote: bool
    problem: str | None
    wal_written: bool


class ContactStore:
    """The database behind the contact part's thread pool; every method returns a Deferred."""

    # The reactor as deferToThreadPool wants it, adapted at the start (a reactor that only
    # builds the service tree need not provide it).
    _from_threads: IReactorFromThreads

    def __init__(self, reactor: StoreReactor, pool: ThreadPool, path: Path) -> None:
        self._reactor = reactor
        self._pool = pool
        self.path = path
        self._wal = path.with_name(path.name + "-wal")
        self._connection: sqlite3.Connection | None = None
        self._next = _Batch()
        self._running: _Batch | None = None
        self._stopping = False
        # Why writes fail (None: they work), as the reactor last heard it; read by /ping.
        self.problem: str | None = None
        # When the last job ended (the reactor's time), and the timer of the next upkeep.
        self._last_done = 0.0
        self._upkeep: IDelayedCall | None = None
        # Whether the WAL holds frames since the last checkpoint: touched by the jobs alone.
        self._wal_written = False

    def start(self) -> None:
        self._from_threads = IReactorFromThreads(self._reactor)
        self._connection = open_database(self.path)
        self.path.chmod(0o600)
        self._flush()  # what was asked before the start

    def stop(self) -> Deferred[None]:
        """Finish what was asked, then close; fires once the database is closed. Whatever is
        asked afterwards fails with L{StoreStopped}."""
        if self._connection is None or self._stopping:
            self._stopping = True
            return succeed(None)
        closed = self._call(_close)
        self._stopping = True
        if self._upkeep is not None and self._upkeep.active():
            self._upkeep.cancel()
        return closed

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
        return self._call(_pending_deliveries)

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
        """Run C{work} in the next batch, after its writes."""
        if self._stopping:
            return fail(StoreStopped("the contact store has stopped"))
        d: Deferred[T] = Deferred()
        self._next.reads.append((work, d))
        if self._running is None:
            self._flush()
        return d

    # The batches, on the reactor.

    def _flush(self) -> None:
        """Hand the next batch to the pool, unless a job runs (it follows that one)."""
        if self._running is not None or self._connection is None or not self._next:
            return
        batch, self._next = self._next, _Batch()
        self._running = batch
        job = deferToThreadPool(self._from_threads, self._pool, self._job, self._connection, batch)
        job.addCallbacks(self._done, self._job_failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _done(self, done: _Done, batch: _Batch) -> None:
        self._running = None
        self._last_done = self._reactor.seconds()
        if done.wrote and done.problem != self.problem:
            # Before the pieces are answered: a 503 is never sent while /ping says running.
            self._problem_changed(done.problem)
        # The next batch starts on the disk while this one is answered.
        self._flush()
        self._arm_upkeep(done.wal_written)
        for d, result in zip(batch.waiters(), done.results, strict=True):
            if isinstance(result, Exception):
                d.errback(result)
            else:
                d.callback(result)

    def _job_failed(self, failure: Failure, batch: _Batch) -> None:
        """A bug in a job (SQLite's own errors are results): its pieces fail, the next runs."""
        self._running = None
        log.failure("contact: a store job failed", failure)
        self._flush()
        for d in batch.waiters():
            d.errback(failure)

    def _problem_changed(self, problem: str | None) -> None:
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

    # The jobs, on the pool's thread: one at a time.

    def _job(self, connection: sqlite3.Connection, batch: _Batch) -> _Done:
        results: list[object] = []
        wrote = bool(batch.adds or batch.updates)
        problem = self._write(connection, batch, results) if wrote else None
        for read, _ in batch.reads:
            try:
                results.append(read(connection))
            except Exception as e:  # answered to whoever asked
                results.append(e)
        if batch.upkeep:
            self._checkpoint(connection)
            if batch.probe:
                wrote, problem = True, self._probe(connection)
        return _Done(results, wrote, problem, self._wal_written)

    def _write(self, connection: sqlite3.Connection, batch: _Batch, results: list[object]) -> str | None:  # fmt: skip
        """One transaction for the batch's messages and delivery records: a piece SQLite
        refuses fails alone and the others are committed (one fsync); a transaction that fails
        fails them all. What it says of the store (None: it works)."""
        received_at = time.time()
        try:
            connection.execute("BEGIN IMMEDIATE")
            if batch.adds:
                results.extend(_insert_all(connection, batch.adds, received_at))
            for sql, parameters, _ in batch.updates:
                results.append(_update(connection, sql, parameters))
            connection.execute("COMMIT")
        except Exception as e:
            self._rollback(connection)
            results[:] = [e] * (len(batch.adds) + len(batch.updates))
            # What the WAL holds may be all that keeps the disk full.
            self._checkpoint(connection)
            return write_problem(e)
        self._written(connection)
        return None

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        """Copy the WAL into the database and truncate it: its space goes back to the disk.
        Best effort: on a full disk the database may be unable to grow, and a reader (the
        owner's `list`) may hold the WAL; the next idle moment tries again."""
        try:
            busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            return
        if not busy:
            self._wal_written = False

    def _probe(self, connection: sqlite3.Connection) -> str | None:
        """One small write: does the store take writes again?"""
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT OR REPLACE INTO write_probe (id, at) VALUES (1, ?)", (time.time(),)
            )
            connection.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback(connection)
            return write_problem(e)
        self._written(connection)
        return None

    def _written(self, connection: sqlite3.Connection) -> None:
        """A write transaction committed: a WAL grown large is checkpointed."""
        self._wal_written = True
        try:
            size = os.stat(self._wal).st_size
        except OSError:
            return
        if size >= WAL_CHECKPOINT_BYTES:
            self._checkpoint(connection)

    @staticmethod
    def _rollback(connection: sqlite3.Connection) -> None:
        # SQLite has rolled back on its own when it could not go on.
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")


def _in_savepoint(connection: sqlite3.Connection, work: Callable[..., T], *args: Any) -> T | Exception:  # fmt: skip
    """C{work}'s result, or the content error it raised, its changes then rolled back."""
    connection.execute("SAVEPOINT piece")
    try:
        result: T | Exception = work(*args)
    except CONTENT_ERRORS as e:
        connection.execute("ROLLBACK TO piece")
        result = e
    connection.execute("RELEASE piece")
    return result


def _close(db: sqlite3.Connection) -> None:
    db.close()


def _update(db: sqlite3.Connection, sql: str, parameters: tuple[Any, ...]) -> Exception | None:
    """One statement, or the content error SQLite refused it with: a statement that fails
    changes nothing, so it needs no savepoint of its own (which would cost two more)."""
    try:
        db.execute(sql, parameters)
    except CONTENT_ERRORS as e:
        return e
    return None


def _insert_all(db: sqlite3.Connection, adds: list[tuple[NewMessage, tuple[str, ...], Any]], received_at: float) -> list[object]:  # fmt: skip
    """Insert every message of C{adds} with its deliveries, a statement for many messages and
    one for their deliveries: after each statement the store's thread waits for the GIL, a
    hand-over that costs the reactor more than the insert. SQLite numbers a statement's rows
    in order, so their ids are the last one's and those before it. When SQLite refuses a
    message's content, nothing of that statement is kept and each of its messages is inserted
    on its own, so that one alone fails (an L{UnstorableMessage} in its place)."""
    results: list[object] = []
    for start in range(0, len(adds), ROWS_PER_STATEMENT):
        chunk = adds[start : start + ROWS_PER_STATEMENT]
        rows = [(n.name, n.email, n.subject, n.message, n.client_ip, received_at) for n, _, _ in chunk]  # fmt: skip
        try:
            last = _insert_rows(db, "messages (name, email, subject, message, client_ip, received_at)", rows)  # fmt: skip
        except CONTENT_ERRORS:
            results.extend(_insert_alone(db, new, channels, received_at) for new, channels, _ in chunk)  # fmt: skip
            continue
        first = last - len(chunk) + 1
        deliveries = [(first + i, name) for i, (_, channels, _) in enumerate(chunk) for name in channels]  # fmt: skip
        _insert_rows(db, "deliveries (message_id, channel)", deliveries)
        results.extend(
            ContactMessage(
                first + i, n.name, n.email, n.subject, n.message, n.client_ip, received_at
            )
            for i, (n, _, _) in enumerate(chunk)
        )
    return results


# Messages per INSERT: 6 parameters each, well under SQLite's 32,766.
ROWS_PER_STATEMENT = 1000


def _insert_rows(db: sqlite3.Connection, into: str, rows: list[tuple[Any, ...]]) -> int:
    """Insert C{rows} (of one width) with one statement; the rowid of the last (0: none)."""
    if not rows:
        return 0
    row = "(" + ", ".join("?" * len(rows[0])) + ")"
    values = [value for row_values in rows for value in row_values]
    cursor = db.execute(f"INSERT INTO {into} VALUES {', '.join([row] * len(rows))}", values)
    return cursor.lastrowid or 0


def _insert_alone(db: sqlite3.Connection, new: NewMessage, channels: tuple[str, ...], received_at: float) -> object:  # fmt: skip
    stored = _in_savepoint(db, _insert, db, new, channels, received_at)
    if isinstance(stored, Exception):  # e.g. a lone surrogate, which is not UTF-8
        return UnstorableMessage(f"{type(stored).__name__}: {stored}")
    return stored


def _insert(db: sqlite3.Connection, new: NewMessage, channels: tuple[str, ...], received_at: float) -> ContactMessage:  # fmt: skip
    cursor = db.execute(
        "INSERT INTO messages (name, email, subject, message, client_ip, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (new.name, new.email, new.subject, new.message, new.client_ip, received_at),
    )
    message_id = int(cursor.lastrowid or 0)
    db.executemany(
        "INSERT INTO deliveries (message_id, channel) VALUES (?, ?)",
        [(message_id, channel) for channel in channels],
    )
    return ContactMessage(
        message_id, new.name, new.email, new.subject, new.message, new.client_ip, received_at
    )


# Queries on a connection of one's own: the store's jobs run them for the server, and the
# owner's command line (cli.py) runs them directly, beside a running server (WAL).


def waiting_deliveries(db: sqlite3.Connection) -> list[Delivery]:
    """Every delivery not done yet (pending or failed), oldest first."""
    return _deliveries(db, "state != 'delivered'")


def _pending_deliveries(db: sqlite3.Connection) -> list[Delivery]:
    return _deliveries(db, "state = 'pending'")


def retry_failed(db: sqlite3.Connection) -> int:
    """Put every failed delivery back in line; how many there were."""
    return db.execute("UPDATE deliveries SET state='pending' WHERE state='failed'").rowcount


def _deliveries(db: sqlite3.Connection, where: str) -> list[Delivery]:
    rows = db.execute(
        "SELECT m.id, m.name, m.email, m.subject, m.message, m.client_ip, m.received_at, "
        "d.channel, d.state, d.attempts, d.last_error FROM deliveries d "
        f"JOIN messages m ON m.id = d.message_id WHERE d.{where} ORDER BY m.id"
    ).fetchall()
    return [Delivery(ContactMessage(*row[:7]), row[7], row[8], row[9], row[10]) for row in rows]
