"""L{GatewayKernelManager}: every owner's kernels on one Kernel Gateway, with limits, culling,
starts in turn and a warm pool."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config.kernels import GatewayConfig
from ..reactor import NetworkReactor
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
from .kernel import GONE, GatewayKernel, KernelLostBeforeRun
from .pool import WarmPool
from .rest import GatewayRest
from .starts import StartQueue, StartWatcher, machine_start_concurrency

log = Logger()

T = TypeVar("T")

KernelFactory = Callable[
    [NetworkReactor, GatewayRest, str, str, GatewayConfig, Callable[[GatewayKernel], None]],
    GatewayKernel,
]


@dataclass
class _Owned:
    handle: KernelHandle
    kernel: GatewayKernel


class _PendingStart:
    """An owner's kernel start under way: runs that need that owner's kernel meanwhile wait for
    this one instead of starting another (two `run`s racing into a new room share a kernel)."""

    def __init__(self) -> None:
        self.ahead: int | None = None
        self._watchers: list[StartWatcher] = []
        self._told: list[StartWatcher] = []  # those told they wait, to be told it is over
        self._waiting: list[Deferred[KernelHandle]] = []

    def watch(self, watcher: StartWatcher | None) -> None:
        if watcher is not None:
            self._watchers.append(watcher)
            if self.ahead is not None:
                self._tell(watcher, self.ahead)

    def tell(self, ahead: int | None) -> None:
        """Tell the watchers their place; None (the kernel is ready, or the start failed) goes
        only to those who heard they waited: a run given a pooled kernel hears nothing."""
        self.ahead = ahead
        if ahead is None:
            told, self._told = self._told, []
            for watcher in told:
                _tell(watcher, None)
            return
        for watcher in list(self._watchers):
            self._tell(watcher, ahead)

    def _tell(self, watcher: StartWatcher, ahead: int) -> None:
        # By identity: listeners may be dataclasses, equal to each other while alike.
        if not any(told is watcher for told in self._told):
            self._told.append(watcher)
        _tell(watcher, ahead)

    def join(self, watcher: StartWatcher | None) -> Deferred[KernelHandle]:
        """Fires with the started kernel, or fails as the start did."""
        self.watch(watcher)

        def leave(d: Deferred[KernelHandle]) -> None:
            self._waiting.remove(d)
            self._watchers = [w for w in self._watchers if w is not watcher]
            self._told = [w for w in self._told if w is not watcher]

        d: Deferred[KernelHandle] = Deferred(leave)
        self._waiting.append(d)
        return d

    def settle(self, outcome: KernelHandle | BaseException) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(outcome, BaseException):
                d.errback(outcome)
            else:
                d.callback(outcome)


def _tell(watcher: StartWatcher, ahead: int | None) -> None:
    try:
        watcher.on_kernel_wait(ahead)
    except Exception:
        log.failure("kernels: a start watcher failed")


class GatewayKernelManager(KernelManager):
    """The kernel core on a gateway. L{connect} tells it where the gateway is (it may move:
    the embedded gateway gets a new port when restarted)."""

    def __init__(
        self,
        reactor: NetworkReactor,
        config: GatewayConfig,
        kernel_factory: KernelFactory = GatewayKernel,
    ) -> None:
        self._reactor = reactor
        self._config = config
        self._kernel_factory = kernel_factory
        self._rest: GatewayRest | None = None
        self._connected: list[Deferred[GatewayRest]] = []
        self._owners: dict[str, dict[str, _Owned]] = {}
        self._current: dict[str, str] = {}
        # Per owner: its starts under way (limits), and the latest, which runs wait for.
        self._starting: dict[str, int] = {}
        self._pending: dict[str, _PendingStart] = {}
        self.starts = StartQueue(config.start_concurrency or machine_start_concurrency())
        self.pool = WarmPool(
            config.prestart,
            lambda landed: _deferred(
                self._new_kernel(config.default_kernel, None, urgent=False, landed=landed)
            ),
            self._pool_may_grow,
        )
        self._pool_wanted = False
        self._gone_waiters: list[Deferred[str]] = []
        # Per owner: why its current kernel was lost, told with its next run's result.
        self._lost: dict[str, str] = {}
        self._culler = LoopingCall(self._cull)
        self._culler.clock = IReactorTime(reactor)
        # Read by /metrics: each finished execution as (owner, result), and gateway restarts.
        self.execution_observers: list[Callable[[str, ExecutionResult], None]] = []
        self.gateway_restarts = 0

    # Wiring.

    def connect(self, base_url: str, token: str | None) -> None:
        self.use_gateway(
            GatewayRest(
                self._reactor,
                base_url,
                token,
                self._config.request_timeout_seconds,
                self._config.verify_tls,
            )
        )

    def use_gateway(self, rest: GatewayRest) -> None:
        """Talk to the gateway through C{rest} (what L{connect} builds; tests pass a fake)."""
        self._rest = rest
        waiting, self._connected = self._connected, []
        for d in waiting:
            d.callback(self._rest)
        if self._pool_wanted:
            self.pool.fill()

    def start_warm_pool(self) -> None:
        """Keep `gateway.prestart` kernels started ahead, from now on (once connected)."""
        self._pool_wanted = True
        if self._rest is not None:
            self.pool.fill()

    def start_culling(self) -> None:
        idle = self._config.idle_cull_seconds
        if idle > 0 and not self._culler.running:
            self._culler.start(min(60.0, idle / 4), now=False)

    async def shutdown_all(self) -> None:
        """Shut down every kernel jupybot started (on stop)."""
        if self._culler.running:
            self._culler.stop()
        self._pool_wanted = False
        await self.pool.close()
        for owner in list(self._owners):
            for name in list(self._owners.get(owner, {})):
                await self._stop(owner, name)

    def gateway_lost(self, reason: str) -> None:
        """The gateway restarted without its kernels: every kernel is gone, and new starts
        wait for it to be back (L{connect})."""
        self.gateway_restarts += 1
        self._rest = None
        for kernel in self.pool.gateway_lost():
            kernel.lose(reason)
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
        d.addTimeout(self._config.request_timeout_seconds, IReactorTime(self._reactor))
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
        self._lost.pop(owner, None)  # who starts a kernel knows the old one is gone
        return _deferred(self._start(owner, spec, name)).addBoth(self._refill_pool)

    async def _start(
        self,
        owner: str,
        spec: str | None,
        name: str | None,
        pending: _PendingStart | None = None,
    ) -> KernelHandle:
        spec = spec or self._config.default_kernel
        # Registered before anything is awaited: a run arriving meanwhile waits for this start.
        pending = pending or _PendingStart()
        self._pending[owner] = pending
        counted = False
        try:
            await self._gateway()
            owned = self._owners.setdefault(owner, {})
            if name is not None and name in owned:
                raise KernelError(f"There is already a kernel named {name!r} here.")
            self._check_limits(owned, self._starting.get(owner, 0))
            self._starting[owner] = self._starting.get(owner, 0) + 1
            counted = True
            kernel = self.pool.take() if spec == self._config.default_kernel else None
            if kernel is None:
                kernel = await self._new_kernel(spec, pending.tell, urgent=True)
            kernel.last_used = self._reactor.seconds()
            owned = self._owners.setdefault(owner, owned)
            name = name if name is not None and name not in owned else _free_name(owned, spec)
            handle = KernelHandle(name, kernel.kernel_id, spec, owner, self._reactor.seconds())
            owned[name] = _Owned(handle, kernel)
            self._current[owner] = name
        except BaseException as error:
            pending.settle(error)
            raise
        finally:
            if counted:
                self._starting[owner] -= 1
                if not self._starting[owner]:
                    del self._starting[owner]
            if self._pending.get(owner) is pending:
                del self._pending[owner]
            pending.tell(None)
        log.info(
            "kernels: started {spec} kernel {id} for {owner}",
            spec=spec,
            id=handle.kernel_id,
            owner=owner,
        )
        pending.settle(handle)
        return handle

    def _check_limits(self, owned: dict[str, _Owned], owner_starting: int) -> None:
        total = sum(len(kernels) for kernels in self._owners.values())
        total += sum(self._starting.values())
        if total >= self._config.max_kernels:
            raise KernelLimitReached(
                f"This server runs its maximum of {self._config.max_kernels} kernels; "
                "stop one first."
            )
        if len(owned) + owner_starting >= self._config.max_kernels_per_owner:
            raise KernelLimitReached(
                f"There are already {len(owned)} kernels here (the limit); stop one first."
            )

    def _pool_may_grow(self) -> bool:
        total = sum(len(kernels) for kernels in self._owners.values())
        total += sum(self._starting.values()) + len(self.pool)
        return total < self._config.max_kernels

    async def _new_kernel(
        self,
        spec: str,
        on_ahead: Callable[[int], None] | None,
        urgent: bool,
        landed: Callable[[GatewayKernel], None] | None = None,
    ) -> GatewayKernel:
        """A kernel started and answering, once its turn in the start queue came: its
        timeouts count from then. A room's turn takes a pooled kernel if one landed while it
        waited; C{landed} hears of the kernel before the turn passes on."""
        await self.starts.wait_turn(on_ahead, urgent)
        try:
            if not urgent and not self._pool_wanted:
                raise KernelError("The warm pool was closed before this start's turn.")
            pooled = self.pool.take() if urgent and spec == self._config.default_kernel else None
            if pooled is not None:
                return pooled
            if on_ahead is not None:
                on_ahead(0)
            rest = await self._gateway()  # it may have restarted while this waited
            kernel_id = await self._start_on_gateway(rest, spec)
            kernel = self._kernel_factory(
                self._reactor, rest, kernel_id, spec, self._config, self._gone
            )
            try:
                await kernel.connect()
            except BaseException:
                with suppress(KernelError):
                    await kernel.shutdown()
                raise
            if landed is not None:
                try:
                    await kernel.warm_up()
                except BaseException:
                    with suppress(KernelError):
                        await kernel.shutdown()
                    raise
                landed(kernel)
            return kernel
        finally:
            self.starts.done()

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

    def running_kernels(self) -> int:
        """How many kernels run for all owners together (read by /metrics)."""
        return sum(len(owned) for owned in self._owners.values())

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
        silent: bool = False,
    ) -> Deferred[ExecutionResult]:
        return _deferred(self._execute(owner, code, listener, name, allow_stdin, silent)).addBoth(
            self._refill_pool
        )

    def _refill_pool(self, result: T) -> T:
        """After a start or a run: a kernel the pool gave out is replaced now, not while the
        run it was taken for is under way."""
        self.pool.refill()
        return result

    async def _execute(
        self,
        owner: str,
        code: str,
        listener: ExecutionListener,
        name: str | None,
        allow_stdin: bool,
        silent: bool = False,
    ) -> ExecutionResult:
        if name is None and self.current(owner) is None:
            await self._room_kernel(owner, listener)
        owned = self._find(owner, name)
        try:
            result = await owned.kernel.execute(code, listener, allow_stdin, silent)
        except KernelLostBeforeRun:
            if name is not None:
                raise  # that kernel was asked for by name: say it is gone
            # The room's kernel went (the gateway restarted) before this run reached it: it
            # runs in a new one rather than failing once more.
            if self.current(owner) is None:
                await self._room_kernel(owner, listener)
            owned = self._find(owner, None)
            result = await owned.kernel.execute(code, listener, allow_stdin, silent)
        lost = self._lost.pop(owner, None) if name is None else None
        if lost is not None:
            # The first run in the room's new kernel says what became of the old one.
            note = f"{lost} This ran in a new kernel."
            result = replace(result, message=f"{result.message} {note}" if result.message else note)
        if not silent:  # jupybot's own work is not a run people asked for
            for observe in self.execution_observers:
                observe(owner, result)
        return result

    async def _room_kernel(self, owner: str, listener: ExecutionListener) -> None:
        """Wait for the room's one kernel start, starting it if nobody has: runs of a room
        without a kernel resume in the order they came, so the first run's code goes first."""
        watcher = listener if isinstance(listener, StartWatcher) else None
        pending = self._pending.get(owner)
        if pending is not None:
            await pending.join(watcher)
            return
        pending = _PendingStart()
        started = pending.join(watcher)
        _deferred(self._start(owner, None, None, pending)).addErrback(_told_to_waiters)
        await started

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
        if self.pool.forget(kernel):
            return
        forgotten = False
        for owner, owned in self._owners.items():
            for name, entry in list(owned.items()):
                if entry.kernel is kernel:
                    del owned[name]
                    self._forget_current(owner, name)
                    if owner not in self._current:
                        self._lost[owner] = kernel.gone_reason or GONE
                    forgotten = True
        if not forgotten:
            return  # a pooled kernel the gateway lost, or one that died while starting
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


def _told_to_waiters(failure: Failure) -> None:
    """A start's failure reaches the runs that waited for it; nothing else to do."""


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
