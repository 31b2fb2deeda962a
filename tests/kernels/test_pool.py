"""The warm pool on a real Kernel Gateway: a new room's first run is answered by a kernel
started ahead, the pool refills (also when the gateway culls a pooled kernel), and no room ever
gets a kernel another room used."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from jupybot.kernels import ExecuteResult
from jupybot.kernels.rest import GatewayRest
from tests.kernels.listener import RecordingListener
from tests.peers.kernel_gateway import KernelGateway

from .test_crowd import crowd_manager, on_gateway
from .test_gateway import timeboxed


@pytest_twisted.ensureDeferred
async def test_a_new_rooms_first_run_is_answered_by_the_warm_kernel(
    kernel_gateway: KernelGateway,
) -> None:
    manager = crowd_manager(kernel_gateway, prestart=1)
    used: set[str] = set()
    try:
        landed = manager.pool.kernel_landed()
        manager.start_warm_pool()
        await timeboxed(landed, 120)
        [warm] = manager.pool.kernel_ids
        refilled = manager.pool.kernel_landed()
        listener = RecordingListener()
        result = await timeboxed(manager.execute("alice", "secret = 42\nsecret", listener), 30)
        [value] = listener.of_type(ExecuteResult)
        # The pool's warm-up left no trace: this is the kernel's first counted execution.
        assert result.status == "ok" and result.execution_count == 1
        assert isinstance(value, ExecuteResult)
        assert value.data["text/plain"] == "42"
        [alices] = manager.kernels("alice")
        assert alices.kernel_id == warm  # no start waited for
        used.add(alices.kernel_id)
        # Alice's kernel never returns to the pool: Bob's first run gets the refill, clean.
        await manager.stop("alice")
        await timeboxed(refilled, 120)
        listener = RecordingListener()
        await timeboxed(manager.execute("bob", "print('secret' in dir())", listener), 30)
        assert listener.text() == "False\n"
        [bobs] = manager.kernels("bob")
        used.add(bobs.kernel_id)
        assert bobs.kernel_id != alices.kernel_id
        assert await on_gateway(kernel_gateway, used) == {bobs.kernel_id}
    finally:
        await manager.shutdown_all()
    # Nothing left behind: the rooms' kernels, nor what the pool held.
    assert manager.pool.ready == 0 and manager.pool.starting == 0
    assert await on_gateway(kernel_gateway, used) == set()


@pytest_twisted.ensureDeferred
async def test_a_pooled_kernel_the_gateway_culls_is_replaced(
    kernel_gateway: KernelGateway,
) -> None:
    manager = crowd_manager(kernel_gateway, prestart=1)
    try:
        landed = manager.pool.kernel_landed()
        manager.start_warm_pool()
        await timeboxed(landed, 120)
        [culled] = manager.pool.kernel_ids
        replaced = manager.pool.kernel_landed()
        # What a gateway's own culling does: DELETE /api/kernels/<id>.
        await GatewayRest(reactor, kernel_gateway.url, kernel_gateway.token, 30.0).shutdown(culled)
        await timeboxed(replaced, 120)
        [fresh] = manager.pool.kernel_ids
        assert fresh != culled
        listener = RecordingListener()
        await timeboxed(manager.execute("room", "print(repr(_), len(Out))", listener), 30)
        assert listener.text() == "'' 0\n"  # the warm-up's expression is nowhere
        assert manager.kernels("room")[0].kernel_id == fresh
    finally:
        await manager.shutdown_all()
