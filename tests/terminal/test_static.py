"""/static/ as a visitor asks for it: the page's files are served, its folders never listed."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from jupybot.terminal.page import static_files


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
