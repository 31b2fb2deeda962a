"""The syscall filter (jupybot/sandbox/seccomp.py): what a visitor's program and a chat user's
kernel reach for in the kernel is refused, and reached with ``sandbox.seccomp: none``.

From a terminal session through the terminal core, and from a kernel of a real embedded
gateway through the kernel core; each with the filter (every probe refused by it) and without
(every probe reaches the kernel: that shows the test fails with the protection switched off).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyseccomp  # type: ignore[import-untyped]
import pytest
import pytest_twisted
from twisted.internet import reactor

from jupybot.config.kernels import GatewayConfig
from jupybot.config.sandbox import SandboxConfig
from jupybot.config.terminal import ProgramConfig, TerminalConfig
from jupybot.kernels import KernelsPart
from jupybot.sandbox import Sandbox, SandboxProfile
from jupybot.sandbox.seccomp import REFUSED, REFUSED_UNKNOWN
from jupybot.state import StateDirectory
from jupybot.terminal import TerminalSessions
from tests.kernels.kernel_python import jupybot_umask, requires_kernel_python
from tests.kernels.listener import RecordingListener
from tests.kernels.test_gateway import timeboxed
from tests.sandbox.test_terminal_attacks import Collector

SURFACE = Path(__file__).with_name("surface.py").read_text()

# What the filter answers; everything else in the probes reaches the kernel.
FILTERED = {
    "io_uring_setup": "ENOSYS",
    "userfaultfd": "EPERM",
    "perf_event_open": "EPERM",
    "keyctl": "EPERM",
    "bpf": "EPERM",
    "TIOCSTI": "EPERM",
    "TIOCLINUX": "EPERM",
    "AF_VSOCK": "EPERM",
    "NETLINK_SOCK_DIAG": "EPERM",
    "NETLINK_ROUTE": "ok",
    "AF_UNIX": "ok",
}
# Without the filter: the kernel does what is asked, but for the two calls it refuses itself
# with an errno of its own (unprivileged bpf; TIOCLINUX on a terminal that is not a console).
UNFILTERED = dict.fromkeys(FILTERED, "ok") | {"bpf": "EINVAL", "TIOCLINUX": "ENOTTY"}


def prepared(seccomp: str) -> Iterator[Sandbox]:
    sandbox = Sandbox(SandboxConfig(seccomp=seccomp))
    sandbox.prepare()
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture(scope="module")
def filtered() -> Iterator[Sandbox]:
    yield from prepared("default")


@pytest.fixture(scope="module")
def unfiltered() -> Iterator[Sandbox]:
    yield from prepared("none")


async def in_session(sandbox: Sandbox, name: str, *args: str) -> dict[str, Any]:
    """Run one function of surface.py in a fresh terminal session; its JSON verdict."""
    program = ProgramConfig(
        name="surface",
        title="surface",
        description="",
        argv=("python3", "-c", SURFACE, name, *args),
    )
    sessions = TerminalSessions(reactor, TerminalConfig(), {"surface": program}, sandbox)
    viewer = Collector()
    sessions.open("surface", 200, 50, "127.0.0.1", viewer)
    await viewer.end
    text = viewer.data.decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, f"{name} printed no verdict: {text!r}"
    verdict: dict[str, Any] = json.loads(lines[-1])
    return verdict


def test_every_refused_call_is_known_to_this_libseccomp() -> None:
    """A name libseccomp does not know is skipped: a misspelt one must not go unnoticed."""
    native = pyseccomp.system_arch()
    for name in (*REFUSED, *REFUSED_UNKNOWN):
        pyseccomp.resolve_syscall(native, name)  # raises for a name it does not know


@pytest_twisted.ensureDeferred
async def test_a_terminal_session_meets_the_filter_and_reaches_the_kernel_without(
    filtered: Sandbox, unfiltered: Sandbox
) -> None:
    contained = await in_session(filtered, "kernel_surface")
    assert contained == {"seccomp": "2", "calls": FILTERED}, contained
    exposed = await in_session(unfiltered, "kernel_surface")
    assert exposed == {"seccomp": "0", "calls": UNFILTERED}, exposed


@pytest_twisted.ensureDeferred
async def test_the_sandboxs_own_files_come_with_no_host_path(filtered: Sandbox) -> None:
    """passwd, group and the covers of /proc/keys are data, not binds of jupybot's temporary
    directory, whose path would show in the sandbox's mountinfo."""
    verdict = await in_session(filtered, "mounts")
    mounts = dict((target, source) for source, target in verdict["mounts"])
    for target in ("/etc/passwd", "/etc/group", "/proc/keys", "/proc/key-users"):
        assert mounts[target].startswith("/bindfile"), mounts
    assert not [m for m in verdict["mounts"] if "jupybot-sandbox" in " ".join(m)], verdict


def test_ip_sockets_only_with_the_network(filtered: Sandbox, unfiltered: Sandbox) -> None:
    """Without the network a sandbox has only loopback in a namespace of its own, but the
    filter refuses the socket itself; with network: true it may make one."""

    def verdict(sandbox: Sandbox, network: bool) -> dict[str, Any]:
        profile = SandboxProfile(argv=("python3", "-c", SURFACE, "ip_sockets"), network=network)
        launch = sandbox.launch(profile, name=None)
        result = subprocess.run(launch.argv, env=launch.env, capture_output=True, text=True)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        assert lines, result.stderr
        found: dict[str, Any] = json.loads(lines[-1])
        return found

    assert verdict(filtered, False) == {"AF_INET": "EPERM", "AF_INET6": "EPERM"}
    assert verdict(filtered, True) == {"AF_INET": "ok", "AF_INET6": "ok"}
    assert verdict(unfiltered, False) == {"AF_INET": "ok", "AF_INET6": "ok"}


async def kernels_part(seccomp: str, directory: Path) -> AsyncIterator[KernelsPart]:
    sandbox = Sandbox(SandboxConfig(seccomp=seccomp))
    sandbox.prepare()
    state = StateDirectory(directory / "var")
    state.ensure()
    part = KernelsPart(replace(GatewayConfig(url=None, token=None), prestart=0), reactor, state, sandbox)  # fmt: skip
    with jupybot_umask():
        part.startService()
    try:
        yield part
    finally:
        await part.stopService()
        sandbox.close()


@pytest_twisted.async_yield_fixture(scope="module")
async def filtered_kernels(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KernelsPart]:
    async for part in kernels_part("default", tmp_path_factory.mktemp("filtered")):
        yield part


@pytest_twisted.async_yield_fixture(scope="module")
async def unfiltered_kernels(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[KernelsPart]:
    async for part in kernels_part("none", tmp_path_factory.mktemp("unfiltered")):
        yield part


async def in_kernel(part: KernelsPart, call: str) -> dict[str, Any]:
    listener = RecordingListener()
    code = f"{SURFACE}\nprint(json.dumps({call}))"
    result = await timeboxed(
        part.manager.execute("matrix:!surface:example.org", code, listener), 120
    )
    assert result.status == "ok", (result, listener.events)
    lines = [line for line in listener.text().splitlines() if line.startswith("{")]
    assert lines, listener.events
    verdict: dict[str, Any] = json.loads(lines[-1])
    return verdict


@requires_kernel_python
@pytest_twisted.ensureDeferred
async def test_a_kernel_meets_the_filter_and_reaches_the_kernel_without(
    filtered_kernels: KernelsPart, unfiltered_kernels: KernelsPart
) -> None:
    contained = await in_kernel(filtered_kernels, "kernel_surface()")
    assert contained == {"seccomp": "2", "calls": FILTERED}, contained
    exposed = await in_kernel(unfiltered_kernels, "kernel_surface()")
    assert exposed == {"seccomp": "0", "calls": UNFILTERED}, exposed
