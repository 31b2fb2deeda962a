"""Accepted contact messages in SQLite: durable before they are acknowledged.

One writer thread owns the connection (WAL, synchronous=FULL). Submissions that arrive while it
commits are written together in the next transaction: one fsync for many messages, so
durability does not cost throughput. The reactor never waits on SQLite.

The writer also keeps the store's footprint and health: the WAL is checkpointed and truncated
whenever the writer has been idle for a second, and at once when it outgrows
L{WAL_CHECKPOINT_BYTES}, so it never holds the disk (SQLite's own checkpoint, at 4 MB, keeps the
file at its largest size). A write the disk refuses (full, read-only, failing) makes
L{ContactStore.problem} say so until a write succeeds again; meanwhile the writer tries a small
write of its own every L{PROBE_SECONDS}, so the store knows when space came back without waiting
for a message.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..reactor import ThreadReactor
from .api import ContactMessage

T = TypeVar("T")

log = Logger()

# Checkpoint (and truncate) the WAL once it is this large, however busy the writer is.
WAL_CHECKPOINT_BYTES = 1024 * 1024
# ... and once the writer has had nothing to do for this long after a write.
IDLE_CHECKPOINT_SECONDS = 1.0
# While writes fail: how often the writer tries one of its own, to learn that they work again.
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
-- One row, rewritten by the writer's probe while writes fail (does the disk take one again?).
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


def write_problem(error: Exception) -> str:
    """What a failed write says of the store, for /ping: "disk full", or SQLite's words."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return "disk full"
    return str(error) or type(error).__name__


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


class ContactStore:
    """The database behind its writer thread; every method returns a Deferred."""

    def __init__(self, reactor: ThreadReactor, path: Path) -> None:
        self._reactor = reactor
        self.path = path
        self._requests: queue.Queue[
            tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]] | None
        ]
        self._requests = queue.Queue()
        self._thread: threading.Thread | None = None
        self._adds: list[tuple[NewMessage, tuple[str, ...], Deferred[ContactMessage]]] = []
        self._adds_lock = threading.Lock()
        # Delivery bookkeeping, committed in batches too: one fsync per message delivered cost
        # a fifth of the accepted rate while a burst of messages was being delivered.
        self._updates: list[tuple[str, tuple[Any, ...], Deferred[None]]] = []
        self._updates_lock = threading.Lock()
        self._wal = path.with_name(path.name + "-wal")
        # Why writes fail (None: they work), as the reactor last heard it; read by /ping.
        self.problem: str | None = None
        # The writer thread's own view: what it last told the reactor, and whether the WAL
        # holds frames since the last checkpoint.
        self._writer_problem: str | None = None
        self._wal_written = False
        # Checkpoints done (by size, when idle, after a failure): read by the tests and bench.
        self.checkpoints = 0

    def start(self) -> None:
        connection = open_database(self.path)
        self.path.chmod(0o600)
        self._thread = threading.Thread(
            target=self._run, args=(connection,), name="jupybot-contact-store", daemon=True
        )
        self._thread.start()

    def stop(self) -> Deferred[None]:
        """Finish what was submitted, then close; fires when the thread is done."""
        done: Deferred[None] = Deferred()
        if self._thread is None:
            done.callback(None)
            return done
        thread, self._thread = self._thread, None
        self._requests.put(None)

        def wait() -> None:
            thread.join()
            self._reactor.callFromThread(done.callback, None)

        threading.Thread(target=wait, daemon=True).start()
        return done

    # What the reactor asks for.

    def add(self, new: NewMessage, channels: tuple[str, ...]) -> Deferred[ContactMessage]:
        """Store C{new} with a pending delivery per channel; fires once it is on disk."""
        d: Deferred[ContactMessage] = Deferred()
        with self._adds_lock:
            first = not self._adds
            self._adds.append((new, channels, d))
        if first:
            self._requests.put((self._commit_adds, Deferred()))
        return d

    def waiting(self) -> Deferred[list[Delivery]]:
        """Every delivery not done yet (pending or failed), oldest first."""
        return self._call(waiting_deliveries)

    def pending(self) -> Deferred[list[Delivery]]:
        return self._call(lambda db: _deliveries(db, "state = 'pending'"))

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
        """Run C{sql} in the next batch of updates (one transaction); fires once committed."""
        d: Deferred[None] = Deferred()
        with self._updates_lock:
            first = not self._updates
            self._updates.append((sql, parameters, d))
        if first:
            self._requests.put((self._commit_updates, Deferred()))
        return d

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        self._requests.put((work, d))
        return d

    # The writer thread.

    def _run(self, connection: sqlite3.Connection) -> None:
        try:
            while True:
                try:
                    request = self._requests.get(timeout=self._idle_timeout())
                except queue.Empty:
                    self._idle(connection)
                    continue
                if request is None:
                    break
                work, d = request
                try:
                    result = work(connection)
                except Exception as e:  # reported to whoever asked
                    self._reactor.callFromThread(d.errback, e)
                else:
                    if work not in (self._commit_adds, self._commit_updates):
                        self._reactor.callFromThread(d.callback, result)
            self._commit_adds(connection)
            self._commit_updates(connection)
        finally:
            connection.close()

    def _idle_timeout(self) -> float | None:
        """How long the writer waits for work before it looks after the store itself."""
        if self._writer_problem is not None:
            return PROBE_SECONDS
        if self._wal_written:
            return IDLE_CHECKPOINT_SECONDS
        return None

    def _idle(self, connection: sqlite3.Connection) -> None:
        """Nothing to do for a while: give the WAL's space back, or probe a store that failed."""
        if self._writer_problem is not None:
            self._checkpoint(connection)
            self._probe(connection)
        elif self._wal_written:
            self._checkpoint(connection)

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
            self.checkpoints += 1

    def _probe(self, connection: sqlite3.Connection) -> None:
        """One small write: does the store take writes again?"""
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT OR REPLACE INTO write_probe (id, at) VALUES (1, ?)", (time.time(),)
            )
            connection.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback(connection)
            self._tell_problem(write_problem(e))
        else:
            self._written(connection)

    def _written(self, connection: sqlite3.Connection) -> None:
        """A write transaction committed: the store works; a WAL grown large is checkpointed."""
        self._wal_written = True
        self._tell_problem(None)
        try:
            size = os.stat(self._wal).st_size
        except OSError:
            return
        if size >= WAL_CHECKPOINT_BYTES:
            self._checkpoint(connection)

    def _write_failed(self, connection: sqlite3.Connection, error: Exception) -> None:
        self._tell_problem(write_problem(error))
        # What the WAL holds may be all that keeps the disk full.
        self._checkpoint(connection)

    def _tell_problem(self, problem: str | None) -> None:
        """The reactor learns of a change in the store's health (before the Deferreds of the
        write that showed it fire: a 503 is never answered while /ping still says running)."""
        if problem == self._writer_problem:
            return
        self._writer_problem = problem
        self._reactor.callFromThread(self._problem_changed, problem)

    def _problem_changed(self, problem: str | None) -> None:
        if problem is None:
            log.info("contact: the store takes writes again")
        else:
            log.error("contact: the store cannot write: {problem}", problem=problem)
        self.problem = problem

    @staticmethod
    def _rollback(connection: sqlite3.Connection) -> None:
        # SQLite has rolled back on its own when it could not go on.
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")

    def _commit_adds(self, connection: sqlite3.Connection) -> None:
        """One transaction for the batch, one savepoint per message: a message SQLite refuses
        fails alone, and the others are committed (one fsync) and acknowledged."""
        with self._adds_lock:
            batch, self._adds = self._adds, []
        received_at = time.time()

        def insert(new: NewMessage, channels: tuple[str, ...]) -> Callable[[], ContactMessage]:
            return lambda: _insert(connection, new, channels, received_at)

        self._commit_each(
            connection,
            [(insert(new, channels), d) for new, channels, d in batch],
            # e.g. a lone surrogate, which is not UTF-8
            lambda e: UnstorableMessage(f"{type(e).__name__}: {e}"),
        )

    def _commit_updates(self, connection: sqlite3.Connection) -> None:
        """One transaction for the waiting updates; each that fails fails alone."""
        with self._updates_lock:
            batch, self._updates = self._updates, []

        def update(sql: str, parameters: tuple[Any, ...]) -> Callable[[], None]:
            return lambda: _execute(connection, sql, parameters)

        self._commit_each(
            connection, [(update(sql, parameters), d) for sql, parameters, d in batch], None
        )

    def _commit_each(
        self,
        connection: sqlite3.Connection,
        batch: list[tuple[Callable[[], T], Deferred[T]]],
        refusal: Callable[[Exception], Exception] | None,
    ) -> None:
        """Run each piece of C{batch} in a savepoint of one transaction and fire its Deferred
        once committed: a piece SQLite refuses fails alone (as C{refusal} says), the rest are
        committed with one fsync; a transaction that fails fails them all."""
        if not batch:
            return
        outcomes: list[tuple[Deferred[Any], bool, object]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for work, d in batch:
                connection.execute("SAVEPOINT piece")
                try:
                    outcomes.append((d, True, work()))
                except CONTENT_ERRORS as e:
                    connection.execute("ROLLBACK TO piece")
                    outcomes.append((d, False, refusal(e) if refusal else e))
                connection.execute("RELEASE piece")
            connection.execute("COMMIT")
        except Exception as e:
            self._rollback(connection)
            self._write_failed(connection, e)
            for _, d in batch:
                self._reactor.callFromThread(d.errback, e)
            return
        self._written(connection)
        for d, done, result in outcomes:
            self._reactor.callFromThread(d.callback if done else d.errback, result)


def _execute(db: sqlite3.Connection, sql: str, parameters: tuple[Any, ...]) -> None:
    db.execute(sql, parameters)


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


# Queries on a connection of one's own: the writer thread runs them for the server, and the
# owner's command line (cli.py) runs them directly, beside a running server (WAL).


def waiting_deliveries(db: sqlite3.Connection) -> list[Delivery]:
    """Every delivery not done yet (pending or failed), oldest first."""
    return _deliveries(db, "state != 'delivered'")


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
