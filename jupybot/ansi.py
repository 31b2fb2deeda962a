"""Terminal escape codes out of text a chat shows: one definition for the renderer and the chat."""

from __future__ import annotations

import re

__all__ = ["strip_ansi"]

# ECMA-48 control sequences (CSI, parameter bytes 0x30-0x3F, intermediates, a final byte), OSC
# strings (ended by BEL or ST) and the lone two-byte escapes: what coloured tracebacks, progress
# bars and `ls --color` emit. A lone ESC [ that starts no valid sequence is left as it is.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """C{text} without terminal colour and cursor codes (tracebacks are full of them)."""
    return _ANSI.sub("", text)
