"""Rooms racing for kernels on a real Kernel Gateway: one kernel per room, a crowd started in
turn where every room gets its answer and is told where it stands meanwhile."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import replace
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import ExecutionResult, GatewayKernelManager, NoSuchKernel
from jupybot.kernels.rest import GatewayRest
from tests.kernels.listener import RecordingListener
from tests.peers.kernel_gateway import KernelGateway

from .test_gateway import timeboxed

# Enough to queue behind the concurrency of 2, few enough for a couple of seconds of starts.
CROWD = 6


class WaitingListener(RecordingListener):
    """Records the places in line its run was told (tests/kernels/test_manager.py: the fakes)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[int | None] = []

    def on_kernel_wait(self, ahead: int | None) -> None:
        self.waits.append(ahead)


def crowd_manager(gateway: KernelGateway, **changes: Any) -> GatewayKernelManager:
    config = replace(GatewayConfig(url=None, token=None, prestart=0), **changes)
    manager = GatewayKernelManager(reactor, config)
    manager.connect(gateway.url, gateway.token)
    return manager


async def on_gateway(gateway: KernelGateway, kernel_ids: set[str]) -> set[str]:
    """Those of C{kernel_ids} the gateway runs (it lists none unless told to: ask each)."""
    rest = GatewayRest(reactor, gateway.url, gateway.token, 30.0)
    running = set()
    for kernel_id in kernel_ids:
        with suppress(NoSuchKernel):
            await rest.kernel(kernel_id)
            running.add(kernel_id)
    return running


@pytest_twisted.ensureDeferred
async def test_two_runs_racing_into_a_new_room_share_its_one_kernel(
    kernel_gateway: KernelGateway,
) -> None:
    manager = crowd_manager(kernel_gateway)
    try:
        listener = RecordingListener()
        first = manager.execute("room", "a = 1", RecordingListener())
        second = manager.execute("room", "print(a)", listener)
        await timeboxed(DeferredList([first, second], fireOnOneErrback=True), 120)
        assert listener.text() == "1\n"  # not a NameError from a second kernel
        assert [handle.name for handle in manager.kernels("room")] == ["python3"]
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_a_crowd_starting_at_once_is_started_in_turn_and_every_room_answers(
    kernel_gateway: KernelGateway,
) -> None:
    manager = crowd_manager(kernel_gateway, start_concurrency=2, max_kernels=CROWD)
    rooms = [WaitingListener() for _ in range(CROWD)]
    try:
        runs = [
            manager.execute(f"room-{n}", f"print('room {n}')", room) for n, room in enumerate(rooms)
        ]
        outcomes = await timeboxed(DeferredList(runs, fireOnOneErrback=True), 240)
        results: list[ExecutionResult] = [result for _, result in outcomes]
        assert [result.status for result in results] == ["ok"] * CROWD
        assert [room.text() for room in rooms] == [f"room {n}\n" for n in range(CROWD)]
        # Two started at once; the others were told how many starts were before theirs, then
        # that theirs was under way, then that it was ready.
        assert rooms[0].waits == [0, None]
        assert rooms[-1].waits[0] == CROWD - 3
        assert all(room.waits[-2:] == [0, None] for room in rooms)
        assert manager.starts.running == 0 and manager.starts.waiting == 0
        started = {manager.kernels(f"room-{n}")[0].kernel_id for n in range(CROWD)}
        assert len(started) == CROWD and await on_gateway(kernel_gateway, started) == started
    finally:
        await manager.shutdown_all()
    assert await on_gateway(kernel_gateway, started) == set()
