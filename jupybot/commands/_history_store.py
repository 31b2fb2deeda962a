"""A room's notebook history on disk, so that it outlives a restart of jupybot while its kernel
lives on (docs/commands.md, "Notebooks").

One file per room in a folder of the state directory (`storage.path/<network>-notebooks/`,
0700, each file 0600), named by a hash of the room's key: a log of JSON lines, the room's key
first, then each change of L{RunHistory} as it happens (a cell recorded, the oldest let go, a
kernel's cells forgotten). Appending a line costs one small write on the reactor (no fsync: a
crash loses at most the last lines, and a torn last line is skipped when read back). A log
grown to twice its size after its last rewrite (plus 256 KiB) is rewritten from the room's
history as it is now, beside it and renamed over it, so a room's file stays within about twice
what the room keeps, which the `notebooks:` limits bound. A room that keeps nothing has no file.

Sources and outputs are written with configured secrets already C{[redacted]}: the file never
holds one (a notebook read back after a restart shows C{[redacted]} where the secret was).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
from twisted.logger import Logger

from ..redaction import Redactor
from ._redact import _redact_value
from .notebook import HistoryOp, RecordedCell

__all__ = ["NotebookStore"]

_VERSION = 1
_SLACK = 256 * 1024

log = Logger()


def _file_name(room: str) -> str:
    return hashlib.sha256(room.encode("utf-8")).hexdigest()[:40] + ".jsonl"


class NotebookStore:
    """The L{HistoryLog} of one chat bot's rooms, in C{directory}."""

    def __init__(self, directory: Path, redact: Redactor | None = None) -> None:
        self.directory = directory
        self._redact = redact
        self._ready = False
        # Per room: its file's size now, and after its last rewrite.
        self._sizes: dict[str, int] = {}
        self._rewritten: dict[str, int] = {}

    def _ensure(self) -> None:
        if not self._ready:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._ready = True

    def path(self, room: str) -> Path:
        return self.directory / _file_name(room)

    # -- reading back -------------------------------------------------------------------------

    def load(self) -> Iterator[tuple[str, list[HistoryOp]]]:
        """Each room's changes, the least recently written room first; a file that is not a
        room's log is left alone, with a warning."""
        if not self.directory.is_dir():
            return
        files = []
        for path in self.directory.glob("*.jsonl"):
            try:
                files.append((path.stat().st_mtime_ns, path))
            except OSError:
                continue
        for _, path in sorted(files):
            found = self._read(path)
            if found is None:
                continue
            room, ops, size, whole = found
            self._sizes[room] = self._rewritten[room] = size
            if not whole:
                # A torn last line (a crash mid-write): the next change rewrites the log.
                self._rewritten[room] = -(1 << 62)
            yield room, ops

    def _read(self, path: Path) -> tuple[str, list[HistoryOp], int, bool] | None:
        try:
            data = path.read_bytes()
        except OSError as e:
            log.warn("notebooks: cannot read {path}: {e}", path=str(path), e=str(e))
            return None
        lines = data.split(b"\n")
        try:
            header = json.loads(lines[0])
            room = header["room"]
            if not isinstance(room, str) or path.name != _file_name(room):
                raise ValueError("not this room's file")
        except (ValueError, KeyError, TypeError):
            log.warn("notebooks: {path} is not a room's notebook log; ignored", path=str(path))
            return None
        ops: list[HistoryOp] = []
        whole = True
        for line in lines[1:]:
            if not line:
                continue
            try:
                op = _decode(json.loads(line))
            except (ValueError, KeyError, TypeError):
                whole = False
                break
            if op is not None:
                ops.append(op)
        return room, ops, len(data), whole

    # -- writing ------------------------------------------------------------------------------

    def append(self, room: str, op: HistoryOp, snapshot: Callable[[], list[HistoryOp]]) -> None:
        try:
            self._ensure()
            size = self._sizes.get(room)
            if size is None or size > 2 * self._rewritten.get(room, 0) + _SLACK:
                self._rewrite(room, snapshot())
                return
            line = self._line(op)
            fd = os.open(self.path(room), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            self._sizes[room] = size + len(line)
        except OSError as e:
            # The history in memory is still right; the file is redone at the next change.
            self._sizes.pop(room, None)
            log.warn("notebooks: cannot write {room}'s history: {e}", room=room, e=str(e))

    def _rewrite(self, room: str, ops: list[HistoryOp]) -> None:
        header = json.dumps({"room": room, "version": _VERSION}).encode("utf-8") + b"\n"
        data = header + b"".join(self._line(op) for op in ops)
        path = self.path(room)
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temporary, path)
        self._sizes[room] = self._rewritten[room] = len(data)

    def remove(self, room: str) -> None:
        self._sizes.pop(room, None)
        self._rewritten.pop(room, None)
        try:
            self.path(room).unlink(missing_ok=True)
        except OSError as e:
            log.warn("notebooks: cannot remove {room}'s history: {e}", room=room, e=str(e))

    def _line(self, op: HistoryOp) -> bytes:
        return json.dumps(_encode(op, self._redact), ensure_ascii=False).encode("utf-8") + b"\n"


def _encode(op: HistoryOp, redact: Redactor | None) -> dict[str, Any]:
    match op:
        case ("cell", cell):
            outputs = [dict(o) for o in cell.outputs]
            source = cell.source
            if redact:
                outputs = [_redact_value(o, redact) for o in outputs]
                source = redact(source)
            return {
                "cell": {
                    "id": cell.command_id,
                    "kernel": cell.kernel_id,
                    "source": source,
                    "count": cell.execution_count,
                    "outputs": outputs,
                    "size": cell.size,
                }
            }
        case ("drop",):
            return {"drop": 1}
        case ("keep", kernel_ids):
            return {"keep": sorted(kernel_ids)}
        case ("dropped", counts):
            return {"dropped": counts}
    raise AssertionError(f"not a history change: {op!r}")


def _decode(value: Any) -> HistoryOp | None:
    if not isinstance(value, dict):
        raise ValueError("not an object")
    if "cell" in value:
        cell = value["cell"]
        count = cell["count"]
        return (
            "cell",
            RecordedCell(
                command_id=str(cell["id"]),
                kernel_id=str(cell["kernel"]),
                source=str(cell["source"]),
                execution_count=count if isinstance(count, int) else None,
                outputs=[nbformat.from_dict(o) for o in cell["outputs"]],
                size=int(cell["size"]),
            ),
        )
    if "drop" in value:
        return ("drop",)
    if "keep" in value:
        return ("keep", frozenset(str(k) for k in value["keep"]))
    if "dropped" in value:
        return ("dropped", {str(k): int(n) for k, n in value["dropped"].items()})
    return None  # a change a later version writes: skipped
