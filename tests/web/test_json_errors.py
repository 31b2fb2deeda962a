"""Every malformed request gets a JSON 4xx/5xx, as docs/contact.md promises: an unknown path,
a method a resource does not take or HTTP does not have, a form that is not UTF-8, a chunk
announcing gigabytes (answered at once, not after the body deadline). Twisted's own answers
are HTML pages (`404 No Such Resource`, `501 Huh?`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.static import File

from jupybot.config.core import WebConfig, WebLimits
from jupybot.web.edges import EdgeFactory, EdgeSite
from jupybot.web.ping import PingResource
from tests.harness import JupybotProcess, jupybot_config
from tests.matrix.user import asyncio_test

LIMITS = WebLimits(header_timeout_seconds=10, body_timeout_seconds=30, max_body_kb=64)
CONFIG = WebConfig(listen="tcp:0", origins=(), limits=LIMITS)


class Health:
    def overall(self) -> str:
        return "ok"

    def statuses(self) -> dict[str, str]:
        return {"web": "running"}

    def details(self) -> dict[str, str]:
        return {}


class Echo(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        body: bytes = request.content.read()
        return b"got " + body


@pytest.fixture
def site(tmp_path: Path) -> Iterator[EdgeFactory]:
    """A root like jupybot's: /ping, a folder of static files, a folder of others, an echo."""
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "app.js").write_text("let a = 1;")
    root = Resource()
    root.putChild(b"ping", PingResource("Clock", Health()))
    root.putChild(b"static", File(str(tmp_path / "static")))
    folder = Resource()
    folder.putChild(b"echo", Echo())
    root.putChild(b"terminal", folder)
    yield EdgeFactory(EdgeSite(root, CONFIG.limits, reactor=Clock()), CONFIG, file_limit=1000)


def exchange(factory: EdgeFactory, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """The answer to C{request} on a fake connection: status, headers (lower case), body."""
    from twisted.internet.address import IPv4Address

    protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40000))
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(request)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return int(lines[0].split()[1]), headers, body


def json_error(factory: EdgeFactory, request: bytes) -> tuple[int, dict[str, str], str]:
    code, headers, body = exchange(factory, request)
    assert headers["content-type"] == "application/json", (code, body)
    answer: dict[str, Any] = json.loads(body)
    return code, headers, answer["error"]


def test_an_unknown_path_is_a_json_404(site: EdgeFactory) -> None:
    for path in (b"/nope", b"/nope/deeper", b"/static/nope.js", b"/terminal"):
        code, _, error = json_error(site, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
        assert code == 404 and error == "There is nothing at this address.", path


def test_head_of_an_unknown_path_is_a_404_without_a_body(site: EdgeFactory) -> None:
    code, headers, body = exchange(site, b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert code == 404 and headers["content-type"] == "application/json" and body == b""
    code, headers, body = exchange(site, b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert code == 200 and body == b""


def test_a_method_a_resource_does_not_take_is_a_json_405_with_allow(site: EdgeFactory) -> None:
    for method in (b"DELETE", b"PUT", b"POST", b"PATCH"):
        code, headers, error = json_error(site, b"%s /ping HTTP/1.1\r\nHost: x\r\n\r\n" % method)
        assert code == 405 and headers["allow"] == "GET, HEAD", method
        assert error == "Only GET, HEAD here."


def test_a_method_http_does_not_have_is_a_json_501(site: EdgeFactory) -> None:
    code, _, error = json_error(site, b"FOO /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert code == 501 and error == "The method FOO is not supported."


def test_a_chunk_announcing_more_than_the_body_limit_is_refused_at_once(
    site: EdgeFactory,
) -> None:
    head = b"POST /terminal/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    code, headers, error = json_error(site, head + b"80000000\r\n")
    assert code == 400 and headers["connection"] == "close"
    assert error == (
        "A chunk of the request's body would bring it to 2147483648 bytes, over the limit of 65536."
    )
    # Chunks within the limit, however many, are read as before ...
    body = b"".join(b"400\r\n" + b"x" * 1024 + b"\r\n" for _ in range(60)) + b"0\r\n\r\n"
    code, _, answer = exchange(site, head + body)
    assert code == 200 and answer == b"got " + b"x" * 61440
    # ... until one would carry the body past it.
    code, _, error = json_error(site, head + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"fc01\r\n")
    assert code == 400 and "65537 bytes" in error


# Against a real server: what a visitor's browser, a scanner or a fuzzer sends.

FORM = b"name=Ada%ff&email=ada%40example.org&message=hi"
MALFORMED: list[tuple[str, bytes, int]] = [
    ("unknown path", b"GET /wp-login.php HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ("unknown static file", b"GET /static/nope.js HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ("method not taken", b"DELETE /ping HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    ("unknown method", b"BREW /ping HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (
        "form not UTF-8",
        b"POST /contact HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\nContent-Length: %d\r\n\r\n%s" % (len(FORM), FORM),
        400,
    ),
    (
        "a 2 GiB chunk",
        b"POST /contact HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n80000000\r\n",
        400,
    ),
]


async def raw_answer(base_url: str, request: bytes) -> bytes:
    """Send C{request} as it is; the answer's head and body (the connection is left open)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        return head + await reader.readexactly(length)
    finally:
        writer.close()


@pytest.mark.peers
@asyncio_test
async def test_a_real_server_answers_every_malformed_request_with_json(tmp_path: Path) -> None:
    server = JupybotProcess(jupybot_config(tmp_path, "gateway:\n  url: http://127.0.0.1:9\n"), tmp_path)  # fmt: skip
    try:
        server.wait_listening()
        for what, request, status in MALFORMED:
            started = time.monotonic()
            # Far under the body deadline (30 s): nothing waits for a body that cannot come.
            answer = await asyncio.wait_for(raw_answer(server.base_url, request), 10)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 %d " % status), (what, answer)
            assert b"content-type: application/json" in head.lower(), (what, answer)
            assert "error" in json.loads(body), what
            assert time.monotonic() - started < 10
    finally:
        server.stop()
