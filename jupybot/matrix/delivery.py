"""The "matrix" contact delivery channel: each message posted in `matrix.contact_room`."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from twisted.internet.defer import Deferred

from ..aio import deferred_from_coroutine
from ..commands import Paragraph, Reply
from ..contact.api import ContactMessage, DeliveryRefused, DeliveryUnavailable
from .api import MatrixError
from .content import notice_content
from .conversation import EventSender

DELAYED_AFTER_SECONDS = 60.0


def contact_reply(message: ContactMessage, delayed_seconds: float) -> Reply:
    when = datetime.datetime.fromtimestamp(message.received_at, datetime.UTC)
    lines = [
        f"📬 {message.subject or 'New contact message'} (contact #{message.id})",
        f"From: {message.name} <{message.email}>, {message.client_ip}, {when:%Y-%m-%d %H:%M} UTC",
    ]
    if delayed_seconds >= DELAYED_AFTER_SECONDS:
        lines.append(f"(delivered {delayed_seconds / 60:.0f} min after it was sent)")
    return Reply((Paragraph("\n".join(lines)), Paragraph(message.message)))


class MatrixContactRoom:
    """Posts in the room through the bot's connection: C{connected_api()} is the part's API
    while it is running, else None (then the outbox waits). Idempotent per message id: the
    send's transaction id is derived from it, and the homeserver posts a transaction only
    once."""

    name = "matrix"

    def __init__(self, connected_api: Callable[[], EventSender | None], room_id: str) -> None:
        self._connected_api = connected_api
        self._room_id = room_id

    def deliver(self, message: ContactMessage, delayed_seconds: float) -> Deferred[None]:
        return deferred_from_coroutine(self._deliver(message, delayed_seconds))

    async def _deliver(self, message: ContactMessage, delayed_seconds: float) -> None:
        api = self._connected_api()
        if api is None:
            raise DeliveryUnavailable("the Matrix bot is not connected")
        content = notice_content(contact_reply(message, delayed_seconds))
        try:
            await api.send(
                self._room_id,
                "m.room.message",
                content,
                transaction=f"jupybot-contact-{message.id}",
            )
        except MatrixError as e:
            if "M_FORBIDDEN" in str(e):
                raise DeliveryRefused(f"the bot may not post in {self._room_id}: {e}") from e
            raise DeliveryUnavailable(str(e)) from e
