"""Every refusal of the raw protocol as docs/protocol.md lists it: the ERROR frame's message for
people, then the close code with the short reason, against a real server."""

from __future__ import annotations

import asyncio
import json
import signal
import struct
from pathlib import Path

import aiohttp
import pytest

from tests.harness import JupybotProcess, descendants, jupybot_config
from tests.matrix.user import asyncio_test

from .conftest import raw, started_program, wait_gone, ws_url

pytestmark = pytest.mark.peers


async def refused(client_ws: aiohttp.ClientWebSocketResponse) -> tuple[dict[str, str], int, str]:
    """The ERROR frame's body, then the close code and reason that follow it."""
    error: dict[str, str] = {}
    while True:
        message = await client_ws.receive(timeout=30)
        if message.type == aiohttp.WSMsgType.BINARY and message.data[0] == 0x13:
            error = json.loads(message.data[1:])
        elif message.type == aiohttp.WSMsgType.CLOSE:
            return error, message.data, message.extra or ""
        elif message.type != aiohttp.WSMsgType.BINARY:
            raise AssertionError(f"no close frame: {message}")


@pytest.mark.parametrize(
    ("hello", "reason", "code"),
    [
        ({"cols": 80, "rows": 24}, "bad-request", 4400),
        ({"program": "nope", "cols": 80, "rows": 24}, "unknown-program", 4404),
        ({"program": "sh", "cols": 0, "rows": 0}, "bad-size", 4400),
        ({"program": "sh", "cols": "wide", "rows": 24}, "bad-size", 4400),
        ({"program": "missing", "cols": 80, "rows": 24}, "unavailable", 4503),
        ({"program": "broken", "cols": 80, "rows": 24}, "unavailable", 4503),
        ({"resume": "no-such-token"}, "expired", 4404),
    ],
)
@asyncio_test
async def test_a_refused_hello_closes_with_the_short_reason(
    server: JupybotProcess, hello: dict[str, object], reason: str, code: int
) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(**hello)
        error, closed_with, close_reason = await refused(client.ws)
        assert (error["reason"], closed_with, close_reason) == (reason, code, reason)
        assert len(error["message"]) > 20  # a sentence for people, not a code
        assert "/" not in error["message"]  # no host path: where programs are is the owner's


@asyncio_test
async def test_a_broken_program_is_its_own_problem_not_the_terminals(
    server: JupybotProcess,
) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.base_url}/ping") as response:
        status = await response.json()
    assert response.status == 200, status
    assert status["services"]["terminal"] == "running"
    detail = status["details"]["terminal"]
    assert detail.startswith("not available: broken (programs[")
    assert "/gmae' does not exist (check argv[0])" in detail


@asyncio_test
async def test_a_connection_without_a_hello_is_closed_after_10_s(server: JupybotProcess) -> None:
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:

        async def silent(path: str) -> tuple[str, int, str, float]:
            ws = await http.ws_connect(ws_url(server, path))
            opened = loop.time()
            error = await ws.receive(timeout=30)
            closing = await ws.receive(timeout=30)
            body = error.data[1:] if path.endswith("/ws") else error.data
            return (
                json.loads(body)["reason"],
                closing.data,
                closing.extra or "",
                loop.time() - opened,
            )

        for reason, code, close_reason, after in await asyncio.gather(
            silent("/terminal/ws"), silent("/terminal/line")
        ):
            assert (reason, code, close_reason) == ("no-hello", 4408, "no-hello")
            assert 9 < after < 20


@asyncio_test
async def test_a_resize_to_nothing_is_a_bad_size(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="cat", cols=80, rows=24)
        await client.ws.send_bytes(b"\x01" + struct.pack("!HH", 0, 0))
        error, code, reason = await refused(client.ws)
        assert (error["reason"], code, reason) == ("bad-size", 4400, "bad-size")
        assert "0x0" in error["message"]


@asyncio_test
async def test_invalid_utf8_in_a_text_frame_gets_1007(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/terminal/ws", "/terminal/line"):
            ws = await http.ws_connect(ws_url(server, path))
            await ws.send_frame(b'{"program": "\xff"}', aiohttp.WSMsgType.TEXT)
            closing = await ws.receive(timeout=30)
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1007), path


@asyncio_test
async def test_a_frame_over_the_limit_gets_1009(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="cat", cols=80, rows=24)
        await client.ws.send_bytes(b"\x00" + b"x" * (64 * 1024))  # 1 byte over max_frame_kb
        closing = await client.until_closed()
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1009)


@asyncio_test
async def test_origin_null_is_refused_with_a_reason(server: JupybotProcess) -> None:
    """A file:// page or a sandboxed frame sends Origin null: it says nothing of who asks."""
    host = server.base_url.removeprefix("http://")
    reader, writer = await asyncio.open_connection(*host.split(":"))
    writer.write(
        b"GET /terminal/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nOrigin: null\r\n\r\n" % host.encode()
    )
    status = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    assert status.startswith(b"HTTP/1.1 403 Origin null (a file:// page or a sandboxed frame)")


@asyncio_test
async def test_a_resume_after_the_session_expired_gets_expired(server: JupybotProcess) -> None:
    others = set(descendants(server.pid))
    async with aiohttp.ClientSession() as http:
        first = await raw(http, server)
        # It ignores SIGHUP and SIGTERM: it runs on for 4 s after its session expired.
        await first.hello(program="stubborn", cols=80, rows=24)
        await first.until_output(b"ready")
        token = first.ready["resume"]
        sleeping = await started(server, others, "sleep")
        await first.ws.close()
        # The session expired (terminal.resume_seconds, 5 s): the hang-up ended its `sleep`.
        await wait_gone([sleeping], 20)
        assert started_program(server, others, "sh")  # still running

        second = await raw(http, server)
        await second.hello(resume=token, received=0)
        error, code, reason = await refused(second.ws)
        assert (error["reason"], code, reason) == ("expired", 4404, "expired")
        assert not second.ready


async def started(server: JupybotProcess, others: set[int], name: str) -> int:
    """The program C{name} of a session, once it has started (within 10 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        try:
            return started_program(server, others, name)
        except ValueError:
            assert loop.time() < deadline, f"{name} did not start"
            await asyncio.sleep(0.05)


@asyncio_test
async def test_a_stopping_server_closes_with_1001(tmp_path: Path) -> None:
    programs = "programs:\n  - {name: cat, argv: [cat]}\n"
    server = JupybotProcess(jupybot_config(tmp_path, programs), tmp_path)
    try:
        server.wait_listening()
        server.wait_for("terminal: running")
        async with aiohttp.ClientSession() as http:
            client = await raw(http, server)
            await client.hello(program="cat", cols=80, rows=24)
            await client.frame()
            assert client.ready
            server.signal(signal.SIGTERM)
            error, code, reason = await refused(client.ws)
            assert (error["reason"], code, reason) == ("shutdown", 1001, "shutdown")
        server.wait(30)
        assert "invalid close code" not in server.output()
    finally:
        server.stop()
