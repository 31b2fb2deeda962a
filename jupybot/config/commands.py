"""`notebooks:`: a room as a notebook, for both chat bots (docs/commands.md, "Notebooks" and
"Files"): how much of a room's runs is kept for `notebook`, how big a notebook sent with `run`
may be, and how big a file `put` and `get` move. Owned by the chat command layer.

Sizes are whole KiB or MiB here; the command layer (`NotebookLimits.from_config`) counts bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import Reader


@dataclass(frozen=True)
class NotebooksConfig:
    # A room's runs kept for 'notebook' (and on disk, under storage.path): the oldest go first.
    cells_per_room: int = 200
    output_mb_per_room: int = 16
    output_kb_per_cell: int = 256
    # All rooms of one chat bot together: the least active rooms' oldest runs go first.
    cells_total: int = 5000
    output_mb_total: int = 256
    # A notebook sent to a room with 'run': its file and its code cells.
    notebook_mb: int = 5
    notebook_code_cells: int = 200
    # A file moved by 'put' (into the kernel's folder) or 'get' (out of it).
    file_mb: int = 8

    @classmethod
    def read(cls, r: Reader) -> NotebooksConfig:
        d = cls()
        config = cls(
            cells_per_room=r.integer(
                "cells_per_room", d.cells_per_room, minimum=1, maximum=100_000
            ),
            output_mb_per_room=r.integer(
                "output_mb_per_room", d.output_mb_per_room, minimum=1, maximum=4096
            ),
            output_kb_per_cell=r.integer(
                "output_kb_per_cell", d.output_kb_per_cell, minimum=1, maximum=1024 * 1024
            ),
            cells_total=r.integer("cells_total", d.cells_total, minimum=1, maximum=10_000_000),
            output_mb_total=r.integer(
                "output_mb_total", d.output_mb_total, minimum=1, maximum=1024 * 1024
            ),
            notebook_mb=r.integer("notebook_mb", d.notebook_mb, minimum=1, maximum=1024),
            notebook_code_cells=r.integer(
                "notebook_code_cells", d.notebook_code_cells, minimum=1, maximum=100_000
            ),
            file_mb=r.integer("file_mb", d.file_mb, minimum=1, maximum=1024),
        )
        if config.cells_total < config.cells_per_room:
            r.error(
                "cells_total",
                f"expected at least cells_per_room ({config.cells_per_room}), "
                f"got {config.cells_total}",
            )
        r.finish()
        return config
