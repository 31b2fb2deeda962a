"""L{GatewayKernelManager}: every owner's kernels on one Kernel Gateway, with limits and culling."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config.kernels import GatewayConfig
from ..reactor import Reactor
from .api import (
    ExecutionListener,
    ExecutionResult,
    GatewayUnavailable,
    KernelError,
    KernelHandle,
    KernelLimitReached,
    KernelManager,
    KernelSpec,
    NoSuchKernel,
    UnknownKernelSpec,
)
from .kernel import GatewayKernel
from .rest import GatewayRest

log = Logger()

T = TypeVar("T")


@dataclass
class _Owned:
    handle: KernelHandle
    kernel: GatewayKernel


class GatewayKernelManager(KernelManager):
    """The kernel core on a gateway. L{connect} tells it where the gateway is (it may move:
    the embedded gateway gets a new port when restarted)."""

    def __init__(self, reactor: Reactor, config: GatewayConfig) -> None:
        self._reactor = reactor
        self._config = config
        self._rest: GatewayRest | None = None
        self._connected: list[Deferred[GatewayRest]] = []
        self._owners: dict[str, dict[str, _Owned]] = {}
        self._current: dict[str, str] = {}
        self._starting = 0
        self._gone_waiters: list[Deferred[str]] = []
        self._culler = LoopingCall(self._cull)
        self._culler.clock = reactor

    # Wiring.

    def connect(self, base_url: str, token: str | None) -> None:
        self._rest = GatewayRest(
            self._reactor,
            base_url,
            token,
            self._config.request_timeout_seconds,
            self._config.verify_tls,
        )
        waiting, self._connected = self._connected, []
        for d in waiting:
            d.callback(self._rest)

    def start_culling(self) -> None:
        idle = self._config.idle_cull_seconds
        if idle > 0 and not self._culler.running:
            self._culler.start(min(60.0, idle / 4), now=False)

    async def shutdown_all(self) -> None:
        """Shut down every kernel jupybot started (on stop)."""
        if self._culler.running:
            self._culler.stop()
        for owner in list(self._owners):
            for name in list(self._owners.get(owner, {})):
                await self._stop(owner, name)

    def gateway_lost(self, reason: str) -> None:
        """The gateway restarted without its kernels: every kernel is gone."""
        for owned in list(self._owners.values()):
            for entry in list(owned.values()):
                entry.kernel.lose(reason)

    @property
    def rest(self) -> GatewayRest:
        if self._rest is None:
            raise GatewayUnavailable("The kernel gateway is still starting; try again in a moment.")
        return self._rest

    async def _gateway(self) -> GatewayRest:
        """The gateway's client, waiting (within the request timeout) while it starts."""
        if self._rest is not None:
            return self._rest
        d: Deferred[GatewayRest] = Deferred()
        self._connected.append(d)
        d.addTimeout(self._config.request_timeout_seconds, self._reactor)
        try:
            return await d
        except DeferredTimeout:
            raise GatewayUnavailable(
                "The kernel gateway is still starting; try again in a moment."
            ) from None
        finally:
            if d in self._connected:
                self._connected.remove(d)

    # The KernelManager API.

    def kernelspecs(self) -> Deferred[list[KernelSpec]]:
        return _deferred(self._kernelspecs())

    async def _kernelspecs(self) -> list[KernelSpec]:
        _, specs = await (await self._gateway()).kernelspecs()
        return specs

    def start(
        self, owner: str, spec: str | None = None, name: str | None = None
    ) -> Deferred[KernelHandle]:
        return _deferred(self._start(owner, spec, name))

    async def _start(self, owner: str, spec: str | None, name: str | None) -> KernelHandle:
        spec = spec or self._config.default_kernel
        rest = await self._gateway()
        owned = self._owners.setdefault(owner, {})
        if name is not None and name in owned:
            raise KernelError(f"There is already a kernel named {name!r} here.")
        total = sum(len(kernels) for kernels in self._owners.values()) + self._starting
        if total >= self._config.max_kernels:
            raise KernelLimitReached(
                f"This server runs its maximum of {self._config.max_kernels} kernels; "
                "stop one first."
            )
        if len(owned) >= self._config.max_kernels_per_owner:
            raise KernelLimitReached(
                f"There are already {len(owned)} kernels here (the limit); stop one first."
            )
        self._starting += 1
        try:
            kernel_id = await self._start_on_gateway(rest, spec)
        finally:
            self._starting -= 1
        kernel = GatewayKernel(self._reactor, rest, kernel_id, spec, self._config, self._gone)
        try:
            await kernel.connect()
        except Exception:
            await kernel.shutdown()
            raise
        name = name if name is not None and name not in owned else _free_name(owned, spec)
        handle = KernelHandle(name, kernel_id, spec, owner, self._reactor.seconds())
        owned[name] = _Owned(handle, kernel)
        self._current[owner] = name
        log.info(
            "kernels: started {spec} kernel {id} for {owner}", spec=spec, id=kernel_id, owner=owner
        )
        return handle

    async def _start_on_gateway(self, rest: GatewayRest, spec: str) -> str:
        try:
            return await rest.start_kernel(spec)
        except (UnknownKernelSpec, GatewayUnavailable) as error:
            # Gateways differ in how they refuse an unknown kernelspec (400, 404 or a bare 500):
            # the list of known ones tells.
            try:
                _, specs = await rest.kernelspecs()
            except KernelError:
                raise error from None
            if spec in {known.name for known in specs}:
                raise
            known = ", ".join(s.name for s in specs) or "none"
            raise UnknownKernelSpec(
                f"There is no kernel type {spec!r}; available: {known}."
            ) from None

    def kernels(self, owner: str) -> list[KernelHandle]:
        return [owned.handle for owned in self._owners.get(owner, {}).values()]

    def current(self, owner: str) -> KernelHandle | None:
        name = self._current.get(owner)
        owned = self._owners.get(owner, {}).get(name or "")
        return owned.handle if owned is not None else None

    def use(self, owner: str, name: str) -> KernelHandle:
        owned = self._find(owner, name)
        self._current[owner] = owned.handle.name
        return owned.handle

    def execute(
        self,
        owner: str,
        code: str,
        listener: ExecutionListener,
        name: str | None = None,
        allow_stdin: bool = True,
    ) -> Deferred[ExecutionResult]:
        return _deferred(self._execute(owner, code, listener, name, allow_stdin))

    async def _execute(
        self,
        owner: str,
        code: str,
        listener: ExecutionListener,
        name: str | None,
        allow_stdin: bool,
    ) -> ExecutionResult:
        if name is None and self.current(owner) is None:
            await self._start(owner, None, None)
        owned = self._find(owner, name)
        return await owned.kernel.execute(code, listener, allow_stdin)

    def interrupt(self, owner: str, name: str | None = None) -> Deferred[None]:
        return _deferred(self._act(owner, name, "interrupt"))

    def restart(self, owner: str, name: str | None = None) -> Deferred[None]:
        return _deferred(self._act(owner, name, "restart"))

    def stop(self, owner: str, name: str | None = None) -> Deferred[None]:
        return _deferred(self._act(owner, name, "stop"))

    async def _act(self, owner: str, name: str | None, action: str) -> None:
        owned = self._find(owner, name)
        if action == "interrupt":
            await owned.kernel.interrupt()
        elif action == "restart":
            await owned.kernel.restart()
        else:
            await self._stop(owner, owned.handle.name)

    # Internals.

    async def _stop(self, owner: str, name: str) -> None:
        owned = self._owners.get(owner, {}).pop(name, None)
        if owned is None:
            return
        self._forget_current(owner, name)
        try:
            await owned.kernel.shutdown()
        except KernelError as e:
            log.warn("kernels: shutting down {id}: {e}", id=owned.handle.kernel_id, e=str(e))

    def _find(self, owner: str, name: str | None) -> _Owned:
        owned = self._owners.get(owner, {})
        if name is None:
            name = self._current.get(owner)
            if name is None:
                raise NoSuchKernel("There is no kernel here yet; start one first.")
        if name not in owned:
            known = ", ".join(owned) or "none"
            raise NoSuchKernel(f"There is no kernel named {name!r} here (kernels: {known}).")
        return owned[name]

    def _forget_current(self, owner: str, name: str) -> None:
        if self._current.get(owner) == name:
            remaining = list(self._owners.get(owner, {}))
            if remaining:
                self._current[owner] = remaining[-1]
            else:
                self._current.pop(owner, None)

    def kernel_gone(self) -> Deferred[str]:
        """Fires, with the reason people are told, the next time a kernel stops being usable
        (it died, or the gateway lost it) and is forgotten."""
        d: Deferred[str] = Deferred()
        self._gone_waiters.append(d)
        return d

    def _gone(self, kernel: GatewayKernel) -> None:
        for owner, owned in self._owners.items():
            for name, entry in list(owned.items()):
                if entry.kernel is kernel:
                    del owned[name]
                    self._forget_current(owner, name)
        waiters, self._gone_waiters = self._gone_waiters, []
        for d in waiters:
            d.callback(kernel.gone_reason or "")

    def _cull(self) -> None:
        deadline = self._reactor.seconds() - self._config.idle_cull_seconds
        for owner, owned in list(self._owners.items()):
            for name, entry in list(owned.items()):
                if not entry.kernel.busy and entry.kernel.last_used < deadline:
                    log.info(
                        "kernels: shutting down idle kernel {name} of {owner}",
                        name=name,
                        owner=owner,
                    )
                    _deferred(self._stop(owner, name)).addErrback(self._cull_failed, owner, name)

    def _cull_failed(self, failure: Failure, owner: str, name: str) -> None:
        log.failure(
            "kernels: shutting down idle kernel {name} of {owner} failed",
            failure,
            name=name,
            owner=owner,
        )


def _free_name(owned: dict[str, _Owned], spec: str) -> str:
    if spec not in owned:
        return spec
    n = 2
    while f"{spec}-{n}" in owned:
        n += 1
    return f"{spec}-{n}"


def _deferred(coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
    return Deferred.fromCoroutine(coroutine)


__all__ = ["GatewayKernelManager"]
