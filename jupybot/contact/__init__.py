"""The contact part: POST /contact, stored durably, delivered to the owner (docs/contact.md).

The outbox is core: chat adapters offer it delivery channels through L{ChannelRegistry}. The
part itself is in L{jupybot.contact.part}: the store's writer process (L{jupybot.contact.writer})
imports this package, and needs none of the server.
"""

from __future__ import annotations

from .api import ContactMessage, DeliveryChannel, DeliveryRefused, DeliveryUnavailable
from .registry import ChannelRegistry

__all__ = [
    "ChannelRegistry",
    "ContactMessage",
    "DeliveryChannel",
    "DeliveryRefused",
    "DeliveryUnavailable",
]
