"""The page in real headless Chromium: pick a program, type, resize, see it exit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness import JupybotProcess

pytestmark = pytest.mark.peers


def test_a_visitor_runs_a_program_in_the_browser(server: JupybotProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.terminal.browser", server.base_url + "/"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert "py" in seen["programs"]
    assert seen["list_hidden"]
    assert seen["columns_after"] < seen["columns_before"]  # fit-to-window resized the PTY
    assert seen["status"] == "exited with status 5"
    assert seen["run_again_shown"]
