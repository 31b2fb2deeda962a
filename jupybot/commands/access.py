"""Who may use the bot: user ids and ``*:server`` patterns, deny by default, admin-only commands."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from ..limits import KeyedLimiter, SlidingWindow

__all__ = ["AccessPolicy", "RefusalLimiter", "matches"]


def matches(user_id: str, pattern: str) -> bool:
    """Whether C{user_id} matches C{pattern}: the same id, ``*:server`` for anyone on that
    server (Matrix ids are ``@name:server``), or ``*`` for anyone at all."""
    if pattern == "*":
        return True
    if pattern.startswith("*:"):
        _, separator, server = user_id.partition(":")
        return bool(separator) and server.casefold() == pattern[2:].casefold()
    return user_id == pattern


@dataclass(frozen=True)
class AccessPolicy:
    """Allowed users may use the bot; admins may also use C{admin_commands} in shared rooms.

    Nobody is allowed unless listed (deny by default). In a direct chat with the bot the only
    people are the bot and its user, so admin-only commands are open to that user there.
    """

    allowed: tuple[str, ...]
    admins: tuple[str, ...] = ()
    admin_commands: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls, allowed: Iterable[str], admins: Iterable[str], admin_commands: Iterable[str]
    ) -> AccessPolicy:
        return cls(tuple(allowed), tuple(admins), frozenset(admin_commands))

    def is_admin(self, user_id: str) -> bool:
        return any(matches(user_id, pattern) for pattern in self.admins)

    def is_allowed(self, user_id: str, roles: frozenset[str] = frozenset()) -> bool:
        """Whether C{user_id} may use the bot where they hold C{roles} (the role ids of the
        message's context, e.g. a Discord server's); this policy grants nothing by role."""
        return self.is_admin(user_id) or any(matches(user_id, p) for p in self.allowed)

    def refusal(
        self, user_id: str, command: str | None, direct: bool, roles: frozenset[str] = frozenset()
    ) -> str | None:
        """Why C{user_id}, holding C{roles} where they wrote, may not run C{command} here, or
        None when they may."""
        if not self.is_allowed(user_id, roles):
            return f"Sorry, {user_id} is not allowed to use this bot."
        if command in self.admin_commands and not direct and not self.is_admin(user_id):
            return f"Sorry, only admins may use '{command}' in a shared room."
        return None


class RefusalLimiter:
    """Says whether to tell a refused user why: at most once per C{interval} seconds each,
    so that nobody can make the bot flood a room by sending refused commands. A window of one
    on L{jupybot.limits}' one per-key limiter."""

    def __init__(self, clock: IReactorTime, interval: float = 60.0) -> None:
        self._limiter = KeyedLimiter(clock, SlidingWindow(1, interval))

    def should_tell(self, user_id: str) -> bool:
        return self._limiter.take(user_id) is None
