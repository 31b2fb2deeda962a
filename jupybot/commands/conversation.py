"""What the command layer needs from a chat network: a small typed protocol adapters implement.

The command layer speaks in L{Reply} values (paragraphs, code blocks, sanitised HTML) and asks a
L{Conversation} to send, edit, react and upload. An adapter (Matrix, Discord) turns those into its
own protocol; the command layer never sees a Matrix event or a Discord message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred

from ..rendering import Attachment, Image

__all__ = [
    "Block",
    "CodeBlock",
    "Conversation",
    "HtmlBlock",
    "IncomingAttachment",
    "IncomingMessage",
    "IncomingReaction",
    "Paragraph",
    "Reply",
]


@dataclass(frozen=True)
class Paragraph:
    """Plain text, shown as is (no markup is interpreted)."""

    text: str


@dataclass(frozen=True)
class CodeBlock:
    """Preformatted text: program output, code, a traceback."""

    text: str
    language: str = ""


@dataclass(frozen=True)
class HtmlBlock:
    """Already-sanitised HTML (from kernel output) and the plain text to show where HTML is not."""

    html: str
    text: str


Block = Paragraph | CodeBlock | HtmlBlock


@dataclass(frozen=True)
class Reply:
    """One message from the bot: blocks shown one after another."""

    blocks: tuple[Block, ...]

    @classmethod
    def text(cls, *paragraphs: str) -> Reply:
        return cls(tuple(Paragraph(p) for p in paragraphs))

    def __add__(self, other: Reply) -> Reply:
        return Reply(self.blocks + other.blocks)


class Conversation(Protocol):
    """One room, channel or direct chat, as the command layer sees it.

    Every operation returns a Deferred that fails when the network refuses it; the command layer
    logs such failures and carries on.
    """

    @property
    def key(self) -> str:
        """A stable identifier, also the kernel owner: e.g. C{"matrix:!room:server"}."""

    @property
    def is_direct(self) -> bool:
        """True for a one-to-one chat with the bot: commands need no prefix there."""

    def send(self, reply: Reply, in_reply_to: str | None = None) -> Deferred[str]:
        """Post C{reply} (as a reply to message C{in_reply_to} if given); fires with its id."""

    def edit(self, message_id: str, reply: Reply) -> Deferred[None]:
        """Replace the content of the bot's own message C{message_id}."""

    def react(self, message_id: str, key: str) -> Deferred[None]:
        """Add a reaction (an emoji) to message C{message_id}."""

    def send_image(self, image: Image, in_reply_to: str | None = None) -> Deferred[str]:
        """Upload and post an image."""

    def send_file(self, attachment: Attachment, in_reply_to: str | None = None) -> Deferred[str]:
        """Upload and post a file."""

    def direct_with(self, user_id: str) -> Deferred[Conversation]:
        """The direct chat between the bot and C{user_id}, created if needed."""


@dataclass(frozen=True)
class IncomingAttachment:
    """A file that came with a message, downloaded by the adapter; one bigger than the command
    layer takes (L{NotebookLimits.file_bytes}) is not downloaded: its C{size} says how big."""

    filename: str
    mimetype: str
    data: bytes
    size: int | None = None  # set (and data empty) when the file was too big to download


@dataclass(frozen=True)
class IncomingMessage:
    """A text message someone sent where the bot can read it."""

    message_id: str
    sender: str
    text: str  # reply fallbacks and the like already removed by the adapter
    conversation: Conversation
    in_reply_to: str | None = None
    # The role ids the sender holds where this message was written (their roles in a Discord
    # server); empty in a direct chat and on networks without roles.
    sender_roles: frozenset[str] = frozenset()
    # Set when this is an edit: the id of the message edited, whose new text is C{text}.
    edit_of: str | None = None
    # Files sent with the message (a Discord message's attachments; on Matrix the file a
    # command replies to), for commands that take one (run a notebook).
    attachments: tuple[IncomingAttachment, ...] = ()


@dataclass(frozen=True)
class IncomingReaction:
    """Someone reacted with C{key} (an emoji) to message C{message_id} where the bot can read it."""

    message_id: str
    sender: str
    key: str
    conversation: Conversation
    sender_roles: frozenset[str] = frozenset()
