"""One `execute_request` from sending to its end, turned into typed events for its caller.

An execution is finished only when BOTH its `execute_reply` (shell) and its `status: idle`
(iopub) have arrived: they travel on different channels and come in either order, and output
may still arrive between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .api import (
    ClearOutput,
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    ExecutionListener,
    ExecutionResult,
    ExecutionStatus,
    OutputEvent,
    Stream,
    UpdateDisplayData,
)
from .channels import Message, message_type

log = Logger()

# Seen on Kernel Gateway 3: output the kernel wrote around a dropped websocket can be missing
# on the new one, though the reply and the idle status come.
OUTPUT_MAY_BE_MISSING = (
    "The connection to the kernel dropped while this ran: some of its output may be missing."
)

# The idle status normally follows the reply within milliseconds; if it is lost, the reply is
# enough to end the execution rather than leave its caller waiting.
IDLE_AFTER_REPLY_SECONDS = 5.0

InputSender = Callable[[str, dict[str, Any]], None]


class Execution:
    """Feeds one execution's messages to its listener; L{result} fires when it is over."""

    def __init__(
        self,
        listener: ExecutionListener,
        clock: IReactorTime,
        send_input: InputSender,
    ) -> None:
        self.listener = listener
        self.result: Deferred[ExecutionResult] = Deferred()
        self.msg_id = ""
        self._clock = clock
        self._send_input = send_input
        self._started = clock.seconds()
        self._reply: dict[str, Any] | None = None
        self._idle = False
        # Cancelled when the execution ends: a run's timer would otherwise stay queued, and
        # wake the reactor for nothing, long after the run.
        self._idle_timer: IDelayedCall | None = None
        self.busy = False  # the kernel has started running it
        self.on_busy: Callable[[], None] | None = None
        self._pending_input: Deferred[str] | None = None
        self._override: tuple[ExecutionStatus, str] | None = None
        self._restarted = False
        self._dropped = False

    def override(self, status: ExecutionStatus, message: str, restarted: bool = False) -> None:
        """However it ends, report C{status} with C{message} (after jupybot interrupted it, or
        C{restarted} the kernel to end it)."""
        self._override = (status, message)
        self._restarted = self._restarted or restarted

    def connection_dropped(self) -> None:
        """The websocket dropped while this ran: if it still ends normally, say that output
        may be missing."""
        self._dropped = True

    @property
    def done(self) -> bool:
        return self.result.called

    def handle(self, message: Message) -> None:
        """Take one message whose parent is this execution's request."""
        if self.done:
            return
        kind = message_type(message)
        content: dict[str, Any] = message.get("content") or {}
        if kind == "execute_reply":
            self._reply = content
            if not self._idle and self._idle_timer is None:
                self._idle_timer = self._clock.callLater(
                    IDLE_AFTER_REPLY_SECONDS, self._reply_without_idle
                )
        elif kind == "status":
            state = content.get("execution_state")
            if state == "busy" and not self.busy:
                self.busy = True
                if self.on_busy is not None:
                    self.on_busy()
            elif state == "idle":
                self._idle = True
        elif kind == "input_request":
            self._ask(message, content)
        else:
            event = output_event(kind, content)
            if event is not None:
                self._emit(event)
        if self._reply is not None and self._idle:
            status = self._reply.get("status", "ok")
            if status not in ("ok", "error", "aborted"):
                status = "error"
            self.finish(status, self._reply.get("execution_count"))

    def _reply_without_idle(self) -> None:
        if self._reply is not None and not self.done:
            log.warn("kernels: no idle status {s}s after the reply", s=IDLE_AFTER_REPLY_SECONDS)
            self._idle = True
            self.handle({"header": {"msg_type": "status"}, "content": {}})

    def finish(
        self,
        status: ExecutionStatus,
        execution_count: int | None = None,
        message: str | None = None,
    ) -> None:
        """End the execution (also used for timeouts and deaths, with a C{message} for people)."""
        if self.done:
            return
        if self._override is not None:
            status, message = self._override
        elif message is None and self._dropped:
            message = OUTPUT_MAY_BE_MISSING
        self._end()
        duration = self._clock.seconds() - self._started
        self.result.callback(
            ExecutionResult(status, execution_count, duration, message, self._restarted)
        )

    def fail(self, error: Exception) -> None:
        """End the execution with C{error}: its outcome cannot be known (the gateway went away)."""
        if self.done:
            return
        self._end()
        self.result.errback(error)

    def _end(self) -> None:
        if self._pending_input is not None:
            pending, self._pending_input = self._pending_input, None
            pending.cancel()
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()

    def _emit(self, event: OutputEvent) -> None:
        try:
            self.listener.on_output(event)
        except Exception:
            log.failure("kernels: an output listener failed")

    def _ask(self, message: Message, content: dict[str, Any]) -> None:
        prompt = str(content.get("prompt", ""))
        password = bool(content.get("password", False))
        try:
            answer = self.listener.on_input_request(prompt, password)
        except Exception:
            log.failure("kernels: an input listener failed")
            answer = Deferred()
            answer.errback()
        self._pending_input = answer
        parent = message.get("header") or {}

        def reply(value: str) -> None:
            self._pending_input = None
            if not self.done:
                self._send_input(value, parent)

        def no_answer(failure: Failure) -> None:
            self._pending_input = None
            if not self.done:
                # The kernel blocks in input() until it gets a reply; an empty one lets it go on.
                self._send_input("", parent)

        answer.addCallbacks(reply, no_answer)


def output_event(kind: str, content: dict[str, Any]) -> OutputEvent | None:
    """The typed event for an iopub output message, or None for anything else."""
    if kind == "stream":
        return Stream(str(content.get("name", "stdout")), str(content.get("text", "")))
    if kind in ("display_data", "update_display_data"):
        display_id = (content.get("transient") or {}).get("display_id")
        cls = DisplayData if kind == "display_data" else UpdateDisplayData
        return cls(content.get("data") or {}, content.get("metadata") or {}, display_id)
    if kind == "execute_result":
        return ExecuteResult(
            content.get("data") or {}, content.get("metadata") or {}, content.get("execution_count")
        )
    if kind == "error":
        return ErrorOutput(
            str(content.get("ename", "Error")),
            str(content.get("evalue", "")),
            tuple(str(line) for line in content.get("traceback") or ()),
        )
    if kind == "clear_output":
        return ClearOutput(bool(content.get("wait", False)))
    return None
