"""A terminal's PTY child does the launch's first steps itself (join the session's cgroups, set
its rlimits, drop to its uid with no groups and no new privileges) instead of exec'ing ``sh``
and ``setpriv``: what it execs, and every process of the session seen from the host, must still
be inside its cgroups, as its own uid and nothing more, under its rlimits."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from jupybot.config.terminal import ProgramConfig, ProgramLimits, TerminalConfig
from jupybot.sandbox import Launch, Limits, Sandbox, SandboxProfile
from jupybot.sandbox._rlimits import Rlimits
from jupybot.terminal import ExitStatus, TerminalSessions
from tests.conftest import prepared_sandbox

MEGABYTE = 1024 * 1024
# What file_size_mb=3 and cpu_seconds=9 give a session (the open files are the default's).
EXPECTED_LIMITS = Rlimits(
    (
        ("fsize", 3 * MEGABYTE),
        ("nofile", min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])),
        ("core", 0),
        ("cpu", 9),
    )
)


class Waiter:
    def __init__(self) -> None:
        self.data = bytearray()
        self.ready: Deferred[None] = Deferred()
        self.end: Deferred[ExitStatus] = Deferred()

    def output(self, data: bytes) -> None:
        self.data += data
        if b"ready" in self.data and not self.ready.called:
            self.ready.callback(None)

    def ended(self, status: ExitStatus) -> None:
        if not self.ready.called:
            self.ready.errback(AssertionError(f"ended first: {bytes(self.data)!r}"))
        self.end.callback(status)

    def stopped(self, reason: str, message: str) -> None:
        pass


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("uids of their own and cgroups need jupybot to run as root")
    for prepared in prepared_sandbox():
        if prepared.uids is None or prepared.cgroups is None:
            pytest.skip("no sandbox.uids or no cgroups here")
        yield prepared


def status_of(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def seen_from_the_host(launch: Launch, spawned: int | None) -> None:
    assert launch.forked is not None and launch.cgroup is not None
    pids = [int(pid) for pid in Path(launch.cgroup.procs_files[0]).read_text().split()]
    # bubblewrap, the sandbox's init and cat, at least; nothing of the session outside.
    assert spawned in pids and len(pids) >= 3, pids
    for procs in launch.cgroup.procs_files[1:]:
        assert sorted(int(pid) for pid in Path(procs).read_text().split()) == sorted(pids)
    uid = str(launch.uid)
    for pid in pids:
        status = status_of(pid)
        assert status["Uid"].split() == [uid] * 4, (pid, status["Uid"])
        assert status["Gid"].split() == [uid] * 4, (pid, status["Gid"])
        assert status["Groups"].strip() == "", (pid, status["Groups"])
        assert status["NoNewPrivs"].strip() == "1", pid
        limits_text = Path(f"/proc/{pid}/limits").read_text()
        assert EXPECTED_LIMITS.in_proc_limits(limits_text), (pid, limits_text)


@pytest_twisted.ensureDeferred
async def test_every_process_of_a_session_is_in_its_cgroup_as_its_uid_under_its_rlimits(
    sandbox: Sandbox,
) -> None:
    limits = ProgramLimits(file_size_mb=3, cpu_seconds=9)
    program = ProgramConfig(
        name="held",
        title="held",
        description="",
        argv=("sh", "-c", "echo ready; exec cat"),
        limits=limits,
    )
    sessions = TerminalSessions(reactor, TerminalConfig(), {"held": program}, sandbox)
    waiter = Waiter()
    # jupybot's user in a group (as root's usually are): the session must not be.
    groups = os.getgroups()
    os.setgroups([*groups, 4242])
    try:
        session = sessions.open("held", 80, 24, "127.0.0.1", waiter)
    finally:
        os.setgroups(groups)
    try:
        await waiter.ready
        seen_from_the_host(session.pty._launch, session.pty.pid)
    finally:
        session.stop("test", "done")
        await waiter.end


def test_the_forked_child_is_in_its_cgroups_as_its_uid_without_new_privileges_before_it_execs(
    sandbox: Sandbox,
) -> None:
    limits = Limits(file_size_mb=3, cpu_seconds=9)
    launch = sandbox.launch(
        SandboxProfile(argv=("/bin/true",), limits=limits), name=f"forked-{os.getpid()}"
    )
    assert launch.forked is not None and launch.cgroup is not None
    shown = "cat /proc/self/status /proc/self/limits /proc/self/cgroup"
    groups = os.getgroups()
    os.setgroups([*groups, 4242])
    try:
        # What the child execs first (unshare, then mount as a setuid program) shows this.
        result = subprocess.run(
            ["/bin/sh", "-c", shown],
            preexec_fn=launch.forked.prepare_child,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.setgroups(groups)
        launch.cgroup.kill_all()
        launch.cgroup.remove()
        launch.release()
    assert result.returncode == 0, result.stderr
    status = dict(line.split(":\t", 1) for line in result.stdout.splitlines() if ":\t" in line)
    uid = str(launch.uid)
    assert status["Uid"].split() == [uid] * 4 and status["Gid"].split() == [uid] * 4
    assert status["Groups"].strip() == ""
    assert status["NoNewPrivs"].strip() == "1"
    assert EXPECTED_LIMITS.in_proc_limits(result.stdout[result.stdout.index("Limit ") :])
    # memory, pids and cpu (v1), or the one group (v2): each a line of /proc/self/cgroup.
    name = launch.cgroup.directories[0].name
    joined = [line for line in result.stdout.splitlines() if line.endswith(f"/{name}")]
    assert len(joined) == len(launch.cgroup.directories), result.stdout


# Runs in a mount namespace whose mounts are shared (as systemd makes the host's): a session's
# forked child mounts its devpts instance, and the namespace it came from must not get it.
SHARED_HOST = """
import subprocess
import sys
from pathlib import Path
from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox import Sandbox, SandboxProfile

sandbox = Sandbox(SandboxConfig(uids="none"))
sandbox.prepare()
try:
    launch = sandbox.launch(SandboxProfile(argv=("/bin/true",)), name=None)
    assert launch.forked is not None and launch.forked.devpts is not None
    where = launch.forked.devpts[0]
    subprocess.run(["/bin/true"], preexec_fn=launch.forked.prepare_child, check=True)
    mounted = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if f" {where} " in line]
    print(len(mounted))
finally:
    sandbox.close()
"""


def test_the_devpts_instance_a_forked_child_mounts_stays_in_its_own_namespace(
    sandbox: Sandbox,
) -> None:
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "shared", sys.executable, "-c", SHARED_HOST],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", result.stdout
