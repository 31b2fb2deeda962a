"""The kernels' sandbox plan: what jupybot refuses before it starts the embedded gateway, and
what the gateway reads back."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from jupybot.config import ConfigError, parse_config
from jupybot.config.kernels import GatewayConfig
from jupybot.config.sandbox import SandboxConfig
from jupybot.kernels import KernelsPart
from jupybot.kernels.part import kernel_limits
from jupybot.sandbox import Limits, Sandbox, SandboxUnavailable
from jupybot.sandbox.kernels import (
    KernelSandboxPlan,
    interpreter_paths,
    kernel_sandbox_plan,
    unreachable,
)
from jupybot.state import StateDirectory

# A user id that is neither the tests' nor the owner of anything here.
STRANGER = 54321


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory anyone may enter (pytest's own tmp_path sits in a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="jupybot-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def plan_for(
    sandbox: Sandbox, config: GatewayConfig, prefixes: tuple[str, ...]
) -> KernelSandboxPlan:
    return kernel_sandbox_plan(sandbox, kernel_limits(config), config.kernel_network, prefixes)


def test_the_kernels_limits_and_network_are_configured() -> None:
    defaults = parse_config("", environ={}).gateway
    assert (defaults.kernel_network, defaults.kernel_memory_mb, defaults.kernel_processes) == (
        False,
        1024,
        128,
    )
    text = "gateway: {kernel_network: true, kernel_memory_mb: 2048, kernel_processes: 64}"
    gateway = parse_config(text, environ={}).gateway
    assert (gateway.kernel_network, gateway.kernel_memory_mb, gateway.kernel_processes) == (
        True,
        2048,
        64,
    )
    with pytest.raises(ConfigError) as caught:
        parse_config("gateway: {kernel_memory_mb: 100, kernel_network: 'yes'}", environ={})
    assert [e.split(":")[0] for e in caught.value.errors] == [
        "gateway.kernel_network",
        "gateway.kernel_memory_mb",
    ]


def test_the_interpreter_is_shown_unless_the_sandbox_shows_it_anyway(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    assert interpreter_paths((str(venv), "/usr", str(venv))) == (str(venv),)
    assert interpreter_paths(("/usr/local", "/usr")) == ()


def test_a_directory_the_sandbox_user_cannot_enter_is_named(open_dir: Path) -> None:
    private = open_dir / "home"
    python = private / "python"
    python.mkdir(parents=True)
    python.chmod(0o755)
    private.chmod(0o700)
    assert unreachable(str(python), STRANGER, STRANGER) == (
        f"{private} is mode drwx------ and owned by uid {os.getuid()}"
    )
    assert unreachable(str(python), os.getuid(), os.getgid()) is None  # its owner may
    private.chmod(0o711)  # searchable is enough on the way...
    assert unreachable(str(python), STRANGER, STRANGER) is None
    python.chmod(0o711)  # ...but the interpreter's own directory must be listable
    assert unreachable(str(python), STRANGER, STRANGER) == (
        f"{python} is mode drwx--x--x and owned by uid {os.getuid()}"
    )


def test_the_plan_travels_as_json(sandbox: Sandbox, open_dir: Path) -> None:
    config = GatewayConfig(url=None, token=None, kernel_network=True)
    plan = plan_for(sandbox, config, (str(open_dir),))
    assert KernelSandboxPlan.from_json(plan.to_json()) == plan
    assert plan.network is True and plan.sandboxed
    assert plan.read_only == (str(open_dir),)
    assert "the host's network, 1024 MB, 128 processes, 100% of a core" in plan.describe()
    assert plan.limits == Limits(
        memory_mb=1024, processes=128, cpu_percent=100, cpu_seconds=0, file_size_mb=1024
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox runs as jupybot's own user")
def test_a_python_the_sandbox_user_cannot_read_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    with pytest.raises(SandboxUnavailable, match=r"cannot be read by the sandbox user nobody"):
        plan_for(sandbox, GatewayConfig(url=None, token=None), (str(tmp_path),))


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox runs as jupybot's own user")
@pytest_twisted.ensureDeferred
async def test_the_kernels_part_fails_saying_why(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As it does here with a virtualenv made from a Python under /root (0700)."""
    private = tmp_path / "pyenv"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(sys, "base_prefix", str(private))
    state = StateDirectory(tmp_path / "var")
    state.ensure()
    part = KernelsPart(GatewayConfig(url=None, token=None), reactor, state, sandbox)
    part.startService()
    try:
        assert part.status.startswith("failed: the kernels' Python at")
        assert "make setup" in part.status and "sandbox user nobody" in part.status
        assert part.embedded is not None and part.embedded.pid is None  # no gateway started
    finally:
        await part.stopService()


@pytest_twisted.ensureDeferred
async def test_the_kernels_part_fails_without_a_sandbox(tmp_path: Path) -> None:
    unprepared = Sandbox(SandboxConfig())  # as when the sandbox part failed to prepare
    unprepared.problem = "bubblewrap is not installed"
    state = StateDirectory(tmp_path / "var")
    state.ensure()
    part = KernelsPart(GatewayConfig(url=None, token=None), reactor, state, unprepared)
    part.startService()
    try:
        assert part.status == "failed: bubblewrap is not installed"
    finally:
        await part.stopService()


@pytest.mark.skipif(os.geteuid() != 0, reason="the gateway runs as jupybot's own user")
def test_the_gateway_never_runs_as_root(sandbox: Sandbox) -> None:
    """As root, the embedded gateway (and so its kernels) runs as gateway.user, by default
    sandbox.user; root itself is refused."""
    limits = kernel_limits(GatewayConfig(url=None, token=None))
    plan = kernel_sandbox_plan(sandbox, limits, False)
    assert plan.gateway_user == "nobody" and plan.gateway_ids == (65534, 65534)
    assert "each kernel in a sandbox as nobody" in plan.describe()
    for root in ("root", "0"):
        with pytest.raises(SandboxUnavailable, match=r"^gateway.user: programs must not run as"):
            kernel_sandbox_plan(sandbox, limits, False, gateway_user=root)
