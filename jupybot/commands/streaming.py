"""Showing one execution in a chat: a reply edited as output arrives, then a final status.

Policy: a quick execution (under C{interval}, one second by default) gets exactly one message,
its final answer with its status. A longer one gets a reply after C{interval} that is edited at
most once per C{interval} while output arrives (for its first sends; then at the pace a
homeserver's default rate limit sustains, and less often while the network pushes back: see
L{EditPacer}), then edited a last time with status, execution count and duration, and a reaction
on the command says done or failed (an edit notifies nobody). One edit is in flight at a time;
the final edit waits for it at most C{interval}, then goes anyway, the adapter keeping a
message's edits in order (the Matrix one lets the newer replace an edit still held back by the
rate limit, so the status line is never stuck behind stale output).
Images and the full text of cut output follow as uploads. What the kernel printed is shown as
printed (the adapters send it with their network's no-pings switch, so an ``@room`` in output
pings nobody and copies back intact), except that a configured secret in it is replaced with
C{[redacted]} (the sandbox should keep secrets from kernels; this catches one printed anyway,
like the log redactor does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..ansi import strip_ansi
from ..kernels import (
    ErrorOutput,
    ExecutionResult,
    OutputEvent,
)
from ..redaction import Redactor
from ..rendering import Rendered, RenderOptions
from ._redact import MIN_SECRET_CHARS, redact_events
from .conversation import Block, CodeBlock, Conversation, HtmlBlock, Paragraph, Reply
from .pacing import EditPacer
from .stdin import InputRouter

__all__ = ["ExecutionReporter", "RenderFunction", "StreamSettings", "error_blocks", "status_line"]

RenderFunction = Callable[[Sequence[OutputEvent], RenderOptions], Rendered]

_MAX_TRACEBACK_CHARS = 3000

_STATUS_WORDS = {
    "ok": "✅ done",
    "error": "❌ error",
    "aborted": "⏹ aborted",
    "timeout": "⏱ timed out",
    "died": "💀 kernel died",
}
DONE_REACTION = "✅"
FAILED_REACTION = "❌"
# What ipykernel raises in the code when the kernel is interrupted (SIGINT).
_INTERRUPTED = "KeyboardInterrupt"

ShownCallback = Callable[[str, Reply], None]
# Hears of every output event of the run as it arrives (the room's notebook records them).
OutputRecorder = Callable[[OutputEvent], None]


@dataclass(frozen=True)
class StreamSettings:
    """How a chat part shows every run: its renderer and options, how often a reply in
    progress is edited, the secrets redacted, and where a run's C{input()} takes its answer."""

    render: RenderFunction
    options: RenderOptions
    inputs: InputRouter
    interval: float = 1.0
    redact: Redactor = field(default_factory=lambda: Redactor((), MIN_SECRET_CHARS))


def error_blocks(error: ErrorOutput) -> list[Block]:
    """The exception line first, then the traceback, de-ANSI'd and cut to a readable size."""
    headline = f"{error.ename}: {error.evalue}" if error.evalue else error.ename
    blocks: list[Block] = [Paragraph(strip_ansi(headline))]
    traceback = strip_ansi("\n".join(error.traceback)).strip("\n")
    if traceback.strip():
        if len(traceback) > _MAX_TRACEBACK_CHARS:
            # The innermost frames are the useful ones: keep the end.
            traceback = "…\n" + traceback[-_MAX_TRACEBACK_CHARS:]
        blocks.append(CodeBlock(traceback))
    return blocks


def status_line(result: ExecutionResult) -> str:
    parts = [_STATUS_WORDS.get(result.status, result.status)]
    if result.execution_count is not None:
        parts.append(f"[{result.execution_count}]")
    parts.append(_duration(result.duration_seconds))
    if result.message:
        parts.append(result.message)
    return " · ".join(parts)


def kernel_wait_line(ahead: int | None) -> str | None:
    """What a run waiting for its kernel to start shows, or None once it runs."""
    if ahead is None:
        return None
    return f"⏳ starting a kernel… ({ahead} ahead)" if ahead else "⏳ starting a kernel…"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


class ExecutionReporter:
    """The L{ExecutionListener} for one C{run}: streams output into one chat reply.

    Call L{started} when the execution is submitted, then L{finish} or L{failed} once.
    With C{reply_id} (a re-run) the output goes into that existing reply instead of a new one.
    C{on_shown} hears of every version of the reply the chat accepted (its id and content);
    C{record} of every output event, as it arrives.
    """

    log = Logger()

    def __init__(
        self,
        *,
        conversation: Conversation,
        command_id: str,
        sender: str,
        clock: IReactorTime,
        settings: StreamSettings,
        reply_id: str | None = None,
        on_shown: ShownCallback | None = None,
        record: OutputRecorder | None = None,
    ) -> None:
        self._conversation = conversation
        self._command_id = command_id
        self._sender = sender
        self._clock = clock
        self._render = settings.render
        self._options = settings.options
        self._inputs = settings.inputs
        self._interval = settings.interval
        self._pacer = EditPacer(settings.interval)
        self._redact = settings.redact
        self._events: list[OutputEvent] = []
        self._kernel_wait: int | None = None  # starts queued before this run's kernel
        self._submitted = False
        self._message_id: str | None = reply_id
        self._reused = reply_id is not None
        self._on_shown = on_shown
        self._record = record
        self._interrupted = False
        self._shown: Reply | None = None
        self._busy: Deferred[None] | None = None
        self._timer: IDelayedCall | None = None
        self._last_flush = 0.0
        self._done = False
        self._waiting: list[Deferred[str]] = []

    @property
    def message_id(self) -> str | None:
        """The id of the streamed reply, once it has been sent."""
        return self._message_id

    # -- ExecutionListener ----------------------------------------------------------------------

    def on_output(self, event: OutputEvent) -> None:
        if self._done:
            return
        self._events.append(event)
        if self._record is not None:
            try:
                self._record(event)
            except Exception:
                self.log.failure("could not record an output for the room's notebook")
        self._schedule()

    def on_input_request(self, prompt: str, password: bool) -> Deferred[str]:
        return Deferred.fromCoroutine(self._ask(prompt, password))

    def on_kernel_wait(self, ahead: int | None) -> None:
        """The run waits for its kernel to start (jupybot.kernels.starts.StartWatcher): the
        reply says so instead of "running"; None once the kernel is ready."""
        self._kernel_wait = ahead
        if self._submitted:  # told before started(): shown after the interval like the rest
            self._schedule()

    # -- lifecycle --------------------------------------------------------------------------------

    def started(self) -> None:
        """The execution is submitted: a "running" reply appears after C{interval} unless done."""
        self._submitted = True
        self._last_flush = self._clock.seconds()
        self._schedule()

    def interrupted(self) -> None:
        """Someone interrupted the kernel: a C{KeyboardInterrupt} ending is then an abort."""
        self._interrupted = True

    def finish(self, result: ExecutionResult) -> Deferred[None]:
        return Deferred.fromCoroutine(self._finish(result))

    def failed(self, message: str) -> Deferred[None]:
        """The execution could not run or was cut short; C{message} says why, for people."""
        return Deferred.fromCoroutine(self._failed(message))

    # -- streaming --------------------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._done or self._busy is not None:
            return  # a finished edit reschedules itself when there is more to show
        if self._timer is not None and self._timer.active():
            return
        delay = max(0.0, self._last_flush + self._pacer.spacing - self._clock.seconds())
        self._timer = self._clock.callLater(delay, self._flush)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _flush(self) -> Deferred[None]:
        self._timer = None
        reply, _ = self._compose(None)
        return self._show(reply)

    def _show(self, reply: Reply) -> Deferred[None]:
        if reply == self._shown:
            return succeed(None)
        self._shown = reply
        self._last_flush = made = self._clock.seconds()
        if self._message_id is None:
            d: Deferred[None] = self._conversation.send(reply, self._command_id).addCallback(
                self._remember_id
            )
        else:
            d = self._conversation.edit(self._message_id, reply)
        d.addCallback(self._tell_shown, reply)
        d.addErrback(self._log_failure, "could not show execution output")
        self._busy = d
        d.addBoth(self._shown_now, d, made)
        return d

    def _remember_id(self, message_id: str) -> None:
        self._message_id = message_id

    def _tell_shown(self, _: object, reply: Reply) -> None:
        if self._on_shown is not None and self._message_id is not None:
            self._on_shown(self._message_id, reply)

    def _shown_now(self, _: object, landed: Deferred[None], made: float) -> None:
        self._pacer.landed(self._clock.seconds() - made)
        if self._busy is not landed:
            return  # overtaken by the final edit, which is in flight now
        self._busy = None
        if not self._done and self._events and self._compose(None)[0] != self._shown:
            self._schedule()

    def _log_failure(self, failure: Failure, what: str) -> None:
        self.log.failure("{what}", failure, what=what)

    async def _settle(self, patience: float | None = None) -> None:
        """Wait for the reply in flight; new edits are not started meanwhile.

        With C{patience}, an edit (not the first send: its id is needed) is waited for only that
        long: one held back longer by the network is then overtaken.
        """
        self._cancel_timer()
        while self._busy is not None:
            busy = self._busy
            if patience is None or self._message_id is None:
                await busy
                continue
            landed: Deferred[None] = Deferred()
            busy.addBoth(_fire, landed)
            timer = self._clock.callLater(patience, _fire, None, landed)
            await landed
            if timer.active():
                timer.cancel()
            if self._busy is busy:
                return

    # -- composing --------------------------------------------------------------------------------

    def _compose(self, result: ExecutionResult | None) -> tuple[Reply, Rendered]:
        events = redact_events(self._events, self._redact)
        plain = [e for e in events if not isinstance(e, ErrorOutput)]
        errors = [e for e in events if isinstance(e, ErrorOutput)]
        rendered = self._render(plain, self._options) if plain else Rendered(text="")
        blocks: list[Block] = []
        if rendered.html:
            blocks.append(HtmlBlock(rendered.html, rendered.text))
        elif rendered.text:
            blocks.append(CodeBlock(rendered.text))
        for error in errors:
            blocks.extend(error_blocks(error))
        if rendered.truncated:
            blocks.append(Paragraph("(output cut: the whole output follows as a file)"))
        if result is None:
            blocks.append(Paragraph(kernel_wait_line(self._kernel_wait) or "⏳ running…"))
        else:
            message = result.message and self._redact(result.message)
            blocks.append(Paragraph(status_line(replace(result, message=message))))
        return Reply(tuple(blocks)), rendered

    # -- endings ----------------------------------------------------------------------------------

    def _interrupt_ending(self, result: ExecutionResult) -> ExecutionResult:
        """An interrupt someone asked for ends the run as aborted, not as the error it raises."""
        errors = [e for e in self._events if isinstance(e, ErrorOutput)]
        if not (self._interrupted and result.status == "error" and errors):
            return result
        if errors[-1].ename != _INTERRUPTED:
            return result
        self._events = [e for e in self._events if e is not errors[-1]]
        return replace(result, status="aborted", message="interrupted")

    async def _finish(self, result: ExecutionResult) -> None:
        self._done = True
        self._withdraw_inputs()
        await self._settle(patience=self._interval)
        result = self._interrupt_ending(result)
        streamed = self._message_id is not None and not self._reused
        reply, rendered = self._compose(result)
        await self._show(reply)
        for image in rendered.images:
            await self._attempt(self._conversation.send_image(image, self._command_id), "image")
        for attachment in rendered.files:
            await self._attempt(self._conversation.send_file(attachment, self._command_id), "file")
        if streamed:
            # A long run's reply was posted while running; an edit notifies nobody, a reaction
            # on the command does. A quick run's one reply already is the notification, and
            # whoever asked for a re-run is watching its reply.
            reaction = DONE_REACTION if result.status == "ok" else FAILED_REACTION
            await self._attempt(self._conversation.react(self._command_id, reaction), "reaction")

    async def _failed(self, message: str) -> None:
        self._done = True
        self._withdraw_inputs()
        await self._settle(patience=self._interval)
        reply, _ = self._compose(None)
        shown = self._redact(message)
        final = Reply((*reply.blocks[:-1], Paragraph(f"❌ {shown}")))
        await self._show(final)
        await self._attempt(self._conversation.react(self._command_id, FAILED_REACTION), "reaction")

    async def _attempt(self, d: Deferred[Any], what: str) -> None:
        try:
            await d
        except Exception:
            self.log.failure("could not send the execution's {what}", what=what)

    def _withdraw_inputs(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.cancel()

    # -- input --------------------------------------------------------------------------------

    async def _ask(self, prompt: str, password: bool) -> str:
        # Show the output so far first: the prompt usually refers to it.
        await self._settle()
        await self._show(self._compose(None)[0])
        await self._settle()
        shown_prompt = self._redact(strip_ansi(prompt)).strip() or "(no prompt)"
        if password:
            direct = await self._conversation.direct_with(self._sender)
            await self._conversation.send(
                Reply.text(
                    f"🔒 The code asks {self._sender} for a password: "
                    "I have asked in a direct message."
                ),
                self._command_id,
            )
            await direct.send(
                Reply(
                    (
                        Paragraph("🔒 Code you ran asks for a password:"),
                        CodeBlock(shown_prompt),
                        Paragraph("Your next message here is sent to it as the answer."),
                    )
                )
            )
            waiting = self._inputs.expect(direct.key, self._sender)
        else:
            await self._conversation.send(
                Reply(
                    (
                        Paragraph(f"⌨ The code asks {self._sender} for input:"),
                        CodeBlock(shown_prompt),
                        Paragraph("Your next message here is the answer."),
                    )
                ),
                self._command_id,
            )
            waiting = self._inputs.expect(self._conversation.key, self._sender)
        self._waiting.append(waiting)
        return await waiting


def _fire(result: object, waiter: Deferred[None]) -> object:
    if not waiter.called:
        waiter.callback(None)
    return result
