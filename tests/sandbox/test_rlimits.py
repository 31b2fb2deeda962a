"""A sandboxed program's rlimits, now set by the launch's first sh (its ulimit) rather than by
an exec'd prlimit: the program must run under exactly what prlimit gave it, and a host whose sh
sets something else must keep prlimit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from jupybot.config.sandbox import SandboxConfig
from jupybot.sandbox import Limits, Sandbox, SandboxProfile, SandboxUnavailable
from jupybot.sandbox._rlimits import Rlimits, shell_sets

MEGABYTE = 1024 * 1024
LIMITS = Limits(memory_mb=100, file_size_mb=3, open_files=77, cpu_seconds=9)


def test_each_limit_reads_as_prlimit_and_ulimit_would_set_it() -> None:
    limits = Rlimits((("fsize", 3 * MEGABYTE), ("nofile", 77), ("as", 100 * MEGABYTE)))
    assert limits.prlimit_options() == [
        f"--fsize={3 * MEGABYTE}",
        "--nofile=77",
        f"--as={100 * MEGABYTE}",
    ]
    # dash's units: 512-byte blocks for file sizes, kilobytes for the address space.
    assert limits.ulimit_arguments() == ["-f", "6144", "-n", "77", "-v", "102400"]
    shown = Path(f"/proc/{os.getpid()}/limits").read_text()
    assert not Rlimits((("nofile", 77),)).in_proc_limits(shown)


def test_a_shell_that_does_not_set_them_keeps_prlimit() -> None:
    ignoring = 'while [ "$1" != -- ]; do shift 2; done; shift; exec "$@"'
    limits = Rlimits((("nofile", 77),))
    assert not shell_sets(["/bin/sh", "-c", ignoring, "jupybot-join"], limits)


@pytest.fixture(params=["auto", "off"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    sandbox = Sandbox(SandboxConfig(cgroups=request.param))
    try:
        sandbox.prepare()
    except SandboxUnavailable as e:  # a host without namespaces
        pytest.skip(f"no sandbox here: {e}")
    request.addfinalizer(sandbox.close)
    return sandbox


def test_a_sandboxed_program_runs_under_its_rlimits(sandbox: Sandbox) -> None:
    profile = SandboxProfile(argv=("/bin/cat", "/proc/self/limits"), limits=LIMITS)
    launch = sandbox.launch(profile, name=f"rlimits-{os.getpid()}")
    try:
        result = subprocess.run(launch.argv, env=launch.env, capture_output=True, timeout=60)
    finally:
        if launch.cgroup is not None:
            launch.cgroup.kill_all()
            launch.cgroup.remove()
        launch.release()
    assert result.returncode == 0, result.stderr
    expected = [("fsize", 3 * MEGABYTE), ("nofile", 77), ("core", 0), ("cpu", 9)]
    if launch.cgroup is None:
        # rlimits are all there is: the memory is an address space, the processes a backstop.
        expected += [("as", 100 * MEGABYTE), ("nproc", 1024)]
    shown = result.stdout.decode()
    assert Rlimits(tuple(expected)).in_proc_limits(shown), shown
    if os.path.realpath("/bin/sh").endswith("dash"):
        # Set by the first sh: no prlimit exec'd on the way.
        assert not any(Path(arg).name == "prlimit" for arg in launch.argv)
