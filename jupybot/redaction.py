"""Hiding configured secrets in what jupybot writes out: its log lines and its chat replies.

One L{Redactor} serves both (C{logs.py}, C{commands/}), so a secret that turns up in either is
hidden the same way, by the same code.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from .config import Secret

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[redacted]"


class Redactor:
    """Replaces every secret of at least C{min_length} characters in a text with C{[redacted]}.

    Shorter secrets are left alone: replacing a short string everywhere it occurs would mangle
    ordinary text more than it protects. A secret is also found HTML-escaped (C{&amp;} for
    C{&}...), as it is in HTML output and in a repr() of markup.
    """

    def __init__(self, secrets: Iterable[Secret], min_length: int) -> None:
        kept = {s.reveal() for s in secrets if len(s.reveal()) >= min_length}
        forms = kept | {html.escape(s, quote=q) for s in kept for q in (True, False)}
        # Longest first: a secret that contains another one is replaced whole.
        self._forms = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text
