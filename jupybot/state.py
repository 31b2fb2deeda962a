"""The state directory: everything jupybot persists lives below one private folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class StateDirectory:
    """C{storage.path}, created on start with owner-only permissions (0700)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()

    def ensure(self) -> Path:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            self.path.chmod(0o700)
        return self.path

    def file(self, name: str) -> Path:
        """The path of a file in the state directory (the directory is created if needed)."""
        return self.ensure() / name
