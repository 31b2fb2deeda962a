"""What chat users do with a kernel (output, errors, plots and tables, input(), interrupt,
time limits, restart, death) still works with every kernel in its sandbox: the kernel tests of
test_gateway.py again, on jupybot's embedded gateway (one for this module), and a plot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from jupybot.config.kernels import GatewayConfig
from jupybot.config.sandbox import SandboxConfig
from jupybot.kernels import DisplayData, ExecuteResult
from jupybot.kernels.embedded import EmbeddedGateway
from jupybot.kernels.part import embedded_kernel_plan
from jupybot.sandbox import Sandbox
from tests.kernels.kernel_python import jupybot_umask, requires_kernel_python
from tests.kernels.listener import RecordingListener

from .test_gateway import (  # noqa: F401 (collected here, against the sandboxed gateway)
    manager_for,
    test_a_kernel_deleted_on_the_gateway_is_forgotten,
    test_a_kernel_that_dies_is_reported_not_waited_for,
    test_error_then_next_run_has_its_own_output,
    test_input_is_asked_and_answered,
    test_interrupt_stops_a_long_sleep,
    test_rich_outputs_arrive_typed,
    test_run_prints_and_returns,
    test_timeout_interrupts_then_the_kernel_keeps_its_state,
    test_timeout_restarts_a_kernel_that_ignores_the_interrupt,
    timeboxed,
)

pytestmark = requires_kernel_python


@dataclass
class SandboxedGateway:
    url: str
    token: str
    gateway: EmbeddedGateway


@pytest_twisted.async_yield_fixture(scope="module")
async def kernel_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[SandboxedGateway]:
    """Replaces the unsandboxed peer of test_gateway.py for this module."""
    sandbox = Sandbox(SandboxConfig())
    sandbox.prepare()
    plan = embedded_kernel_plan(sandbox, GatewayConfig(url=None, token=None))
    runtime: Path = tmp_path_factory.mktemp("sandboxed-gateway") / "runtime"
    gateway = EmbeddedGateway(reactor, runtime, on_ready=lambda *_: None, on_restart=lambda: None)
    with jupybot_umask():
        started = gateway.start(plan)
    url = await started
    try:
        yield SandboxedGateway(url, gateway.token, gateway)
    finally:
        await gateway.stop()
        sandbox.close()


@pytest_twisted.ensureDeferred
async def test_a_plot_and_a_table(kernel_gateway: SandboxedGateway) -> None:
    manager = manager_for(kernel_gateway)  # type: ignore[arg-type]
    try:
        listener = RecordingListener()
        code = (
            "import matplotlib.pyplot as plt, pandas as pd\n"
            "plt.plot([1, 2, 3])\n"
            "plt.show()\n"
            "pd.DataFrame({'a': [1, 2], 'b': [3, 4]})"
        )
        result = await timeboxed(manager.execute("room", code, listener), 120)
        assert result.status == "ok", listener.events
        [plot] = listener.of_type(DisplayData)
        assert isinstance(plot, DisplayData) and "image/png" in plot.data
        [table] = listener.of_type(ExecuteResult)
        assert isinstance(table, ExecuteResult) and "<table" in str(table.data["text/html"])
    finally:
        await manager.shutdown_all()
