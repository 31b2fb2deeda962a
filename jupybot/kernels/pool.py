"""The warm pool: kernels of the default spec started ahead, so a new room's first run does not
wait for a kernel start. Each pooled kernel goes to one owner, once; nothing comes back to it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from functools import partial

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from .api import KernelError
from .kernel import GatewayKernel

__all__ = ["WarmPool"]

log = Logger()


class WarmPool:
    """Up to C{size} fresh kernels, started with C{start_kernel(landed)} while C{may_grow()}
    allows (the server's kernel limit counts them). C{start_kernel} calls C{landed} with the
    kernel as soon as it answers, before its start's turn goes to the next one (who may be a
    room that takes it). Filling starts with L{fill}; L{close} ends it."""

    def __init__(
        self,
        size: int,
        start_kernel: Callable[[Callable[[GatewayKernel], None]], Deferred[GatewayKernel]],
        may_grow: Callable[[], bool],
    ) -> None:
        self.size = size
        self._start_kernel = start_kernel
        self._may_grow = may_grow
        self._ready: list[GatewayKernel] = []
        self.starting = 0
        self._enabled = False
        # Bumped when the gateway loses its kernels or the pool closes: a start begun before
        # lands in a pool that no longer wants it, and is shut down.
        self._generation = 0
        self._landing_waiters: list[Deferred[None]] = []
        # For close: starts ending, and shutdowns of kernels that landed unwanted.
        self._settling: list[Deferred[None]] = []
        self._unwanted: list[Deferred[None]] = []

    @property
    def ready(self) -> int:
        return len(self._ready)

    @property
    def kernel_ids(self) -> list[str]:
        return [kernel.kernel_id for kernel in self._ready]

    def __len__(self) -> int:
        """Kernels the pool holds or is starting: what it adds to the gateway's load."""
        return len(self._ready) + self.starting

    def __contains__(self, kernel: GatewayKernel) -> bool:
        return kernel in self._ready

    def kernel_landed(self) -> Deferred[None]:
        """Fires the next time a started kernel joins the pool (for tests and benchmarks)."""
        d: Deferred[None] = Deferred()
        self._landing_waiters.append(d)
        return d

    def fill(self) -> None:
        """Start kernels until the pool is full (or the server's limit is reached)."""
        self._enabled = self.size > 0
        while self._enabled and len(self) < self.size and self._may_grow():
            self.starting += 1
            generation = self._generation
            d = self._start_kernel(partial(self._landed, generation=generation))
            d.addErrback(self._failed)

    def take(self) -> GatewayKernel | None:
        """A fresh kernel for an owner, now, or None. The caller refills the pool (L{refill})
        once the owner's run is over: a kernel starting meanwhile would slow that run down
        (on 2 cores, a warm first run took 15-20 ms instead of 6)."""
        kernel = None
        while self._ready and kernel is None:
            candidate = self._ready.pop(0)
            if candidate.gone_reason is None:
                kernel = candidate
        return kernel

    def refill(self) -> None:
        """Start what the pool lacks, if it is filling (after L{fill}, before L{close})."""
        if self._enabled:
            self.fill()

    def forget(self, kernel: GatewayKernel) -> bool:
        """C{kernel} is gone (it died, or the gateway culled it): True if it was pooled, and
        another is started in its place."""
        if kernel not in self._ready:
            return False
        self._ready.remove(kernel)
        if self._enabled:
            self.fill()
        return True

    def gateway_lost(self) -> list[GatewayKernel]:
        """The gateway restarted without its kernels: the pooled ones, returned, are gone (the
        caller tells each) and starts under way were made on the old gateway. L{fill} again
        once it is back."""
        self._generation += 1
        lost, self._ready = self._ready, []
        return lost

    async def close(self) -> None:
        """Stop filling and shut down every pooled kernel, and those under way once they
        land (each start is bounded by its timeouts): none is left on the gateway."""
        self._enabled = False
        self._generation += 1
        ready, self._ready = self._ready, []
        for kernel in ready:
            await _shut_down(kernel)
        while self.starting:
            settled: Deferred[None] = Deferred()
            self._settling.append(settled)
            await settled
        while self._unwanted:
            await self._unwanted[0]

    def _settled(self) -> None:
        self.starting -= 1
        waiters, self._settling = self._settling, []
        for d in waiters:
            d.callback(None)

    def _landed(self, kernel: GatewayKernel, *, generation: int) -> None:
        self._settled()
        if generation != self._generation or not self._enabled or kernel.gone_reason is not None:
            shutdown = Deferred.fromCoroutine(_shut_down(kernel))
            self._unwanted.append(shutdown)
            shutdown.addBoth(lambda _: self._unwanted.remove(shutdown))
            return
        self._ready.append(kernel)
        log.info("kernels: warm pool holds {n} of {size}", n=self.ready, size=self.size)
        waiters, self._landing_waiters = self._landing_waiters, []
        for d in waiters:
            d.callback(None)

    def _failed(self, failure: Failure) -> None:
        self._settled()
        if not self._enabled:
            return  # closed while it waited for its turn
        # Not retried at once (the gateway may be down): the next run, loss or reconnection
        # refills the pool.
        log.warn("kernels: starting a pool kernel failed: {e}", e=failure.getErrorMessage())


async def _shut_down(kernel: GatewayKernel) -> None:
    with suppress(KernelError):
        await kernel.shutdown()
