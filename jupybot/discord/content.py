"""The command layer's replies as Discord messages: Markdown within 2000 characters."""

from __future__ import annotations

from dataclasses import dataclass

from discord.utils import escape_markdown

from ..commands import CodeBlock, HtmlBlock, Paragraph, Reply

LIMIT = 2000
_FENCE = "```"
_BROKEN_FENCE = "``\u200b`"
_CUT = "\n(cut: the whole output is attached)\n"


@dataclass(frozen=True)
class DiscordText:
    content: str
    overflow: str | None = None  # the whole text, attached when the content had to be cut


def _code(text: str, language: str = "") -> str:
    # A fence inside the output would end the block early: a zero-width space breaks it.
    safe = text.replace(_FENCE, _BROKEN_FENCE)
    return f"{_FENCE}{language}\n{safe}\n{_FENCE}"


def _block(block: Paragraph | CodeBlock | HtmlBlock) -> str:
    if isinstance(block, Paragraph):
        return escape_markdown(block.text)
    if isinstance(block, CodeBlock):
        return _code(block.text, block.language)
    return _code(block.text)  # HTML is not shown by Discord: its text form


def reply_text(reply: Reply) -> DiscordText:
    parts = [_block(block) for block in reply.blocks]
    content = "\n".join(parts)
    if len(content) <= LIMIT:
        return DiscordText(content)
    # Keep the paragraphs (status, errors' first line) whole; cut the output before them.
    whole = "\n".join(b.text for b in reply.blocks if not isinstance(b, Paragraph))
    tail = "\n".join(_block(b) for b in reply.blocks if isinstance(b, Paragraph))[-600:]
    room = max(100, LIMIT - len(tail) - len(_CUT) - 2 * len(_FENCE) - 4)
    head = whole[:room]
    if "\n" in head:
        head = head.rsplit("\n", 1)[0]
    return DiscordText(_code(head) + _CUT + tail, overflow=whole)
