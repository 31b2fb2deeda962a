"""How a busy room is kept in order: commands one after another, one run per person, a rate.

Three small pure pieces the command layer combines (docs/commands.md, "Busy rooms"):
L{RoomOrder} admits a room's commands in the order they arrived, L{PendingRuns} caps how many
runs each person may have waiting in a room, and L{CommandRate} is a token bucket per person on
the injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime

from ..config.chat import ChatSettings
from ..limits import KeyedLimiter, TokenBucket

__all__ = ["ChatLimits", "CommandRate", "PendingRuns", "RoomOrder"]


_SECTION = ChatSettings()


@dataclass(frozen=True)
class ChatLimits:
    """The busy-room settings of one chat part: its config section's (L{ChatSettings}, where
    the figures are declared and explained) and the cap on waiting runs."""

    commands_per_minute: float = _SECTION.commands_per_minute
    command_burst: int = _SECTION.command_burst
    # One run per person per room; this many more wait their turn, the next is refused.
    waiting_runs_per_person: int = 2
    rerun_window_seconds: float = _SECTION.rerun_window_seconds

    @classmethod
    def from_settings(cls, settings: ChatSettings) -> ChatLimits:
        return cls(
            commands_per_minute=settings.commands_per_minute,
            command_burst=settings.command_burst,
            rerun_window_seconds=settings.rerun_window_seconds,
        )


class RoomOrder:
    """Admits each room's commands one at a time, first come first served.

    A command that changes what later ones run in (C{start}, C{use}) or a C{run} holds its room's
    turn until it is done. A kernel runs one cell at a time anyway, so this costs a room nothing
    and gives it what it expects: code runs in the order it was sent, each person has one run
    going at a time, and a C{use} or C{start} applies from the next command on. C{interrupt},
    C{restart} and C{stop} act at once: they are how a stuck run is ended.
    """

    def __init__(self) -> None:
        self._locks: dict[str, DeferredLock] = {}

    def turn(self, room: str) -> Deferred[DeferredLock]:
        """Fires when it is this caller's turn in C{room}; call L{done} with the same room."""
        lock = self._locks.get(room)
        if lock is None:
            lock = self._locks[room] = DeferredLock()
        return lock.acquire()

    def done(self, room: str) -> None:
        lock = self._locks[room]
        lock.release()
        # The release may run the next in line, which may be done at once too (a stop): only
        # the last one out forgets the room.
        if not lock.locked and not lock.waiting and self._locks.get(room) is lock:
            del self._locks[room]


class PendingRuns:
    """Counts each person's runs per room that arrived and have not ended, up to a cap."""

    def __init__(self, waiting_per_person: int) -> None:
        self._cap = 1 + waiting_per_person
        self._pending: dict[tuple[str, str], int] = {}

    def reserve(self, room: str, person: str) -> bool:
        """Count one more run of C{person} in C{room}; False (and not counted) over the cap."""
        count = self._pending.get((room, person), 0)
        if count >= self._cap:
            return False
        self._pending[(room, person)] = count + 1
        return True

    def ended(self, room: str, person: str) -> None:
        count = self._pending.pop((room, person)) - 1
        if count:
            self._pending[(room, person)] = count

    @property
    def waiting_per_person(self) -> int:
        return self._cap - 1


class CommandRate:
    """A token bucket per person: C{burst} commands at once, refilled at C{per_minute}
    (0: no limit). The bucket is L{jupybot.limits}' one per-key limiter."""

    def __init__(self, clock: IReactorTime, per_minute: float, burst: int) -> None:
        self._per_second = per_minute / 60.0
        self._limiter = KeyedLimiter(clock, TokenBucket(self._per_second, float(max(1, burst))))

    def take(self, person: str) -> float | None:
        """None when C{person} may send a command now; else the seconds until they may."""
        if self._per_second <= 0:
            return None
        return self._limiter.take(person)
