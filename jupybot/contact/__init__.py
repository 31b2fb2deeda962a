"""The contact part: POST /contact, stored durably, delivered to the owner (docs/contact.md).

The outbox is core: chat adapters offer it delivery channels through L{ChannelRegistry}.
"""

from __future__ import annotations

from dataclasses import replace

from ..config import Config
from ..parts import PartContext
from .api import ContactMessage, DeliveryChannel, DeliveryRefused, DeliveryUnavailable
from .part import ContactPart
from .registry import ChannelRegistry

__all__ = [
    "ChannelRegistry",
    "ContactMessage",
    "ContactPart",
    "DeliveryChannel",
    "DeliveryRefused",
    "DeliveryUnavailable",
    "build_contact",
    "default_channels",
]


def default_channels(config: Config) -> tuple[str, ...]:
    """Without `contact.deliver_to`: every configured chat channel, else the file."""
    channels = []
    if config.discord.disabled_reason() is None and config.discord.owner_id:
        channels.append("discord")
    if config.matrix.disabled_reason() is None and config.matrix.contact_room:
        channels.append("matrix")
    return tuple(channels) or ("file",)


def build_contact(context: PartContext) -> None:
    config = context.config.contact
    if not config.enabled:
        context.top.add_disabled("contact", "contact.enabled is false")
        return
    if not config.deliver_to:
        config = replace(config, deliver_to=default_channels(context.config))
    part = ContactPart(
        config, context.config.web.origins, context.reactor, context.state, context.channels
    )
    context.web_root.putChild(b"contact", part.resource)
    context.top.add_part(part)
