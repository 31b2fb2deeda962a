"""One Jupyter MIME bundle -> the pieces a chat message is made of (see docs/rendering.md).

Each converter wraps a maintained library: nh3 sanitises HTML, markdown-it-py renders Markdown,
Pillow reads image sizes, CairoSVG rasterises SVG for front ends that need a bitmap.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from typing import Any

import nh3
from markdown_it import MarkdownIt

# What Python prints for objects without a useful repr, e.g. "<IPython.core.display.HTML object>".
_DEFAULT_REPR = re.compile(r"^<[\w.]+ object(?: at 0x[0-9a-f]+)?>$")

_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}

# Tags a chat client is expected to show (the Matrix spec's list of allowed HTML, which Discord's
# converter also understands); everything else is removed with its attributes.
_ALLOWED_TAGS = {
    "a", "b", "blockquote", "br", "caption", "code", "del", "details", "div", "em", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "li", "ol", "p", "pre", "s", "span", "strike", "strong",
    "sub", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}, "code": {"class"}, "span": {"class"}}

_markdown = MarkdownIt("commonmark").enable("table")

# What a chat message can carry; any other type in a bundle (a widget, Plotly, Vega, Bokeh...)
# is an interactive output that only a notebook front end draws.
_SHOWN_TYPES = {
    *_IMAGE_TYPES, "image/svg+xml", "text/html", "text/markdown", "text/latex",
    "application/json", "text/plain",
}  # fmt: skip
# How people call the outputs of the usual libraries, by the start of their MIME type.
_KINDS = (
    ("application/vnd.jupyter.widget", "An interactive widget"),
    ("application/vnd.plotly", "A Plotly chart"),
    ("application/vnd.vegalite", "A Vega-Lite chart"),
    ("application/vnd.vega", "A Vega chart"),
    ("application/vnd.bokehjs", "A Bokeh output"),
    ("application/vnd.holoviews", "A HoloViews output"),
    ("application/geo+json", "A GeoJSON map"),
    ("application/javascript", "A JavaScript output"),
)
_SCRIPTED = re.compile(r"<script\b", re.IGNORECASE)
FALLBACK_NOTE = (
    "{kind} cannot be shown here: the full output is in the notebook ('notebook' sends it)."
)


def sanitize_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


def markdown_to_html(source: str) -> str:
    return sanitize_html(_markdown.render(source))


def preformatted(text: str) -> str:
    return f"<pre><code>{escape(text)}</code></pre>"


@dataclass
class Piece:
    """What one bundle contributes: text always, HTML when richer, images and files."""

    text: str
    html: str | None = None
    images: list[tuple[str, bytes, int | None, int | None]] = field(default_factory=list)
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (extension, mime, data)


def bundle_piece(data: dict[str, Any], metadata: dict[str, Any], allow_html: bool) -> Piece:
    """Convert one bundle in the documented order: bitmap, SVG, HTML, Markdown, LaTeX, JSON, text."""
    plain = _as_text(data.get("text/plain"))
    for mimetype in _IMAGE_TYPES:
        if mimetype in data:
            image = _decode_image(data[mimetype], mimetype, metadata.get(mimetype))
            if image is not None:
                return Piece(text="", images=[image])
    if "image/svg+xml" in data:
        svg = _as_text(data["image/svg+xml"]).encode()
        piece = Piece(text="", files=[("svg", "image/svg+xml", svg)])
        bitmap = _rasterize(svg)
        if bitmap is not None:
            piece.images.append(bitmap)
        return piece
    if _unshowable(data):
        return _fallback(data, plain, allow_html)
    if "text/html" in data:
        html = _as_text(data["text/html"])
        text = html_to_text(html) if not plain or _DEFAULT_REPR.match(plain) else plain
        return Piece(text=text, html=sanitize_html(html) if allow_html else None)
    if "text/markdown" in data:
        source = _as_text(data["text/markdown"])
        return Piece(text=source, html=markdown_to_html(source) if allow_html else None)
    if "text/latex" in data:
        return Piece(text=_as_text(data["text/latex"]))
    if "application/json" in data:
        return Piece(text=json.dumps(data["application/json"], indent=2, ensure_ascii=False))
    return Piece(text=plain)


def _unshowable(data: dict[str, Any]) -> bool:
    """A bundle whose substance is in a form a chat cannot show: a type of its own (a widget,
    a chart's JSON) with no HTML, Markdown, LaTeX or JSON form saying the same; or HTML that
    is empty once its scripts are gone (Plotly, Bokeh and Altair draw with a script)."""
    unshown = any(m not in _SHOWN_TYPES for m in data)
    if "text/html" in data:
        html = _as_text(data["text/html"])
        empty = not html_to_text(html).strip()
        return empty and (unshown or bool(_SCRIPTED.search(html)))
    richer = any(m in data for m in ("text/markdown", "text/latex", "application/json"))
    return unshown and not richer


def _fallback(data: dict[str, Any], plain: str, allow_html: bool) -> Piece:
    """An output a chat cannot show: its text form (unless only a default repr), and a line
    saying what it is and where it is whole. Never nothing."""
    unshown = [m for m in data if m not in _SHOWN_TYPES]
    kind = next(
        (name for m in unshown for prefix, name in _KINDS if m.startswith(prefix)),
        None,
    )
    if kind is None:
        kind = f"An output of type {unshown[0]}" if unshown else "An interactive HTML output"
    note = FALLBACK_NOTE.format(kind=kind)
    text = "" if _DEFAULT_REPR.match(plain.strip()) else plain.rstrip("\n")
    html = None
    if allow_html:
        html = (preformatted(text) if text.strip() else "") + f"<p><em>{escape(note)}</em></p>"
    return Piece(text=f"{text}\n{note}" if text.strip() else note, html=html)


def _as_text(value: Any) -> str:
    # nbformat allows multi-line strings as lists of lines.
    if isinstance(value, list):
        return "".join(str(line) for line in value)
    return "" if value is None else str(value)


def _decode_image(
    value: Any, mimetype: str, metadata: Any
) -> tuple[str, bytes, int | None, int | None] | None:
    try:
        raw = base64.b64decode(_as_text(value), validate=False)
    except (binascii.Error, ValueError):
        return None
    width, height = _image_size(raw)
    if width is None:
        return None  # not a bitmap Pillow can read: the bundle's next form is shown instead
    if isinstance(metadata, dict):
        # The kernel's display size (e.g. Image(width=...)) beats the bitmap's own size.
        width = _positive_int(metadata.get("width")) or width
        height = _positive_int(metadata.get("height")) or height
    return mimetype, raw, width, height


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _image_size(raw: bytes) -> tuple[int | None, int | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
            return int(width), int(height)
    except (UnidentifiedImageError, OSError, ValueError):
        return None, None


def _rasterize(svg: bytes) -> tuple[str, bytes, int | None, int | None] | None:
    try:
        import cairosvg

        png = cairosvg.svg2png(bytestring=svg)
    except Exception:  # a malformed SVG, or no cairo library: the SVG file is still sent
        return None
    if not isinstance(png, bytes):
        return None
    width, height = _image_size(png)
    return "image/png", png, width, height


class _TextExtractor(HTMLParser):
    """HTML -> readable text: block elements break lines, table cells are joined by " | "."""

    _BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._first_cell = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
            self._first_cell = True
        elif tag in ("td", "th"):
            if not self._first_cell:
                self.parts.append(" | ")
            self._first_cell = False

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not data.strip():
            # Indentation between tags; keep one space between inline words.
            if self.parts and self.parts[-1] not in ("\n", " | ", " "):
                self.parts.append(" ")
            return
        self.parts.append(data)


def html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (line.rstrip() for line in "".join(extractor.parts).splitlines())
    return "\n".join(line for line in lines if line.strip())
