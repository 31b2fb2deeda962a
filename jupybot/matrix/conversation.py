"""One Matrix room as a L{Conversation} of the command layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from ..aio import deferred_from_coroutine
from ..commands import Conversation, Reply
from ..rendering import Attachment, Image
from .content import edit_content, file_content, image_content, notice_content, reaction_content

if TYPE_CHECKING:
    from .bot import MatrixBot

__all__ = ["MatrixConversation"]


class MatrixConversation:
    """Sends the command layer's replies into room C{room_id} through the bot's L{MatrixApi}.

    Its key, the kernel owner, is ``matrix:<room id>``: each room has its own kernels.
    """

    def __init__(self, bot: MatrixBot, room_id: str, is_direct: bool) -> None:
        self._bot = bot
        self.room_id = room_id
        self._is_direct = is_direct

    @property
    def key(self) -> str:
        return f"matrix:{self.room_id}"

    @property
    def is_direct(self) -> bool:
        return self._is_direct

    def send(self, reply: Reply, in_reply_to: str | None = None) -> Deferred[str]:
        return deferred_from_coroutine(
            self._bot.api.send(self.room_id, "m.room.message", notice_content(reply, in_reply_to))
        )

    def edit(self, message_id: str, reply: Reply) -> Deferred[None]:
        return deferred_from_coroutine(self._send(edit_content(message_id, reply)))

    def react(self, message_id: str, key: str) -> Deferred[None]:
        return deferred_from_coroutine(self._send(reaction_content(message_id, key), "m.reaction"))

    async def _send(self, content: dict[str, object], event_type: str = "m.room.message") -> None:
        await self._bot.api.send(self.room_id, event_type, content)

    def send_image(self, image: Image, in_reply_to: str | None = None) -> Deferred[str]:
        return deferred_from_coroutine(self._send_image(image, in_reply_to))

    async def _send_image(self, image: Image, in_reply_to: str | None) -> str:
        encrypt = self._bot.is_encrypted(self.room_id)
        if image.mimetype == "image/svg+xml":
            # Clients do not show SVG inline (and should not: it can carry scripts): a file.
            attachment = Attachment(image.filename, image.mimetype, image.data)
            return await self._send_file(attachment, in_reply_to)
        url, keys = await self._bot.api.upload(image.data, image.mimetype, image.filename, encrypt)
        content = image_content(url, image, in_reply_to, file=_file_info(url, keys))
        return await self._bot.api.send(self.room_id, "m.room.message", content)

    def send_file(self, attachment: Attachment, in_reply_to: str | None = None) -> Deferred[str]:
        return deferred_from_coroutine(self._send_file(attachment, in_reply_to))

    async def _send_file(self, attachment: Attachment, in_reply_to: str | None) -> str:
        encrypt = self._bot.is_encrypted(self.room_id)
        url, keys = await self._bot.api.upload(
            attachment.data, attachment.mimetype, attachment.filename, encrypt
        )
        content = file_content(url, attachment, in_reply_to, file=_file_info(url, keys))
        return await self._bot.api.send(self.room_id, "m.room.message", content)

    def direct_with(self, user_id: str) -> Deferred[Conversation]:
        return deferred_from_coroutine(self._bot.direct_conversation(user_id))


def _file_info(url: str, keys: dict[str, object] | None) -> dict[str, object] | None:
    """The C{file} object of an encrypted attachment: its URL with its decryption keys."""
    if keys is None:
        return None
    return {"url": url, **keys}
