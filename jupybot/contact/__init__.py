"""The contact part: POST /contact, stored durably, delivered to the owner (docs/contact.md).

The outbox is core: chat adapters offer it delivery channels through L{ChannelRegistry}.
"""

from __future__ import annotations

from .api import ContactMessage, DeliveryChannel, DeliveryRefused, DeliveryUnavailable
from .part import ContactPart, build_contact
from .registry import ChannelRegistry

__all__ = [
    "ChannelRegistry",
    "ContactMessage",
    "ContactPart",
    "DeliveryChannel",
    "DeliveryRefused",
    "DeliveryUnavailable",
    "build_contact",
]
