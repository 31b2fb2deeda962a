"""One Matrix room as a L{Conversation} of the command layer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from ..aio import deferred_from_coroutine
from ..commands import Conversation, Reply
from ..rendering import Attachment, Image
from .content import edit_content, file_content, image_content, notice_content, reaction_content

__all__ = ["EventSender", "MatrixConversation", "RoomEvents"]


class EventSender(Protocol):
    """Posts an event in a room (L{MatrixApi.send}: retried, paced, once per C{transaction})."""

    async def send(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        transaction: str | None = None,
    ) -> str: ...


class RoomEvents(EventSender, Protocol):
    """What a room's conversation calls: posting, and uploading (L{MatrixApi.upload})."""

    async def upload(
        self, data: bytes, mimetype: str, filename: str, encrypt: bool = False
    ) -> tuple[str, dict[str, Any] | None]: ...


class MatrixConversation:
    """Sends the command layer's replies into room C{room_id} through C{api} (the part's
    L{MatrixApi}).

    Its key, the kernel owner, is ``matrix:<room id>``: each room has its own kernels. It asks
    C{is_encrypted} whether an upload must be encrypted, and C{open_direct} for the direct chat
    with a person (L{direct_with}); it holds nothing else of the bot.
    """

    def __init__(
        self,
        api: RoomEvents,
        room_id: str,
        is_direct: bool,
        *,
        is_encrypted: Callable[[str], bool],
        open_direct: Callable[[str], Awaitable[Conversation]],
    ) -> None:
        self._api = api
        self.room_id = room_id
        self._is_direct = is_direct
        self._is_encrypted = is_encrypted
        self._open_direct = open_direct

    @property
    def key(self) -> str:
        return f"matrix:{self.room_id}"

    @property
    def is_direct(self) -> bool:
        return self._is_direct

    def send(self, reply: Reply, in_reply_to: str | None = None) -> Deferred[str]:
        return deferred_from_coroutine(
            self._api.send(self.room_id, "m.room.message", notice_content(reply, in_reply_to))
        )

    def edit(self, message_id: str, reply: Reply) -> Deferred[None]:
        return deferred_from_coroutine(self._send(edit_content(message_id, reply)))

    def react(self, message_id: str, key: str) -> Deferred[None]:
        return deferred_from_coroutine(self._send(reaction_content(message_id, key), "m.reaction"))

    async def _send(self, content: dict[str, object], event_type: str = "m.room.message") -> None:
        await self._api.send(self.room_id, event_type, content)

    def send_image(self, image: Image, in_reply_to: str | None = None) -> Deferred[str]:
        return deferred_from_coroutine(self._send_image(image, in_reply_to))

    async def _send_image(self, image: Image, in_reply_to: str | None) -> str:
        encrypt = self._is_encrypted(self.room_id)
        if image.mimetype == "image/svg+xml":
            # Clients do not show SVG inline (and should not: it can carry scripts): a file.
            attachment = Attachment(image.filename, image.mimetype, image.data)
            return await self._send_file(attachment, in_reply_to)
        url, keys = await self._api.upload(image.data, image.mimetype, image.filename, encrypt)
        content = image_content(url, image, in_reply_to, file=_file_info(url, keys))
        return await self._api.send(self.room_id, "m.room.message", content)

    def send_file(self, attachment: Attachment, in_reply_to: str | None = None) -> Deferred[str]:
        return deferred_from_coroutine(self._send_file(attachment, in_reply_to))

    async def _send_file(self, attachment: Attachment, in_reply_to: str | None) -> str:
        encrypt = self._is_encrypted(self.room_id)
        url, keys = await self._api.upload(
            attachment.data, attachment.mimetype, attachment.filename, encrypt
        )
        content = file_content(url, attachment, in_reply_to, file=_file_info(url, keys))
        return await self._api.send(self.room_id, "m.room.message", content)

    def direct_with(self, user_id: str) -> Deferred[Conversation]:
        return deferred_from_coroutine(self._direct_with(user_id))

    async def _direct_with(self, user_id: str) -> Conversation:
        return await self._open_direct(user_id)


def _file_info(url: str, keys: dict[str, object] | None) -> dict[str, object] | None:
    """The C{file} object of an encrypted attachment: its URL with its decryption keys."""
    if keys is None:
        return None
    return {"url": url, **keys}
