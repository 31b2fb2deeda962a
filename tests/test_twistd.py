"""`twistd jupybot` as a user runs it: the plugin, the reactor, /ping, shutdown."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import urllib.request
from pathlib import Path

from .harness import VENV_BIN, JupybotProcess, descendants, jupybot_config


def get_json(url: str) -> tuple[int, str, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["content-type"], json.load(response)


def twistd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "twistd"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_twistd_lists_the_plugin() -> None:
    result = twistd("--help")
    assert result.returncode == 0
    assert "jupybot" in result.stdout


def test_ping_names_the_asyncio_reactor(jupybot: JupybotProcess) -> None:
    status, content_type, body = get_json(jupybot.base_url + "/ping")
    assert status == 200
    assert content_type == "application/json"
    assert body["status"] == "ok"
    assert body["reactor"] == "AsyncioSelectorReactor"
    services = body["services"]
    assert isinstance(services, dict)
    assert services["web"] == "running"
    assert services["matrix"] == "disabled"
    # Which containment is in force, as the start-up log says it.
    assert body["details"]["sandbox"].startswith("bubblewrap as ")


def test_explicit_asyncio_reactor_is_accepted(tmp_path: Path) -> None:
    process = JupybotProcess(jupybot_config(tmp_path), tmp_path, twistd_args=["-r", "asyncio"])
    try:
        url = process.wait_listening()
        assert get_json(url + "/ping")[2]["reactor"] == "AsyncioSelectorReactor"
    finally:
        process.stop()


def test_any_other_reactor_is_a_one_line_usage_error(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(jupybot_config(tmp_path))
    result = twistd("-r", "select", "jupybot", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "twistd jupybot: jupybot runs on the asyncio reactor, not SelectReactor; "
        "use '-r asyncio' or no -r at all"
    ]


def test_sigterm_stops_cleanly_and_leaves_no_child(jupybot: JupybotProcess) -> None:
    children_before = descendants(jupybot.pid)
    jupybot.signal(signal.SIGTERM)
    # After a clean stop, twistd ends itself with the signal it received, as a shell expects.
    assert jupybot.wait(30) == -signal.SIGTERM
    jupybot.wait_for("Server Shut Down")
    leftovers = [pid for pid in children_before if Path(f"/proc/{pid}").exists()]
    assert leftovers == []


def test_state_directory_is_private(jupybot: JupybotProcess, tmp_path: Path) -> None:
    assert (tmp_path / "var").stat().st_mode & 0o777 == 0o700


def wait_for_exit(pid: int, timeout: float) -> None:
    """Wait for a process that is not our child to exit (a pidfd becomes readable then)."""
    fd = os.pidfd_open(pid)
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        assert readable, f"process {pid} still running after {timeout}s"
    finally:
        os.close(fd)


def test_daemon_mode_writes_pidfile_and_logfile(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(jupybot_config(tmp_path))
    pidfile, logfile = tmp_path / "jupybot.pid", tmp_path / "jupybot.log"
    # The twistd parent returns once the daemon has started its services.
    result = twistd(
        "--pidfile",
        str(pidfile),
        "--logfile",
        str(logfile),
        "jupybot",
        "--config",
        str(tmp_path / "config.yml"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    pid = int(pidfile.read_text())
    try:
        match = re.search(r"web: listening on (http://\S+)/", logfile.read_text())
        assert match, logfile.read_text()
        assert get_json(match.group(1) + "/ping")[2]["reactor"] == "AsyncioSelectorReactor"
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for_exit(pid, 30)
    assert not pidfile.exists()
    assert "Server Shut Down" in logfile.read_text()


def test_sigint_stops_cleanly(jupybot: JupybotProcess) -> None:
    jupybot.signal(signal.SIGINT)
    assert jupybot.wait(30) == -signal.SIGINT
    jupybot.wait_for("Server Shut Down")


def test_other_plugins_are_unaffected(tmp_path: Path) -> None:
    # Loading the jupybot plugin must not install a reactor or import the package.
    result = twistd("web", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--listen" in result.stdout
