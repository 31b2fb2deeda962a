"""What the Matrix bot keeps across restarts, in the state directory.

``matrix-session.json`` (0600): the device id and access token, so a restart reuses the device
(and its encryption keys) instead of logging in again; the refresh token and when the access
token expires; and the devices this jupybot made by logging in, the only ones it ever deletes.
``matrix-sync.json``: the sync token, saved only after the events before it were handled, with
the rooms the bot has joined and when, so that a restart neither re-runs a command nor misses
one, and a command sent before the bot joined a room is never run.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import Logger

__all__ = ["SessionFile", "StoredSession", "SyncFile", "SyncState"]

log = Logger()


@dataclass(frozen=True)
class StoredSession:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None = None
    # Clock seconds (wall time) when the access token expires; None if it does not.
    expires_at: float | None = None
    # Devices this jupybot made by logging in with the password (never one a person made).
    created_devices: tuple[str, ...] = ()


@dataclass
class SyncState:
    next_batch: str | None = None
    # room id -> server timestamp (ms) of the bot's join; 0 for rooms joined before the first
    # sync, whose earlier events are skipped by that sync instead.
    joined: dict[str, int] = field(default_factory=dict)
    # Rooms the bot was invited to as a direct chat (the invite's is_direct), or opened itself.
    direct: list[str] = field(default_factory=list)
    # Encrypted rooms already told that the bot cannot read them (said once per room).
    told_encrypted: list[str] = field(default_factory=list)


def _write_atomically(path: Path, data: dict[str, Any], mode: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warn("ignoring unreadable {path}: {error}", path=str(path), error=str(e))
        return None
    return data if isinstance(data, dict) else None


class SessionFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, homeserver: str, user_id: str) -> StoredSession | None:
        """The saved session for this homeserver and user, if any."""
        data = _read(self.path)
        if data is None:
            return None
        if isinstance(data.get("created_devices"), list):
            data["created_devices"] = tuple(str(d) for d in data["created_devices"])
        try:
            session = StoredSession(**data)
        except TypeError:
            return None
        if session.homeserver != homeserver or session.user_id != user_id:
            return None
        return session

    def save(self, session: StoredSession) -> None:
        _write_atomically(self.path, asdict(session), 0o600)


class SyncFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> SyncState:
        data = _read(self.path) or {}
        next_batch = data.get("next_batch")
        joined = data.get("joined")
        told = data.get("told_encrypted")
        direct = data.get("direct")
        return SyncState(
            next_batch=next_batch if isinstance(next_batch, str) else None,
            joined={str(k): int(v) for k, v in joined.items()} if isinstance(joined, dict) else {},
            direct=[str(r) for r in direct] if isinstance(direct, list) else [],
            told_encrypted=[str(r) for r in told] if isinstance(told, list) else [],
        )

    def save(self, state: SyncState) -> None:
        _write_atomically(self.path, asdict(state), 0o600)
