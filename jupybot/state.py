"""The state directory: everything jupybot persists lives below one private folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

# The file creation mask jupybot runs with (set by the twistd plugin, jupybot.tap): new files
# 0600, new folders 0700, whoever creates them.
PRIVATE_UMASK = 0o077


class StateDirectory:
    """C{storage.path}: created 0700, and nothing below it readable by anyone but its owner.

    New files are private because the whole process runs with L{PRIVATE_UMASK}: SQLite, its
    C{-wal}/C{-shm} files and matrix-nio's crypto store are created by libraries that take their
    mode from the umask, so one process-wide mask covers them all, including files added later.
    Files left readable by an older version are made private by the first L{ensure}.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self._made_private = False

    def ensure(self) -> Path:
        """Create the directory if needed; the first time, make everything below it private."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self._made_private:
            make_private(self.path)
            self._made_private = True
        return self.path

    def file(self, name: str) -> Path:
        """The path of a file in the state directory (the directory is created if needed)."""
        return self.ensure() / name


def write_atomically(path: Path, text: str) -> None:
    """Replace C{path} with C{text} so that a crash at any moment leaves the old or the new
    content, never a mix (written beside it, flushed to disk, then renamed over it)."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def make_private(top: Path) -> None:
    """Take group and other permissions off C{top} and every file and folder below it.

    Symbolic links are left alone (chmod would follow one out of the tree), and so are their
    targets.
    """
    _drop_group_and_other(top)
    for folder, folders, files in os.walk(top):
        for name in folders + files:
            _drop_group_and_other(Path(folder, name))


def _drop_group_and_other(path: Path) -> None:
    mode = path.lstat().st_mode
    if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
        path.chmod(stat.S_IMODE(mode) & 0o700)
