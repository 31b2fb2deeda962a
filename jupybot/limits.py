"""The one per-key rate limiter: a budget per key (an address, a person) on an injected clock.

Every per-key limit in jupybot is a L{KeyedLimiter}: contact messages per address
(L{jupybot.contact.resource}), chat commands per person and refusals told per person
(L{jupybot.commands}). What differs between them is only the budget's shape, a L{SlidingWindow}
(at most N in any W seconds) or a L{TokenBucket} (a burst, refilled at a rate); what they share
is here once: the clock, the answer ("now" or "in so many seconds") and bounded memory. A key
whose budget is whole again is forgotten once more than L{MAX_TRACKED} keys are held, so a
crowd of addresses cannot grow the table without end.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .reactor import Clock

__all__ = ["MAX_TRACKED", "Budget", "KeyedLimiter", "SlidingWindow", "TokenBucket"]

# Keys held before those whose budget is whole again are forgotten.
MAX_TRACKED = 10_000

State = TypeVar("State")


class Budget(Protocol[State]):
    """One key's allowance: what a take does to its state, and when that state is as good as new."""

    def take(self, state: State | None, now: float) -> tuple[State, float | None]:
        """The key's new state, and None if the event is allowed now (and counted), else the
        seconds until one would be."""

    def is_whole(self, state: State, now: float) -> bool:
        """True when forgetting the key changes nothing: its next take would be allowed as a
        new key's."""


@dataclass(frozen=True)
class SlidingWindow:
    """At most C{limit} events in any C{window} seconds; a refused event is not counted."""

    limit: int
    window: float

    def take(self, state: deque[float] | None, now: float) -> tuple[deque[float], float | None]:
        events = deque() if state is None else state
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return events, float(events[0] + self.window - now)
        events.append(now)
        return events, None

    def is_whole(self, state: deque[float], now: float) -> bool:
        return not state or state[-1] <= now - self.window


@dataclass(frozen=True)
class TokenBucket:
    """C{burst} events at once, refilled at C{per_second}; a rate of 0 or less is no limit."""

    per_second: float
    burst: float

    def take(
        self, state: tuple[float, float] | None, now: float
    ) -> tuple[tuple[float, float], float | None]:
        tokens, at = (self.burst, now) if state is None else state
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        if tokens < 1.0:
            return (tokens, now), (1.0 - tokens) / self.per_second
        return (tokens - 1.0, now), None

    def is_whole(self, state: tuple[float, float], now: float) -> bool:
        return now - state[1] >= self.burst / self.per_second


class KeyedLimiter(Generic[State]):
    """A L{Budget} for each key, on C{clock}; holds at most about C{max_tracked} keys whose
    budget is not whole again."""

    def __init__(self, clock: Clock, budget: Budget[State], max_tracked: int = MAX_TRACKED) -> None:
        self._clock = clock
        self._budget = budget
        self._max_tracked = max_tracked
        self._states: dict[str, State] = {}

    def take(self, key: str) -> float | None:
        """None if C{key} may act now (and the act is counted); else the seconds until it may."""
        now = self._clock.seconds()
        state, wait = self._budget.take(self._states.get(key), now)
        self._states[key] = state
        if len(self._states) > self._max_tracked:
            whole = self._budget.is_whole
            self._states = {k: s for k, s in self._states.items() if not whole(s, now)}
        return wait

    def __len__(self) -> int:
        """How many keys are held now (for tests of the bound)."""
        return len(self._states)
