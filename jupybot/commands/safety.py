"""Mention safety for networks that give a bot no switch to stop pings.

Matrix and Discord have one, and their adapters always use it (Matrix ``m.mentions: {}``,
Discord ``allowed_mentions``): there, what a kernel printed is shown exactly as printed, so an
``@room`` or ``"@bot:server"`` copied from a reply is what the code wrote. An adapter for a
network without such a switch would pass its replies through L{defang_paragraphs}, which breaks
mentions in prose with an invisible word joiner and leaves code blocks alone (text copied from
code must stay exact; chat clients do not highlight mentions in code anyway).
"""

from __future__ import annotations

import re

from .conversation import Paragraph, Reply

__all__ = ["WORD_JOINER", "defang_mentions", "defang_paragraphs"]

# An invisible character that breaks the token a client would match as a mention.
WORD_JOINER = "\u2060"

_MENTION = re.compile(
    r"@(?=(?:room|everyone|here|channel)\b)"  # room-wide pings
    r"|@(?=[A-Za-z0-9._=/+-]+:[A-Za-z0-9.-])"  # Matrix user ids
    r"|<(?=@[!&]?\d+>|#\d+>)",  # Discord user, role and channel mentions
    re.IGNORECASE,
)


def defang_mentions(text: str) -> str:
    """C{text} with every room ping and user mention made inert (and still readable)."""
    return _MENTION.sub(lambda m: m.group(0) + WORD_JOINER, text)


def defang_paragraphs(reply: Reply) -> Reply:
    """C{reply} with the mentions in its paragraphs made inert; code and HTML untouched."""
    return Reply(
        tuple(
            Paragraph(defang_mentions(block.text)) if isinstance(block, Paragraph) else block
            for block in reply.blocks
        )
    )
