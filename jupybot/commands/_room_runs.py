"""A room's runs: each command in its room's turn, a run waiting its turn, an execution shown.

The half of L{ChatCommands} that runs code once a command is parsed and allowed: it keeps each
room's order (L{RoomOrder}), each person's waiting runs (L{PendingRuns}), the recent runs that
an edit or a 🔁 may run again (L{RunRecords}) and the replies in progress a crash must answer
(L{RunningReplies}); and it knows which runs of a room an C{interrupt} ends.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..kernels import KernelError, KernelManager
from ._notebook_run import NotebookRun, SentNotebook
from ._notebooks import RoomNotebooks
from .conversation import IncomingMessage, Reply
from .inflight import RunningReplies, in_progress
from .notebook import NotebookRefused, read_notebook
from .reruns import RunRecords
from .rooms import ChatLimits, PendingRuns, RoomOrder
from .streaming import ExecutionReporter, StreamSettings

__all__ = ["NOT_STARTED_LINE", "RoomRuns", "attempt"]

# A queued run that a planned stop cancels before its turn came.
NOT_STARTED_LINE = (
    "⏹ Cancelled: the bot is stopping, and this run had not started. Send it again when I am back."
)

_log = Logger()

# Says a reply to a command (never fails: a reply that cannot be sent is logged).
Say = Callable[[IncomingMessage, Reply], Coroutine[Any, Any, None]]


async def attempt(d: Deferred[Any]) -> None:
    """Wait for C{d} (a reaction), logging rather than raising its failure."""
    try:
        await d
    except Exception:
        _log.failure("could not react in a conversation")


class _Interruptible(Protocol):
    def interrupted(self) -> None: ...


class RoomRuns:
    """Runs each room's commands in turn, and shows each run's output as it comes."""

    log = Logger()

    def __init__(
        self,
        kernels: KernelManager,
        clock: IReactorTime,
        limits: ChatLimits,
        notebooks: RoomNotebooks,
        replies: RunningReplies,
        stream: StreamSettings,
        say: Say,
    ) -> None:
        self._kernels = kernels
        self._clock = clock
        self._notebooks = notebooks
        self._replies = replies
        self._stream = stream
        self._say = say
        self._order = RoomOrder()
        self._pending = PendingRuns(limits.waiting_runs_per_person)
        self.records = RunRecords(clock, limits.rerun_window_seconds)
        self._reporters: dict[str, set[_Interruptible]] = {}
        # Set by the command layer's stop(): a run whose turn comes now does not start.
        self.stopping = False

    async def in_turn(self, room: str, work: Coroutine[Any, Any, None]) -> None:
        """Run C{work} when the room's turn comes: earlier commands are done.

        The turn is taken when this is called, before anything else is awaited, or a later
        command could take its place in the line: await it at once.
        """
        await self._in_turn(room, self._order.turn(room), work)

    async def _in_turn(
        self, room: str, turn: Deferred[Any], work: Coroutine[Any, Any, None]
    ) -> None:
        try:
            await turn
        except BaseException:
            work.close()
            raise
        try:
            await work
        finally:
            self._order.done(room)

    def interrupted(self, room: str) -> None:
        """Tell the room's runs that an interrupt was sent (their reply says so)."""
        for reporter in self._reporters.get(room, ()):
            reporter.interrupted()

    async def run(
        self,
        message: IncomingMessage,
        code: str,
        kernel: str | None,
        rerun: bool = False,
    ) -> None:
        """Run C{code} in the room's turn; a re-run shows it in the command's earlier reply."""
        room, person = message.conversation.key, message.sender
        if not self._pending.reserve(room, person):
            waiting = self._pending.waiting_per_person
            await self._say(
                message,
                Reply.text(
                    f"⏳ {person}, you have a run going here and {waiting} more waiting: "
                    "that is the most I keep. Send this again when one has ended "
                    "(or 'interrupt' the one running)."
                ),
            )
            return
        try:
            turn = self._order.turn(room)
            if not turn.called:
                await self._wait_queued(message, room, turn)
            await self._in_turn(room, turn, self._execute(message, code, kernel, rerun))
        finally:
            self._pending.ended(room, person)

    async def _wait_queued(self, message: IncomingMessage, room: str, turn: Deferred[Any]) -> None:
        """Wait for C{turn} with the command marked ⏳ and recorded (a crash answers it at the
        next start); a stop before the turn came answers it now."""
        self._replies.queued(room, message.message_id)
        # The wait may be long: say it is queued rather than stay silent. Not awaited: a stop
        # while the reaction is on its way must cancel the wait for the turn, not the reaction.
        Deferred.fromCoroutine(attempt(message.conversation.react(message.message_id, "⏳")))
        try:
            await turn
            if self.stopping:  # the turn came as the run before was cancelled
                self._order.done(room)
                raise CancelledError()
        except CancelledError:
            await self._say(message, Reply.text(NOT_STARTED_LINE))
            raise
        except BaseException:
            self._give_up_turn(room, turn)
            raise
        finally:
            self._replies.dequeued(room, message.message_id)

    def _give_up_turn(self, room: str, turn: Deferred[Any]) -> None:
        if turn.called:
            self._order.done(room)
        else:
            turn.cancel()

    async def _execute(
        self, message: IncomingMessage, code: str, kernel: str | None, rerun: bool
    ) -> None:
        room = message.conversation.key
        record = self.records.ran(room, message.message_id, message.sender, code, kernel)
        cell = self._notebooks.recorder()
        reporter = ExecutionReporter(
            conversation=message.conversation,
            command_id=message.message_id,
            sender=message.sender,
            clock=self._clock,
            settings=self._stream,
            reply_id=record.reply_id if rerun else None,
            on_shown=lambda reply_id, reply: self._shown(room, message.message_id, reply_id, reply),
            record=cell.on_output,
        )
        reporters = self._reporters.setdefault(room, set())
        reporters.add(reporter)
        try:
            execution = self._kernels.execute(room, code, reporter, name=kernel)
            reporter.started()
            try:
                result = await execution
            except KernelError as e:
                await reporter.failed(str(e))
                return
            except CancelledError:
                await reporter.failed("Cancelled: the bot is stopping.")
                raise
            self._notebooks.record_run(room, message.message_id, code, kernel, result, cell)
            await reporter.finish(result)
        finally:
            reporters.discard(reporter)
            if not reporters:
                del self._reporters[room]
            self._replies.ended(room, reporter.message_id)

    def _shown(self, room: str, command_id: str, reply_id: str, reply: Reply) -> None:
        self.records.replied(room, command_id, reply_id)
        if in_progress(reply):
            self._replies.shown(room, reply_id, reply)
        else:
            self._replies.ended(room, reply_id)

    async def run_notebook(self, message: IncomingMessage, keep_going: bool) -> None:
        """Run the notebook sent with the command, cell by cell, in the room's turn."""
        room = message.conversation.key
        attachment = next(
            (a for a in message.attachments if a.filename.lower().endswith(".ipynb")),
            message.attachments[0],
        )
        try:
            notebook = read_notebook(attachment.data, self._notebooks.limits, attachment.size)
        except NotebookRefused as e:
            await self._say(message, Reply.text(f"❌ {e}"))
            return
        sent = SentNotebook(
            message.conversation,
            message.message_id,
            notebook,
            _safe_name(attachment.filename),
            keep_going,
        )
        run = NotebookRun(
            sent,
            kernels=self._kernels,
            clock=self._clock,
            stream=self._stream,
            limits=self._notebooks.limits,
            cell_ran=lambda cell, died: self._notebooks.keep_cell(room, cell, died),
        )
        await self.in_turn(room, self._interruptibly(room, run))

    async def _interruptibly(self, room: str, run: NotebookRun) -> None:
        running = self._reporters.setdefault(room, set())
        running.add(run)
        try:
            await run.run()
        finally:
            running.discard(run)
            if not running:
                del self._reporters[room]


def _safe_name(filename: str) -> str:
    """A sent notebook's name for the executed one: letters, digits, dots, dashes, underscores."""
    stem = filename[:-6] if filename.lower().endswith(".ipynb") else filename
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in stem)
    return (safe.strip(".")[-80:] or "notebook") + ".ipynb"
