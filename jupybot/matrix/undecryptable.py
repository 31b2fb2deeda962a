"""What the bot says when it cannot decrypt a message: nothing is left unanswered in silence.

A message the bot cannot decrypt would otherwise get no answer at all, and its sender could not
tell a broken bot from a slow one. The commonest cause in 2026: the sender's client withheld the
room key (C{m.room_key.withheld}) because the bot's device is not cross-signed (Element's
"exclude insecure devices", MSC4153), or because the sender blocked it. This is the pure core:
fed the withheld notices and the failures, on an injected clock, it says which room to tell what,
at most once a minute per room.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

__all__ = ["KEY_WAIT_SECONDS", "NOTICE_INTERVAL_SECONDS", "UndecryptableNotices", "Withheld"]

NOTICE_INTERVAL_SECONDS = 60.0
# How long a message whose key has not come (and was not withheld) waits for it: a to-device
# message overtaken by the event it unlocks, or the answer to the bot's key request.
KEY_WAIT_SECONDS = 600.0
# Sessions whose key was withheld, remembered until this many newer ones came.
_REMEMBERED_SESSIONS = 1000

_WHAT_TO_DO = {
    "m.unverified": (
        "their client shares keys only with devices their owner has cross-signed, and mine is "
        "not. My operator can fix this: see 'Cross-signing' in jupybot's docs/matrix.md "
        "(matrix.cross_signing, matrix.recovery_key)"
    ),
    "m.blacklisted": "they blocked my device: unblock it in their client's settings",
    "m.unauthorised": "their client does not allow me to read this room's messages",
    "m.unavailable": "their client no longer has the key: send the message again",
    "m.no_olm": (
        "their client could not open an encrypted channel to my device: send the message again"
    ),
}


@dataclass(frozen=True)
class Withheld:
    """An C{m.room_key.withheld} to-device event: whose key, and why."""

    room_id: str | None
    session_id: str | None
    code: str
    reason: str

    @classmethod
    def from_content(cls, content: dict[str, Any]) -> Withheld | None:
        code = content.get("code")
        if not isinstance(code, str):
            return None
        reason = content.get("reason")
        room_id = content.get("room_id")
        session_id = content.get("session_id")
        return cls(
            room_id if isinstance(room_id, str) else None,
            session_id if isinstance(session_id, str) else None,
            code,
            reason if isinstance(reason, str) else "",
        )


class UndecryptableNotices:
    """Decides the notices about messages the bot could not decrypt."""

    def __init__(self, clock: IReactorTime, interval: float = NOTICE_INTERVAL_SECONDS) -> None:
        self.clock = clock
        self.interval = interval
        self._withheld: OrderedDict[str, Withheld] = OrderedDict()
        self._told_at: dict[str, float] = {}

    def withheld(self, notice: Withheld) -> None:
        """Remember why a session's key was withheld from the bot."""
        if notice.session_id is None:
            return
        self._withheld[notice.session_id] = notice
        self._withheld.move_to_end(notice.session_id)
        while len(self._withheld) > _REMEMBERED_SESSIONS:
            self._withheld.popitem(last=False)

    def is_withheld(self, session_id: str | None) -> bool:
        """Whether the sender said that this session's key will not come."""
        return session_id is not None and session_id in self._withheld

    def failed(self, room_id: str, sender: str, session_id: str | None) -> str | None:
        """The notice to post in C{room_id} for a message of C{sender} the bot could not
        decrypt, or None when the room was told less than a minute ago."""
        now = self.clock.seconds()
        last = self._told_at.get(room_id)
        if last is not None and now - last < self.interval:
            return None
        self._told_at[room_id] = now
        withheld = self._withheld.get(session_id) if session_id else None
        if withheld is None:
            minutes = round(KEY_WAIT_SECONDS / 60)
            return (
                f"🔒 I could not decrypt a message from {sender} yet: its key has not reached "
                f"my device. I asked for it, and will run the message if it comes within "
                f"{minutes} minutes; otherwise please send it again. If this keeps happening, my "
                "device may not be trusted by your client (see jupybot's docs/matrix.md)."
            )
        what_to_do = _WHAT_TO_DO.get(
            withheld.code, "ask my operator to look at the bot's log and docs/matrix.md"
        )
        why = f"{withheld.code}: {withheld.reason}" if withheld.reason else withheld.code
        return (
            f"🔒 I could not read a message from {sender}: this room's key was withheld "
            f"from me ({why}); {what_to_do}."
        )
