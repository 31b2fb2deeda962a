"""One kernel on the gateway: its channels, its running executions, its timeouts and its death."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..config.kernels import GatewayConfig
from ..reactor import NetworkReactor
from .api import (
    ExecutionListener,
    ExecutionResult,
    ExecutionStatus,
    GatewayUnavailable,
    KernelDied,
    NoSuchKernel,
    OutputEvent,
)
from .channels import KernelChannels, Message, message_type
from .execution import Execution
from .rest import GatewayRest

log = Logger()

GONE = "The kernel is gone from the gateway (shut down, culled, or the gateway restarted)."
DIED_RESTARTED = "The kernel died and was restarted: its variables are lost."
DIED_DEAD = "The kernel died and could not be restarted."


class _Unheard:
    """The listener of an execution nobody asked for: it has no output, and asks nothing."""

    def on_output(self, event: OutputEvent) -> None:
        pass

    def on_input_request(self, prompt: str, password: bool) -> Deferred[str]:
        return Deferred()


class KernelLostBeforeRun(KernelDied):
    """The kernel was gone before this run's code was sent to it: nothing of it ran."""


class GatewayKernel:
    """A kernel jupybot started; C{on_gone} is told once when it can no longer be used."""

    def __init__(
        self,
        reactor: NetworkReactor,
        rest: GatewayRest,
        kernel_id: str,
        spec: str,
        config: GatewayConfig,
        on_gone: Callable[[GatewayKernel], None],
    ) -> None:
        self.kernel_id = kernel_id
        self.spec = spec
        self._reactor = reactor
        self._rest = rest
        self._config = config
        self._on_gone = on_gone
        self.channels = KernelChannels(
            reactor,
            rest.channels_url(kernel_id),
            rest.websocket_headers(),
            self._kernel_message,
            self._disconnected,
            verify_tls=config.verify_tls,
        )
        self._executions: dict[str, Execution] = {}
        self.last_used = reactor.seconds()
        self.gone_reason: str | None = None
        self._checking = False
        # Executions sent while a restart is under way would be aborted by it: they wait.
        self._restart_waiters: list[Deferred[None]] | None = None
        # A kernel answers kernel_info once its channels are wired; until then (after a start,
        # a restart or a reconnection) an execute_request can be dropped, so we ask first.
        self._answering = False
        self._handshake_lock = DeferredLock()

    @property
    def busy(self) -> bool:
        return bool(self._executions)

    async def connect(self) -> None:
        self.channels.start()
        await self._ensure_answering()

    async def _ensure_answering(self) -> None:
        await self.channels.wait_open(self._config.request_timeout_seconds)
        if self._answering:
            return
        await self._handshake_lock.acquire()
        try:
            if not self._answering:
                await self._handshake()
                self._answering = True
        finally:
            self._handshake_lock.release()

    async def _handshake(self) -> None:
        deadline = self._reactor.seconds() + self._config.request_timeout_seconds
        while self._reactor.seconds() < deadline:
            await self.channels.wait_open(max(deadline - self._reactor.seconds(), 0.1))
            reply: Deferred[None] = Deferred()
            seen: set[str] = set()

            def answered(
                message: Message, reply: Deferred[None] = reply, seen: set[str] = seen
            ) -> None:
                # The reply proves the shell channel; a status with our request as parent
                # proves iopub is subscribed (after a restart it can lag: output would be lost).
                seen.add(message_type(message))
                if {"kernel_info_reply", "status"} <= seen and not reply.called:
                    reply.callback(None)

            msg_id = self.channels.send("shell", "kernel_info_request", {}, handler=answered)
            reply.addTimeout(0.5, IReactorTime(self._reactor))
            try:
                await reply
                return
            except DeferredTimeout:
                continue
            finally:
                self.channels.forget(msg_id)
        raise GatewayUnavailable("The kernel does not answer; try again or restart it.")

    async def execute(
        self, code: str, listener: ExecutionListener, allow_stdin: bool, silent: bool = False
    ) -> ExecutionResult:
        if self._restart_waiters is not None:
            waiter: Deferred[None] = Deferred()
            self._restart_waiters.append(waiter)
            await waiter
        if self.gone_reason is not None:
            raise KernelLostBeforeRun(self.gone_reason)
        try:
            await self._ensure_answering()
        except GatewayUnavailable:
            if self.gone_reason is not None:
                raise KernelLostBeforeRun(self.gone_reason) from None
            raise
        self.last_used = self._reactor.seconds()

        def send_input(value: str, parent: dict[str, Any]) -> None:
            self.channels.send("stdin", "input_reply", {"value": value}, parent_header=parent)

        execution = Execution(listener, IReactorTime(self._reactor), send_input)
        content = {
            "code": code,
            "silent": silent,
            "store_history": not silent,
            "user_expressions": {},
            "allow_stdin": allow_stdin and not silent,
            "stop_on_error": True,
        }
        execution.msg_id = self.channels.send(
            "shell", "execute_request", content, handler=execution.handle
        )
        self._executions[execution.msg_id] = execution
        # The time limit counts from when the kernel starts running the code, not from when it
        # was queued; a kernel that never starts it is caught after the limit plus a margin.
        timers: list[IDelayedCall] = []
        limit = self._config.execution_timeout_seconds
        margin = self._config.request_timeout_seconds
        timers.append(self._reactor.callLater(limit + margin, self._timed_out, execution, timers))

        def started() -> None:
            if timers[0].active():
                timers[0].reset(limit)

        execution.on_busy = started
        try:
            return await execution.result
        finally:
            for timer in timers:
                if timer.active():
                    timer.cancel()
            self._executions.pop(execution.msg_id, None)
            self.channels.forget(execution.msg_id)
            self.last_used = self._reactor.seconds()

    async def warm_up(self) -> None:
        """Run nothing, silently (no history, no execution count, no `_`), but format one
        expression: a kernel's first execution and first formatted result pay for set-up a
        pooled kernel should pay before a room's first run does. Interleaved on this project's
        VM, a first run after it took 9.6 ms at the median, 10.9 after a bare `pass`, 4.7 once
        warm (6 kernels each)."""
        await self._ensure_answering()
        execution = Execution(_Unheard(), IReactorTime(self._reactor), lambda value, parent: None)
        content = {
            "code": "pass",
            "silent": True,
            "store_history": False,
            "user_expressions": {"warm_up": "0"},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        execution.msg_id = self.channels.send(
            "shell", "execute_request", content, handler=execution.handle
        )
        execution.result.addTimeout(
            self._config.request_timeout_seconds, IReactorTime(self._reactor)
        )
        try:
            await execution.result
        except DeferredTimeout:
            raise GatewayUnavailable(
                "The kernel does not answer; try again or restart it."
            ) from None
        finally:
            self.channels.forget(execution.msg_id)

    async def interrupt(self) -> None:
        await self._rest.interrupt(self.kernel_id)

    async def restart(self) -> None:
        # Callers told of the end of their execution may run again at once: they must wait.
        self._restart_waiters = []
        self._answering = False
        self._finish_all("aborted", "The kernel was restarted: its variables are lost.")
        try:
            await self._rest.restart(self.kernel_id)
        finally:
            waiters, self._restart_waiters = self._restart_waiters, None
            for waiter in waiters:
                waiter.callback(None)

    async def shutdown(self) -> None:
        self._finish_all("aborted", "The kernel was stopped.")
        self.gone_reason = "The kernel was stopped."
        await self.channels.close()
        with suppress(NoSuchKernel):
            await self._rest.shutdown(self.kernel_id)

    # Timeouts: interrupt, then restart if the kernel is still busy after a grace period.

    def _timed_out(self, execution: Execution, timers: list[IDelayedCall]) -> None:
        limit = self._config.execution_timeout_seconds
        log.info(
            "kernels: execution in {kernel} ran past {limit}s; interrupting",
            kernel=self.kernel_id,
            limit=limit,
        )
        execution.override(
            "timeout", f"Stopped: it ran longer than {limit:g} s, so it was interrupted."
        )
        d = Deferred.fromCoroutine(self.interrupt())
        d.addErrback(lambda f: log.warn("kernels: interrupt failed: {e}", e=f.getErrorMessage()))
        grace = self._config.interrupt_grace_seconds
        timers.append(self._reactor.callLater(grace, self._still_busy, execution))

    def _still_busy(self, execution: Execution) -> None:
        if execution.done:
            return
        limit = self._config.execution_timeout_seconds
        grace = self._config.interrupt_grace_seconds
        execution.override(
            "timeout",
            f"Stopped: it ran longer than {limit:g} s and ignored the interrupt for "
            f"{grace:g} s, so the kernel was restarted: its variables are lost.",
            restarted=True,
        )
        d = Deferred.fromCoroutine(self.restart())  # ends the execution first
        d.addErrback(lambda f: log.warn("kernels: restart failed: {e}", e=f.getErrorMessage()))

    # Death: a kernel-wide status, or the socket closing on a kernel the gateway no longer has.

    def _kernel_message(self, message: Message) -> None:
        kind = message_type(message)
        content = message.get("content") or {}
        if kind == "shutdown_reply" and not content.get("restart"):
            # The gateway keeps the socket open when a kernel is deleted through its REST API
            # (by someone else, or culled); the kernel's broadcast shutdown_reply is the sign.
            self.lose(GONE)
            return
        if kind != "status":
            return
        state = content.get("execution_state")
        if state == "restarting":
            self._answering = False
            self._finish_all("died", DIED_RESTARTED)
            # After the gateway restarts a dead kernel, this socket's iopub stream stays on the
            # old kernel (replies come, output does not): a new socket gets fresh streams.
            self.channels.reconnect()
        elif state == "dead":
            self.lose(DIED_DEAD)

    def _disconnected(self, reason: str) -> None:
        self._answering = False
        for execution in self._executions.values():
            execution.connection_dropped()
        if self._checking or self.gone_reason is not None:
            return
        self._checking = True
        Deferred.fromCoroutine(self._check_still_there()).addErrback(
            lambda f: log.failure(
                "kernels: {kernel}: checking it is still there failed", f, kernel=self.kernel_id
            )
        )

    async def _check_still_there(self) -> None:
        try:
            await self._rest.kernel(self.kernel_id)
        except NoSuchKernel:
            self.lose(GONE)
        except GatewayUnavailable:
            # The gateway is down: the socket keeps retrying and we check again then. What ran
            # meanwhile has an unknown outcome; its callers are told rather than left waiting.
            lost = GatewayUnavailable(
                "The kernel gateway went away while this ran; try again in a moment."
            )
            for execution in list(self._executions.values()):
                execution.fail(lost)
        finally:
            self._checking = False

    def lose(self, reason: str) -> None:
        """The kernel cannot be used any more: end its executions and tell the manager."""
        if self.gone_reason is not None:
            return
        log.info("kernels: {kernel}: {reason}", kernel=self.kernel_id, reason=reason)
        self.gone_reason = reason
        # The manager forgets it first: a caller told of its execution's end may run again at
        # once, and must get a new kernel rather than this one.
        self._on_gone(self)
        self._finish_all("died", reason)
        self.channels.close()

    def _finish_all(self, status: ExecutionStatus, message: str) -> None:
        for execution in list(self._executions.values()):
            execution.finish(status, None, message)


__all__ = ["GatewayKernel", "KernelLostBeforeRun"]
