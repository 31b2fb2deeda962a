"""Who may use the bot on Discord: users by id, or by a role in the server they write from."""

from __future__ import annotations

from dataclasses import dataclass

import discord

from ..commands import AccessPolicy

__all__ = ["DiscordAccess", "roles_of"]


@dataclass(frozen=True)
class DiscordAccess(AccessPolicy):
    """Users by id, plus anyone holding one of C{allowed_roles} in the server they write from.

    Roles are judged per message: a role someone holds in a server opens nothing in a DM or in
    another server.
    """

    allowed_roles: frozenset[str] = frozenset()

    def is_allowed(self, user_id: str, roles: frozenset[str] = frozenset()) -> bool:
        return super().is_allowed(user_id) or bool(roles & self.allowed_roles)


def roles_of(author: discord.abc.User) -> frozenset[str]:
    """The role ids C{author} holds where they wrote: their server's roles, none in a DM."""
    if isinstance(author, discord.Member):
        return frozenset(str(role.id) for role in author.roles)
    return frozenset()
