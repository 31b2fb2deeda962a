"""The kernels part: Jupyter kernels on a Kernel Gateway, for the chat front ends.

Platform-neutral: owners are opaque strings chosen by adapters (e.g. ``"matrix:!room:server"``).
See docs/kernels.md.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from ..config.kernels import GatewayConfig
from ..parts import PartContext, Reactor
from ..service import Part
from ..state import StateDirectory
from .api import (
    ClearOutput,
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    ExecutionListener,
    ExecutionResult,
    GatewayUnavailable,
    KernelDied,
    KernelError,
    KernelHandle,
    KernelLimitReached,
    KernelManager,
    KernelSpec,
    NoSuchKernel,
    OutputEvent,
    Stream,
    UnknownKernelSpec,
    UpdateDisplayData,
)
from .embedded import EmbeddedGateway
from .manager import GatewayKernelManager
from .render import Attachment, Image, Rendered, RenderOptions, render_outputs

__all__ = [
    "Attachment",
    "ClearOutput",
    "DisplayData",
    "EmbeddedGateway",
    "ErrorOutput",
    "ExecuteResult",
    "ExecutionListener",
    "ExecutionResult",
    "GatewayKernelManager",
    "GatewayUnavailable",
    "Image",
    "KernelDied",
    "KernelError",
    "KernelHandle",
    "KernelLimitReached",
    "KernelManager",
    "KernelSpec",
    "KernelsPart",
    "NoSuchKernel",
    "OutputEvent",
    "RenderOptions",
    "Rendered",
    "Stream",
    "UnknownKernelSpec",
    "UpdateDisplayData",
    "build_kernels",
    "find_kernel_manager",
    "render_outputs",
]

GATEWAY_RESTARTED = "The kernel gateway restarted and lost its kernels; start a new one."


class KernelsPart(Part):
    """The kernel manager, and the embedded gateway when no `gateway.url` is configured."""

    def __init__(self, config: GatewayConfig, reactor: Reactor, state: StateDirectory) -> None:
        super().__init__("kernels")
        self._config = config
        self.manager = GatewayKernelManager(reactor, config)
        self.embedded: EmbeddedGateway | None = None
        if config.url is None:
            self.embedded = EmbeddedGateway(
                reactor,
                state.path / "kernel-runtime",
                on_ready=self.manager.connect,
                on_restart=lambda: self.manager.gateway_lost(GATEWAY_RESTARTED),
            )

    def start_part(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        if self.embedded is not None:
            await self.embedded.start()
        else:
            assert self._config.url is not None
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

    def stop_part(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self.manager.shutdown_all()
        if self.embedded is not None:
            await self.embedded.stop()


def find_kernel_manager(context: PartContext) -> KernelManager:
    """For chat adapters: the kernels part's manager, or one that says kernels are unavailable."""
    try:
        kernels = context.top.getServiceNamed("kernels")
    except KeyError:
        return KernelManager()
    manager = getattr(kernels, "manager", None)
    return manager if isinstance(manager, KernelManager) else KernelManager()


def build_kernels(context: PartContext) -> None:
    context.top.add_part(KernelsPart(context.config.gateway, context.reactor, context.state))
