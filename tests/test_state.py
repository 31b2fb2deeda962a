"""What jupybot keeps in storage.path is readable by its owner only: files 0600, folders 0700.

The server is started with a umask of 022, as a login shell has it, so nothing here passes
because of the umask the tests happen to run with.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.request
from pathlib import Path

import pytest

from jupybot.state import make_private

from .harness import JupybotProcess, jupybot_config
from .test_twistd import twistd

CONTACT = """
contact:
  deliver_to: [file]
gateway:
  url: http://127.0.0.1:9
terminal:
  enabled: false
"""


def modes(top: Path) -> dict[str, int]:
    """Every path below C{top} (and C{top} itself as "."), with its permission bits."""
    found = {".": stat.S_IMODE(top.stat().st_mode)}
    for path in top.rglob("*"):
        found[str(path.relative_to(top))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def start_with_lax_umask(workdir: Path) -> JupybotProcess:
    previous = os.umask(0o022)
    try:
        return JupybotProcess(jupybot_config(workdir, CONTACT), workdir)
    finally:
        os.umask(previous)


@pytest.mark.peers
def test_every_file_below_the_state_directory_is_private(tmp_path: Path) -> None:
    state = tmp_path / "var"
    # What an older version left behind: readable by everyone.
    (state / "matrix-store").mkdir(parents=True)
    (state / "matrix-session.json").write_text("{}")
    (state / "matrix-store" / "@bot:example.org_DEVICE.db").write_bytes(b"")
    for path, mode in [
        (state, 0o755),
        (state / "matrix-store", 0o755),
        (state / "matrix-session.json", 0o644),
        (state / "matrix-store" / "@bot:example.org_DEVICE.db", 0o644),
    ]:
        path.chmod(mode)

    server = start_with_lax_umask(tmp_path)
    try:
        server.wait_listening()
        server.wait_for("contact: running")
        request = urllib.request.Request(
            server.base_url + "/contact",
            data=json.dumps({"name": "Ann", "email": "ann@example.org", "message": "hi"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        server.wait_for("contact: message .* delivered to file")
        # While the server runs: SQLite's -wal and -shm exist only while the database is open.
        found = modes(state)
    finally:
        server.stop()

    assert {"contact.sqlite3-wal", "contact.sqlite3-shm", "contact-messages.jsonl"} <= set(found)
    folders = {name for name in found if (state / name).is_dir()}
    assert {name: mode for name, mode in found.items() if name in folders} == dict.fromkeys(
        folders, 0o700
    )
    assert {name: mode for name, mode in found.items() if name not in folders} == dict.fromkeys(
        set(found) - folders, 0o600
    )


def test_make_private_leaves_what_a_link_points_to_alone(tmp_path: Path) -> None:
    outside = tmp_path / "shared.txt"
    outside.write_text("not ours to change")
    outside.chmod(0o644)
    state = tmp_path / "var"
    (state / "store").mkdir(parents=True)
    (state / "store" / "script").write_text("")
    (state / "store" / "script").chmod(0o755)
    (state / "link").symlink_to(outside)
    state.chmod(0o755)

    make_private(state)

    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "store").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "store" / "script").stat().st_mode) == 0o700
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644


def test_a_umask_that_lets_others_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(jupybot_config(tmp_path))
    result = twistd(
        "-n", "--umask", "022", "jupybot", "--config", str(tmp_path / "config.yml"), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "--umask 0022 would let other users read" in result.stderr
    assert not (tmp_path / "var").exists()
