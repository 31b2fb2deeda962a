"""A group commit inserts many messages per statement: each visitor is still told the id of
their own message, and each message has its deliveries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest_twisted

from jupybot.contact.store import ContactStore, NewMessage
from jupybot.contact.writer import ROWS_PER_STATEMENT
from jupybot.reactor import installed_reactor


@pytest_twisted.ensureDeferred
async def test_every_message_of_a_large_batch_gets_its_own_id_and_deliveries(tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "contact.sqlite3"
    store = ContactStore(installed_reactor(), path)
    store.start()
    try:
        # The last rows deleted: SQLite numbers the next ones after what is left, not after
        # what was once there.
        first = [await store.add(NewMessage(f"early{i}", "a@example.org", None, "hi", "10.0.0.1"), ("file",)) for i in range(3)]  # fmt: skip
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM deliveries WHERE message_id = ?", (first[-1].id,))
            db.execute("DELETE FROM messages WHERE id = ?", (first[-1].id,))
        # Submitted at once: one commit, in more than one statement.
        count = 2 * ROWS_PER_STATEMENT + 7
        waiting = [
            store.add(
                NewMessage(f"n{i}", f"{i}@example.org", None, f"m{i}", "10.0.0.1"),
                ("file", "discord"),
            )
            for i in range(count)
        ]
        stored = [await d for d in waiting]
        assert len({m.id for m in stored}) == count
        with sqlite3.connect(path) as db:
            rows = dict(db.execute("SELECT id, name FROM messages").fetchall())
            channels = db.execute(
                "SELECT message_id, group_concat(channel) FROM deliveries GROUP BY message_id"
            ).fetchall()
        for i, message in enumerate(stored):
            assert (message.name, rows[message.id]) == (f"n{i}", f"n{i}")
        delivered = {message_id: sorted(names.split(",")) for message_id, names in channels}
        assert all(delivered[m.id] == ["discord", "file"] for m in stored)
        assert len(delivered) == count + 2
    finally:
        await store.stop()
