"""GET / (the program list and the terminal), /programs.json, /embed.js (the terminal as an
element for the owner's own site: docs/embed.md), and the page's static files.

The page is one document: the list at `/`, each program at `/#<name>` (so a reload, a link or
the browser's Back and Forward return to it); `static/terminal.js` does the rest.

The page's script and /embed.js are built by esbuild from `static/*.js` (ES modules) and the
xterm.js packages into `static/vendor/` (`esbuild.config.js`, run by scripts/install-web-assets);
this module serves what it built, and not those sources.
"""

from __future__ import annotations

import hashlib
import json
import re
from html import escape
from pathlib import Path

from twisted.logger import Logger
from twisted.web.http import CACHED
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.static import File

from ..config.core import DEFAULT_INTRO, DEFAULT_TITLE
from ..config.terminal import ProgramConfig

__all__ = [
    "PAGE_ASSET_SUFFIXES",
    "STATIC",
    "EmbedScript",
    "ProgramList",
    "ProgramPage",
    "render_page",
    "static_files",
]

log = Logger()

STATIC = Path(__file__).parent / "static"

# The documented default of terminal.max_frame_kb, for a page not told otherwise.
DEFAULT_MAX_FRAME_KB = 64

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport"
  content="width=device-width, initial-scale=1, viewport-fit=cover, interactive-widget=resizes-content">
<meta name="color-scheme" content="dark">
<title>{title}</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/vendor/xterm.css">
<link rel="stylesheet" href="/static/terminal.css">
</head>
<body data-max-frame-kb="{max_frame_kb}">
<header id="top">
  <h1>{title}</h1>
  {intro}
</header>
<main>
  <ul id="programs">{programs}</ul>
  <noscript><p>This page needs JavaScript to run the terminal.</p></noscript>
  <section id="session" hidden>
    <div class="bar">
      <a id="back" href="#" class="button">&larr; <span class="label">All programs</span></a>
      <span id="title"></span>
      <span id="state" class="state" data-state="starting"></span>
      <span id="status" role="status"></span>
    </div>
    <div id="hint" role="note" hidden></div>
    <div id="screen">
      <div id="terminal"></div>
      <div id="notice" role="alert" hidden>
        <span id="notice-text"></span>
        <button id="notice-action" type="button"></button>
        <button id="notice-restart" type="button">Run again</button>
      </div>
    </div>
    <div id="keys" aria-label="Keys a touch keyboard lacks" hidden>
      <button type="button" data-key="esc">Esc</button>
      <button type="button" data-key="tab">Tab</button>
      <button type="button" data-key="ctrl" aria-pressed="false">Ctrl</button>
      <button type="button" data-key="left" aria-label="Left">&larr;</button>
      <button type="button" data-key="up" aria-label="Up">&uarr;</button>
      <button type="button" data-key="down" aria-label="Down">&darr;</button>
      <button type="button" data-key="right" aria-label="Right">&rarr;</button>
      <button type="button" data-key="ctrl-c" aria-label="Control C">^C</button>
    </div>
  </section>
</main>
<script src="/static/vendor/page.js"></script>
</body>
</html>
"""

_ITEM = """<li><a class="program" href="#{name}" data-program="{name}">
<span class="title">{title}</span><span class="description">{description}</span></a></li>"""


# An address in the intro, once escaped (so "&" reads "&amp;"); a final dot or bracket ends it.
_ADDRESS = re.compile(r"https?://[^\s<>\"']+?(?=[.,;:!?)\]]*(?:\s|$))")


def _paragraph(text: str) -> str:
    """C{text} escaped, with each http(s) address made a link (to the owner's own site, say)."""
    return _ADDRESS.sub(
        lambda m: f'<a href="{m.group(0)}" rel="noopener">{m.group(0)}</a>', escape(text)
    )


def render_page(
    programs: tuple[ProgramConfig, ...],
    title: str = DEFAULT_TITLE,
    intro: str = DEFAULT_INTRO,
    max_frame_kb: int = DEFAULT_MAX_FRAME_KB,
) -> bytes:
    """The page's HTML: C{title} as heading, C{intro} as its paragraphs (a blank line starts a
    new one; addresses are links), a card per program; every text escaped."""
    items = "".join(
        _ITEM.format(name=escape(p.name), title=escape(p.title), description=escape(p.description))
        for p in programs
    )
    paragraphs = [part.strip() for part in intro.split("\n\n") if part.strip()]
    return _PAGE.format(
        title=escape(title),
        intro="\n  ".join(f"<p>{_paragraph(p)}</p>" for p in paragraphs),
        max_frame_kb=max_frame_kb,
        programs=items or '<li class="empty">No programs are configured yet.</li>',
    ).encode()


class ProgramPage(Resource):
    """The landing page: every program of the catalogue, each opening a terminal."""

    isLeaf = True

    def __init__(
        self,
        programs: tuple[ProgramConfig, ...],
        title: str = DEFAULT_TITLE,
        intro: str = DEFAULT_INTRO,
        max_frame_kb: int = DEFAULT_MAX_FRAME_KB,
    ) -> None:
        super().__init__()
        self._body = render_page(programs, title, intro, max_frame_kb)

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(
            b"content-security-policy",
            b"default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline';"
            b" img-src 'self' data:",
        )
        return self._body


class ProgramList(Resource):
    """GET /programs.json: the catalogue for a portfolio site's own front end."""

    isLeaf = True

    def __init__(self, programs: tuple[ProgramConfig, ...]) -> None:
        super().__init__()
        self._body = json.dumps(
            [{"name": p.name, "title": p.title, "description": p.description} for p in programs]
        ).encode()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return self._body


class EmbedScript(Resource):
    """GET /embed.js: the <jupybot-terminal> element, for any site to load (what it may then
    do is the websocket's Origin rule: web.origins). One script esbuild made of static/embed.js,
    wire.js, xterm.js, three addons and xterm.css, which defines nothing global but the element
    and leaves alone any xterm.js of the embedding page."""

    isLeaf = True

    def __init__(self, static: Path = STATIC) -> None:
        super().__init__()
        try:
            self._body: bytes | None = (static / "vendor" / "embed.js").read_bytes()
        except OSError as e:
            log.error("terminal: /embed.js is not built ({why}); run scripts/install-web-assets",
                      why=e)  # fmt: skip
            self._body = None
        self._etag = hashlib.sha256(self._body or b"").hexdigest()[:32].encode()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"x-content-type-options", b"nosniff")
        if self._body is None:
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"application/json")
            return b'{"error": "embed.js is not built on this server"}'
        request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
        # A public script, for pages of any origin (a COEP page, a crossorigin attribute).
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"cross-origin-resource-policy", b"cross-origin")
        # Asked again each time (a 304 while unchanged), so an upgrade reaches every site.
        request.setHeader(b"cache-control", b"no-cache")
        if request.setETag(self._etag) == CACHED:
            return b""
        return self._body


class _UnlistedFiles(File):
    """Static files whose folders are not listed: a folder's URL is a resource with nothing
    to render. Its subfolders are this class too (L{File.createSimilarFile})."""

    def directoryListing(self) -> Resource:
        return Resource()


# What the page loads of static/ besides vendor/: stylesheets, images, fonts. The ES modules
# there (terminal.js, wire.js, embed.js...) are esbuild's sources, already in vendor/'s bundles:
# not served (nor installed: setup.py lists the same suffixes).
PAGE_ASSET_SUFFIXES = (".css", ".svg", ".woff2")


def static_files(static: Path = STATIC) -> Resource:
    """/static/: C{vendor/} (the bundles esbuild made, xterm.css and its licence) and the page's
    own assets (L{PAGE_ASSET_SUFFIXES}); anything else there is a 404, folders are not listed."""
    root = Resource()  # renders nothing: /static/ itself is not listed either
    root.putChild(b"vendor", _UnlistedFiles(str(static / "vendor")))
    for path in sorted(static.iterdir()):
        if path.is_file() and path.suffix in PAGE_ASSET_SUFFIXES:
            root.putChild(path.name.encode(), File(str(path)))
    return root
