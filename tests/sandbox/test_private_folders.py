"""A clone anywhere works (issue 29): what a sandbox needs may sit below a folder its user may not
enter (root's 0700 home, a `mktemp -d`), and jupybot, as root, still shows it to the sandbox,
through a mount namespace of its own where that folder holds only what is shown
(jupybot/sandbox/view.py). Nothing else of the folder is reachable, from a program or from the
view itself.

As root only: otherwise the sandboxes run as jupybot's own user, who reaches its folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_twisted
from twisted.internet import reactor

from jupybot.config.kernels import GatewayConfig
from jupybot.config.sandbox import SandboxConfig
from jupybot.kernels import ExecuteResult, GatewayKernelManager
from jupybot.kernels.embedded import EmbeddedGateway
from jupybot.kernels.part import kernel_limits
from jupybot.sandbox import Sandbox, SandboxProfile
from jupybot.sandbox.kernels import kernel_sandbox_plan
from jupybot.sandbox.view import blocked_folder, outermost
from tests.harness import JupybotProcess, jupybot_config
from tests.kernels.kernel_python import jupybot_umask, make_venv
from tests.kernels.listener import RecordingListener
from tests.matrix.user import asyncio_test

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="as root only: sandboxes drop to others")

SECRET = "private-folder-secret-29"
# A program of the owner's, next to a file it reads; asks a name, greets, tells what of the
# checkout above it it can see.
GREET = """
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
greeting = open(os.path.join(here, "greeting.txt")).read().strip()
name = input("name? ")
print(greeting, name)
clone = os.path.dirname(here)
print("seen:", json.dumps(sorted(os.listdir(clone))) if os.path.isdir(clone) else "[]")
print("secret:", os.path.exists(os.path.join(clone, "config.yml")))
print("fds:", sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
"""


@pytest.fixture
def private() -> Iterator[Path]:
    """A folder only root may enter, as `mktemp -d` makes it (or root's home), holding a
    checkout anyone could read were it not for that folder: `a clone/` (names with spaces),
    its `config.yml` (a secret) and a program's folder, `game dir/`."""
    folder = Path(tempfile.mkdtemp(prefix="jupybot-private-"))
    assert folder.stat().st_mode & 0o777 == 0o700
    clone = folder / "a clone"
    game = clone / "game dir"
    game.mkdir(parents=True)
    for path in (clone, game):
        path.chmod(0o755)
    files = {
        folder / "secret.txt": SECRET,
        clone / "config.yml": f"token: {SECRET}\n",
        game / "greet.py": GREET,
        game / "greeting.txt": "hello\n",
    }
    for path, text in files.items():
        path.write_text(text)
        path.chmod(0o644)  # readable by all: only the folder above keeps them
    # A symlink pointing out of what is shown, into the rest of the checkout.
    (game / "link").symlink_to("../config.yml")
    yield folder
    shutil.rmtree(folder)


def prepared() -> Sandbox:
    """A sandbox prepared as jupybot prepares it (with its umask: 077)."""
    sandbox = Sandbox(SandboxConfig())
    with jupybot_umask():
        sandbox.prepare()
    return sandbox


def test_the_topmost_folder_others_may_not_enter_is_covered() -> None:
    tmp_path = Path(tempfile.mkdtemp())
    tmp_path.chmod(0o755)
    inner = tmp_path / "a" / "b" / "c"
    inner.mkdir(parents=True)
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        folder.chmod(0o700)
    assert blocked_folder(str(inner)) == str(tmp_path / "a")
    (tmp_path / "a").chmod(0o711)  # passable: the next one keeps them out
    assert blocked_folder(str(inner)) == str(tmp_path / "a" / "b")
    (tmp_path / "a" / "b").chmod(0o701)
    assert blocked_folder(str(inner)) is None
    inner.chmod(0o700)  # the path's own mode is its own business
    assert blocked_folder(str(inner)) is None
    assert outermost(["/r/x/y", "/r/x", "/r/xy", "/r/x"]) == ["/r/x", "/r/xy"]
    shutil.rmtree(tmp_path)


@as_root
def test_a_program_below_a_private_folder_runs_and_sees_nothing_else_of_it(
    private: Path,
) -> None:
    clone = private / "a clone"
    game = clone / "game dir"
    sandbox = prepared()
    try:
        # What the chain's own sandbox user (nobody, or a leased uid) could not do before:
        # "Can't find source path .../game dir: Permission denied".
        script = 'cat "$0/greeting.txt"; ls -A "$1"; cat "$1/config.yml" "$0/link" 2>&1; ls /proc/self/fd'
        profile = SandboxProfile(
            argv=("/bin/sh", "-c", script, str(game), str(clone)), read_only=(str(game),)
        )
        with jupybot_umask():
            launch = sandbox.launch(profile, name=None)
        result = subprocess.run(
            launch.argv, env=launch.env, capture_output=True, text=True, timeout=60, check=False
        )
        lines = result.stdout.splitlines()
        assert lines[:2] == ["hello", "game dir"], result.stdout + result.stderr
        assert SECRET not in result.stdout
        assert "No such file or directory" in lines[2] and "No such file or directory" in lines[3]
        assert lines[4:] == ["0", "1", "2", "3"]  # no descriptor of jupybot's came in
        assert sandbox.view is not None and sandbox.view.shown == {str(game): str(private)}

        # The view itself (where the chain drops privileges, and the embedded gateway runs):
        # the private folder holds the way to what is shown, nothing else.
        look = (
            'ls -A "$0" "$0/a clone"; cat "$0/secret.txt" "$0/a clone/config.yml" '
            '"$0/a clone/game dir/link"; mkdir "$0/x"'
        )
        seen = subprocess.run(
            [
                *sandbox.view.enter(),
                *("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"),
                *("sh", "-c", look, str(private)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        listed = [line for line in seen.stdout.splitlines() if line]
        assert listed == [f"{private}:", "a clone", f"{clone}:", "game dir"], seen.stderr
        assert SECRET not in seen.stdout
        assert "Read-only file system" in seen.stderr or "Permission denied" in seen.stderr
        # Outside the view, the host is as it was.
        assert private.stat().st_mode & 0o777 == 0o700
        assert sorted(p.name for p in private.iterdir()) == ["a clone", "secret.txt"]
    finally:
        sandbox.close()


@as_root
def test_without_the_view_the_same_program_cannot_run(private: Path) -> None:
    """The control: the same launch, its view left out, fails as issue 29 saw it."""
    game = private / "a clone" / "game dir"
    sandbox = prepared()
    try:
        profile = SandboxProfile(
            argv=("/bin/cat", str(game / "greeting.txt")), read_only=(str(game),)
        )
        sandbox.view = None
        assert (
            sandbox.try_run(profile) == f"bwrap: Can't find source path {game}: Permission denied"
        )
    finally:
        sandbox.close()


@as_root
def test_a_path_that_is_itself_private_is_still_refused(private: Path) -> None:
    """The view opens the folders above what a program lists, never the path itself."""
    game = private / "a clone" / "game dir"
    game.chmod(0o700)
    sandbox = prepared()
    try:
        profile = SandboxProfile(
            argv=("/bin/cat", str(game / "greeting.txt")), read_only=(str(game),)
        )
        error = sandbox.try_run(profile)
        assert error is not None and "Permission denied" in error
    finally:
        sandbox.close()


LINE_MODE_PROGRAMS = """
programs:
  - name: greet
    argv: [python3, "{game}/greet.py"]
    files: ["{game}"]
"""


@pytest.fixture
def server(private: Path, tmp_path: Path) -> Iterator[JupybotProcess]:
    catalogue = LINE_MODE_PROGRAMS.replace("{game}", str(private / "a clone" / "game dir"))
    # jupybot's own state too is below a folder only root may enter (pytest's tmp_path).
    process = JupybotProcess(
        jupybot_config(tmp_path, catalogue + "gateway: {url: 'http://127.0.0.1:9'}\n"), tmp_path
    )
    try:
        process.wait_listening()
        process.wait_for("terminal: running")
        yield process
    finally:
        process.stop()


@as_root
@asyncio_test
async def test_a_program_in_a_private_folder_answers_in_line_mode(server: JupybotProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.base_url}/ping") as response:
            ping = await response.json()
        assert ping["services"]["terminal"] == "running", ping
        assert "not available" not in ping.get("details", {}).get("terminal", ""), ping
        url = server.base_url.replace("http://", "ws://") + "/terminal/line"
        async with http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"event": "initialize", "program": "greet"}))
            assert await answer(ws) == "name? "
            await ws.send_str(json.dumps({"event": "command", "input": "Ada"}))
            lines = (await answer(ws)).splitlines()
    assert lines[0] == "hello Ada", lines
    assert lines[1] == 'seen: ["game dir"]', lines
    assert lines[2] == "secret: False", lines
    assert lines[3] == "fds: [0, 1, 2, 3]", lines


async def answer(ws: aiohttp.ClientWebSocketResponse) -> str:
    text = ""
    while True:
        message = await ws.receive(timeout=30)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        event = json.loads(message.data)
        assert event["event"] in ("output", "exit"), event
        text += str(event.get("output", ""))
        if event["event"] == "exit":
            return text
        if not event.get("more"):
            return text


@as_root
@pytest_twisted.ensureDeferred
async def test_a_kernel_runs_from_a_venv_below_a_private_folder(
    private: Path, tmp_path: Path
) -> None:
    """The embedded gateway (as nobody) and its kernel run a Python whose virtualenv sits
    below a 0700 folder: a venv made there in a moment (no pip), with jupybot's own packages
    through a .pth."""
    venv = make_venv(private / "a clone" / ".venv")
    sandbox = prepared()
    limits = kernel_limits(GatewayConfig(url=None, token=None))
    with jupybot_umask():
        plan = kernel_sandbox_plan(
            sandbox, limits, False, prefixes=(str(venv), sys.prefix, sys.base_prefix)
        )
    assert str(venv) in plan.read_only and plan.view, plan
    gateway = EmbeddedGateway(
        reactor,
        tmp_path / "runtime",
        on_ready=lambda *_: None,
        on_restart=lambda: None,
        python=str(venv / "bin" / "python"),
    )
    try:
        with jupybot_umask():
            started = gateway.start(plan)
        url = await started
        manager = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None))
        manager.connect(url, gateway.token)
        try:
            listener = RecordingListener()
            code = "import sys, os; print(sys.prefix); print(os.listdir(os.path.dirname(sys.prefix))); 1+1"
            result = await manager.execute("room", code, listener).addTimeout(120, reactor)
            assert result.status == "ok", listener.events
            [value] = listener.of_type(ExecuteResult)
            assert isinstance(value, ExecuteResult) and value.data["text/plain"] == "2"
            printed = listener.text()
            # The kernel sees the venv, and nothing else of the checkout.
            assert printed.splitlines()[:2] == [str(venv), "['.venv']"], printed
        finally:
            await manager.shutdown_all()
    finally:
        await gateway.stop()
        sandbox.close()
