"""A visitor's program attacks its sandbox; every attack must be refused.

Each attack runs as a real sandboxed session (bubblewrap, setpriv, cgroups: what this host
allows), through the terminal core. The harmless ones also run with ``sandbox.mode: none``, where
they must succeed: that shows each test fails with the protection switched off.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from jupybot.config.terminal import ProgramConfig, ProgramLimits, TerminalConfig
from jupybot.sandbox import Sandbox
from jupybot.terminal import ExitStatus, TerminalSessions
from jupybot.terminal.programs import program_problems
from tests.conftest import prepared_sandbox

MARKER = "jupybot-test-secret-3f9c1d"
ATTACKS = Path(__file__).with_name("attacks.py").read_text()


class Collector:
    def __init__(self) -> None:
        self.data = bytearray()
        self.end: Deferred[ExitStatus] = Deferred()

    def output(self, data: bytes) -> None:
        self.data += data

    def ended(self, status: ExitStatus) -> None:
        self.end.callback(status)

    def stopped(self, reason: str, message: str) -> None:
        pass


@pytest.fixture(scope="module")
def unsandboxed() -> Iterator[Sandbox]:
    yield from prepared_sandbox("none")


@pytest.fixture(scope="module")
def server_pid() -> Iterator[int]:
    """A process standing for jupybot: its environment holds a secret, as jupybot's holds the
    bot tokens (/proc shows the environment a process started with)."""
    process = subprocess.Popen(["sleep", "600"], env={"JUPYBOT_TEST_SECRET": MARKER})
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of jupybot's (config.yml, var/): readable by any local user, as a careless
    checkout leaves it."""
    directory = tmp_path_factory.mktemp("state")
    directory.chmod(0o755)
    path = directory / "config.yml"
    path.write_text(f"token: {MARKER}\n")
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A loopback port of jupybot's (its site, the gateway)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


async def attack(sandbox: Sandbox, name: str, *args: object, limits: ProgramLimits | None = None, may_die: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run one attack of attacks.py in a fresh session; its JSON verdict. With C{may_die}, a
    program killed (at its memory limit) is a refused attack."""
    program = ProgramConfig(
        name="attack",
        title="attack",
        description="",
        argv=("python3", "-c", ATTACKS, name, *map(str, args)),
        limits=limits or ProgramLimits(),
    )
    sessions = TerminalSessions(reactor, TerminalConfig(), {"attack": program}, sandbox)
    viewer = Collector()
    sessions.open("attack", 200, 50, "127.0.0.1", viewer)
    status = await viewer.end
    assert len(sessions) == 0
    text = viewer.data.decode("utf-8", "replace")
    if may_die and status.signal == signal.SIGKILL:
        return {"succeeded": False, "killed": True}  # at its cgroup's limit
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, f"attack {name} printed no verdict: {text!r}"
    verdict: dict[str, Any] = json.loads(lines[-1])
    return verdict


HARMLESS = ["environ", "read", "processes", "signal", "ptrace", "connect", "write_outside"]


def attack_args(name: str, secret_file: Path, listener: int, server_pid: int) -> tuple[object, ...]:
    return {
        "environ": (MARKER,),
        "read": (secret_file, MARKER),
        "processes": (server_pid,),
        "signal": (server_pid,),
        "ptrace": (server_pid,),
        "connect": (listener,),
        "write_outside": (secret_file.parent,),
    }[name]


@pytest.mark.parametrize("name", HARMLESS)
@pytest_twisted.ensureDeferred
async def test_harmless_attacks_are_refused_and_work_without_the_sandbox(
    name: str,
    sandbox: Sandbox,
    unsandboxed: Sandbox,
    secret_file: Path,
    listener: int,
    server_pid: int,
) -> None:
    args = attack_args(name, secret_file, listener, server_pid)
    contained = await attack(sandbox, name, *args)
    assert contained["succeeded"] is False, contained
    # The same attack without the sandbox: this is what the test guards against.
    exposed = await attack(unsandboxed, name, *args)
    assert exposed["succeeded"] is True, exposed


@pytest_twisted.ensureDeferred
async def test_no_root_no_capabilities_no_new_privileges(sandbox: Sandbox) -> None:
    verdict = await attack(sandbox, "identity")
    assert verdict["uid"] == 1000 and verdict["euid"] == 1000
    assert verdict["cap_eff"] == "0000000000000000"
    assert verdict["no_new_privs"] == "1"
    assert verdict["shadow"] is False
    assert verdict["nested_userns"] is False
    assert verdict["etc"] == sorted(verdict["etc"])  # a small, known /etc
    assert not {"shadow", "gshadow", "sudoers", "ssh", "machine-id"} & set(verdict["etc"])


@pytest_twisted.ensureDeferred
async def test_a_session_leaves_nothing_for_the_next_visitor(sandbox: Sandbox) -> None:
    first = await attack(sandbox, "leave_files")
    assert first["succeeded"] is True  # it may write in its own /tmp and home...
    second = await attack(sandbox, "find_files")
    assert second["succeeded"] is False, second  # ...which vanish with it


@pytest_twisted.ensureDeferred
async def test_a_fork_bomb_stops_at_the_session_limit(sandbox: Sandbox) -> None:
    if sandbox.cgroups is None:
        pytest.skip(
            "no cgroups here (a normal user on cgroup v1, or v2 not delegated): a session's "
            "process limit is RLIMIT_NPROC's backstop of 1024 shared by every sandbox of the "
            "user, so a fork bomb stops there, not at the session's 32 (docs/terminal.md)"
        )
    verdict = await attack(sandbox, "fork_bomb", 500, limits=ProgramLimits(processes=32))
    assert verdict["succeeded"] is False, verdict
    assert isinstance(verdict["started"], int) and verdict["started"] < 32
    # Another session still starts and answers.
    assert (await attack(sandbox, "identity"))["uid"] == 1000


@pytest_twisted.ensureDeferred
async def test_a_memory_hog_stops_at_the_session_limit(sandbox: Sandbox) -> None:
    verdict = await attack(
        sandbox, "memory_hog", 2048, limits=ProgramLimits(memory_mb=128), may_die=True
    )
    assert verdict["succeeded"] is False, verdict
    assert (await attack(sandbox, "identity"))["uid"] == 1000


@pytest_twisted.ensureDeferred
async def test_no_network_at_all(sandbox: Sandbox) -> None:
    verdict = await attack(sandbox, "interfaces")
    assert verdict["interfaces"] == ["lo"]


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="as root only: as a normal user the sandbox runs as jupybot's own user, who reads "
    "whatever jupybot's user can, so no folder is closed to the sandbox and open to jupybot",
)
def test_a_program_the_sandbox_user_cannot_read_is_refused_at_start(
    sandbox: Sandbox,
) -> None:
    private = Path(tempfile.mkdtemp())  # 0700: the sandbox user may not enter
    game = private / "game"
    game.write_text("#!/bin/sh\necho hi\n")
    game.chmod(0o755)
    program = ProgramConfig(
        name="game", title="Game", description="", argv=(str(game),), files=(str(private),)
    )
    (problem,) = program_problems(program, sandbox, "programs[0]")
    assert problem.startswith("programs[0]: cannot run in its sandbox (")
    private.chmod(0o755)
    assert program_problems(program, sandbox, "programs[0]") == []
    shutil.rmtree(private)


@pytest_twisted.ensureDeferred
async def test_in_memory_folders_hold_no_more_than_the_session_memory_without_cgroups() -> None:
    for rlimits_only in prepared_sandbox(cgroups="off"):
        verdict = await attack(
            rlimits_only,
            "fill_memory_files",
            200,
            limits=ProgramLimits(memory_mb=96, file_size_mb=200),
        )
        assert verdict["succeeded"] is False and verdict["stored_mb"] <= 96, verdict
