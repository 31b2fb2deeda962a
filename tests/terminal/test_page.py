"""The page in real headless Chromium, as a visitor uses it: pick a program, type, resize,
reload, paste a megabyte, lose the connection, copy and paste, a phone held sideways.

Each scenario runs in a subprocess (tests/terminal/browser.py) and saves screenshots in
$JUPYBOT_SCREENSHOTS (default: the test's temporary directory) for a person to look at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import JupybotProcess

pytestmark = pytest.mark.peers

# Reads exactly 1 MiB in raw mode (no line editing, no echo) and prints its length and digest.
DIGEST = """\
import hashlib, os, tty
tty.setraw(0)
os.write(1, b"ready\\r\\n")
data = bytearray()
while len(data) < 1 << 20:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    data += chunk
os.write(1, f"got {len(data)} {hashlib.sha256(data).hexdigest()}\\r\\n".encode())
"""

CONFIG = """\
web:
  listen: 'tcp:0:interface=127.0.0.1'
  title: Ada's programs
  intro: Things I built, running live.
storage:
  path: '{workdir}/var'
shutdown:
  timeout_seconds: 5
terminal:
  resume_seconds: 30
  # Each scenario leaves a session or two waiting for a resume.
  max_sessions_per_ip: 100
programs:
  - name: py
    title: Python
    description: An interactive Python interpreter.
    argv: [python3, -q]
  - name: bc
    title: bc calculator
    description: >-
      Arbitrary precision arithmetic, a description long enough to wrap over several lines of
      its card: try 2^100 or scale=50; 4*a(1), and quit to leave.
    argv: [bc, -q, -l]
  - name: sleepy
    title: Sleepy
    description: Closed after a second without input or output.
    argv: [cat]
    limits:
      idle_seconds: 1
  - name: digest
    title: Digest
    description: Reads a megabyte and prints its SHA-256.
    argv:
      - python3
      - -c
      - |
{digest}
"""


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupybotProcess]:
    workdir = tmp_path_factory.mktemp("page")
    digest = "".join(f"        {line}\n" for line in DIGEST.splitlines())
    process = JupybotProcess(CONFIG.format(workdir=workdir, digest=digest.rstrip("\n")), workdir)
    try:
        process.wait_listening()
        process.wait_for("terminal: running")
        yield process
    finally:
        process.stop()


def browse(server: JupybotProcess, scenario: str, tmp_path: Path) -> dict[str, Any]:
    shots = Path(os.environ.get("JUPYBOT_SCREENSHOTS", tmp_path)) / scenario
    result = subprocess.run(
        [sys.executable, "-m", "tests.terminal.browser", scenario, server.base_url + "/", shots],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    seen: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    assert seen.pop("page_errors") == []
    return seen


def test_a_visitor_runs_a_program_to_its_end_and_again(
    page_server: JupybotProcess, tmp_path: Path
) -> None:
    seen = browse(page_server, "walk", tmp_path)
    assert seen["heading"] == "Ada's programs"  # web.title
    assert seen["programs"] == ["Python", "bc calculator", "Sleepy", "Digest"]
    assert len(set(seen["card_heights"])) == 1  # equal cards, however long a description
    assert seen["favicon"] == 200
    assert seen["url"].endswith("/#py")  # each program has its address
    assert seen["renderer"] == "webgl"
    assert seen["columns_after"] < seen["columns_before"]  # fit-to-window resized the PTY
    assert seen["list_hidden"]
    assert seen["link_opened"] == "https://example.org/docs"
    assert seen["notice"] == "Program finished (exited with status 5)."
    assert seen["end_line"]
    assert seen["fresh_after_run_again"]


def test_reload_back_and_forward_return_to_the_same_program(
    page_server: JupybotProcess, tmp_path: Path
) -> None:
    seen = browse(page_server, "reload", tmp_path)
    assert seen["url_after_reload"].endswith("/#py")
    assert seen["same_session_after_reload"]
    assert seen["screen_kept"]
    assert seen["x_after_reload"]  # a variable set before the reload is still there
    assert seen["list_after_back"]
    assert seen["same_session_after_forward"]
    assert seen["x_after_forward"]
    assert seen["same_session_from_the_list"]


def test_a_session_gone_meanwhile_starts_afresh_below_the_old_screen(
    page_server: JupybotProcess, tmp_path: Path
) -> None:
    seen = browse(page_server, "stale", tmp_path)
    assert seen["old_screen_kept"]
    assert seen["new_session"]
    assert seen["fresh"]


def test_a_full_screen_program_survives_a_reload(
    page_server: JupybotProcess, tmp_path: Path
) -> None:
    seen = browse(page_server, "fullscreen", tmp_path)
    assert seen["buffer"] == "alternate"
    assert seen["drawn_again"]
    assert seen["key_reached_it"]


def test_a_megabyte_paste_arrives_whole(page_server: JupybotProcess, tmp_path: Path) -> None:
    seen = browse(page_server, "paste", tmp_path)
    assert seen["received_bytes"] == 1 << 20
    assert seen["received_sha256"] == seen["sent_sha256"]
    assert sum(seen["frames"]) == (1 << 20) + len(seen["frames"])  # a type byte each
    assert max(seen["frames"]) <= 64 * 1024  # terminal.max_frame_kb's default
    assert sum(seen["frames_at_once"]) <= (1 << 20) + 64 * 1024  # the rest as the socket drains


def test_a_silent_program_gets_a_hint(page_server: JupybotProcess, tmp_path: Path) -> None:
    seen = browse(page_server, "silent", tmp_path)
    assert "waiting for you" in seen["hint"]
    assert seen["answer"]
    assert seen["hint_hidden_after_typing"]


def test_a_lost_connection_does_not_look_live(page_server: JupybotProcess, tmp_path: Path) -> None:
    seen = browse(page_server, "outage", tmp_path)
    assert seen["notice"].startswith("Connection lost")
    assert seen["greyed"]
    assert seen["same_session"]
    assert seen["state_kept"]
    assert seen["notice_hidden"]


def test_a_session_closed_for_idleness_says_why(
    page_server: JupybotProcess, tmp_path: Path
) -> None:
    seen = browse(page_server, "idle", tmp_path)
    assert seen["notice"] == "This session was idle for 1 s and was closed."
    assert seen["state"] == "ended"
    assert seen["run_again"]
    assert not seen["takes_keys"]


def test_copy_and_paste_with_the_keyboard(page_server: JupybotProcess, tmp_path: Path) -> None:
    seen = browse(page_server, "clipboard", tmp_path)
    assert seen["copied"] == "copyme"
    assert seen["pasted_ran"]
    assert seen["native_paste_ran"]


def test_a_phone_held_sideways(page_server: JupybotProcess, tmp_path: Path) -> None:
    seen = browse(page_server, "touch", tmp_path)
    assert seen["keys_visible"]
    assert seen["fits"]
    assert seen["rows"] >= 8
    assert seen["ctrl_c"]
    assert seen["ctrl_armed"] == "true"
    assert seen["cleared"]  # Ctrl on the bar, then l: Ctrl-L
    assert seen["history_by_arrow"]


def test_without_webgl_the_page_still_draws(page_server: JupybotProcess, tmp_path: Path) -> None:
    seen = browse(page_server, "no-webgl", tmp_path)
    assert seen["renderer"] == "dom"
    assert seen["works"]


def test_phones_at_every_pixel_ratio_upright_and_sideways(
    page_server: JupybotProcess, tmp_path: Path
) -> None:
    seen = browse(page_server, "phones", tmp_path)
    for ratio in ("1x", "2x", "3x"):
        for orientation in ("portrait", "landscape"):
            shown = seen[ratio][orientation]
            where = f"{ratio} {orientation}: {shown}"
            # Its text is on the screen (WebGL drew nothing at 2x and 3x before the fallback),
            # and nothing where the screen is blank (glyphs drawn too large spill over).
            assert shown["characters"] >= 8, where
            assert shown["characters_drawn"] == shown["characters"], where
            assert shown["blank_cells_drawn"] <= 2, where
            # The rows and columns are the program's, and fill the room without overhanging.
            assert shown["pty"] == [shown["cols"], shown["rows"]], where
            left, top, right, bottom = shown["screen"]
            room_width, room_height = shown["room"]
            cell_width, cell_height = shown["cell"]
            assert 0 <= room_width - (right - left) < cell_width + shown["scrollbar"] + 1, where
            assert 0 <= room_height - (bottom - top) < cell_height, where
            assert shown["page_height"] <= shown["viewport"][1] + 1, where
            assert shown["keys_bottom"] <= shown["viewport"][1], where
            # 👍🏽 (thumbs up, skin tone) is one wide character: 2 cells, not 4.
            assert shown["emoji"] == [["\U0001f44d\U0001f3fd", 2], ["", 0]], where
        assert seen[ratio]["landscape"]["cols"] > seen[ratio]["portrait"]["cols"]
    # WebGL where it draws right; the DOM renderer where it does not.
    assert seen["1x"]["portrait"]["renderer"] == "webgl"
    assert seen["1x"]["landscape"]["renderer"] == "webgl"
