"""`twistd jupybot` killed with SIGKILL in the middle of a burst of submissions, then restarted:
every message answered 202 is delivered exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.harness import JupybotProcess, jupybot_config
from tests.matrix.user import asyncio_test

pytestmark = pytest.mark.peers

CONTACT = """
contact:
  deliver_to: [file]
  rate_limit: 100000
gateway:
  url: http://127.0.0.1:9
"""


def start(workdir: Path) -> JupybotProcess:
    process = JupybotProcess(jupybot_config(workdir, CONTACT), workdir)
    process.wait_listening()
    process.wait_for("contact: running")
    return process


@asyncio_test
async def test_sigkill_mid_burst_loses_and_repeats_nothing(tmp_path: Path) -> None:
    server = start(tmp_path)
    accepted: list[int] = []
    killed = asyncio.Event()

    async def client(http: aiohttp.ClientSession, number: int) -> None:
        for attempt in range(1000):
            body = {"name": f"c{number}", "email": "a@example.org", "message": f"{attempt}"}
            try:
                async with http.post(server.base_url + "/contact", json=body) as response:
                    if response.status == 202:
                        accepted.append((await response.json())["id"])
            except aiohttp.ClientError:
                return  # the server is gone
            if len(accepted) >= 300 and not killed.is_set():
                killed.set()
                server.signal(signal.SIGKILL)

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http, n) for n in range(20)))
    server.wait()
    assert killed.is_set() and len(accepted) >= 300

    server = start(tmp_path)
    try:
        delivered_file = tmp_path / "var" / "contact-messages.jsonl"
        wanted = set(accepted)
        while True:  # the outbox resumes on start; wait until the file holds every id
            mark = server.line_count()
            # Only whole lines: the server may be writing the next one right now.
            whole = delivered_file.read_text().split("\n")[:-1]
            ids = [json.loads(line)["id"] for line in whole]
            if wanted <= set(ids):
                break
            server.wait_for("contact: message .* delivered to file", start=mark)
        assert len(ids) == len(set(ids)), "a message was delivered twice"
    finally:
        server.stop()
