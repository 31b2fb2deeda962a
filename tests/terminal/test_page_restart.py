"""The server restarts under a visitor's program: the page in headless Chromium says so,
does not look live meanwhile, and starts the program again when the server is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import JupybotProcess, free_port

pytestmark = pytest.mark.peers

CONFIG = """\
web:
  listen: 'tcp:{port}:interface=127.0.0.1'
storage:
  path: '{workdir}/var'
shutdown:
  timeout_seconds: 5
programs:
  - {{name: py, title: Python, argv: [python3, -q]}}
"""


def test_a_restart_is_shown_and_the_program_starts_again(tmp_path: Path) -> None:
    config = CONFIG.format(port=free_port(), workdir=tmp_path)
    shots = Path(os.environ.get("JUPYBOT_SCREENSHOTS", tmp_path)) / "restart"
    server = JupybotProcess(config, tmp_path)
    browser: subprocess.Popen[str] | None = None
    try:
        server.wait_listening()
        server.wait_for("terminal: running")
        scenario = ["tests.terminal.browser", "restart", server.base_url + "/", str(shots)]
        browser = subprocess.Popen(
            [sys.executable, "-m", *scenario],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert browser.stdin is not None and browser.stdout is not None
        assert browser.stdout.readline().strip() == "stop the server"
        server.stop()
        browser.stdin.write("stopped\n")
        browser.stdin.flush()
        assert browser.stdout.readline().strip() == "start the server"
        server = JupybotProcess(config, tmp_path)  # the same port, a new process
        server.wait_listening()
        server.wait_for("terminal: running")
        browser.stdin.write("started\n")
        browser.stdin.flush()
        seen = json.loads(browser.stdout.readline())
        assert browser.wait(60) == 0
    finally:
        if browser is not None and browser.poll() is None:
            browser.kill()
            browser.wait()
        server.stop()
    assert seen["page_errors"] == []
    assert seen["notice"].startswith("The server is restarting")
    assert seen["greyed"]
    assert seen["old_screen_kept"]
    assert seen["new_session"]
    assert seen["notice_hidden"]
