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
from .writer import open_database, retry_failed, waiting_deliveries


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
            changed = retry_failed(db)
            print(f"{changed} failed delivery(ies) will be tried again at the next start.")
            return 0
        waiting = waiting_deliveries(db)
    finally:
        db.close()
    if not waiting:
        print("Every message was delivered.")
        return 0
    for delivery in waiting:
        message, error = delivery.message, delivery.last_error
        when = datetime.datetime.fromtimestamp(message.received_at).isoformat(timespec="seconds")
        print(
            f"#{message.id} {when} {message.name} <{message.email}> {message.subject or ''}".rstrip()
        )
        print(
            f"    {delivery.channel}: {delivery.state} after {delivery.attempts} attempt(s)"
            f"{': ' + error if error else ''}"
        )
    return 0
