"""The contact store's SQLite work, and the writer process it runs in.

A L{Job} is what one batch of the store asks: messages to add and delivery records to write (one
transaction, one fsync), then reads, or the store's upkeep. A L{JobRunner} runs jobs on one
connection (WAL, synchronous=FULL), one at a time, and knows whether the WAL holds frames since
its last checkpoint; what a job did comes back as one L{Done}.

The store runs them in a process of its own, `python -m jupybot.contact.writer DATABASE`: its
first frame on its stdout says whether it opened the database (L{Opened}); then it reads jobs on
its stdin and writes what they did on its stdout, each frame a pickle after its length, and exits
at the end of its stdin, so a server killed with SIGKILL never leaves it behind. In a
thread of the server, a job shared the GIL with the reactor, which holds it almost all the time
during a burst: the job waited a median 4.2 ms for it before it could start (then ran 4.6 ms for
~25 messages), and the reactor idled ~10% of the burst waiting for the job.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sqlite3
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from .api import ContactMessage

T = TypeVar("T")

# Checkpoint (and truncate) the WAL once it is this large, however busy the store is.
WAL_CHECKPOINT_BYTES = 1024 * 1024

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


class JobError(Exception):
    """A job raised in the writer process (a bug): its traceback there."""


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


def wal_path(database: Path) -> Path:
    return database.with_name(database.name + "-wal")


@dataclass(frozen=True)
class Job:
    """What one batch asks, as the writer process receives it (a pickle): reads are module-level
    functions, which pickle by reference."""

    adds: list[tuple[NewMessage, tuple[str, ...]]]
    updates: list[tuple[str, tuple[Any, ...]]]
    reads: list[Callable[[sqlite3.Connection], Any]]
    upkeep: bool
    probe: bool


@dataclass(frozen=True)
class Opened:
    """The writer process's first frame: it opened the database (C{problem} None), or SQLite's
    words for why it could not, before it exits (a folder or a file that is not a database at
    the database's path, a disk gone)."""

    problem: str | None


@dataclass(frozen=True)
class Done:
    """What a job did: one result per piece, adds then updates then reads (an exception for a
    piece that failed), what its writes said of the store (when it wrote: None for a store that
    works), and whether the WAL holds frames since the last checkpoint."""

    results: list[object]
    wrote: bool
    problem: str | None
    wal_written: bool


class JobRunner:
    """Runs the store's jobs on one connection, one at a time."""

    def __init__(self, connection: sqlite3.Connection, wal: Path) -> None:
        self._connection = connection
        self._wal = wal
        self._wal_written = False

    def run(self, job: Job) -> Done:
        connection = self._connection
        results: list[object] = []
        wrote = bool(job.adds or job.updates)
        problem = self._write(job, results) if wrote else None
        for read in job.reads:
            try:
                results.append(read(connection))
            except Exception as e:  # answered to whoever asked
                results.append(e)
        if job.upkeep:
            self._checkpoint()
            if job.probe:
                wrote, problem = True, self._probe()
        return Done(results, wrote, problem, self._wal_written)

    def close(self) -> None:
        self._connection.close()

    def _write(self, job: Job, results: list[object]) -> str | None:
        """One transaction for the job's messages and delivery records: a piece SQLite refuses
        fails alone and the others are committed (one fsync); a transaction that fails fails
        them all. What it says of the store (None: it works)."""
        connection = self._connection
        received_at = time.time()
        try:
            connection.execute("BEGIN IMMEDIATE")
            if job.adds:
                results.extend(_insert_all(connection, job.adds, received_at))
            for sql, parameters in job.updates:
                results.append(_update(connection, sql, parameters))
            connection.execute("COMMIT")
        except Exception as e:
            self._rollback()
            results[:] = [e] * (len(job.adds) + len(job.updates))
            # What the WAL holds may be all that keeps the disk full.
            self._checkpoint()
            return write_problem(e)
        self._written()
        return None

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it: its space goes back to the disk.
        Best effort: on a full disk the database may be unable to grow, and a reader (the
        owner's `list`) may hold the WAL; the next idle moment tries again."""
        try:
            busy = self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            return
        if not busy:
            self._wal_written = False

    def _probe(self) -> str | None:
        """One small write: does the store take writes again?"""
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT OR REPLACE INTO write_probe (id, at) VALUES (1, ?)", (time.time(),)
            )
            connection.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            return write_problem(e)
        self._written()
        return None

    def _written(self) -> None:
        """A write transaction committed: a WAL grown large is checkpointed."""
        self._wal_written = True
        try:
            size = os.stat(self._wal).st_size
        except OSError:
            return
        if size >= WAL_CHECKPOINT_BYTES:
            self._checkpoint()

    def _rollback(self) -> None:
        # SQLite has rolled back on its own when it could not go on.
        if self._connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("ROLLBACK")


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


def _update(db: sqlite3.Connection, sql: str, parameters: tuple[Any, ...]) -> Exception | None:
    """One statement, or the content error SQLite refused it with: a statement that fails
    changes nothing, so it needs no savepoint of its own (which would cost two more)."""
    try:
        db.execute(sql, parameters)
    except CONTENT_ERRORS as e:
        return e
    return None


def _insert_all(db: sqlite3.Connection, adds: list[tuple[NewMessage, tuple[str, ...]]], received_at: float) -> list[object]:  # fmt: skip
    """Insert every message of C{adds} with its deliveries, a statement for many messages and
    one for their deliveries (in a thread of the server, each statement cost a GIL hand-over
    with the reactor). SQLite numbers a statement's rows in order, so their ids are the last
    one's and those before it. When SQLite refuses a message's content, nothing of that
    statement is kept and each of its messages is inserted on its own, so that one alone fails
    (an L{UnstorableMessage} in its place)."""
    results: list[object] = []
    for start in range(0, len(adds), ROWS_PER_STATEMENT):
        chunk = adds[start : start + ROWS_PER_STATEMENT]
        rows = [(n.name, n.email, n.subject, n.message, n.client_ip, received_at) for n, _ in chunk]  # fmt: skip
        try:
            last = _insert_rows(db, "messages (name, email, subject, message, client_ip, received_at)", rows)  # fmt: skip
        except CONTENT_ERRORS:
            results.extend(_insert_alone(db, new, channels, received_at) for new, channels in chunk)  # fmt: skip
            continue
        first = last - len(chunk) + 1
        deliveries = [(first + i, name) for i, (_, channels) in enumerate(chunk) for name in channels]  # fmt: skip
        _insert_rows(db, "deliveries (message_id, channel)", deliveries)
        results.extend(
            ContactMessage(
                first + i, n.name, n.email, n.subject, n.message, n.client_ip, received_at
            )
            for i, (n, _) in enumerate(chunk)
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


def pending_deliveries(db: sqlite3.Connection) -> list[Delivery]:
    return _deliveries(db, "state = 'pending'")


def retry_failed(db: sqlite3.Connection) -> int:
    """Put every failed delivery back in line; how many there were."""
    return db.execute("UPDATE deliveries SET state='pending' WHERE state='failed'").rowcount


def settled(db: sqlite3.Connection) -> None:
    """Nothing: a read whose answer says that everything asked before it is done."""


def _deliveries(db: sqlite3.Connection, where: str) -> list[Delivery]:
    rows = db.execute(
        "SELECT m.id, m.name, m.email, m.subject, m.message, m.client_ip, m.received_at, "
        "d.channel, d.state, d.attempts, d.last_error FROM deliveries d "
        f"JOIN messages m ON m.id = d.message_id WHERE d.{where} ORDER BY m.id"
    ).fetchall()
    return [Delivery(ContactMessage(*row[:7]), row[7], row[8], row[9], row[10]) for row in rows]


# The frames between the store and its writer process.

FRAME_LENGTH = struct.Struct("!I")


def frame(thing: object) -> bytes:
    data = pickle.dumps(thing, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_LENGTH.pack(len(data)) + data


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's pickle, or None at the end of the stream."""
    head = stream.read(FRAME_LENGTH.size)
    if len(head) < FRAME_LENGTH.size:
        return None
    return stream.read(FRAME_LENGTH.unpack(head)[0])


def serve(runner: JobRunner, jobs: IO[bytes], answers: IO[bytes]) -> None:
    """Run each job read from C{jobs}, writing what it did to C{answers}, until C{jobs} ends."""
    while (data := _read_frame(jobs)) is not None:
        try:
            answer = frame(runner.run(pickle.loads(data)))
        except Exception:
            answer = frame(JobError(traceback.format_exc()))
        answers.write(answer)
        answers.flush()


def _open(database: Path, answers: IO[bytes]) -> sqlite3.Connection:
    """The writer's connection, once it has told the server it has one (L{Opened})."""
    try:
        connection = sqlite3.connect(database, isolation_level=None)
        # Reads the file's header: a file that is not a database fails here.
        connection.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as e:
        answers.write(frame(Opened(str(e) or type(e).__name__)))
        answers.flush()
        raise SystemExit(1) from None
    answers.write(frame(Opened(None)))
    answers.flush()
    return connection


def main() -> None:
    # The server's signals are not the writer's: a Ctrl-C in its terminal, or systemd's SIGTERM
    # to its whole cgroup, would end a job the server is waiting for. The end of its stdin does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    database = Path(sys.argv[1])
    answers = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write between the answers
    runner = JobRunner(_open(database, answers), wal_path(database))
    try:
        serve(runner, sys.stdin.buffer, answers)
    finally:
        runner.close()


if __name__ == "__main__":
    # Run as the module it is, not as __main__: what it pickles is found by that name.
    from jupybot.contact.writer import main as writer_main

    writer_main()
