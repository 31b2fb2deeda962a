"""The kernel core against real gateways on loopback, no protocol mocks: one suite, run against
Jupyter Kernel Gateway, Jupyter Enterprise Gateway 3.3 and Jupyter Server (a user's own, under a
URL prefix), each with its token on and one of each for the whole run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TypeVar

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.web.http_headers import Headers

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import (
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    GatewayKernelManager,
    GatewayUnavailable,
    KernelLimitReached,
    UnknownKernelSpec,
    UpdateDisplayData,
)
from jupybot.kernels.api import ClearOutput, Stream
from jupybot.kernels.kernel import GONE
from tests.kernels.listener import RecordingListener
from tests.peers.enterprise_gateway import EnterpriseGateway
from tests.peers.jupyter_server import JupyterServer
from tests.peers.kernel_gateway import KernelGateway

T = TypeVar("T")

CONFIG = GatewayConfig(url=None, token=None)

GatewayPeer = KernelGateway | EnterpriseGateway | JupyterServer
PEERS = ["kernel-gateway", "enterprise-gateway", "jupyter-server"]


@pytest.fixture(params=PEERS)
def gateway(request: pytest.FixtureRequest) -> GatewayPeer:
    """Each test of this module once on each peer (the session's own, started when first used).
    Modules that import these tests run them on their own `kernel_gateway` (tests/conftest.py)."""
    if request.param == "enterprise-gateway":
        enterprise: EnterpriseGateway = request.getfixturevalue("enterprise_gateway")
        return enterprise
    if request.param == "jupyter-server":
        server: JupyterServer = request.getfixturevalue("jupyter_server")
        return server
    kernel_gateway: KernelGateway = request.getfixturevalue("kernel_gateway")
    return kernel_gateway


def manager_for(gateway: GatewayPeer, **changes: object) -> GatewayKernelManager:
    manager = GatewayKernelManager(reactor, replace(CONFIG, **changes))  # type: ignore[arg-type]
    manager.connect(gateway.url, gateway.token)
    return manager


def kernel_forgotten(manager: GatewayKernelManager) -> Deferred[None]:
    """Fires when the manager forgets a kernel (it died, or the gateway lost it)."""
    return manager.kernel_gone().addCallback(lambda _reason: None)


@pytest.fixture
async def manager(gateway: GatewayPeer) -> AsyncIterator[GatewayKernelManager]:
    manager = manager_for(gateway)
    yield manager
    await manager.shutdown_all()


def timeboxed(d: Deferred[T], seconds: float = 60) -> Deferred[T]:
    return d.addTimeout(seconds, reactor)


@pytest_twisted.ensureDeferred
async def test_kernelspecs_list_python(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway)
    specs = await manager.kernelspecs()
    assert "python3" in [s.name for s in specs]
    assert [s.language for s in specs if s.name == "python3"] == ["python"]


@pytest_twisted.ensureDeferred
async def test_run_prints_and_returns(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway)
    try:
        listener = RecordingListener()
        result = await manager.execute("room", "print('hello')\n1 + 1", listener)
        assert result.status == "ok"
        assert result.execution_count == 1
        assert listener.text() == "hello\n"
        [value] = listener.of_type(ExecuteResult)
        assert isinstance(value, ExecuteResult) and value.data["text/plain"] == "2"
        # The run started the default kernel for its owner, and only for it.
        [handle] = manager.kernels("room")
        assert handle.spec == "python3" and manager.current("room") == handle
        assert manager.kernels("other room") == []
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_error_then_next_run_has_its_own_output(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway)
    try:
        first = RecordingListener()
        result = await manager.execute("room", "print('before')\n1/0", first)
        assert result.status == "error"
        [error] = first.of_type(ErrorOutput)
        assert isinstance(error, ErrorOutput) and error.ename == "ZeroDivisionError"
        assert any("ZeroDivisionError" in line for line in error.traceback)
        second = RecordingListener()
        result = await manager.execute("room", "print('after')", second)
        assert result.status == "ok" and result.execution_count == 2
        assert second.text() == "after\n"
        assert second.of_type(ErrorOutput) == []
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_rich_outputs_arrive_typed(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway)
    try:
        listener = RecordingListener()
        code = (
            "from IPython.display import display, HTML, Markdown, clear_output\n"
            "import sys\n"
            "display(HTML('<b>bold</b>'))\n"
            "h = display(Markdown('*one*'), display_id=True)\n"
            "h.update(Markdown('*two*'))\n"
            "print('oops', file=sys.stderr)\n"
            "clear_output(wait=True)\n"
            "{'a': 1}"
        )
        result = await manager.execute("room", code, listener)
        assert result.status == "ok"
        html, markdown = listener.of_type(DisplayData)
        assert isinstance(html, DisplayData) and html.data["text/html"] == "<b>bold</b>"
        assert isinstance(markdown, DisplayData) and markdown.display_id
        [update] = listener.of_type(UpdateDisplayData)
        assert isinstance(update, UpdateDisplayData)
        assert update.display_id == markdown.display_id
        assert update.data["text/markdown"] == "*two*"
        assert listener.of_type(ClearOutput) == [ClearOutput(wait=True)]
        assert [(e.name, e.text) for e in listener.events if isinstance(e, Stream)] == [
            ("stderr", "oops\n")
        ]
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_input_is_asked_and_answered(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway)
    try:
        listener = RecordingListener(answers=["Ada", "s3cret"])
        code = (
            "import getpass\n"
            "name = input('Your name? ')\n"
            "pw = getpass.getpass('Password: ')\n"
            "print(f'hello {name}, {len(pw)} characters')"
        )
        result = await manager.execute("room", code, listener)
        assert result.status == "ok"
        assert listener.prompts == [("Your name? ", False), ("Password: ", True)]
        assert "hello Ada, 6 characters" in listener.text()
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_interrupt_stops_a_long_sleep(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway)
    try:
        listener = RecordingListener()
        running = manager.execute(
            "room", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", listener
        )
        await timeboxed(listener.printed("sleeping"))
        await manager.interrupt("room")
        result = await timeboxed(running, 30)
        assert result.status == "error"
        [error] = listener.of_type(ErrorOutput)
        assert isinstance(error, ErrorOutput) and error.ename == "KeyboardInterrupt"
        assert result.duration_seconds < 30
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_timeout_interrupts_then_the_kernel_keeps_its_state(
    gateway: GatewayPeer,
) -> None:
    manager = manager_for(gateway, execution_timeout_seconds=1.0)
    try:
        await manager.execute("room", "x = 41", RecordingListener())
        result = await timeboxed(
            manager.execute("room", "import time\ntime.sleep(60)", RecordingListener()), 30
        )
        assert result.status == "timeout"
        assert result.message is not None and "interrupted" in result.message
        listener = RecordingListener()
        await manager.execute("room", "print(x + 1)", listener)
        assert listener.text() == "42\n"
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_timeout_restarts_a_kernel_that_ignores_the_interrupt(
    gateway: GatewayPeer,
) -> None:
    manager = manager_for(gateway, execution_timeout_seconds=1.0, interrupt_grace_seconds=1.0)
    try:
        code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
        result = await timeboxed(manager.execute("room", code, RecordingListener()), 30)
        assert result.status == "timeout"
        assert result.message is not None and "restarted" in result.message
        listener = RecordingListener()
        result = await timeboxed(manager.execute("room", "print('alive')", listener), 60)
        assert result.status == "ok" and listener.text() == "alive\n"
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_restart_loses_the_variables(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway)
    try:
        await manager.execute("room", "x = 1", RecordingListener())
        [before] = manager.kernels("room")
        await timeboxed(manager.restart("room"), 60)
        listener = RecordingListener()
        result = await timeboxed(manager.execute("room", "print('x' in dir())", listener), 60)
        assert result.status == "ok" and listener.text() == "False\n"
        assert result.execution_count == 1
        # The same kernel, restarted: the owner keeps its name and id.
        assert manager.kernels("room") == [before]
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_an_idle_kernel_is_shut_down_on_the_gateway(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway, idle_cull_seconds=1.0)
    try:
        handle = await manager.start("room")
        assert gateway.process is not None
        shut_down = deferToThread(
            gateway.process.wait_for, f"Kernel shutdown: {handle.kernel_id}", 60
        )
        manager.start_culling()
        # The gateway's own word that it is shutting the kernel down, at jupybot's request.
        await timeboxed(shut_down, 90)
        assert manager.kernels("room") == []
        listener = RecordingListener()
        result = await timeboxed(manager.execute("room", "print('new')", listener), 60)
        assert result.status == "ok" and listener.text() == "new\n"
        [new] = manager.kernels("room")
        assert new.kernel_id != handle.kernel_id
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_a_kernel_that_dies_is_reported_not_waited_for(
    gateway: GatewayPeer,
) -> None:
    manager = manager_for(gateway)
    try:
        result = await timeboxed(
            manager.execute("room", "import os\nos._exit(1)", RecordingListener()), 60
        )
        assert result.status == "died"
        assert result.message is not None and "died" in result.message
        # The gateway restarted it: the next run works (on a fresh interpreter).
        listener = RecordingListener()
        result = await timeboxed(manager.execute("room", "print('back')", listener), 60)
        assert listener.text() == "back\n"
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_a_kernel_deleted_on_the_gateway_is_forgotten(
    gateway: GatewayPeer,
) -> None:
    manager = manager_for(gateway)
    try:
        gone = manager.kernel_gone()
        handle = await manager.start("room")
        response = await treq.delete(
            f"{gateway.url}/api/kernels/{handle.kernel_id}",
            headers=Headers({"Authorization": [f"token {gateway.token}"]}),
        )
        assert response.code == 204
        # The socket closes; the manager finds the kernel gone and forgets it.
        assert await timeboxed(gone, 30) == GONE
        assert manager.kernels("room") == []
        listener = RecordingListener()
        result = await timeboxed(manager.execute("room", "print('new')", listener), 60)
        assert result.status == "ok" and listener.text() == "new\n"
        [new] = manager.kernels("room")
        assert new.kernel_id != handle.kernel_id
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_bad_token_is_a_clear_error(gateway: GatewayPeer) -> None:
    manager = GatewayKernelManager(reactor, CONFIG)
    manager.connect(gateway.url, "wrong")
    with pytest.raises(GatewayUnavailable, match="refused jupybot's credentials"):
        await manager.kernelspecs()


@pytest_twisted.ensureDeferred
async def test_unreachable_gateway_is_a_clear_error() -> None:
    manager = GatewayKernelManager(reactor, CONFIG)
    manager.connect("http://127.0.0.1:9", None)
    with pytest.raises(GatewayUnavailable, match="cannot be reached"):
        await manager.execute("room", "1", RecordingListener())


@pytest_twisted.ensureDeferred
async def test_unknown_kernelspec_names_the_known_ones(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway)
    with pytest.raises(UnknownKernelSpec, match=r"no kernel type 'cobol'.*python3"):
        await manager.start("room", "cobol")


@pytest_twisted.ensureDeferred
async def test_per_owner_limit(gateway: GatewayPeer) -> None:
    manager = manager_for(gateway, max_kernels_per_owner=1)
    try:
        await manager.start("room")
        with pytest.raises(KernelLimitReached):
            await manager.start("room", name="second")
        await manager.start("elsewhere")
    finally:
        await manager.shutdown_all()


@pytest_twisted.ensureDeferred
async def test_gateway_killed_and_restarted(own_kernel_gateway: KernelGateway) -> None:
    gateway = own_kernel_gateway
    manager = manager_for(gateway)
    try:
        gone = kernel_forgotten(manager)
        await manager.execute("room", "x = 1", RecordingListener())
        gateway.kill()
        with pytest.raises(GatewayUnavailable):
            await timeboxed(manager.execute("room", "x", RecordingListener()), 60)
        gateway.start()
        # The new gateway has no such kernel: the manager notices and starts a fresh one.
        await timeboxed(gone, 60)
        listener = RecordingListener()
        result = await timeboxed(manager.execute("room", "print('fresh')", listener), 60)
        assert result.status == "ok" and listener.text() == "fresh\n"
    finally:
        await manager.shutdown_all()
