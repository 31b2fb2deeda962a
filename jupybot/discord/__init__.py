"""The Discord part: the chat command layer on Discord, and the owner's contact messages.

See docs/discord.md. Kernels are per channel (``discord:<channel id>``).
"""

from __future__ import annotations

from .access import DiscordAccess, roles_of
from .delivery import OwnerDirectMessages
from .part import DiscordPart, build_discord

__all__ = [
    "DiscordAccess",
    "DiscordPart",
    "OwnerDirectMessages",
    "build_discord",
    "roles_of",
]
