"""`twistd jupybot` as a user runs it: the plugin, the reactor, /ping, shutdown."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
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


# Run in a fresh interpreter: this one has pytest-twisted's reactor installed already.
_LOAD_THE_PLUGIN = """
import json, sys
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
import twisted.plugins
names = [maker.tapname for maker in getPlugins(IServiceMaker, twisted.plugins)]
print(json.dumps({"tapnames": names, "modules": sorted(sys.modules)}))
"""


def test_loading_the_plugin_neither_installs_a_reactor_nor_imports_jupybot() -> None:
    loaded = subprocess.run(
        [str(VENV_BIN / "python"), "-c", _LOAD_THE_PLUGIN],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(loaded.stdout)
    assert "jupybot" in seen["tapnames"]
    assert "twisted.internet.reactor" not in seen["modules"]
    assert [name for name in seen["modules"] if name.split(".")[0] == "jupybot"] == []


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
    details = body["details"]
    assert isinstance(details, dict)
    assert details["sandbox"].startswith("bubblewrap as ")


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


def logged(logfile: Path, pattern: str, timeout: float) -> re.Match[str]:
    """The first match of C{pattern} in the daemon's log file, read as it grows."""
    deadline = time.monotonic() + timeout
    while (match := re.search(pattern, logfile.read_text())) is None:
        assert time.monotonic() < deadline, logfile.read_text()
        time.sleep(0.1)
    return match


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
        # The site listens once the parts are up, which may be after the parent returned.
        match = logged(logfile, r"web: listening on (http://\S+)/", 60)
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


LOAD_PLUGINS = """
import json, sys
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
print(json.dumps({
    "tapnames": sorted(makers),
    "loaded": "twisted.plugins.jupybot_plugin" in sys.modules,
    "reactor": "twisted.internet.reactor" in sys.modules,
    "jupybot": sorted(m for m in sys.modules if m.partition(".")[0] == "jupybot"),
}))
"""


def test_loading_the_plugin_installs_no_reactor_and_imports_no_jupybot(tmp_path: Path) -> None:
    # As twistd does before it knows which plugin it will run: every plugin is loaded, so
    # `twistd web` must not pay for, or be changed by, jupybot's imports and reactor.
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-c", LOAD_PLUGINS],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "jupybot" in loaded["tapnames"] and "web" in loaded["tapnames"]
    assert loaded["loaded"]
    assert loaded["reactor"] is False
    assert loaded["jupybot"] == []


def test_other_plugins_are_unaffected(tmp_path: Path) -> None:
    result = twistd("web", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--listen" in result.stdout
