"""Input of any size through the raw protocol: many frames under the limit, flow-controlled by
the program's reading, against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiohttp
import pytest

from tests.harness import JupybotProcess, rss_kb
from tests.matrix.user import asyncio_test

from .conftest import RawClient, raw

pytestmark = pytest.mark.peers

# Frames as the page sends a paste: under terminal.max_frame_kb (64 KB) with the type byte.
FRAME = 60 * 1024


async def send_in_frames(client: RawClient, data: bytes, sent: list[int]) -> None:
    for start in range(0, len(data), FRAME):
        await client.send(data[start : start + FRAME])
        sent[0] = start + FRAME


async def read_and_acknowledge(client: RawClient, until: bytes) -> None:
    """Read output until it ends with C{until}, acknowledging from another task: a send that
    waits for the server (which reads no input while the program has not read what it got)
    must not stop this client from reading, as a browser never stops."""
    drawn = asyncio.Event()

    async def acknowledge() -> None:
        while True:
            await drawn.wait()
            drawn.clear()
            await client.acknowledge()

    acknowledging = asyncio.ensure_future(acknowledge())
    try:
        while not client.output.endswith(until):
            message = await client.frame()
            assert message.type == aiohttp.WSMsgType.BINARY, (message, len(client.output))
            drawn.set()
    finally:
        acknowledging.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acknowledging


@asyncio_test
async def test_a_one_megabyte_paste_arrives_whole(server: JupybotProcess) -> None:
    # Lines well under the terminal's 4096-byte line limit, each different.
    paste = b"".join(b"%07d " % n + b"x" * 1015 + b"\n" for n in range(1024))
    assert len(paste) == 1024 * 1024
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="quietcat", cols=80, rows=24)
        await client.until_output(b"ready\r\n")
        del client.output[:]
        client.acknowledged = 0
        sent = [0]
        sending = asyncio.ensure_future(send_in_frames(client, paste, sent))
        await read_and_acknowledge(client, b"%07d " % 1023 + b"x" * 1015 + b"\r\n")
        await sending
        # More than a window (64 KB) of output and of input in flight at once: neither waited
        # for the other for ever.
        assert bytes(client.output).replace(b"\r\n", b"\n") == paste
        await client.ws.close()


@asyncio_test
async def test_input_to_a_program_that_never_reads_keeps_the_server_small(
    server: JupybotProcess,
) -> None:
    flood = b"y" * (64 * 1024 * 1024)
    async with aiohttp.ClientSession() as http:
        client = await raw(http, server)
        await client.hello(program="deaf", cols=80, rows=24)
        await client.until_output(b"ready")
        before = rss_kb(server.pid)
        sent = [0]
        sending = asyncio.ensure_future(send_in_frames(client, flood, sent))
        # The server stops reading the socket: the client's sends wait once the kernel's
        # buffers on both sides are full (a few MB on loopback).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        last = -1
        while sent[0] != last:
            assert loop.time() < deadline, f"the client could send {sent[0]} bytes"
            last = sent[0]
            await asyncio.sleep(0.5)  # progress since the last look: none means it waits
        assert not sending.done() and sent[0] < len(flood) // 2
        assert rss_kb(server.pid) - before < 16 * 1024
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        # Not even a close frame gets through to a server that does not read: hang up.
        client.ws.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
