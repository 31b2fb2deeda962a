"""The "matrix" contact delivery channel: each message posted in `matrix.contact_room`."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from ..aio import deferred_from_coroutine
from ..commands import Paragraph, Reply
from ..contact.api import ContactMessage, DeliveryRefused, DeliveryUnavailable
from ..service import RUNNING
from .api import MatrixError
from .content import notice_content

if TYPE_CHECKING:
    from .part import MatrixPart

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
    """Posts in the room through the bot's connection. Idempotent per message id: the send's
    transaction id is derived from it, and the homeserver posts a transaction only once."""

    name = "matrix"

    def __init__(self, part: MatrixPart, room_id: str) -> None:
        self._part = part
        self._room_id = room_id

    def deliver(self, message: ContactMessage, delayed_seconds: float) -> Deferred[None]:
        return deferred_from_coroutine(self._deliver(message, delayed_seconds))

    async def _deliver(self, message: ContactMessage, delayed_seconds: float) -> None:
        bot = self._part.bot
        if bot is None or self._part.status != RUNNING:
            raise DeliveryUnavailable("the Matrix bot is not connected")
        content = notice_content(contact_reply(message, delayed_seconds))
        try:
            await bot.api.send(
                self._room_id,
                "m.room.message",
                content,
                transaction=f"jupybot-contact-{message.id}",
            )
        except MatrixError as e:
            if "M_FORBIDDEN" in str(e):
                raise DeliveryRefused(f"the bot may not post in {self._room_id}: {e}") from e
            raise DeliveryUnavailable(str(e)) from e
