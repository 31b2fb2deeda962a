"""GET / (the program list and the terminal), /programs.json, and the page's static files."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.static import File

from ..config.terminal import ProgramConfig

STATIC = Path(__file__).parent / "static"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Try my programs</title>
<link rel="stylesheet" href="/static/vendor/xterm.css">
<link rel="stylesheet" href="/static/terminal.css">
</head>
<body>
<header>
  <h1>Try my programs</h1>
  <p>Pick one: it runs on this server, in your browser, nothing to install.</p>
</header>
<main>
  <ul id="programs">{programs}</ul>
  <section id="session" hidden>
    <div class="bar">
      <span id="title"></span>
      <span id="status" role="status"></span>
      <button id="restart" type="button" hidden>Run again</button>
      <button id="close" type="button">Back to the list</button>
    </div>
    <div id="terminal"></div>
  </section>
</main>
<script src="/static/vendor/xterm.js"></script>
<script src="/static/vendor/addon-fit.js"></script>
<script src="/static/terminal.js"></script>
</body>
</html>
"""

_ITEM = """<li><button type="button" class="program" data-program="{name}">
<span class="title">{title}</span><span class="description">{description}</span></button></li>"""


class ProgramPage(Resource):
    """The landing page: every program of the catalogue, each opening a terminal."""

    isLeaf = True

    def __init__(self, programs: tuple[ProgramConfig, ...]) -> None:
        super().__init__()
        items = "".join(
            _ITEM.format(
                name=escape(p.name), title=escape(p.title), description=escape(p.description)
            )
            for p in programs
        )
        self._body = _PAGE.format(
            programs=items or "<li>No programs are configured yet.</li>"
        ).encode()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(
            b"content-security-policy",
            b"default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'",
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


def static_files() -> File:
    files = File(str(STATIC))
    files.directoryListing = lambda: Resource()  # type: ignore[method-assign]
    return files
