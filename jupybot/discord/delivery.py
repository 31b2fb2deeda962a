"""The "discord" contact delivery channel: a direct message to the owner, with an embed."""

from __future__ import annotations

import datetime
from typing import Any

import aiohttp
import discord
from twisted.internet.defer import Deferred

from ..aio import deferred_from_coroutine
from ..contact.api import ContactMessage, DeliveryRefused, DeliveryUnavailable

# Older than this, the message says it was delayed (Discord was down, jupybot restarted...).
DELAYED_AFTER_SECONDS = 60.0
# Discord's "Cannot send messages to this user": no server shared with the bot, or DMs closed.
CANNOT_MESSAGE_USER = 50007


def _footer(message_id: int) -> str:
    return f"contact #{message_id}"


def contact_embed(message: ContactMessage, delayed_seconds: float) -> discord.Embed:
    embed = discord.Embed(
        title=(message.subject or "New contact message")[:256],
        description=message.message[:4000],
        timestamp=datetime.datetime.fromtimestamp(message.received_at, datetime.UTC),
        colour=discord.Colour.blurple(),
    )
    embed.add_field(name="From", value=message.name[:1024], inline=True)
    embed.add_field(name="Email", value=message.email[:1024], inline=True)
    embed.add_field(name="Client IP", value=message.client_ip, inline=True)
    if delayed_seconds >= DELAYED_AFTER_SECONDS:
        minutes = delayed_seconds / 60
        embed.add_field(name="Delayed", value=f"delivered {minutes:.0f} min after it was sent")
    embed.set_footer(text=_footer(message.id))
    return embed


class OwnerDirectMessages:
    """Delivers to the owner's DMs while the bot is connected. Idempotent per message id:
    before sending, the last DMs are checked for this message's footer."""

    name = "discord"

    def __init__(self, client: discord.Client, owner_id: int) -> None:
        self._client = client
        self._owner_id = owner_id

    def deliver(self, message: ContactMessage, delayed_seconds: float) -> Deferred[None]:
        return deferred_from_coroutine(self._deliver(message, delayed_seconds))

    async def _deliver(self, message: ContactMessage, delayed_seconds: float) -> None:
        if not self._client.is_ready():
            raise DeliveryUnavailable("the Discord bot is not connected")
        try:
            owner = self._client.get_user(self._owner_id) or await self._client.fetch_user(
                self._owner_id
            )
            channel: Any = await owner.create_dm()
            async for earlier in channel.history(limit=50):
                if any(e.footer.text == _footer(message.id) for e in earlier.embeds):
                    return  # sent before a crash: not twice
            await channel.send(
                embed=contact_embed(message, delayed_seconds),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.Forbidden as e:
            if e.code == CANNOT_MESSAGE_USER:
                raise DeliveryRefused(
                    f"Discord refused to message the owner (error {e.code}: {e.text}): the owner "
                    "shares no server with the bot, or does not accept its direct messages"
                ) from e
            raise DeliveryRefused(f"Discord refused to message the owner: {e.text}") from e
        except discord.NotFound as e:
            raise DeliveryRefused(f"discord.owner_id {self._owner_id} is unknown: {e.text}") from e
        except (discord.HTTPException, aiohttp.ClientError, OSError) as e:
            raise DeliveryUnavailable(f"Discord is unavailable: {e}") from e
