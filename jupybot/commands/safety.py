"""Mention safety: nothing the kernel prints may ping a room or a person.

Adapters also use their network's own switch (Matrix ``m.mentions: {}``, Discord
``allowed_mentions``); this is the second lock, for clients that look at the text itself.
"""

from __future__ import annotations

import re

__all__ = ["WORD_JOINER", "defang_mentions"]

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
