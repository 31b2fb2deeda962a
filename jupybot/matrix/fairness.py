"""Who sends next while the homeserver holds the bot's account back.

A homeserver's rate limit is per account (Synapse's default C{rc_message}: 0.2 events a second
after a burst of 10), so while one room floods the bot with commands, every other room's answers
would queue behind that room's refusals, reactions and edits. L{FairShare} orders the sends
waiting for the limit: rooms take turns (round robin), and within a room new events (answers,
reactions) go before edits of earlier replies, each kind in the order it came. A flooding room
then delays another room's answer by one slot of the limit, not by its whole backlog.
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

    def __len__(self) -> int:
        return sum(len(new) + len(edits) for new, edits in self._rooms.values())

    def add(self, room: str, item: T, edit: bool, again: bool = False) -> None:
        """C{item} waits to send to C{room}; C{again}: it was sent and must be sent again
        (the homeserver said "slower"), so it goes first in its room."""
        lanes = self._rooms.get(room)
        if lanes is None:
            lanes = self._rooms[room] = (deque(), deque())
        lane = lanes[1] if edit else lanes[0]
        if again:
            lane.appendleft(item)
        else:
            lane.append(item)

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

    def take(self) -> T | None:
        """The next send to make, or None when none waits; its room goes to the back."""
        for room, (new, edits) in self._rooms.items():
            item = new.popleft() if new else edits.popleft()
            del self._rooms[room]
            if new or edits:
                self._rooms[room] = (new, edits)
            return item
        return None


class SendTurns:
    """Sends of one account, in turn while the homeserver holds the account back.

    While it does not (no 429 in force, nobody waiting) a send goes at once, alongside others.
    After a 429 every send waits: when the hold is over, they go one at a time in the order of
    L{FairShare}, each once the previous one has its answer, so that a second 429 holds the
    next one back instead of letting every waiting send collect its own.
    """

    def __init__(self, clock: IReactorTime, sleep: Callable[[float], Awaitable[None]]) -> None:
        self._clock = clock
        self._sleep = sleep
        self._held_until = 0.0
        self._waiting: FairShare[asyncio.Future[asyncio.Future[None]]] = FairShare()
        self._dispatcher: asyncio.Future[None] | None = None

    def hold(self, seconds: float) -> None:
        """The homeserver asked for no sends for C{seconds}."""
        self._held_until = max(self._held_until, self._clock.seconds() + seconds)

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
