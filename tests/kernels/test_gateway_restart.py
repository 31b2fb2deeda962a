"""Gateways that go away under load: the embedded gateway killed while a run is under way (the
run ends with a clear message, the room's next run works on the restarted gateway, the warm
pool is refilled there), a remote one killed under several runs, a websocket dropped mid-run.

Kernels run with `sandbox.mode: none` here, so that this runs wherever the tests do (a sandboxed
kernel needs a Python the sandbox user can read: tests/kernels/kernel_python.py); containment is
tests/sandbox's business.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.python.failure import Failure

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import ExecutionResult, GatewayUnavailable, KernelsPart
from jupybot.kernels.execution import OUTPUT_MAY_BE_MISSING
from jupybot.kernels.kernel import GONE
from jupybot.sandbox import Sandbox
from jupybot.state import StateDirectory
from tests.conftest import prepared_sandbox
from tests.harness import descendants
from tests.kernels.kernel_python import jupybot_umask
from tests.kernels.listener import RecordingListener
from tests.peers.kernel_gateway import KernelGateway

from .test_crowd import crowd_manager
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
    # Without bubblewrap's --die-with-parent, a SIGKILLed gateway's kernels live on: they are
    # ended after the test (the next jupybot's start is what finds such leftovers).
    left_behind = descendants(part.embedded.pid)
    os.kill(part.embedded.pid, signal.SIGKILL)
    try:
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
    finally:
        for pid in left_behind:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest_twisted.ensureDeferred
async def test_a_dropped_websocket_ends_the_run_saying_output_may_be_missing(
    kernel_gateway: KernelGateway,
) -> None:
    manager = crowd_manager(kernel_gateway)
    try:
        await timeboxed(manager.execute("room", "x = 7", RecordingListener()), 120)
        listener = RecordingListener()
        code = "import time\nprint('under way', flush=True)\ntime.sleep(2)\nprint('end')"
        running = manager.execute("room", code, listener)
        await timeboxed(listener.printed("under way"), 30)
        [kernel] = manager._owners["room"].values()
        kernel.kernel.channels.reconnect()  # what a proxy or a busy gateway may do
        result = await timeboxed(running, 30)
        assert result.status == "ok" and result.message == OUTPUT_MAY_BE_MISSING
        listener = RecordingListener()
        result = await timeboxed(manager.execute("room", "print(x)", listener), 30)
        assert result.status == "ok" and result.message is None and listener.text() == "7\n"
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_runs_under_way_on_a_remote_gateway_that_dies_end_and_rooms_run_again(
    own_kernel_gateway: KernelGateway,
) -> None:
    gateway = own_kernel_gateway
    rooms = [f"room-{n}" for n in range(3)]
    manager = crowd_manager(gateway)
    try:
        listeners = [RecordingListener() for _ in rooms]
        runs = [
            manager.execute(room, LONG_RUN, listener)
            for room, listener in zip(rooms, listeners, strict=True)
        ]
        for listener in listeners:
            await timeboxed(listener.printed("under way"), 120)
        gateway.kill()
        outcomes = await timeboxed(DeferredList(runs, consumeErrors=True), 60)
        for ok, outcome in outcomes:
            assert not ok and isinstance(outcome, Failure), outcome
            assert outcome.check(GatewayUnavailable), outcome
            assert "gateway went away" in outcome.getErrorMessage()
        gateway.start()
        # Each room's first run on the new gateway reaches a fresh kernel, saying so.
        for room in rooms:
            listener = RecordingListener()
            result = await timeboxed(manager.execute(room, "print('back')", listener), 120)
            assert result.status == "ok" and listener.text() == "back\n"
            assert result.message == f"{GONE} This ran in a new kernel."
    finally:
        await manager.shutdown_all()
