"""Running a notebook someone sent to the room: its code cells one by one, one reply as it goes.

The reply says ``cell 3/12`` while the cells run (edited at most once per interval, like a
run's streamed reply), then how it ended; the executed notebook follows as a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nbformat import NotebookNode
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..ansi import strip_ansi
from ..kernels import ErrorOutput, ExecutionResult, KernelError, KernelManager, OutputEvent
from ..rendering import Attachment
from .conversation import Conversation, Reply
from .notebook import (
    NOTEBOOK_MIMETYPE,
    CellRecorder,
    NotebookLimits,
    RecordedCell,
    executed_notebook,
)
from .streaming import StreamSettings

__all__ = ["NotebookRun", "SentNotebook"]

# Told of each cell that ran, as recorded, and whether the kernel died running it.
CellRan = Callable[[RecordedCell, bool], None]


class _ProgressReply:
    """One reply edited with the latest progress, at most once per C{interval}."""

    log = Logger()

    def __init__(
        self, conversation: Conversation, command_id: str, clock: IReactorTime, interval: float
    ) -> None:
        self._conversation = conversation
        self._command_id = command_id
        self._clock = clock
        self._interval = interval
        self._message_id: str | None = None
        self._wanted = ""
        self._shown = ""
        self._last = 0.0
        self._timer: IDelayedCall | None = None

    async def start(self, text: str) -> None:
        self._wanted = self._shown = text
        self._last = self._clock.seconds()
        self._message_id = await self._conversation.send(Reply.text(text), self._command_id)

    def show(self, text: str) -> None:
        self._wanted = text
        if self._timer is None or not self._timer.active():
            delay = max(0.0, self._last + self._interval - self._clock.seconds())
            self._timer = self._clock.callLater(delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._message_id is None or self._wanted == self._shown:
            return
        self._shown, self._last = self._wanted, self._clock.seconds()
        self._conversation.edit(self._message_id, Reply.text(self._wanted)).addErrback(
            lambda f: self.log.failure("could not show a notebook's progress", f)
        )

    async def finish(self, text: str) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._message_id is None:
            await self._conversation.send(Reply.text(text), self._command_id)
        else:
            await self._conversation.edit(self._message_id, Reply.text(text))


class _CellListener:
    """The L{ExecutionListener} of one cell: its outputs recorded, no input (nobody to ask)."""

    def __init__(self, recorder: CellRecorder) -> None:
        self.recorder = recorder
        self.errors: list[ErrorOutput] = []

    def on_output(self, event: OutputEvent) -> None:
        if isinstance(event, ErrorOutput):
            self.errors.append(event)
        self.recorder.on_output(event)

    def on_input_request(self, prompt: str, password: bool) -> Deferred[str]:
        return fail(KernelError("a notebook run cannot answer input()"))


@dataclass(frozen=True)
class SentNotebook:
    """A notebook someone sent to a room with `run`: the room, the command it came with (whose
    reply says how far it is), its name for the executed one, and whether an error stops it
    (not with `--all`)."""

    conversation: Conversation
    command_id: str
    notebook: NotebookNode
    filename: str
    keep_going: bool


class NotebookRun:
    """Runs C{sent}'s code cells in its room's current kernel, in order, the command's reply
    saying how far it is (edited as often as C{stream} says a run's reply is); stops at the
    first error unless C{sent.keep_going}. C{cell_ran} hears of each cell, as recorded."""

    def __init__(
        self,
        sent: SentNotebook,
        *,
        kernels: KernelManager,
        clock: IReactorTime,
        stream: StreamSettings,
        limits: NotebookLimits,
        cell_ran: CellRan,
    ) -> None:
        self._kernels = kernels
        self._conversation = sent.conversation
        self._command_id = sent.command_id
        self._notebook = sent.notebook
        self._filename = sent.filename
        self._keep_going = sent.keep_going
        self._clock = clock
        self._limits = limits
        self._redact = stream.redact
        self._cell_ran = cell_ran
        self._progress = _ProgressReply(sent.conversation, sent.command_id, clock, stream.interval)
        self._interrupted = False

    def interrupted(self) -> None:
        """Someone interrupted the kernel: the cell it stopped ends the run, even with --all."""
        self._interrupted = True

    async def run(self) -> None:
        room = self._conversation.key
        sources = [c.source for c in self._notebook.cells if c.cell_type == "code"]
        total = len(sources)
        results: list[tuple[int | None, list[NotebookNode]]] = []
        errors: list[str] = []
        started = self._clock.seconds()
        await self._progress.start(f"📓 {self._filename}: ⏳ cell 1/{total}…")
        ending = ""
        try:
            for index, source in enumerate(sources):
                self._progress.show(f"📓 {self._filename}: ⏳ cell {index + 1}/{total}…")
                listener = _CellListener(CellRecorder(self._limits.output_bytes_per_cell))
                result: ExecutionResult = await self._kernels.execute(
                    room, source, listener, allow_stdin=False
                )
                recorder = listener.recorder
                results.append((result.execution_count, recorder.finished_outputs()))
                current = self._kernels.current(room)
                if current is not None:
                    cell = RecordedCell(
                        f"{self._command_id}#{index}",
                        current.kernel_id,
                        source,
                        result.execution_count,
                        recorder.finished_outputs(),
                        recorder.size,
                    )
                    self._cell_ran(cell, result.status == "died" or result.restarted)
                if result.status != "ok":
                    why = self._why(result, listener)
                    errors.append(f"cell {index + 1}: {why}")
                    ended = result.status == "died" or result.restarted
                    if not self._keep_going or self._interrupted or ended:
                        ending = f"❌ stopped at cell {index + 1}/{total}: {why}"
                        break
        except KernelError as e:
            ending = f"❌ stopped at cell {len(results) + 1}/{total}: {self._redact(str(e))}"
        except CancelledError:
            await self._progress.finish(
                f"📓 {self._filename}: ❌ Cancelled at cell {len(results) + 1}/{total}: "
                "the bot is stopping."
            )
            raise
        took = self._clock.seconds() - started
        if not ending:
            ending = f"✅ ran {total}/{total} cells"
            if errors:
                ending = f"⚠ ran {total}/{total} cells, {len(errors)} with errors: " + "; ".join(
                    errors[:5]
                )
        await self._progress.finish(f"📓 {self._filename}: {ending} · {took:.1f} s")
        data = executed_notebook(self._notebook, results, self._redact)
        await self._conversation.send_file(
            Attachment(self._filename, NOTEBOOK_MIMETYPE, data), self._command_id
        )

    def _why(self, result: ExecutionResult, listener: _CellListener) -> str:
        if listener.errors:
            error = listener.errors[-1]
            line = f"{error.ename}: {error.evalue}" if error.evalue else error.ename
            return self._redact(strip_ansi(line))[:200]
        return self._redact(result.message or result.status)[:200]
