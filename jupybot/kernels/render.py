"""Turning kernel output events into chat messages, once for every front end (types; stub body)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .api import OutputEvent


@dataclass(frozen=True)
class RenderOptions:
    max_text_chars: int = 4000
    allow_html: bool = True
    keep_ansi: bool = False


@dataclass(frozen=True)
class Image:
    mimetype: str
    data: bytes
    width: int | None
    height: int | None
    filename: str


@dataclass(frozen=True)
class Attachment:
    filename: str
    mimetype: str
    data: bytes


@dataclass(frozen=True)
class Rendered:
    text: str
    html: str | None = None
    images: list[Image] = field(default_factory=list)
    files: list[Attachment] = field(default_factory=list)
    truncated: bool = False


def render_outputs(events: Iterable[OutputEvent], options: RenderOptions) -> Rendered:
    """Render C{events} as one message (not implemented yet)."""
    raise NotImplementedError("render_outputs is not implemented yet")
