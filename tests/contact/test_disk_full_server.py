"""`twistd jupybot` with `storage.path` on a 1 MiB tmpfs, filled during a delivery outage, then
freed: /ping says contact is degraded (what waits, for how long), then down while the disk is
full (every POST 503), and once the disk and the channel are back every message answered 202 is
delivered exactly once within the backoff's maximum (issue 29)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.contact.tiny_disk import tiny_disk
from tests.harness import JupybotProcess
from tests.matrix.user import asyncio_test

pytestmark = pytest.mark.peers

RETRY_MAX = 4  # contact.retry_max_seconds, small for the test
CONFIG = """
web:
  listen: 'tcp:0:interface=127.0.0.1'
storage:
  path: '{disk}'
shutdown:
  timeout_seconds: 5
terminal:
  enabled: false
gateway:
  url: 'http://127.0.0.1:{gateway}'
  prestart: 0
contact:
  deliver_to: [file]
  fallback_to: []
  file: '{outage}/contact-messages.jsonl'
  rate_limit: 100000
  retry_max_seconds: {retry_max}
  degraded_after_seconds: 3
"""


class _GatewayAnswers(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = {"/api": {"version": "3.0.0"}}.get(self.path, {"default": "", "kernelspecs": {}})
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def gateway_stub() -> Iterator[int]:
    """A Kernel Gateway that answers its health probe, so that /ping is ok but for contact; in a
    thread of its own (the test waits on the server's lines synchronously)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GatewayAnswers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


async def ping(http: aiohttp.ClientSession, server: JupybotProcess) -> tuple[int, dict[str, Any]]:
    async with http.get(server.base_url + "/ping") as response:
        return response.status, await response.json()


async def ping_until(
    http: aiohttp.ClientSession,
    server: JupybotProcess,
    wanted: Callable[[int, dict[str, Any]], bool],
    what: str,
    within: float = 30.0,
) -> dict[str, Any]:
    """/ping, asked again until it answers as C{wanted}."""
    deadline = time.monotonic() + within
    while True:
        code, body = await ping(http, server)
        if wanted(code, body):
            return body
        assert time.monotonic() < deadline, f"/ping not {what} within {within:g}s: {code} {body}"
        await asyncio.sleep(0.2)  # /ping is asked again: it is the state under test


async def post(http: aiohttp.ClientSession, server: JupybotProcess, text: str) -> int | None:
    """The message's id for a 202, None for a 503."""
    body = {"name": "Ada", "email": "ada@example.org", "message": text}
    async with http.post(server.base_url + "/contact", json=body) as response:
        assert response.status in (202, 503), response.status
        answer = await response.json()
        return int(answer["id"]) if response.status == 202 else None


@asyncio_test
async def test_a_full_disk_during_an_outage_then_freed(tmp_path: Path) -> None:
    outage = tmp_path / "outage"  # the file channel's folder: missing until the outage ends
    with tiny_disk(tmp_path / "disk", 1024) as disk, gateway_stub() as gateway:
        async with aiohttp.ClientSession() as http:
            config = CONFIG.format(
                disk=disk.path, gateway=gateway, outage=outage, retry_max=RETRY_MAX
            )
            server = JupybotProcess(config, tmp_path)
            try:
                server.wait_listening()
                await ping_until(http, server, lambda code, _: code == 200, "ok")
                accepted: list[int] = []
                for number in range(10):
                    stored = await post(http, server, f"before {number}")
                    assert stored is not None
                    accepted.append(stored)

                body = await ping_until(
                    http, server, lambda code, _: code == 503, "degraded by the outage"
                )
                assert body["status"] == "degraded"
                assert re.fullmatch(
                    r"degraded: 10 messages waiting, the oldest for \d+ s; file failing for "
                    r"\d+ s \(cannot write .*contact-messages.jsonl: No such file or directory\)",
                    body["services"]["contact"],
                ), body

                disk.fill()
                for number in range(200):
                    stored = await post(http, server, f"while full {number}")
                    if stored is None:
                        break
                    accepted.append(stored)
                assert stored is None, "a full disk went on taking messages"
                code, body = await ping(http, server)
                assert code == 503 and body["services"]["contact"] == (
                    "down: cannot store (disk full)"
                )
                assert await post(http, server, "refused while full") is None

                disk.free()
                waiting = f"degraded: {len(accepted)} messages waiting, the oldest for "
                await ping_until(
                    http,
                    server,
                    lambda _, body: body["services"]["contact"].startswith(waiting),
                    "degraded again once the store writes",
                )
                wal = disk.path / "contact.sqlite3-wal"
                deadline = time.monotonic() + 20
                while wal.stat().st_size > 0:  # the WAL's space is given back when idle
                    assert time.monotonic() < deadline, "the WAL was never truncated"
                    await asyncio.sleep(0.1)
                assert disk.free_bytes() > disk.total_bytes() // 2

                outage.mkdir()
                started = time.monotonic()
                server.wait_for_count(
                    r"contact: message \d+ delivered to file", len(accepted), RETRY_MAX + 20
                )
                assert time.monotonic() - started < RETRY_MAX + 20
                await ping_until(http, server, lambda code, _: code == 200, "ok again")

                delivered = Counter(
                    int(m) for m in re.findall(r"message (\d+) delivered to", server.output())
                )
                assert sorted(delivered) == sorted(accepted)
                assert set(delivered.values()) == {1}, "a message was delivered twice"
                lines = (outage / "contact-messages.jsonl").read_text().splitlines()
                assert sorted(json.loads(line)["id"] for line in lines) == sorted(accepted)
            finally:
                server.stop()
