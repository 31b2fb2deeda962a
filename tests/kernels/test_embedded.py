"""The embedded Kernel Gateway: jupybot's own child process when no gateway.url is configured."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import KernelsPart
from jupybot.state import StateDirectory
from tests.harness import descendants
from tests.kernels.listener import RecordingListener

from .test_gateway import kernel_forgotten, timeboxed


@pytest_twisted.async_yield_fixture
async def part(tmp_path: Path) -> AsyncIterator[KernelsPart]:
    state = StateDirectory(tmp_path / "var")
    state.ensure()
    part = KernelsPart(GatewayConfig(url=None, token=None), reactor, state)
    part.startService()
    yield part
    if part.running:
        await part.stopService()


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


@pytest_twisted.ensureDeferred
async def test_runs_code_with_nothing_configured_and_stops_every_process(
    part: KernelsPart,
) -> None:
    listener = RecordingListener()
    result = await timeboxed(part.manager.execute("room", "print(6 * 7)", listener), 120)
    assert result.status == "ok" and listener.text() == "42\n"
    assert part.embedded is not None and part.embedded.pid is not None
    gateway_pid = part.embedded.pid
    processes = [gateway_pid, *descendants(gateway_pid)]
    assert len(processes) >= 2  # the gateway and the room's kernel
    await part.stopService()
    assert alive(processes) == []


@pytest_twisted.ensureDeferred
async def test_a_crashed_gateway_is_restarted_and_rooms_get_a_new_kernel(
    part: KernelsPart,
) -> None:
    gone = kernel_forgotten(part.manager)
    await timeboxed(part.manager.execute("room", "x = 1", RecordingListener()), 120)
    assert part.embedded is not None and part.embedded.pid is not None
    old_url = part.embedded.url
    restarted: Deferred[None] = Deferred()
    ready = part.embedded._on_ready

    def ready_again(url: str, token: str) -> None:
        ready(url, token)
        restarted.callback(None)

    part.embedded._on_ready = ready_again
    os.kill(part.embedded.pid, signal.SIGKILL)
    await timeboxed(gone, 30)  # the room's kernel is reported lost, not waited for
    await timeboxed(restarted, 60)
    assert part.embedded.url == old_url  # same port: a configured client would still find it
    listener = RecordingListener()
    result = await timeboxed(part.manager.execute("room", "print('back')", listener), 120)
    assert result.status == "ok" and listener.text() == "back\n"
