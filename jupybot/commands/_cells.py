"""One run's outputs as notebook cells, within the limits of what a room keeps.

L{CellRecorder} turns a run's output events into nbformat outputs as they arrive, cut past
L{NotebookLimits}' bytes per cell; L{RecordedCell} is the cell it makes. Split from
C{notebook.py} (which re-exports them), the notebook as a whole.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_output

from ..config.commands import NotebooksConfig
from ..kernels import (
    ClearOutput,
    DisplayData,
    ErrorOutput,
    ExecuteResult,
    OutputEvent,
    Stream,
    UpdateDisplayData,
)

__all__ = ["CUT_NOTE", "KIB", "MIB", "CellRecorder", "NotebookLimits", "RecordedCell"]

# What a cell whose output was cut ends with (a stderr stream, so every viewer shows it).
CUT_NOTE = "[jupybot: output cut here: {more} more bytes were not kept]\n"


KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class NotebookLimits:
    """How much of a room's work is kept for C{notebook}, how big a notebook may be run, and
    how big a file C{put} and C{get} move (`notebooks:` in config.yml).

    At the defaults a room keeps at most 200 cells and 16 MiB of output (the oldest cells go
    first), a cell at most 256 KiB of output, the server 5000 cells and 256 MiB in all.
    """

    cells_per_room: int = 200
    output_bytes_per_cell: int = 256 * KIB
    output_bytes_per_room: int = 16 * MIB
    # All rooms together (the least active rooms' oldest cells go first).
    cells_total: int = 5000
    output_bytes_total: int = 256 * MIB
    # A notebook sent to the room: the file's size and its code cells.
    file_bytes: int = 5 * MIB
    code_cells: int = 200
    # A file put into the kernel's folder or got from it.
    transfer_bytes: int = 8 * MIB

    @classmethod
    def from_config(cls, config: NotebooksConfig) -> NotebookLimits:
        return cls(
            cells_per_room=config.cells_per_room,
            output_bytes_per_cell=config.output_kb_per_cell * KIB,
            output_bytes_per_room=config.output_mb_per_room * MIB,
            cells_total=config.cells_total,
            output_bytes_total=config.output_mb_total * MIB,
            file_bytes=config.notebook_mb * MIB,
            code_cells=config.notebook_code_cells,
            transfer_bytes=config.file_mb * MIB,
        )


def _size(value: Any) -> int:
    """About how many bytes C{value} (an output's JSON) takes, without serialising it."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(k)) + _size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_size(v) for v in value)
    return 8


class CellRecorder:
    """One cell's outputs, built from the kernel's output events as they arrive.

    Consecutive text of one stream becomes one output; C{update_display_data} replaces the
    display it names; C{clear_output} clears (at the next output, with C{wait}). Past
    C{max_bytes} further output is counted, not kept, and the cell says so at its end.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self.outputs: list[NotebookNode] = []
        self._bytes = 0
        self.cut_bytes = 0
        self._clear_at_next = False

    def on_output(self, event: OutputEvent) -> None:
        if isinstance(event, ClearOutput):
            if event.wait:
                self._clear_at_next = True
            else:
                self._clear()
            return
        if self._clear_at_next:
            self._clear()
        if isinstance(event, UpdateDisplayData):
            self._update(event)
            return
        if isinstance(event, Stream):
            self._stream(event)
            return
        try:
            output = _as_output(event)
        except nbformat.ValidationError:
            output = new_output("stream", name="stderr", text=_UNFIT_NOTE)
        size = _size(output)
        if self.cut_bytes or self._bytes + size > self._max_bytes:
            self.cut_bytes += size
            return
        self.outputs.append(output)
        self._bytes += size

    def _stream(self, event: Stream) -> None:
        """Text joins the stream output before it when it is the same stream; past the cap the
        cell keeps what fits."""
        room = 0 if self.cut_bytes else self._max_bytes - self._bytes
        kept = event.text[: max(0, room)]
        self.cut_bytes += len(event.text) - len(kept)
        if not kept:
            return
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last.output_type == "stream" and last.name == event.name:
            last.text += kept
        else:
            self.outputs.append(new_output("stream", name=event.name, text=kept))
        self._bytes += len(kept)

    def _clear(self) -> None:
        self._clear_at_next = False
        self.outputs = []
        self._bytes = 0

    def _update(self, event: UpdateDisplayData) -> None:
        if event.display_id is None:
            return
        for output in self.outputs:
            if output.get("transient", {}).get("display_id") == event.display_id:
                old = _size(output.data) + _size(output.metadata)
                new = _size(event.data) + _size(event.metadata)
                if self._bytes - old + new > self._max_bytes:
                    self.cut_bytes += new
                    continue
                self._bytes += new - old
                output.data = nbformat.from_dict(_bundle(event.data))
                output.metadata = nbformat.from_dict(dict(event.metadata))

    def finished_outputs(self) -> list[NotebookNode]:
        """The outputs as a notebook keeps them: display ids dropped, a cut said."""
        outputs = []
        for output in self.outputs:
            kept = nbformat.from_dict({k: v for k, v in output.items() if k != "transient"})
            outputs.append(kept)
        if self.cut_bytes:
            outputs.append(
                new_output("stream", name="stderr", text=CUT_NOTE.format(more=self.cut_bytes))
            )
        return outputs

    @property
    def size(self) -> int:
        return self._bytes


_UNFIT_NOTE = "[jupybot: an output the notebook format cannot hold was left out]\n"


def _bundle(data: dict[str, Any]) -> dict[str, Any]:
    """A MIME bundle as nbformat holds it: JSON types as they are, the rest text (binary data
    base64, as Jupyter sends it)."""
    bundle: dict[str, Any] = {}
    for mimetype, value in data.items():
        if mimetype.endswith("json"):
            bundle[mimetype] = value
        elif isinstance(value, bytes):
            bundle[mimetype] = base64.b64encode(value).decode("ascii")
        elif isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            bundle[mimetype] = value
        else:
            bundle[mimetype] = str(value)
    return bundle


def _as_output(event: OutputEvent) -> NotebookNode:
    """The nbformat output of C{event}; raises L{nbformat.ValidationError} if it cannot be one."""
    output: NotebookNode
    match event:
        case Stream(name, text):
            output = new_output("stream", name=name, text=text)
        case DisplayData(data, metadata, display_id):
            output = new_output("display_data", data=_bundle(data), metadata=dict(metadata))
            if display_id is not None:
                output["transient"] = {"display_id": display_id}
        case ExecuteResult(data, metadata, count):
            output = new_output(
                "execute_result", data=_bundle(data), metadata=dict(metadata), execution_count=count
            )
        case ErrorOutput(ename, evalue, traceback):
            output = new_output("error", ename=ename, evalue=evalue, traceback=list(traceback))
        case _:
            raise AssertionError(f"not an output: {event!r}")
    return output


@dataclass
class RecordedCell:
    """One run as a notebook cell: its code, execution count and outputs, in a kernel's life."""

    command_id: str
    kernel_id: str
    source: str
    execution_count: int | None
    outputs: list[NotebookNode] = field(default_factory=list)
    size: int = 0
