"""`python -m jupybot.contact list|retry`: the owner's view of messages not delivered yet.

Reads the state directory of the config (WAL lets it run beside the server). `retry` puts
failed deliveries back in line; the running server picks them up at its next start.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from ..config import ConfigError, default_config_path, load_config
from ..state import StateDirectory
from .part import database_path
from .store import open_database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupybot.contact", description=__doc__)
    parser.add_argument("command", choices=("list", "retry"))
    parser.add_argument("--config", default=None, help="config.yml (default: as twistd jupybot)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config or default_config_path())
    except ConfigError as e:
        print(e.report(), file=sys.stderr)
        return 1
    path = database_path(StateDirectory(config.storage.path))
    if not path.exists():
        print("No contact messages yet.")
        return 0
    db = open_database(path)
    try:
        if args.command == "retry":
            changed = db.execute(
                "UPDATE deliveries SET state='pending' WHERE state='failed'"
            ).rowcount
            print(f"{changed} failed delivery(ies) will be tried again at the next start.")
            return 0
        rows = db.execute(
            "SELECT m.id, m.received_at, m.name, m.email, m.subject, d.channel, d.state, "
            "d.attempts, d.last_error FROM deliveries d JOIN messages m ON m.id = d.message_id "
            "WHERE d.state != 'delivered' ORDER BY m.id"
        ).fetchall()
    finally:
        db.close()
    if not rows:
        print("Every message was delivered.")
        return 0
    for message_id, received, name, email, subject, channel, state, attempts, error in rows:
        when = datetime.datetime.fromtimestamp(received).isoformat(timespec="seconds")
        print(f"#{message_id} {when} {name} <{email}> {subject or ''}".rstrip())
        print(f"    {channel}: {state} after {attempts} attempt(s){': ' + error if error else ''}")
    return 0
