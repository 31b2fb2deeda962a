"""What the contact outbox hands to a delivery channel (the Discord owner DM, a Matrix room).

The outbox is core: it knows nothing of Discord, Matrix or HTTP. An adapter implements
L{DeliveryChannel}; the outbox calls it until it succeeds, at most once per success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the store's writer process imports this module, and needs no Twisted
    from twisted.internet.defer import Deferred


@dataclass(frozen=True)
class ContactMessage:
    """One accepted, durably stored contact message."""

    id: int
    name: str
    email: str
    subject: str | None
    message: str
    client_ip: str
    received_at: float  # POSIX seconds, when it was committed


class DeliveryUnavailable(Exception):
    """The channel cannot deliver right now (not connected, rate limited, 5xx): retry later."""


class DeliveryRefused(Exception):
    """The channel will never deliver this message (e.g. the owner cannot be messaged)."""


class DeliveryChannel(Protocol):
    """Where accepted messages go. C{name} is stored with each delivery (e.g. C{"discord"})."""

    name: str

    def deliver(self, message: ContactMessage, delayed_seconds: float) -> Deferred[None]:
        """Send C{message}; fire on success, fail with L{DeliveryUnavailable} to be retried or
        L{DeliveryRefused} to give up. C{delayed_seconds} is how long it has waited, so the
        channel can say it was delayed. Must be idempotent per C{message.id}: after a crash the
        outbox cannot know whether the last attempt landed, so it may call again."""
        ...
