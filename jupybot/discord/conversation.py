"""One Discord channel (a DM or a server channel) as a L{Conversation} of the command layer."""

from __future__ import annotations

import io
from typing import Any

import discord
from twisted.internet.defer import Deferred

from ..aio import deferred_from_coroutine
from ..commands import Conversation, Reply
from ..rendering import Attachment, Image
from .content import reply_text

__all__ = ["DiscordConversation"]

NO_MENTIONS = discord.AllowedMentions.none()


class DiscordConversation:
    """Its key, the kernel owner, is ``discord:<channel id>``: each channel has its own kernels."""

    def __init__(self, client: discord.Client, channel: Any) -> None:
        self._client = client
        self.channel = channel
        self._sent: dict[str, discord.Message] = {}

    @property
    def key(self) -> str:
        return f"discord:{self.channel.id}"

    @property
    def is_direct(self) -> bool:
        return isinstance(self.channel, discord.DMChannel)

    def send(self, reply: Reply, in_reply_to: str | None = None) -> Deferred[str]:
        return deferred_from_coroutine(self._send(reply, in_reply_to))

    async def _send(self, reply: Reply, in_reply_to: str | None) -> str:
        text = reply_text(reply)
        files = [_text_file(text.overflow)] if text.overflow else []
        message = await self.channel.send(
            text.content,
            files=files,
            allowed_mentions=NO_MENTIONS,
            reference=self._reference(in_reply_to),
            mention_author=False,
        )
        self._sent[str(message.id)] = message
        return str(message.id)

    def edit(self, message_id: str, reply: Reply) -> Deferred[None]:
        return deferred_from_coroutine(self._edit(message_id, reply))

    async def _edit(self, message_id: str, reply: Reply) -> None:
        text = reply_text(reply)
        message = self._sent.get(message_id) or self.channel.get_partial_message(int(message_id))
        files = [_text_file(text.overflow)] if text.overflow else []
        edited = await message.edit(
            content=text.content, attachments=files, allowed_mentions=NO_MENTIONS
        )
        if isinstance(edited, discord.Message):
            self._sent[message_id] = edited

    def react(self, message_id: str, key: str) -> Deferred[None]:
        return deferred_from_coroutine(
            self.channel.get_partial_message(int(message_id)).add_reaction(key)
        )

    def send_image(self, image: Image, in_reply_to: str | None = None) -> Deferred[str]:
        return self._upload(image.filename, image.data, in_reply_to)

    def send_file(self, attachment: Attachment, in_reply_to: str | None = None) -> Deferred[str]:
        return self._upload(attachment.filename, attachment.data, in_reply_to)

    def _upload(self, filename: str, data: bytes, in_reply_to: str | None) -> Deferred[str]:
        async def upload() -> str:
            message = await self.channel.send(
                file=discord.File(io.BytesIO(data), filename=filename),
                allowed_mentions=NO_MENTIONS,
                reference=self._reference(in_reply_to),
                mention_author=False,
            )
            return str(message.id)

        return deferred_from_coroutine(upload())

    def direct_with(self, user_id: str) -> Deferred[Conversation]:
        async def open_dm() -> Conversation:
            user = self._client.get_user(int(user_id)) or await self._client.fetch_user(
                int(user_id)
            )
            return DiscordConversation(self._client, await user.create_dm())

        return deferred_from_coroutine(open_dm())

    def _reference(self, message_id: str | None) -> discord.MessageReference | None:
        if message_id is None:
            return None
        return discord.MessageReference(
            message_id=int(message_id), channel_id=self.channel.id, fail_if_not_exists=False
        )


def _text_file(text: str) -> discord.File:
    return discord.File(io.BytesIO(text.encode()), filename="output.txt")
