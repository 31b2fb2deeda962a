"""A gateway and kernels made of Twisted fakes, for the manager's unit tests: starts finish when
the test says so, on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from jupybot.config.kernels import GatewayConfig
from jupybot.kernels import ExecutionListener, ExecutionResult, GatewayKernelManager
from jupybot.kernels.api import KernelSpec
from jupybot.kernels.kernel import GatewayKernel
from jupybot.kernels.rest import GatewayRest

__all__ = ["FakeGateway", "FakeKernel", "WaitRecorder"]


class FakeKernel(GatewayKernel):
    """A kernel whose start ends when the test calls L{answer}; it remembers what it ran."""

    def __init__(
        self,
        reactor: Any,
        rest: GatewayRest,
        kernel_id: str,
        spec: str,
        config: GatewayConfig,
        on_gone: Callable[[GatewayKernel], None],
    ) -> None:
        # Deliberately not GatewayKernel.__init__: no websocket.
        self.kernel_id = kernel_id
        self.spec = spec
        self._on_gone = on_gone
        self._executions = {}
        self.last_used = reactor.seconds()
        self.gone_reason: str | None = None
        self.ran: list[str] = []
        self.answering: Deferred[None] = Deferred()
        assert isinstance(rest, FakeGateway)
        rest.kernels.append(self)

    def answer(self) -> None:
        self.answering.callback(None)

    async def connect(self) -> None:
        await self.answering

    async def warm_up(self) -> None:
        pass

    async def execute(
        self, code: str, listener: ExecutionListener, allow_stdin: bool, silent: bool = False
    ) -> ExecutionResult:
        self.ran.append(code)
        return ExecutionResult("ok", len(self.ran), 0.0)

    async def shutdown(self) -> None:
        self.gone_reason = "The kernel was stopped."

    def lose(self, reason: str) -> None:
        if self.gone_reason is None:
            self.gone_reason = reason
            self._on_gone(self)


class FakeGateway(GatewayRest):
    """The REST side: every start is granted at once, with a new id; its kernel then answers
    when the test says so."""

    def __init__(self, reactor: MemoryReactorClock) -> None:
        super().__init__(reactor, "http://gateway.invalid", None, 30.0)
        self.reactor = reactor
        self.kernels: list[FakeKernel] = []

    async def start_kernel(self, spec: str) -> str:
        return f"kernel-{len(self.kernels) + 1}"

    async def kernelspecs(self) -> tuple[str, list[KernelSpec]]:
        return "python3", [KernelSpec("python3", "Python 3", "python")]

    async def shutdown(self, kernel_id: str) -> None:
        pass

    @property
    def starting(self) -> list[FakeKernel]:
        """Kernels started on the gateway that do not answer yet."""
        return [k for k in self.kernels if not k.answering.called]

    @property
    def alive(self) -> list[FakeKernel]:
        return [k for k in self.kernels if k.gone_reason is None]

    def answer_all(self) -> None:
        """Let every start under way finish, and those that follow them, until none is left."""
        while self.starting:
            self.starting[0].answer()

    def manager(self, **changes: Any) -> GatewayKernelManager:
        config = replace(GatewayConfig(url=None, token=None, prestart=0), **changes)
        manager = GatewayKernelManager(self.reactor, config, kernel_factory=FakeKernel)
        manager.use_gateway(self)
        return manager


class WaitRecorder:
    """A listener that also watches its kernel's start (what the chat shows as
    `starting a kernel… (N ahead)`)."""

    def __init__(self) -> None:
        self.waits: list[int | None] = []

    def on_output(self, event: object) -> None:
        pass

    def on_input_request(self, prompt: str, password: bool) -> Deferred[str]:
        raise AssertionError("no input expected")

    def on_kernel_wait(self, ahead: int | None) -> None:
        self.waits.append(ahead)
