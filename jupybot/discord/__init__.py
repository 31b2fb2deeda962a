"""The Discord part: the chat command layer on Discord, and the owner's contact messages.

See docs/discord.md. Kernels are per channel (``discord:<channel id>``).
"""

from __future__ import annotations

from ..kernels import KernelManager
from ..parts import PartContext
from .delivery import OwnerDirectMessages
from .part import DiscordAccess, DiscordPart

__all__ = ["DiscordAccess", "DiscordPart", "OwnerDirectMessages", "build_discord"]


def build_discord(context: PartContext, kernels: KernelManager) -> None:
    config = context.config.discord
    reason = config.disabled_reason()
    if reason is not None:
        context.top.add_disabled("discord", reason)
        return
    part = DiscordPart(config, kernels, context.reactor)
    if config.owner_id:
        context.channels.register(OwnerDirectMessages(part.client, config.owner_id))
    else:
        part.log.warn("discord: no discord.owner_id: contact messages cannot reach you on Discord")
    context.top.add_part(part)
