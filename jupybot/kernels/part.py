"""The kernels part: the kernel manager, and the embedded gateway when no `gateway.url` is set."""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred

from ..config.kernels import GatewayConfig
from ..parts import PartContext, RetryingPart
from ..reactor import NetworkReactor, ProcessReactor
from ..sandbox import Limits, Sandbox
from ..sandbox.kernels import KernelSandboxPlan, kernel_sandbox_plan
from ..service import JupybotService
from ..state import StateDirectory
from .api import KernelError, KernelManager
from .embedded import EmbeddedGateway
from .health import GatewayProbe
from .manager import GatewayKernelManager

__all__ = ["KernelsPart", "build_kernels", "embedded_kernel_plan", "kernel_limits"]

# The embedded gateway's pid, start time and directory, for the next start after a SIGKILL.
GATEWAY_RECORD = "embedded-gateway.json"
GATEWAY_RESTARTED = "The kernel gateway restarted and lost its kernels; start a new one."


class _GatewayReactor(ProcessReactor, NetworkReactor, Protocol):
    """The embedded gateway's process, and the HTTP and websockets to a gateway."""


class KernelsPart(RetryingPart):
    """The kernel manager, and the embedded gateway when no `gateway.url` is configured. While
    the sandbox is busy (its user at its process limit: L{SandboxBusy}), the embedded gateway's
    start is tried again on a backoff."""

    def __init__(
        self,
        config: GatewayConfig,
        reactor: _GatewayReactor,
        state: StateDirectory,
        sandbox: Sandbox,
    ) -> None:
        super().__init__("kernels", reactor)
        self._config = config
        self._sandbox = sandbox
        self.manager = GatewayKernelManager(reactor, config)
        self.probe = GatewayProbe(reactor, self._probe_target)
        self.embedded: EmbeddedGateway | None = None
        if config.url is None:
            self.embedded = EmbeddedGateway(
                reactor,
                state.path / "kernel-runtime",
                on_ready=self._embedded_ready,
                on_restart=lambda: self.manager.gateway_lost(GATEWAY_RESTARTED),
                record=state.file(GATEWAY_RECORD),
            )

    def problem(self) -> str | None:
        """The embedded gateway's process is not serving (it died and restarts), or the
        gateway does not answer its API."""
        if self.embedded is not None and (problem := self.embedded.problem()) is not None:
            return problem
        return self.probe.problem

    def _embedded_ready(self, url: str, token: str) -> None:
        self.probe.reset()
        self.manager.connect(url, token)

    def _probe_target(self) -> tuple[str, dict[bytes | str, list[bytes | str]]] | None:
        if self.embedded is not None:
            if self.embedded.url is None or not self.embedded.serving:
                return None
            token = self.embedded.token
            return self.embedded.url, {b"Authorization": [f"token {token}".encode()]}
        assert self._config.url is not None
        url = self._config.url.rstrip("/")
        configured = self._config.token.reveal() if self._config.token else None
        headers: dict[bytes | str, list[bytes | str]] = {}
        if configured is not None:
            headers[b"Authorization"] = [f"token {configured}".encode()]
        return url, headers

    def start_part(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        if self.embedded is not None:
            # Refused (the part fails, saying why) if the sandbox cannot run here or cannot
            # run jupybot's Python.
            plan = embedded_kernel_plan(self._sandbox, self._config)
            self.detail = f"embedded gateway; {plan.describe()}"
            self.log.info("kernels: {detail}", detail=self.detail)
            await self.embedded.start(plan)
        else:
            assert self._config.url is not None
            self.detail = f"gateway {self._config.url} (its kernels are contained by its operator)"
            token = self._config.token.reveal() if self._config.token else None
            self.manager.connect(self._config.url, token)
            try:
                _, specs = await self.manager.rest.kernelspecs()
            except KernelError as e:
                self.log.warn("kernels: gateway {url}: {error}", url=self._config.url, error=str(e))
            else:
                self.log.info(
                    "kernels: gateway {url} offers {specs}",
                    url=self._config.url,
                    specs=", ".join(s.name for s in specs),
                )
        self.manager.start_culling()
        self.manager.start_warm_pool()
        self.probe.start()

    def stop_part(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop_kernels())

    async def _stop_kernels(self) -> None:
        self.probe.stop()
        await self.manager.shutdown_all()
        if self.embedded is not None:
            await self.embedded.stop()


def embedded_kernel_plan(sandbox: Sandbox, config: GatewayConfig) -> KernelSandboxPlan:
    """How the embedded gateway contains its kernels: in C{sandbox} (prepared), with the
    limits, network and user of `gateway:`."""
    return kernel_sandbox_plan(
        sandbox, kernel_limits(config), config.kernel_network, gateway_user=config.user
    )


def kernel_limits(config: GatewayConfig) -> Limits:
    """What one kernel of the embedded gateway may use."""
    return Limits(
        memory_mb=config.kernel_memory_mb,
        processes=config.kernel_processes,
        cpu_percent=config.kernel_cpu_percent,
        cpu_seconds=0,  # a kernel lives for hours; execution_timeout_seconds bounds each run
        # Files go to the kernel's /tmp and home, in memory and within its memory limit.
        file_size_mb=config.kernel_memory_mb,
    )


def build_kernels(context: PartContext, top: JupybotService, sandbox: Sandbox) -> KernelManager:
    """The kernels part, added to C{top}; its manager is what the chat parts run code with. The
    embedded gateway's kernels run in C{sandbox} (prepared by the sandbox part, which starts
    first)."""
    part = KernelsPart(context.config.gateway, context.reactor, context.state, sandbox)
    top.add_part(part)
    return part.manager
