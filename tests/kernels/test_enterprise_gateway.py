"""What an Enterprise Gateway's operator sets, as jupybot's users meet it: a real Enterprise
Gateway 3.3 with culling on (connected kernels too), a two-kernel limit, and a kernelspec refused
to the user it would run as (`unauthorized_users`). Each refusal reaches people as what it is,
not as "wrong credentials"; a kernel the gateway culls is forgotten and the next run works."""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_twisted
from twisted.internet import reactor

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import GatewayKernelManager, GatewayUnavailable, KernelLimitReached
from jupybot.kernels.kernel import GONE
from tests.kernels.listener import RecordingListener
from tests.kernels.test_gateway import timeboxed
from tests.peers.enterprise_gateway import EnterpriseGateway, enterprise_gateway_python

REFUSED_SPEC = "python3_refused"
CULL_IDLE_SECONDS = 3


@pytest.fixture(scope="module")
def operated_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnterpriseGateway]:
    python = enterprise_gateway_python()
    if python is None:
        pytest.fail("Jupyter Enterprise Gateway is not installed: run `make test`", pytrace=False)
    gateway = EnterpriseGateway(
        python,
        tmp_path_factory.mktemp("operated-enterprise-gateway"),
        options=[
            "--EnterpriseGatewayApp.max_kernels=2",
            f"--RemoteMappingKernelManager.cull_idle_timeout={CULL_IDLE_SECONDS}",
            "--RemoteMappingKernelManager.cull_interval=1",
            # jupybot holds a socket on each of its kernels: without this, none is ever culled.
            "--RemoteMappingKernelManager.cull_connected=True",
        ],
    )
    gateway.add_kernelspec(REFUSED_SPEC, unauthorized_users=[getpass.getuser()])
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest_twisted.async_yield_fixture()
async def manager(operated_gateway: EnterpriseGateway) -> AsyncIterator[GatewayKernelManager]:
    manager = GatewayKernelManager(reactor, GatewayConfig(url=None, token=None))
    manager.connect(operated_gateway.url, operated_gateway.token)
    yield manager
    await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_a_kernelspec_refused_to_its_user_is_not_a_credentials_error(
    manager: GatewayKernelManager,
) -> None:
    with pytest.raises(GatewayUnavailable, match="refused to start a kernel") as refused:
        await manager.start("room", REFUSED_SPEC)
    assert "credentials" not in str(refused.value)
    assert REFUSED_SPEC in [spec.name for spec in await manager.kernelspecs()]


@pytest_twisted.ensureDeferred
async def test_the_gateways_kernel_limit_is_told_as_a_limit(
    manager: GatewayKernelManager,
) -> None:
    # A busy kernel is never culled: the limit is still reached when the third start is asked.
    listener = RecordingListener()
    running = manager.execute(
        "room", "import time\nprint('busy', flush=True)\ntime.sleep(60)", listener
    )
    await timeboxed(listener.printed("busy"))
    await manager.start("second room")
    with pytest.raises(KernelLimitReached, match="as many kernels as it allows"):
        await manager.start("third room")
    await manager.interrupt("room")
    await timeboxed(running, 30)


@pytest_twisted.ensureDeferred
async def test_a_kernel_the_gateway_culls_is_forgotten(manager: GatewayKernelManager) -> None:
    gone = manager.kernel_gone()
    await manager.execute("room", "x = 1", RecordingListener())
    [culled] = manager.kernels("room")
    assert await timeboxed(gone, CULL_IDLE_SECONDS + 60) == GONE
    assert manager.kernels("room") == []
    listener = RecordingListener()
    result = await timeboxed(manager.execute("room", "print('fresh')", listener), 60)
    assert result.status == "ok" and listener.text() == "fresh\n"
    [fresh] = manager.kernels("room")
    assert fresh.kernel_id != culled.kernel_id
