"""Turning kernel output events into chat messages, once for every front end (docs/rendering.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..ansi import strip_ansi
from ..kernels.api import (
    ClearOutput,
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    OutputEvent,
    Stream,
    UpdateDisplayData,
)
from ._mime import Piece, bundle_piece, preformatted


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
    """Render C{events} (one execution's outputs, in order) as one message.

    Display updates replace the display they name, C{clear_output} empties what came before it
    (at the next output when it asked to wait), stream text honours carriage returns.
    """
    pieces: list[Piece] = []
    streaming: Piece | None = None  # the stream piece new stream text is appended to
    displays: dict[str, int] = {}
    clear_pending = False
    for event in events:
        if isinstance(event, ClearOutput):
            if event.wait:
                clear_pending = True
            else:
                pieces, streaming, displays, clear_pending = [], None, {}, False
            continue
        if clear_pending:
            pieces, streaming, displays, clear_pending = [], None, {}, False
        if isinstance(event, Stream):
            if streaming is None:
                streaming = Piece(text="")
                pieces.append(streaming)
            streaming.text += event.text
            continue
        streaming = None
        if isinstance(event, UpdateDisplayData):
            index = displays.get(event.display_id or "")
            if index is not None:
                pieces[index] = bundle_piece(event.data, event.metadata, options.allow_html)
        elif isinstance(event, DisplayData):
            if event.display_id:
                displays[event.display_id] = len(pieces)
            pieces.append(bundle_piece(event.data, event.metadata, options.allow_html))
        elif isinstance(event, ExecuteResult):
            pieces.append(bundle_piece(event.data, event.metadata, options.allow_html))
        elif isinstance(event, ErrorOutput):
            lines = event.traceback or (f"{event.ename}: {event.evalue}",)
            pieces.append(Piece(text="\n".join(lines)))
    return _assemble(pieces, options)


def _assemble(pieces: list[Piece], options: RenderOptions) -> Rendered:
    for piece in pieces:
        piece.text = _terminal_text(piece.text, options.keep_ansi)
    texts = [piece.text.rstrip("\n") for piece in pieces if piece.text.strip()]
    text = "\n".join(texts)
    html: str | None = None
    if options.allow_html and any(piece.html for piece in pieces):
        html = "".join(
            piece.html or preformatted(piece.text.rstrip("\n"))
            for piece in pieces
            if piece.html or piece.text.strip()
        )
    images: list[Image] = []
    files: list[Attachment] = []
    for piece in pieces:
        for mimetype, data, width, height in piece.images:
            number = len(images) + 1
            extension = "png" if mimetype == "image/png" else mimetype.split("/")[1]
            images.append(Image(mimetype, data, width, height, f"output-{number}.{extension}"))
        for extension, mimetype, data in piece.files:
            files.append(Attachment(f"output-{len(files) + 1}.{extension}", mimetype, data))
    truncated = len(text) > options.max_text_chars
    if truncated:
        files.insert(0, Attachment("output.txt", "text/plain", text.encode()))
        text = _cut(text, options.max_text_chars)
        html = None
    elif html is not None and len(html) > _MAX_HTML_FACTOR * options.max_text_chars:
        html = None  # markup-heavy output (a big styled table): the text form says the same
    return Rendered(text=text, html=html, images=images, files=files, truncated=truncated)


# HTML may be this many times longer than the text limit before the text form is used instead.
_MAX_HTML_FACTOR = 4


def _terminal_text(text: str, keep_ansi: bool) -> str:
    """What a terminal would show: a carriage return rewrites its line (progress bars)."""
    text = text.replace("\r\n", "\n")
    if "\r" in text:
        text = "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))
    return text if keep_ansi else strip_ansi(text)


def _cut(text: str, limit: int) -> str:
    cut = text[:limit]
    newline = cut.rfind("\n")
    if newline > limit // 2:
        cut = cut[:newline]
    return cut + "\n…"
