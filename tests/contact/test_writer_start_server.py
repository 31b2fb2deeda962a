"""`twistd jupybot` whose contact store's writer process dies while its database cannot be
opened (a folder stands at its path: root opens whatever a chmod forbids): /ping answers 503
with contact down and why, and every POST /contact 503; once the database is back, /ping
answers 200 again with no message needed, the next POST is stored, and nothing accepted
before is lost."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.contact.test_disk_full_server import gateway_stub
from tests.harness import JupybotProcess, descendants

pytestmark = pytest.mark.peers

CONFIG = """
web:
  listen: 'tcp:0:interface=127.0.0.1'
storage:
  path: '{state}'
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
  rate_limit: 100000
"""


def request(server: JupybotProcess, path: str, body: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """GET, or POST C{body} as JSON: the status and the JSON answered."""
    data = json.dumps(body).encode() if body is not None else None
    asked = urllib.request.Request(
        server.base_url + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(asked, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(server: JupybotProcess, text: str) -> tuple[int, dict[str, Any]]:
    return request(server, "/contact", {"name": "Ada", "email": "ada@example.org", "message": text})  # fmt: skip


def writer_pid(server: JupybotProcess) -> int:
    (pid,) = (
        pid
        for pid in descendants(server.pid)
        if b"jupybot.contact.writer" in Path(f"/proc/{pid}/cmdline").read_bytes()
    )
    return pid


def test_down_while_the_writer_cannot_open_the_database_then_back(tmp_path: Path) -> None:
    state = tmp_path / "state"
    database = state / "contact.sqlite3"
    aside = tmp_path / "contact.sqlite3.aside"
    with gateway_stub() as gateway:
        server = JupybotProcess(CONFIG.format(state=state, gateway=gateway), tmp_path)
        try:
            server.wait_listening()
            server.wait_for("contact: running")
            assert request(server, "/ping")[0] == 200
            assert post(server, "before") == (202, {"status": "accepted", "id": 1})

            # The database's path no longer opens, and the writer holding it open dies.
            database.rename(aside)
            database.mkdir()
            writer = writer_pid(server)
            os.kill(writer, signal.SIGKILL)
            server.wait_for(rf"writer process \(pid {writer}\) was killed by SIGKILL")
            assert post(server, "while it cannot open")[0] == 503
            # Down before that 503 was answered (the store is told first): no wait needed.
            code, body = request(server, "/ping")
            assert code == 503 and body["status"] == "degraded"
            assert body["services"]["contact"] == (
                f"down: cannot store (the writer process cannot open {database}: "
                "unable to open database file)"
            )
            assert post(server, "still")[0] == 503

            # Back: the store's probe starts a writer that opens it, with no message needed.
            database.rmdir()
            aside.rename(database)
            server.wait_for("contact: the store takes writes again")
            code, body = request(server, "/ping")
            assert code == 200 and body["services"]["contact"] == "running", body
            assert post(server, "after") == (202, {"status": "accepted", "id": 2})
        finally:
            server.stop()
    with sqlite3.connect(database) as db:
        stored = [text for (text,) in db.execute("SELECT message FROM messages ORDER BY id")]
    assert stored == ["before", "after"]
