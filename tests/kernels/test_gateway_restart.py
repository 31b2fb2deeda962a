"""The embedded gateway killed while a run is under way: the run ends with a clear message, the
room's next run works on the restarted gateway, and the warm pool is refilled there.

Kernels run with `sandbox.mode: none` here, so that this runs wherever the tests do (a sandboxed
kernel needs a Python the sandbox user can read: tests/kernels/kernel_python.py); containment is
tests/sandbox's business.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import ExecutionResult, GatewayUnavailable, KernelsPart
from jupybot.sandbox import Sandbox
from jupybot.state import StateDirectory
from tests.conftest import prepared_sandbox
from tests.kernels.kernel_python import jupybot_umask
from tests.kernels.listener import RecordingListener

from .test_gateway import timeboxed

LONG_RUN = "print('under way', flush=True)\nimport time\ntime.sleep(300)"


@pytest.fixture(scope="module")
def unsandboxed() -> Iterator[Sandbox]:
    yield from prepared_sandbox(mode="none")


@pytest_twisted.async_yield_fixture
async def part(tmp_path: Path, unsandboxed: Sandbox) -> AsyncIterator[KernelsPart]:
    state = StateDirectory(tmp_path / "var")
    state.ensure()
    config = GatewayConfig(url=None, token=None, prestart=1)
    part = KernelsPart(config, reactor, state, unsandboxed)
    landed = part.manager.pool.kernel_landed()
    with jupybot_umask():
        part.startService()
    await timeboxed(landed, 120)
    yield part
    if part.running:
        await part.stopService()


@pytest_twisted.ensureDeferred
async def test_a_run_under_way_when_the_gateway_dies_ends_and_the_next_one_works(
    part: KernelsPart,
) -> None:
    manager = part.manager
    assert part.embedded is not None and part.embedded.pid is not None
    listener = RecordingListener()
    running = manager.execute("room", LONG_RUN, listener)
    await timeboxed(listener.printed("under way"), 60)
    refilled = manager.pool.kernel_landed()

    os.kill(part.embedded.pid, signal.SIGKILL)
    try:
        result: ExecutionResult = await timeboxed(running, 30)
    except GatewayUnavailable as error:
        told = str(error)
    else:
        assert result.status == "died" and result.message is not None
        told = result.message
    assert "gateway" in told

    listener = RecordingListener()
    result = await timeboxed(manager.execute("room", "print('back')", listener), 120)
    assert result.status == "ok" and listener.text() == "back\n"
    await timeboxed(refilled, 120)  # the new gateway has a warm kernel again
    assert manager.pool.ready == 1
