"""Who sends next while the homeserver holds the bot's account back.

A homeserver's rate limit is per account (Synapse's default C{rc_message}: 0.2 events a second
after a burst of 10), so while one room floods the bot with commands, every other room's answers
would queue behind that room's refusals, reactions and edits. L{FairShare} orders the sends
waiting for the limit: rooms take turns (round robin, a room that had nothing waiting first),
and within a room new events (answers, reactions) go before edits of earlier replies, each kind
in the order it came. A flooding room then delays another room's answer by at most the slot in
progress, not by its whole backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from twisted.internet.interfaces import IReactorTime

__all__ = ["FairShare", "Pace", "SendTurns"]

T = TypeVar("T")


@dataclass(frozen=True)
class Pace:
    """What the fair order needs to know of a send: its room, and whether it edits an event."""

    room: str
    edit: bool = False


class FairShare(Generic[T]):
    """Waiting sends, taken one at a time: rooms in turn, new events before edits."""

    def __init__(self) -> None:
        # room -> (new events, edits); the dict's order is the rooms' turn order.
        self._rooms: dict[str, tuple[deque[T], deque[T]]] = {}
        # Rooms whose first send was refused in its turn (they lead the order), and rooms that
        # have had a turn since they last had nothing waiting.
        self._owed: set[str] = set()
        self._served: set[str] = set()

    def __len__(self) -> int:
        return sum(len(new) + len(edits) for new, edits in self._rooms.values())

    def add(self, room: str, item: T, edit: bool, again: bool = False) -> None:
        """C{item} waits to send to C{room}. C{again}: it had its turn and must be sent again
        (the homeserver said "slower"), so it goes first: the slot it was refused is its own.
        A room with nothing waiting until now goes before the rooms that have had a turn since
        they last had nothing waiting (a backlog), after the other rooms new to the line."""
        lanes = self._rooms.get(room)
        newcomer = lanes is None
        if lanes is None:
            lanes = (deque(), deque())
        lane = lanes[1] if edit else lanes[0]
        if again:
            lane.appendleft(item)
            self._owed.add(room)
        else:
            lane.append(item)
        if newcomer or again:
            order = [r for r in self._rooms if r != room]
            served = (i for i, r in enumerate(order) if r in self._served and r not in self._owed)
            order.insert(0 if again else next(served, len(order)), room)
            self._rooms = {r: self._rooms.get(r, lanes) for r in order}

    def remove(self, room: str, item: T) -> None:
        """C{item} no longer waits (its caller gave up)."""
        lanes = self._rooms.get(room)
        if lanes is None:
            return
        for lane in lanes:
            if item in lane:
                lane.remove(item)
        if not (lanes[0] or lanes[1]):
            del self._rooms[room]
            self._owed.discard(room)
            self._served.discard(room)

    def take(self) -> T | None:
        """The next send to make, or None when none waits; its room goes to the back."""
        for room, (new, edits) in self._rooms.items():
            item = new.popleft() if new else edits.popleft()
            del self._rooms[room]
            self._owed.discard(room)
            if new or edits:
                self._rooms[room] = (new, edits)
                self._served.add(room)
            else:
                self._served.discard(room)
            return item
        return None


class SendTurns:
    """Sends of one account, in turn while the homeserver holds the account back.

    While it does not (no 429 in force, nobody waiting) a send goes at once, alongside others.
    After a 429 every send waits: when the hold is over, they go one at a time in the order of
    L{FairShare}, each once the previous one has its answer, so that a second 429 holds the
    next one back instead of letting every waiting send collect its own. While sends wait, the
    next one goes a period after the last one landed: the time from a landing to the end of
    the wait the homeserver asked of the send after it (5 s at Synapse's default limit). Sent
    at once, the send after each landing would be refused and owed the next slot, and a room
    that just came would wait for that one too (8 s median for a quiet room's answer beside
    a flood, measured against Synapse's default limit).
    """

    def __init__(self, clock: IReactorTime, sleep: Callable[[float], Awaitable[None]]) -> None:
        self._clock = clock
        self._sleep = sleep
        self._held_until = 0.0
        self._last_landed: float | None = None
        self._period = 0.0
        self._waiting: FairShare[asyncio.Future[asyncio.Future[None]]] = FairShare()
        self._dispatcher: asyncio.Future[None] | None = None

    def hold(self, seconds: float) -> None:
        """The homeserver asked for no sends for C{seconds}."""
        until = self._clock.seconds() + seconds
        self._held_until = max(self._held_until, until)
        if self._last_landed is not None:
            self._period = until - self._last_landed

    @asynccontextmanager
    async def turn(self, pace: Pace, again: bool = False) -> AsyncIterator[None]:
        """Inside, a send of C{pace} may go; C{again}: it met a 429 and goes first in its
        room. Leave once its answer came (and, for a 429, after L{hold})."""
        if self._clock.seconds() >= self._held_until and not len(self._waiting):
            yield
            return
        mine: asyncio.Future[asyncio.Future[None]] = asyncio.get_running_loop().create_future()
        self._waiting.add(pace.room, mine, pace.edit, again)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.ensure_future(self._dispatch())
        try:
            answered = await mine
        except asyncio.CancelledError:
            self._waiting.remove(pace.room, mine)
            if mine.done() and not mine.cancelled():
                mine.result().set_result(None)  # its turn came as it gave up: pass it on
            raise
        try:
            yield
        finally:
            answered.set_result(None)

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while len(self._waiting):
            while (wait := self._held_until - self._clock.seconds()) > 0:
                await self._sleep(wait)
            mine = self._waiting.take()
            if mine is None or mine.done():
                continue
            answered: asyncio.Future[None] = loop.create_future()
            mine.set_result(answered)
            await answered
            now = self._clock.seconds()
            if self._held_until <= now:  # it landed
                self._last_landed = now
                self._held_until = now + self._period
