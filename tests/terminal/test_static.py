"""/static/ as a visitor asks for it: what the page loads is served, its folders are never listed,
and the ES modules esbuild bundled into it are not served."""

from __future__ import annotations

import re
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from jupybot.terminal.page import STATIC, render_page, static_files


async def get(path: str) -> tuple[int, bytes]:
    """GET C{path} of a site on loopback whose /static/ is jupybot's."""
    root = Resource()
    root.putChild(b"static", static_files())
    port: Any = reactor.listenTCP(0, Site(root), interface="127.0.0.1")  # type: ignore[arg-type]
    try:
        response = await treq.get(f"http://127.0.0.1:{port.getHost().port}{path}")
        return response.code, await response.content()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_file_is_served() -> None:
    code, body = await get("/static/vendor/page.js")
    assert code == 200
    assert body


@pytest.mark.parametrize(
    ("folder", "inside"),
    [("/static/", b"terminal.js"), ("/static/vendor/", b"page.js"), ("/static/vendor", b"page.js")],
)
@pytest_twisted.ensureDeferred
async def test_a_folder_is_not_listed(folder: str, inside: bytes) -> None:
    code, body = await get(folder)
    assert code != 200
    assert inside not in body


@pytest_twisted.ensureDeferred
async def test_everything_the_page_loads_from_static_is_served() -> None:
    page = render_page(()).decode()
    loaded = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert "/static/vendor/page.js" in loaded and "/static/terminal.css" in loaded
    for path in loaded:
        code, body = await get(path)
        assert (code, bool(body)) == (200, True), path


@pytest.mark.parametrize("module", sorted(p.name for p in STATIC.glob("*.js")))
@pytest_twisted.ensureDeferred
async def test_the_bundles_sources_are_not_served(module: str) -> None:
    """terminal.js, wire.js, embed.js...: esbuild's inputs, in the repository (make lint and
    tests/js read them) but already inside vendor/page.js and /embed.js."""
    code, body = await get(f"/static/{module}")
    assert code == 404
    assert (STATIC / module).read_bytes()[:200] not in body
