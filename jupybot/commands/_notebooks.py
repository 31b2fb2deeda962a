"""The notebook side of a chat bot: each room's runs kept for `notebook` (in memory, and on
disk when given a folder), exported, forgotten with `forget`, and dropped with their kernel.

L{ChatCommands} records each run here as it ends and asks here for what `notebook` and
`forget` answer; a notebook sent with `run` is run by L{NotebookRun} and its cells kept here.
"""

from __future__ import annotations

from pathlib import Path

from ..kernels import ExecutionResult, KernelError, KernelHandle, KernelManager
from ..redaction import Redactor
from ..rendering import Attachment
from ._history_store import NotebookStore
from .conversation import Reply
from .notebook import (
    NOTEBOOK_MIMETYPE,
    CellRecorder,
    NotebookLimits,
    RecordedCell,
    RunHistory,
    build_notebook,
    notebook_filename,
    now_utc,
)

__all__ = ["RoomNotebooks"]


class RoomNotebooks:
    """Each room's runs as a notebook of its current kernel's life. With C{folder} (under
    storage.path) the history is written there as it changes and read back at start."""

    def __init__(
        self,
        kernels: KernelManager,
        limits: NotebookLimits,
        redact: Redactor,
        folder: Path | None = None,
    ) -> None:
        self._kernels = kernels
        self._redact = redact
        self.store = NotebookStore(folder, redact) if folder is not None else None
        self.history = RunHistory(limits, self.store)
        if self.store is not None:
            for room, ops in self.store.load():
                self.history.replay(room, ops)

    @property
    def limits(self) -> NotebookLimits:
        return self.history.limits

    def recorder(self) -> CellRecorder:
        """What records one run's outputs as they arrive."""
        return CellRecorder(self.limits.output_bytes_per_cell)

    # -- a kernel's life ----------------------------------------------------------------------

    def kernel_handle(self, room: str, kernel: str | None) -> KernelHandle | None:
        if kernel is None:
            return self._kernels.current(room)
        return next((h for h in self._kernels.kernels(room) if h.name == kernel), None)

    def kernel_ended(self, room: str, handle: KernelHandle | None) -> None:
        """A restarted or stopped kernel's runs leave the room's notebook with its variables."""
        if handle is not None:
            self.history.forget_kernel(room, handle.kernel_id)

    def prune(self) -> None:
        """Forget what rooms kept of kernels the kernel core no longer has (the history read
        back at start, of kernels that did not outlive the restart)."""
        for room in self.history.rooms():
            self.history.keep_kernels(room, {h.kernel_id for h in self._kernels.kernels(room)})

    # -- recording ----------------------------------------------------------------------------

    def record_run(
        self,
        room: str,
        command_id: str,
        code: str,
        kernel: str | None,
        result: ExecutionResult,
        cell: CellRecorder,
    ) -> None:
        handle = self.kernel_handle(room, kernel)
        if handle is None:
            return
        recorded = RecordedCell(
            command_id,
            handle.kernel_id,
            code,
            result.execution_count,
            cell.finished_outputs(),
            cell.size,
        )
        self.keep_cell(room, recorded, result.status == "died" or result.restarted)

    def keep_cell(self, room: str, cell: RecordedCell, died: bool) -> None:
        """Record C{cell}, unless its kernel died running it (or was restarted to end it): a
        new life then starts afresh."""
        # Kernels shut down while idle, or gone with the gateway, take their cells with them.
        self.history.keep_kernels(room, {h.kernel_id for h in self._kernels.kernels(room)})
        if died:
            self.history.forget_kernel(room, cell.kernel_id)
        else:
            self.history.record(room, cell)

    # -- what people ask ----------------------------------------------------------------------

    async def export(self, room: str, last: int | None) -> Attachment | Reply:
        """The current kernel's runs (its last C{last}) as a notebook file, or why not."""
        handle = self._kernels.current(room)
        if handle is None:
            return Reply.text("There is no kernel here yet: nothing to export.")
        cells = self.history.cells(room, handle.kernel_id)
        if not cells:
            return Reply.text(
                f"Nothing has run in kernel '{handle.name}' since it started (or since "
                "'forget'): nothing to export."
            )
        dropped = self.history.dropped(room, handle.kernel_id)
        if last is not None and last < len(cells):
            dropped, cells = dropped + len(cells) - last, cells[-last:]
        try:
            specs = await self._kernels.kernelspecs()
        except KernelError:
            specs = []
        when = now_utc()
        data = build_notebook(
            cells,
            spec=next((s for s in specs if s.name == handle.spec), None),
            spec_name=handle.spec,
            title=(
                f"Runs in kernel '{handle.name}' ({handle.spec}) of {room}, "
                f"exported by jupybot on {when:%Y-%m-%d %H:%M} UTC."
            ),
            dropped=dropped,
            redact=self._redact,
        )
        return Attachment(notebook_filename(room, when), NOTEBOOK_MIMETYPE, data)

    def forget(self, room: str) -> Reply:
        """Drop everything the room keeps for `notebook`, memory and disk, now."""
        cells = self.history.forget_room(room)
        if not cells:
            return Reply.text("🧹 This room keeps no runs: there was nothing to forget.")
        runs = "run" if cells == 1 else "runs"
        return Reply.text(
            f"🧹 Forgot this room's notebook ({cells} {runs}), here and on disk. "
            "'notebook' starts again from the next run."
        )
