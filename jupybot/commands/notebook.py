"""A room's runs as a Jupyter notebook, and a notebook sent to a room read back into cells.

L{CellRecorder} (C{_cells.py}) turns one run's output events into nbformat outputs as they
arrive (fed from the L{ExecutionReporter}'s output path: nothing runs twice); L{RunHistory}
keeps each room's recorded cells, bounded, per kernel life; L{build_notebook} makes them one validated
nbformat 4 notebook, and L{read_notebook} checks a notebook someone sent before its code runs.
Everything here is built with the C{nbformat} package, never by hand.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import nbformat
from nbformat import NotebookNode
from nbformat.reader import NotJSONError
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ..kernels import KernelSpec
from ..redaction import Redactor
from ._cells import CUT_NOTE, CellRecorder, NotebookLimits, RecordedCell
from ._redact import _redact_value

__all__ = [
    "CUT_NOTE",
    "CellRecorder",
    "HistoryLog",
    "HistoryOp",
    "NotebookLimits",
    "NotebookRefused",
    "RecordedCell",
    "RunHistory",
    "build_notebook",
    "executed_notebook",
    "notebook_filename",
    "read_notebook",
]

NOTEBOOK_MIMETYPE = "application/x-ipynb+json"


class NotebookRefused(Exception):
    """A notebook sent to the room cannot be run; C{str()} says why, for people."""


# What changed in a room's history, as its log on disk says it (L{HistoryLog}): a cell
# recorded (or re-recorded: it replaces the cell of the same command), the oldest cell let go,
# the cells of every kernel but these forgotten, and how many cells each kernel has let go.
HistoryOp = (
    tuple[Literal["cell"], RecordedCell]
    | tuple[Literal["drop"]]
    | tuple[Literal["keep"], frozenset[str]]
    | tuple[Literal["dropped"], dict[str, int]]
)


class HistoryLog(Protocol):
    """Where a L{RunHistory} writes down each change (the notebook store under storage.path)."""

    def append(self, room: str, op: HistoryOp, snapshot: Callable[[], list[HistoryOp]]) -> None:
        """Record C{op}; C{snapshot} gives the room's whole history, for a log grown long."""

    def remove(self, room: str) -> None:
        """The room keeps nothing any more."""


class RunHistory:
    """Each room's recorded cells in the order they first ran, bounded by L{NotebookLimits}.

    A re-run of a command (an edit, 🔁) replaces that command's cell where it was. A kernel's
    cells are forgotten when it restarts or stops (L{forget_kernel}), or when the room is seen
    without it (L{keep_kernels}: a kernel shut down while idle): a notebook is of one kernel's
    life. Past the limits the oldest cells go first, those of the least active rooms when the
    whole server's are too many. With a C{log}, every change is written down as it happens
    (L{replay} reads a room back from it).
    """

    def __init__(self, limits: NotebookLimits, log: HistoryLog | None = None) -> None:
        self.limits = limits
        self._log = log
        # Rooms from the least to the most recently active.
        self._rooms: OrderedDict[str, list[RecordedCell]] = OrderedDict()
        self._bytes: dict[str, int] = {}
        self._total_bytes = 0
        self._total_cells = 0
        # Cells a room's kernel ran that are no longer kept, by kernel id.
        self._dropped: dict[str, dict[str, int]] = {}

    def record(self, room: str, cell: RecordedCell) -> None:
        self._put(room, cell)
        self._write(room, ("cell", cell))
        self._within_limits(room)

    def _put(self, room: str, cell: RecordedCell) -> None:
        cells = self._rooms.setdefault(room, [])
        self._rooms.move_to_end(room)
        for i, old in enumerate(cells):
            if old.command_id == cell.command_id:
                cells[i] = cell
                self._count(room, cell.size - old.size, 0)
                break
        else:
            cells.append(cell)
            self._count(room, cell.size, 1)

    def _within_limits(self, room: str) -> None:
        cells = self._rooms.get(room, [])
        while len(cells) > 1 and (
            len(cells) > self.limits.cells_per_room
            or self._bytes[room] > self.limits.output_bytes_per_room
        ):
            self._drop_oldest(room)
        while self._rooms and (
            self._total_cells > self.limits.cells_total
            or self._total_bytes > self.limits.output_bytes_total
        ):
            oldest = next(iter(self._rooms))
            if oldest == room and len(cells) == 1:
                break
            self._drop_oldest(oldest)

    def _count(self, room: str, size: int, cells: int) -> None:
        self._bytes[room] = self._bytes.get(room, 0) + size
        self._total_bytes += size
        self._total_cells += cells

    def _drop_oldest(self, room: str, write: bool = True) -> None:
        cells = self._rooms[room]
        gone = cells.pop(0)
        self._count(room, -gone.size, -1)
        dropped = self._dropped.setdefault(room, {})
        dropped[gone.kernel_id] = dropped.get(gone.kernel_id, 0) + 1
        if not cells:  # how many went is still said when the room runs again
            del self._rooms[room], self._bytes[room]
        if write:
            self._write(room, ("drop",))

    def _forget_room(self, room: str) -> None:
        for cell in self._rooms.pop(room, ()):
            self._count(room, -cell.size, -1)
        self._bytes.pop(room, None)
        self._dropped.pop(room, None)
        if self._log is not None:
            self._log.remove(room)

    def cells(self, room: str, kernel_id: str) -> list[RecordedCell]:
        return [c for c in self._rooms.get(room, ()) if c.kernel_id == kernel_id]

    def dropped(self, room: str, kernel_id: str) -> int:
        """How many of that kernel's cells were let go to stay within the limits."""
        return self._dropped.get(room, {}).get(kernel_id, 0)

    def rooms(self) -> list[str]:
        """The rooms that keep something (cells, or a count of cells let go)."""
        return list(dict.fromkeys([*self._rooms, *self._dropped]))

    def forget_kernel(self, room: str, kernel_id: str) -> None:
        self.keep_kernels(room, {c.kernel_id for c in self._rooms.get(room, ())} - {kernel_id})

    def forget_room(self, room: str) -> int:
        """Forget everything C{room} keeps, at once (C{forget}); how many cells that was."""
        kept = len(self._rooms.get(room, ()))
        if room in self._rooms or room in self._dropped:
            self._forget_room(room)
        return kept

    def keep_kernels(self, room: str, kernel_ids: set[str] | frozenset[str]) -> None:
        """Forget the cells of C{room}'s kernels other than C{kernel_ids} (the ones it has)."""
        if self._keep(room, frozenset(kernel_ids)):
            self._write(room, ("keep", frozenset(kernel_ids)))

    def _keep(self, room: str, kernel_ids: frozenset[str]) -> bool:
        """L{keep_kernels}; False when that changed nothing, or forgot the whole room."""
        cells = self._rooms.get(room)
        dropped = self._dropped.get(room, {})
        if cells is None:
            if not kernel_ids and room in self._dropped:
                self._forget_room(room)
            elif any(k not in kernel_ids for k in dropped):
                for kernel_id in [k for k in dropped if k not in kernel_ids]:
                    del dropped[kernel_id]
                if not dropped:
                    self._forget_room(room)
                    return False
                return True
            return False
        kept = [c for c in cells if c.kernel_id in kernel_ids]
        if not kept:
            self._forget_room(room)
            return False
        changed = len(kept) != len(cells) or any(k not in kernel_ids for k in dropped)
        for cell in cells:
            if cell.kernel_id not in kernel_ids:
                self._count(room, -cell.size, -1)
        self._rooms[room] = kept
        for kernel_id in list(dropped):
            if kernel_id not in kernel_ids:
                del dropped[kernel_id]
        return changed

    def _write(self, room: str, op: HistoryOp) -> None:
        if self._log is not None:
            self._log.append(room, op, lambda: self._snapshot(room))

    def _snapshot(self, room: str) -> list[HistoryOp]:
        ops: list[HistoryOp] = []
        if self._dropped.get(room):
            ops.append(("dropped", dict(self._dropped[room])))
        ops.extend(("cell", cell) for cell in self._rooms.get(room, ()))
        return ops

    def replay(self, room: str, ops: Iterable[HistoryOp]) -> None:
        """Read C{room}'s history back from its log (at start, rooms least active first),
        then bring it within the limits (which may be smaller than when it was written)."""
        for op in ops:
            match op:
                case ("cell", cell):
                    self._put(room, cell)
                case ("drop",):
                    if self._rooms.get(room):
                        self._drop_oldest(room, write=False)
                case ("keep", kernel_ids):
                    self._keep(room, kernel_ids)
                case ("dropped", counts):
                    self._dropped[room] = dict(counts)
        self._within_limits(room)

    @property
    def size(self) -> tuple[int, int]:
        """How many cells, and how many bytes of output, are kept in all."""
        return self._total_cells, self._total_bytes


def _metadata(spec: KernelSpec | None, spec_name: str) -> dict[str, Any]:
    if spec is None:
        return {"kernelspec": {"name": spec_name, "display_name": spec_name}}
    return {
        "kernelspec": {
            "name": spec.name,
            "display_name": spec.display_name,
            "language": spec.language,
        },
        "language_info": {"name": spec.language},
    }


def build_notebook(
    cells: Sequence[RecordedCell],
    *,
    spec: KernelSpec | None,
    spec_name: str,
    title: str,
    dropped: int = 0,
    redact: Redactor | None = None,
) -> bytes:
    """One validated nbformat 4 notebook of C{cells}, as the bytes of an .ipynb file.

    C{title} heads it in a Markdown cell; C{dropped} earlier runs not kept are said there.
    Secrets are redacted from the outputs here, once their streams are whole.
    """
    notes = [title]
    if dropped:
        notes.append(
            f"The first {dropped} runs of this kernel are not here: "
            "jupybot keeps only the latest ones."
        )
    if any(_is_cut(c.outputs) for c in cells):
        notes.append("Some output was cut: those cells say where.")
    notebook = new_notebook(metadata=_metadata(spec, spec_name))
    notebook.cells.append(new_markdown_cell("\n\n".join(notes)))
    for cell in cells:
        outputs = cell.outputs
        if redact:
            outputs = [nbformat.from_dict(_redact_value(dict(o), redact)) for o in outputs]
        notebook.cells.append(
            new_code_cell(source=cell.source, execution_count=cell.execution_count, outputs=outputs)
        )
    return _written(notebook)


def _is_cut(outputs: Iterable[NotebookNode]) -> bool:
    return any(
        o.output_type == "stream" and o.text.startswith("[jupybot: output cut here")
        for o in outputs
    )


def _written(notebook: NotebookNode) -> bytes:
    nbformat.validate(notebook)
    text: str = nbformat.writes(notebook, version=4)
    return text.encode("utf-8")


def notebook_filename(room: str, when: datetime) -> str:
    """C{<room-ish>-<date>.ipynb}: the room key's letters and digits, safe on every system."""
    words = re.findall(r"[A-Za-z0-9]+", room)
    stem = "-".join(words)[:48].strip("-") or "room"
    return f"{stem}-{when.astimezone(UTC):%Y-%m-%d-%H%M}.ipynb"


def read_notebook(data: bytes, limits: NotebookLimits, size: int | None = None) -> NotebookNode:
    """A notebook sent to the room, checked: size (C{size}, if it was too big to download),
    nbformat 4 validity, code cell count."""
    size = len(data) if size is None else size
    if size > limits.file_bytes:
        raise NotebookRefused(
            f"That notebook is {_mib(size)}: I run notebooks of up to {_mib(limits.file_bytes)}."
        )
    notebook: NotebookNode
    try:
        notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(notebook)
    except (UnicodeDecodeError, json.JSONDecodeError, NotJSONError) as e:
        raise NotebookRefused("That file is not a Jupyter notebook: it is not JSON.") from e
    except nbformat.ValidationError as e:
        raise NotebookRefused(
            f"That file is not a valid Jupyter notebook: {str(e.message)[:200]}."
        ) from e
    except Exception as e:  # nbformat raises several kinds for a file that is not a notebook
        raise NotebookRefused(f"That file is not a Jupyter notebook ({str(e)[:200]}).") from e
    code = [c for c in notebook.cells if c.cell_type == "code"]
    if not code:
        raise NotebookRefused("That notebook has no code cells: there is nothing to run.")
    if len(code) > limits.code_cells:
        raise NotebookRefused(
            f"That notebook has {len(code)} code cells: I run notebooks of up to "
            f"{limits.code_cells}."
        )
    return notebook


def executed_notebook(
    notebook: NotebookNode,
    results: Sequence[tuple[int | None, list[NotebookNode]]],
    redact: Redactor | None = None,
) -> bytes:
    """C{notebook} with its first code cells' execution counts and outputs from C{results};
    code cells that did not run are left without outputs."""
    code = [c for c in notebook.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        if i < len(results):
            count, outputs = results[i]
            if redact:
                outputs = [nbformat.from_dict(_redact_value(dict(o), redact)) for o in outputs]
            cell.execution_count, cell.outputs = count, outputs
        else:
            cell.execution_count, cell.outputs = None, []
    return _written(notebook)


def _mib(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def now_utc() -> datetime:
    return datetime.now(UTC)
